"""The continuous-batching scheduler in process on the built OpenVINO engine: requests join a running batch
at the next step, long prompts are fed in chunks while others decode, the prefix cache is used, a full KV
cache preempts and never fails, greedy output depends on the neighbours only by the kernels' rounding
(tests/llm/rounding.py) and a seed's sample not at all, priority levels, stopping and cancelling free the
blocks.

Assertions are on event order, token counts and block counts, never on wall-clock times."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.llm.rounding import assert_same_up_to_rounding
from tritonfleet.errors import ClientError
from tritonfleet.pipelines.llm.batch_scheduler import BatchScheduler
from tritonfleet.pipelines.llm.engine_info import ENGINE_INFO, EngineInfo
from tritonfleet.pipelines.llm.paged_engine import Chunk, PagedEngine
from tritonfleet.pipelines.llm.sampling import SamplingParams
from tritonfleet.pipelines.llm.sequence import Sequence, run_to_completion

ENGINE = Path(__file__).resolve().parents[2] / "model_repository/tensorrt_llm/1/cpu_engine"
# The chat template around "Write a long essay about rivers.", "Name three colors." and "Say hi.".
PROMPTS = [
    [1, 4093, 198, 19161, 253, 986, 3794, 563, 7626, 30, 2, 198, 1, 520, 9531, 198],
    [1, 4093, 198, 5820, 1296, 4683, 30, 2, 198, 1, 520, 9531, 198],
    [1, 4093, 198, 36218, 15876, 30, 2, 198, 1, 520, 9531, 198],
]
# A system prompt of 64 tokens (two blocks) that the prefix cache can share.
SYSTEM = [(17 * i) % 4000 + 100 for i in range(64)]


@pytest.fixture(scope="module")
def engine() -> PagedEngine:
    if not (ENGINE / ENGINE_INFO).exists() or EngineInfo.load(ENGINE).engine != "openvino":
        pytest.skip(f"no OpenVINO engine at {ENGINE} (fleet build llm)")
    return PagedEngine(ENGINE, 2, kv_cache_mb=64)


@pytest.fixture(scope="module")
def small_engine() -> PagedEngine:
    """A KV cache of 8 blocks (256 positions)."""
    if not (ENGINE / ENGINE_INFO).exists() or EngineInfo.load(ENGINE).engine != "openvino":
        pytest.skip(f"no OpenVINO engine at {ENGINE} (fleet build llm)")
    probe = PagedEngine(ENGINE, 2, kv_cache_mb=1)
    return PagedEngine(ENGINE, 2, kv_cache_mb=8.5 * probe.block_bytes / 2**20)


@pytest.fixture
def make(engine: PagedEngine) -> Iterator[Callable[..., BatchScheduler]]:
    made: list[BatchScheduler] = []

    def make(on: PagedEngine | None = None, **kwargs: object) -> BatchScheduler:
        made.append(BatchScheduler(on or engine, **kwargs))
        return made[-1]

    yield make
    for s in made:
        s.stop()


class Request:
    """A streamed request that records, when it gets its first token and at its end, how far another
    request had got."""

    def __init__(self, prompt: list[int], tokens: int, watch: Request | None = None, exact: bool = True,
                 **params: object):  # fmt: skip
        params = {"max_tokens": tokens, "min_tokens": tokens if exact else 0, "end_ids": (2,), **params}
        self.seq = Sequence(prompt, SamplingParams(**params), emit=self.emit, cancelled=lambda: self.cancel)
        self.watch, self.cancel = watch, False
        self.started, self.done = threading.Event(), threading.Event()
        self.watched_at_first = self.watched_at_end = -1

    def emit(self, tokens: list[int], _logprobs: list[float], reason: str | None) -> None:
        if self.watch is not None and self.watched_at_first < 0 and self.seq.generated:
            self.watched_at_first = len(self.watch.seq.generated)
        if len(self.seq.generated) >= 3:
            self.started.set()
        if reason is not None:
            if self.watch is not None:
                self.watched_at_end = len(self.watch.seq.generated)
            self.done.set()

    def submit(self, scheduler: BatchScheduler, *, priority: int = 0) -> Request:
        self.seq.priority = priority
        scheduler.submit(self.seq)
        return self


def test_a_late_request_joins_the_running_batch_at_the_next_step(make):
    scheduler = make()
    long = Request(PROMPTS[0], 200).submit(scheduler)
    assert long.started.wait(60)
    short = Request(PROMPTS[1], 8, watch=long).submit(scheduler)
    assert short.done.wait(60) and long.done.wait(120)
    begun = short.watched_at_first
    assert begun >= 3 and short.watched_at_end - begun <= 8  # one token each step from its first on
    assert len(long.seq.generated) == 200 and long.seq.finish_reason == "length"
    assert scheduler.stats.peak_running == 2 and scheduler.stats.preempted == 0
    assert scheduler.active == 0 and scheduler.pool.used == 0


def test_a_long_prompt_is_fed_in_chunks_while_others_decode(make):
    scheduler = make(max_batched_tokens=64, max_seqs=4)
    running = Request(PROMPTS[1], 120).submit(scheduler)
    assert running.started.wait(60)
    long_prompt = (SYSTEM * 5)[:300]  # five chunks of at most 63 tokens beside the decoding one
    late = Request(long_prompt, 4, watch=running).submit(scheduler)
    assert late.done.wait(120) and running.done.wait(120)
    # the running sequence got a token every step while the prompt was fed
    assert late.watched_at_first >= 3 + 300 // 63
    assert scheduler.stats.prefill_tokens >= 300 + len(PROMPTS[1])


def test_greedy_output_alone_equals_among_seven_others(make):
    scheduler = make()
    params = SamplingParams(max_tokens=24, end_ids=(2,))
    alone = run_to_completion(scheduler, PROMPTS[2], params)
    others = [Request(PROMPTS[2], 40) for _ in range(7)]
    for r in others:
        r.submit(scheduler)
    probe = Request(PROMPTS[2], 24, watch=others[0], exact=False).submit(scheduler)
    assert probe.done.wait(60) and all(r.done.wait(120) for r in others)
    assert scheduler.stats.peak_running == 8
    assert_same_up_to_rounding(probe.seq.generated, probe.seq.logprobs, alone.generated, alone.logprobs)


class RowByRow:
    """The engine, computing each row of a step on its own: a row's logits are then the same beside any
    others, so what the scheduler adds (each request's own seeded sampler) is compared exactly."""

    def __init__(self, engine: PagedEngine) -> None:
        self.engine = engine

    def __getattr__(self, name: str) -> object:
        return getattr(self.engine, name)

    def step(self, chunks: list[Chunk]) -> np.ndarray:
        rows = [self.engine.step([c]).copy() for c in chunks]
        return np.concatenate([r for r, c in zip(rows, chunks, strict=True) if c.logits])


def test_a_seed_gives_the_same_sample_alone_and_among_others(make, engine):
    scheduler = make(RowByRow(engine))
    sampled = {"temperature": 0.9, "top_k": 40, "top_p": 0.95, "seed": 7}
    alone = Request(PROMPTS[1], 24, **sampled).submit(scheduler)
    assert alone.done.wait(60)
    crowd = [Request(PROMPTS[i % 3], 24, temperature=1.0, top_k=50, seed=i) for i in range(7)]
    for r in crowd:
        r.submit(scheduler)
    again = Request(PROMPTS[1], 24, **sampled).submit(scheduler)
    assert again.done.wait(60) and all(r.done.wait(60) for r in crowd)
    assert again.seq.generated == alone.seq.generated
    assert len({tuple(r.seq.generated) for r in crowd}) > 1  # the others did sample


def test_a_shared_prefix_is_reused_and_gives_the_same_tokens(make):
    scheduler = make()
    params = SamplingParams(max_tokens=12, end_ids=(2,))
    first = run_to_completion(scheduler, SYSTEM + PROMPTS[1], params)
    assert (scheduler.prefix.lookup_tokens, scheduler.prefix.hit_tokens) == (64 + len(PROMPTS[1]), 0)
    second = run_to_completion(scheduler, SYSTEM + PROMPTS[1], params)
    assert scheduler.prefix.hit_tokens == 64  # two blocks of 32: the last partial block is computed
    assert second.generated == first.generated
    other = run_to_completion(scheduler, SYSTEM[:32] + PROMPTS[2], params)
    assert scheduler.prefix.hit_tokens == 64 + 32  # the first block is the same, the second is not
    assert other.generated
    assert scheduler.pool.used == 0 and scheduler.pool.cached > 0


def test_a_full_kv_cache_preempts_and_every_sequence_finishes(make, engine, small_engine):
    """Four sequences that need 12 blocks on an 8-block cache: some are preempted and recompute, all end
    with their 60 tokens; until the first preemption (the cache full at 64 positions each, after 48
    tokens at least) they are computed exactly as the same four on a cache with room."""
    params = {"max_batched_tokens": 64, "max_seqs": 4}
    roomy, tight = make(**params), make(small_engine, **params)
    assert tight.pool.num_blocks == 8
    runs = []
    for scheduler in (roomy, tight):
        crowd = [Request(PROMPTS[i % 3], 60) for i in range(4)]
        for r in crowd:
            r.submit(scheduler)
        assert all(r.done.wait(300) for r in crowd)
        assert all(r.seq.finish_reason == "length" and len(r.seq.generated) == 60 for r in crowd)
        runs.append([r.seq.generated for r in crowd])
    assert roomy.stats.preempted == 0 and tight.stats.preempted > 0
    assert [g[:48] for g in runs[1]] == [g[:48] for g in runs[0]]
    assert tight.pool.used == 0 and tight.active == 0


def test_a_request_that_could_never_fit_is_refused(make, small_engine):
    scheduler = make(small_engine, max_batched_tokens=64, max_seqs=4)
    scheduler.check_fits(200, 56)  # 256 positions: exactly the cache
    with pytest.raises(ClientError, match=r"needs 9 KV blocks of 32 tokens; the KV cache has 8 \(256 tokens"):
        scheduler.check_fits(200, 57)
    with pytest.raises(ClientError):
        scheduler.submit(Request([1] * 200, 57).seq)


def test_halted_and_cancelled_rows_free_their_blocks(make):
    seen: list[tuple[int, int]] = []
    scheduler = make(max_seqs=1, cancel_check_steps=1, on_step=lambda q, a, _r: seen.append((q, a)))
    # (max_seqs 1: a second sequence waits while the first runs)
    running, queued = Request(PROMPTS[0], 500), Request(PROMPTS[1], 500)
    running.submit(scheduler)
    assert running.started.wait(60)
    queued.submit(scheduler)
    scheduler.halt(queued.seq)
    assert queued.done.is_set() and queued.seq.finish_reason == "stopped" and not queued.seq.generated
    scheduler.halt(running.seq)
    assert running.done.wait(60) and running.seq.finish_reason == "stopped"
    assert 3 <= len(running.seq.generated) < 500
    cancelled = Request(PROMPTS[2], 500).submit(scheduler)  # the slot is free again
    assert cancelled.started.wait(60)
    cancelled.cancel = True
    assert cancelled.done.wait(60) and cancelled.seq.finish_reason == "cancelled"
    assert len(cancelled.seq.generated) < 500
    scheduler.stop()
    assert scheduler.active == 0 and scheduler.pool.used == 0
    assert seen[-1] == (0, 0)  # the report after the cancelled one left: the gauges fall to 0


def test_caps_hold_and_the_queue_drains(make):
    seen: list[tuple[int, int]] = []
    scheduler = make(max_seqs=3, on_step=lambda q, a, _r: seen.append((q, a)))
    requests = [Request(PROMPTS[i % 3], 6 + i) for i in range(9)]
    for r in requests:
        r.submit(scheduler)
    assert all(r.done.wait(120) for r in requests)
    assert all(len(r.seq.generated) == 6 + i for i, r in enumerate(requests))
    scheduler.stop()  # settled: its thread has made its last report
    assert max(a for _, a in seen) == 3 == scheduler.stats.peak_running
    assert scheduler.queue_size == 0 and scheduler.active == 0 and seen[-1] == (0, 0)


def test_a_lower_priority_sequence_pauses_while_a_higher_one_runs(make):
    scheduler = make()
    batch = Request(PROMPTS[0], 120).submit(scheduler, priority=2)
    assert batch.started.wait(120)
    interactive = Request(PROMPTS[1], 24, watch=batch).submit(scheduler, priority=1)
    assert interactive.done.wait(120)
    assert interactive.seq.finish_reason == "length" and len(interactive.seq.generated) == 24
    assert interactive.watched_at_first == interactive.watched_at_end  # no batch token meanwhile
    assert batch.done.wait(300) and len(batch.seq.generated) == 120  # then it went on to its end
    alone = run_to_completion(
        scheduler, PROMPTS[0], SamplingParams(max_tokens=120, min_tokens=120, end_ids=(2,))
    )
    assert alone.generated == batch.seq.generated  # the pause changed nothing


def test_a_lower_priority_waits_yield_ms_after_a_higher_one_was_fed(make):
    # An interactive client sends its next request a moment after its last answer: the batch line must not
    # take a step in that gap, or the next request waits for it.
    scheduler = make(yield_ms=5000)
    batch = Request(PROMPTS[0], 60).submit(scheduler, priority=2)
    assert batch.started.wait(120)
    first = Request(PROMPTS[1], 8, watch=batch).submit(scheduler, priority=1)
    assert first.done.wait(120)
    time.sleep(0.3)  # the client's round trip, well inside the 5 s yield
    assert len(batch.seq.generated) == first.watched_at_end  # no batch step since the interactive one
    second = Request(PROMPTS[2], 8, watch=batch).submit(scheduler, priority=1)
    assert second.done.wait(120) and second.watched_at_first == first.watched_at_end
    assert batch.done.wait(300) and len(batch.seq.generated) == 60  # resumed once the yield was over


def test_a_higher_priority_request_preempts_lower_ones_for_room(make):
    scheduler = make(max_seqs=2)
    batch = [Request(PROMPTS[i], 80).submit(scheduler, priority=2) for i in range(2)]
    assert all(b.started.wait(120) for b in batch)
    interactive = Request(PROMPTS[2], 8, watch=batch[1]).submit(scheduler)
    assert interactive.done.wait(120) and len(interactive.seq.generated) == 8
    assert scheduler.stats.preempted >= 1
    assert all(b.done.wait(300) and len(b.seq.generated) == 80 for b in batch)
