"""The wave scheduler in process on the built CPU engine: late arrivals start beside running waves, greedy
output does not depend on its neighbours, the wave and row caps hold, the queue drains.

Assertions are on event order and token counts, never on wall-clock times."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tritonfleet.pipelines.llm.engine import ENGINE_INFO, CpuEngine
from tritonfleet.pipelines.llm.sampling import SamplingParams
from tritonfleet.pipelines.llm.scheduler import Sequence, WaveScheduler, run_to_completion

ENGINE = Path(__file__).resolve().parents[2] / "model_repository/tensorrt_llm/1/cpu_engine"
# The chat template around "Write a long essay about rivers.", "Name three colors." and "Say hi.".
PROMPTS = [
    [1, 4093, 198, 19161, 253, 986, 3794, 563, 7626, 30, 2, 198, 1, 520, 9531, 198],
    [1, 4093, 198, 5820, 1296, 4683, 30, 2, 198, 1, 520, 9531, 198],
    [1, 4093, 198, 36218, 15876, 30, 2, 198, 1, 520, 9531, 198],
]


@pytest.fixture(scope="module")
def engine() -> CpuEngine:
    if not (ENGINE / ENGINE_INFO).exists():
        pytest.skip(f"no CPU engine at {ENGINE} (fleet build llm)")
    pytest.importorskip("onnxruntime_genai")
    return CpuEngine(ENGINE, 2)


@pytest.fixture
def make(engine: CpuEngine) -> Iterator[Callable[..., WaveScheduler]]:
    made: list[WaveScheduler] = []

    def make(**kwargs: object) -> WaveScheduler:
        made.append(WaveScheduler(engine, **kwargs))
        return made[-1]

    yield make
    for s in made:
        s.stop()


class Request:
    """A streamed request that records, at its end, what another request had generated then."""

    def __init__(self, prompt: list[int], tokens: int, watch: Request | None = None, exact: bool = True):
        params = SamplingParams(max_tokens=tokens, min_tokens=tokens if exact else 0, end_ids=(2,))
        self.seq = Sequence(prompt, params, emit=self.emit, cancelled=lambda: self.cancel)
        self.watch, self.cancel = watch, False
        self.started, self.done = threading.Event(), threading.Event()
        self.watched_at_end = -1

    def emit(self, tokens: list[int], _logprobs: list[float], reason: str | None) -> None:
        if len(self.seq.generated) >= 3:
            self.started.set()
        if reason is not None:
            if self.watch is not None:
                self.watched_at_end = len(self.watch.seq.generated)
            self.done.set()


def test_late_short_request_finishes_while_the_long_one_runs(make):
    scheduler = make(max_wait_ms=0)
    long = Request(PROMPTS[0], 200)
    scheduler.submit(long.seq)
    assert long.started.wait(60)
    short = Request(PROMPTS[1], 8, watch=long)
    scheduler.submit(short.seq)
    assert short.done.wait(60) and long.done.wait(120)
    assert short.seq.generated and len(short.seq.generated) == 8
    assert 0 < short.watched_at_end < 200  # the long request was still generating
    assert len(long.seq.generated) == 200 and long.seq.finish_reason == "length"
    assert scheduler.stats.waves == 2 and scheduler.stats.peak_waves == 2


def test_a_full_wave_starts_without_waiting(make):
    """With an endless max wait, late requests start beside a running wave once they fill one."""
    scheduler = make(max_batch=2, max_wait_ms=1e9)
    long = Request(PROMPTS[0], 200)
    scheduler.submit(long.seq)
    assert long.started.wait(60)
    shorts = [Request(p, 8, watch=long) for p in PROMPTS[1:]]
    for r in shorts:
        scheduler.submit(r.seq)
    assert all(r.done.wait(60) for r in shorts) and long.done.wait(120)
    assert all(0 < r.watched_at_end < 200 for r in shorts)
    assert scheduler.stats.waves == 2 and scheduler.stats.shared_steps > 0


def test_greedy_output_alone_equals_interleaved(make):
    scheduler = make(max_wait_ms=0, bucket_tokens=0)
    alone = run_to_completion(scheduler, PROMPTS[2], SamplingParams(max_tokens=24, end_ids=(2,)))
    others = [Request(PROMPTS[0], 60), Request(PROMPTS[1], 60)]
    for r in others:
        scheduler.submit(r.seq)
    assert all(r.started.wait(60) for r in others)
    probe = Request(PROMPTS[2], 24, watch=others[0], exact=False)
    scheduler.submit(probe.seq)
    assert probe.done.wait(60) and all(r.done.wait(120) for r in others)
    assert 0 < probe.watched_at_end < 60  # it ran interleaved with the others
    assert probe.seq.generated == alone.generated


def test_caps_hold_and_the_queue_drains(make):
    seen: list[tuple[int, int]] = []
    scheduler = make(
        max_batch=2, bucket_tokens=0, max_wait_ms=0, max_waves=2, max_rows=3,
        on_step=lambda _q, _a, _r: seen.append((scheduler.alive_waves, scheduler.active)),
    )  # fmt: skip
    requests = [Request(PROMPTS[i % 3], 6 + i) for i in range(9)]
    for r in requests:
        scheduler.submit(r.seq)
    assert all(r.done.wait(120) for r in requests)
    assert all(len(r.seq.generated) == 6 + i for i, r in enumerate(requests))
    scheduler.stop()  # settled: its thread has made its last report
    assert max(w for w, _ in seen) == 2 and max(a for _, a in seen) <= 3
    assert scheduler.stats.peak_waves == 2  # the cap was reached, never passed
    assert scheduler.queue_size == 0 and scheduler.alive_waves == 0 and scheduler.active == 0
    assert seen[-1] == (0, 0)  # the last report: nothing left running


def test_cancelled_row_stops_at_once_and_its_wave_ends(make):
    scheduler = make(max_wait_ms=0, cancel_check_steps=1)
    long, other = Request(PROMPTS[0], 500), Request(PROMPTS[1], 40)
    scheduler.submit(long.seq)
    assert long.started.wait(60)
    scheduler.submit(other.seq)
    long.cancel = True
    assert long.done.wait(60) and other.done.wait(60)
    assert long.seq.finish_reason == "cancelled" and len(long.seq.generated) < 500
    assert other.seq.finish_reason == "length" and len(other.seq.generated) == 40
    scheduler.stop()
    assert scheduler.alive_waves == 0 and scheduler.active == 0


def test_halted_rows_finish_with_what_they_generated(make):
    """halt (a stop request) ends a running row at its next step and a queued one at once, as "stopped"."""
    scheduler = make(max_wait_ms=10_000, max_waves=1)  # a second wave waits while the first runs
    running, queued, other = Request(PROMPTS[0], 500), Request(PROMPTS[1], 500), Request(PROMPTS[2], 8)
    scheduler.submit(running.seq)
    assert running.started.wait(60)
    scheduler.submit(queued.seq)
    scheduler.halt(queued.seq)
    assert queued.done.is_set() and queued.seq.finish_reason == "stopped" and not queued.seq.generated
    scheduler.halt(running.seq)
    assert running.done.wait(60) and running.seq.finish_reason == "stopped"
    assert 3 <= len(running.seq.generated) < 500
    scheduler.submit(other.seq)  # the slot is free again
    assert other.done.wait(60) and other.seq.finish_reason == "length"
    scheduler.stop()
    assert scheduler.alive_waves == 0 and scheduler.active == 0


def test_idle_engine_gathers_requests_sent_together(make):
    """Requests that reach an idle engine one after another share one wave instead of splitting 1 + N: an idle
    engine waits up to gather_ms for a wave to fill (here for ever, so however slowly the test submits them,
    the four fill one wave of four), and starts a wave that is not full once that window is over."""
    scheduler = make(gather_ms=1e9, max_wait_ms=0, max_batch=4)
    requests = [Request(PROMPTS[i % 3], 4) for i in range(4)]
    for request in requests:
        scheduler.submit(request.seq)
    assert all(r.done.wait(60) for r in requests)
    assert scheduler.stats.waves == 1 and scheduler.stats.rows == 4
    lone = make(gather_ms=20, max_wait_ms=0)  # a wave of one starts when the window closes
    alone = Request(PROMPTS[2], 4)
    lone.submit(alone.seq)
    assert alone.done.wait(60) and lone.stats.waves == 1 and len(alone.seq.generated) == 4
    apart = make(gather_ms=0, max_wait_ms=0)  # without the window the first request starts alone
    first = Request(PROMPTS[0], 40)
    apart.submit(first.seq)
    assert first.started.wait(60)
    second = Request(PROMPTS[1], 4)
    apart.submit(second.seq)
    assert second.done.wait(60) and first.done.wait(60)
    assert apart.stats.waves == 2


# --- priority (batch jobs send priority_level 2; interactive requests have the default, 1) ---

BATCH = 2


class Watched:
    """A request that records how far ``other`` had got when it started and when it ended."""

    def __init__(self, prompt: list[int], tokens: int, priority: int = 0, other: Watched | None = None):
        params = SamplingParams(max_tokens=tokens, min_tokens=tokens, end_ids=(2,))
        self.seq = Sequence(prompt, params, emit=self.emit, priority=priority)
        self.other = other
        self.first, self.last = -1, -1
        self.started, self.done = threading.Event(), threading.Event()

    def emit(self, tokens: list[int], _logprobs: list[float], reason: str | None) -> None:
        if self.other is not None and self.first < 0 and self.seq.generated:
            self.first = len(self.other.seq.generated)
        if len(self.seq.generated) >= 3:
            self.started.set()
        if reason is not None:
            if self.other is not None:
                self.last = len(self.other.seq.generated)
            self.done.set()


def test_a_batch_request_pauses_while_an_interactive_one_runs(make) -> None:
    scheduler = make(max_batch=1, max_waves=4)
    batch = Watched(PROMPTS[0], 120, priority=BATCH)
    scheduler.submit(batch.seq)
    assert batch.started.wait(120)
    interactive = Watched(PROMPTS[1], 24, other=batch)
    scheduler.submit(interactive.seq)
    assert interactive.done.wait(120)
    assert interactive.seq.finish_reason == "length" and len(interactive.seq.generated) == 24
    assert interactive.first == interactive.last  # not one batch token while the interactive one ran
    assert batch.done.wait(300) and len(batch.seq.generated) == 120  # then it went on to its end
    alone = run_to_completion(
        scheduler, PROMPTS[0], SamplingParams(max_tokens=120, min_tokens=120, end_ids=(2,))
    )
    assert alone.generated == batch.seq.generated  # the pause changed nothing


def test_lower_levels_leave_a_wave_free(make) -> None:
    scheduler = make(max_batch=1, max_waves=2, max_rows=2)
    first = Watched(PROMPTS[0], 60, priority=BATCH)
    second = Watched(PROMPTS[2], 8, priority=BATCH, other=first)
    scheduler.submit(first.seq)
    assert first.started.wait(120)
    scheduler.submit(second.seq)
    interactive = Watched(PROMPTS[1], 8, other=first)
    scheduler.submit(interactive.seq)
    assert interactive.done.wait(120)
    assert not second.seq.generated  # the second batch request waits: one wave is the top level's
    assert second.done.wait(300) and first.done.wait(300)
    assert second.first == len(first.seq.generated)  # it started only once the first batch wave ended
