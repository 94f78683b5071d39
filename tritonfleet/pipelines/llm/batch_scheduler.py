"""Continuous batching on the paged CPU engine: every step feeds each running sequence its next token and
the waiting prompts' chunks, up to a token budget, so requests join and leave a running batch at any step.

One thread runs the loop. A step holds, in order: one token for every decoding sequence, then prompt chunks
in admission order until ``max_batched_tokens`` tokens (chunked prefill: a long prompt is spread over several
steps while the others keep decoding, so a 1000-token prompt delays the running streams by a chunk per step,
not by its whole prefill). Rows never wait for one another: no waves, no length buckets.

Admission: a waiting sequence starts when a slot is free (``max_seqs``) and the KV blocks of its context
are (less those the prefix cache has: :mod:`~tritonfleet.pipelines.llm.kv_blocks`), keeping one block in
hand per running sequence so that the next steps can grow. Blocks are taken as a sequence grows. When a
decoding sequence needs a block and none is left, the most recently admitted sequence of the worst priority
level is preempted: its blocks go back (its full ones stay cached), it waits at the head of the queue and,
readmitted, recomputes its context (prompt and what it generated so far, mostly found in the prefix cache)
and goes on where it was; its sampler, seed and guide state are kept, so its output does not change. The
KV memory is allocated once, so the cache can fill but never run out of memory; a request that could not fit
even alone is refused before it is queued (:meth:`BatchScheduler.check_fits`).

Priority (the rule of the wave scheduler): waiting sequences are admitted best level first, a worse level
only while no better one waits; a step feeds only the sequences of the best level running, so worse ones
pause (keeping their blocks) while better ones generate; and a better-level sequence that cannot be
admitted preempts running sequences of worse levels. A worse level also waits ``yield_ms`` after a better
one was last fed: an interactive client's next request comes a few milliseconds after its last answer, and
without the pause it would find a batch step running (512 prompt tokens take about 250 ms on two cores).

Sampling: rows asking for plain greedy decoding (no penalties, bad words or guide) take one vectorised
``argmax`` (their ``min_tokens`` masking and log-probabilities too); the others go through their own
:class:`~tritonfleet.pipelines.llm.sampling.Sampler`, so each row samples with its own parameters and seed
whatever shares its step.

Stopping: :meth:`BatchScheduler.halt` (TensorRT-LLM's stop request) ends a waiting sequence at once and a
running one before the next step, reason ``"stopped"``; a cancelled sequence (``Sequence.cancelled``, asked
every ``cancel_check_steps`` steps) leaves the same way. Either frees its slot and blocks at once. An
exception from the engine fails the sequences of that step, not the scheduler.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import count

import numpy as np

from tritonfleet.errors import ClientError
from tritonfleet.pipelines.llm.detokenizer import Decoder
from tritonfleet.pipelines.llm.kv_blocks import BlockPool, PrefixStats, blocks_for
from tritonfleet.pipelines.llm.paged_engine import Chunk, PagedEngine
from tritonfleet.pipelines.llm.sampling import Sampler
from tritonfleet.pipelines.llm.sequence import SchedulerThread, Sequence, accept, finish, prepare


@dataclass
class BatchStats:
    steps: int = 0
    admitted: int = 0  # admissions, readmissions after a preemption included
    preempted: int = 0
    peak_running: int = 0
    prefill_tokens: int = 0  # prompt (and recomputed) tokens fed
    decode_tokens: int = 0


@dataclass(eq=False)
class _Live:
    """A sequence and the scheduler's state for it."""

    seq: Sequence
    sampler: Sampler
    context: list[int]  # the prompt and the tokens generated so far
    serial: int  # submission order
    plain: bool  # plain greedy: the vectorised path
    blocks: list[int] = field(default_factory=list)
    names: list[int] = field(default_factory=list)  # names of its full blocks written so far
    computed: int = 0  # context positions whose KV is in its blocks
    admitted: int = -1  # admission order (-1: waiting)

    @property
    def level(self) -> int:
        return self.seq.level


def _plain(seq: Sequence) -> bool:
    p = seq.params
    return (
        p.greedy
        and seq.guide is None
        and not p.bad_words
        and p.repetition_penalty == 1.0
        and not p.presence_penalty
        and not p.frequency_penalty
    )


class BatchScheduler(SchedulerThread[_Live]):
    """Runs :class:`~tritonfleet.pipelines.llm.sequence.Sequence` objects on a :class:`PagedEngine` from one
    background thread.

    ``on_step(queued, active, rows)`` is called after every step (``rows``: the sequences it fed) and when
    the last running sequence ends (``rows == 0``).
    """

    def __init__(
        self,
        engine: PagedEngine,
        tokenizer: Decoder | None = None,
        *,
        max_batched_tokens: int = 512,
        max_seqs: int = 32,
        prefix_caching: bool = True,
        cancel_check_steps: int = 4,
        yield_ms: float = 0.0,
        on_step: Callable[[int, int, int], None] | None = None,
    ) -> None:
        if max_batched_tokens < max_seqs:
            raise ValueError("max_batched_tokens must be at least max_seqs (one token per running sequence)")
        self.engine = engine
        self.tokenizer = tokenizer
        self.max_batched_tokens = max_batched_tokens
        self.max_seqs = max_seqs
        self.cancel_check_steps = cancel_check_steps
        self.yield_s = yield_ms / 1000
        self.on_step = on_step
        self.pool = BlockPool(engine.num_blocks, engine.block_size, prefix_caching)
        self.stats = BatchStats()
        self._running: list[_Live] = []
        self._serials = count()
        self._admissions = count()
        self._fed: dict[int, float] = {}  # priority level -> when a step that fed it ended
        super().__init__("batch-scheduler")

    @staticmethod
    def _sequence(waiting: _Live) -> Sequence:
        return waiting.seq

    # --- the callers' side ---

    def check_fits(self, prompt_tokens: int, max_tokens: int) -> None:
        """:class:`ClientError` for a request whose prompt and output could never fit the KV cache."""
        need = blocks_for(prompt_tokens + max_tokens, self.pool.block_size)
        if need > self.pool.num_blocks:
            mb = self.engine.kv_bytes / 2**20
            raise ClientError(
                f"prompt ({prompt_tokens} tokens) + max_tokens ({max_tokens}) needs {need} KV blocks of "
                f"{self.pool.block_size} tokens; the KV cache has {self.pool.num_blocks} "
                f"({self.capacity_tokens} tokens, kv_cache_mb={mb:.0f})"
            )

    def submit(self, seq: Sequence) -> None:
        self.check_fits(len(seq.prompt), seq.params.max_tokens)
        prepare(seq, self.tokenizer)
        live = _Live(
            seq,
            Sampler(seq.params, seq.prompt, seq.guide),
            list(seq.prompt),
            next(self._serials),
            _plain(seq),
        )
        self._queue(live)

    @property
    def active(self) -> int:
        """Sequences admitted and not finished (paused ones of worse priority levels included)."""
        return len(self._running)

    @property
    def max_sequences(self) -> int:
        return self.max_seqs

    @property
    def kv_tokens(self) -> int:
        """KV-cache positions held by the running sequences: their blocks x tokens per block."""
        return self.pool.used * self.pool.block_size

    @property
    def capacity_tokens(self) -> int:
        return self.pool.num_blocks * self.pool.block_size

    @property
    def prefix(self) -> PrefixStats:
        return self.pool.stats

    # --- the loop ---

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._waiting and not self._running and not self._stopping:
                    self._cv.wait()
                if self._stopping:
                    break
                self._admit()
            self._drop_stopped()
            chunks = self._plan() if self._running else []
            if chunks:
                self._step(chunks)
                self._fed[chunks[0][0].level] = time.monotonic()
            elif self._running:  # the level running yields to a better one fed a moment ago
                with self._cv:
                    if not self._waiting and not self._stopping:
                        self._cv.wait(self._yielding(min(r.level for r in self._running)))
            if self.on_step is not None:  # also when the last ones were dropped: the gauges fall to 0
                self.on_step(len(self._waiting), len(self._running), len(chunks))
        for live in self._running:
            self.pool.release(live.blocks)
            finish(live.seq, "cancelled")
        self._running.clear()

    def _admit(self) -> None:
        """Admit waiting sequences, best level first, while slots and blocks allow (the lock is held)."""
        while self._waiting:
            head = min(self._waiting, key=lambda w: (w.level, w.serial))
            if len(self._running) >= self.max_seqs or not self._place(head):
                worse = [r for r in self._running if r.level > head.level]
                if not worse:
                    return
                self._preempt(max(worse, key=lambda r: (r.level, r.admitted)))
                continue
            self._waiting.remove(head)
            head.admitted = next(self._admissions)
            if head.seq.started is None:
                head.seq.started = time.monotonic()
            self._running.append(head)
            self.stats.admitted += 1
            self.stats.peak_running = max(self.stats.peak_running, len(self._running))

    def _place(self, live: _Live) -> bool:
        """Give ``live`` the blocks of its context (cached ones where the prefix cache has them), keeping
        one block in hand per running sequence; False when they are not there."""
        pool = self.pool
        hits, names = pool.match(live.context)
        fresh = blocks_for(len(live.context), pool.block_size) - len(hits)
        if pool.fresh_available(hits) - fresh < len(self._running):
            return False
        live.blocks = pool.take(hits, fresh)
        live.names = names
        live.computed = len(hits) * pool.block_size
        if not live.seq.generated:  # a first admission: the prompt's lookup
            pool.count_lookup(len(live.context), live.computed)
        return True

    def _preempt(self, live: _Live) -> None:
        """Take ``live``'s blocks back; it waits again (at the head of its level) to recompute its context."""
        self._running.remove(live)
        self.pool.release(live.blocks)
        live.blocks, live.names, live.computed, live.admitted = [], [], 0, -1
        self.stats.preempted += 1
        with self._cv:
            self._waiting.append(live)

    def _drop_stopped(self) -> None:
        """Finish halted sequences, and cancelled ones every ``cancel_check_steps`` steps (asking costs an
        IPC round trip each: staggered over the steps)."""
        k = self.cancel_check_steps
        for live in list(self._running):
            seq = live.seq
            if seq.halted:
                self._end(live, "stopped")
            elif (self.stats.steps + live.serial) % k == 0 and seq.cancelled():
                self._end(live, "cancelled")

    def _end(self, live: _Live, reason: str | None) -> None:
        """``live`` is done (``reason``: finish it with that, None when it finished itself): free its slot
        and blocks."""
        self._running.remove(live)
        self.pool.release(live.blocks)
        live.blocks = []
        if reason is not None:
            finish(live.seq, reason)

    def _plan(self) -> list[tuple[_Live, int]]:
        """This step's sequences and how many tokens each is fed: decode tokens first, then prompt chunks,
        all of the best priority level running; none while that level yields (:meth:`_yielding`)."""
        level = min(r.level for r in self._running)
        if self._yielding(level):
            return []
        active = sorted((r for r in self._running if r.level == level), key=lambda r: r.admitted)
        plan, budget = [], self.max_batched_tokens
        for live in [r for r in active if len(r.context) - r.computed == 1]:
            if live in self._running and self._room_for_one(live):
                plan.append((live, 1))
                budget -= 1
        for live in active:
            todo = len(live.context) - live.computed
            if todo > 1 and budget > 0 and live in self._running:
                n = min(todo, budget)
                plan.append((live, n))
                budget -= n
        return [(live, n) for live, n in plan if live in self._running]

    def _yielding(self, level: int) -> float:
        """Seconds ``level`` still waits: a better level was fed less than ``yield_ms`` ago (0: none)."""
        fed = max((t for better, t in self._fed.items() if better < level), default=None)
        return 0.0 if fed is None else max(0.0, fed + self.yield_s - time.monotonic())

    def _room_for_one(self, live: _Live) -> bool:
        """A block for ``live``'s next position if it needs one, preempting others (or itself) for it."""
        pool = self.pool
        while blocks_for(live.computed + 1, pool.block_size) > len(live.blocks):
            block = pool.grow()
            if block is not None:
                live.blocks.append(block)
                continue
            victim = max(self._running, key=lambda r: (r.level, r.admitted))
            self._preempt(victim)
            if victim is live:
                return False
        return True

    def _step(self, plan: list[tuple[_Live, int]]) -> None:
        chunks = []
        for live, n in plan:
            end = live.computed + n
            chunks.append(
                Chunk(live.context[live.computed : end], live.computed, live.blocks, end == len(live.context))
            )
        try:
            logits = self.engine.step(chunks)
        except Exception as exc:  # the engine failed this step: its sequences end, the others go on
            for live, _ in plan:
                self._end(live, f"error: {exc}")
            return
        self.stats.steps += 1
        sampling = []
        for (live, n), chunk in zip(plan, chunks, strict=True):
            live.computed += n
            if chunk.logits:
                sampling.append(live)
                self.stats.decode_tokens += n == 1
                self.stats.prefill_tokens += n if n > 1 else 0
            else:
                self.stats.prefill_tokens += n
            self._name_blocks(live)
        self._sample(sampling, logits)

    def _name_blocks(self, live: _Live) -> None:
        """Register the blocks ``live`` has filled, for later prompts that start the same way."""
        pool = self.pool
        full = live.computed // pool.block_size
        if full > len(live.names) and pool.prefix_caching:
            parent = live.names[-1] if live.names else None
            start = len(live.names)
            new = pool.names(live.context[: full * pool.block_size], start, parent)
            size = pool.block_size
            for i, name in enumerate(new, start):
                pool.register(live.blocks[i], name, live.context[i * size : (i + 1) * size])
            live.names += new

    def _sample(self, rows: list[_Live], logits: np.ndarray) -> None:
        """The next token of each row (``logits`` in the same order)."""
        plain = [i for i, live in enumerate(rows) if live.plain]
        tokens: dict[int, tuple[int, float]] = {}
        if plain:
            x = logits[plain].astype(np.float32)
            for j, i in enumerate(plain):
                p, seq = rows[i].seq.params, rows[i].seq
                if len(seq.generated) < p.min_tokens and p.end_ids:
                    x[j, list(p.end_ids)] = -np.inf
            best = x.argmax(axis=1)
            top = x[np.arange(len(plain)), best]
            logz = top + np.log(np.exp(x - top[:, None]).sum(axis=1))
            for j, i in enumerate(plain):
                tokens[i] = (int(best[j]), float(top[j] - logz[j]))
        for i, live in enumerate(rows):
            if i not in tokens:
                tokens[i] = live.sampler.choose(logits[i], live.seq.generated)
        for i, live in enumerate(rows):
            token, logprob = tokens[i]
            live.context.append(token)
            accept(live.seq, live.sampler, token, logprob)
            if live.seq.done:
                self._end(live, None)
