"""The wave scheduler: concurrent requests share decode steps of one static batch.

Measured here (SmolLM2-135M int4, 2 cores): one decode step of a batch of 8 costs about twice a batch of 1
while producing 8 tokens, and onnxruntime-genai cannot add a row to a running batch. So requests queue
until the running wave drains, then the next wave takes the oldest request and up to ``max_batch - 1``
others whose context lengths lie within ``bucket_tokens`` of it (the difference is fed one token per step,
see :mod:`tritonfleet.llm.engine`). Taking the oldest first bounds any request's wait to one wave.
Finished and cancelled rows stop emitting at once; their slot is dropped when the wave ends.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from tritonfleet.llm.detokenizer import Decoder, IncrementalDetokenizer
from tritonfleet.llm.engine import CpuEngine
from tritonfleet.llm.sampling import Sampler, SamplingParams

# emit(tokens, logprobs, finish_reason): finish_reason is None until the request's last call.
Emit = Callable[[list[int], list[float], "str | None"], None]


@dataclass(eq=False)
class Sequence:
    """One request's generation."""

    prompt: list[int]
    params: SamplingParams
    emit: Emit
    cancelled: Callable[[], bool] = lambda: False
    stream: bool = True
    arrival: float = field(default_factory=time.monotonic)
    generated: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    first_token_time: float | None = None
    finish_reason: str | None = None
    _sent: int = 0
    _detok: IncrementalDetokenizer | None = None

    @property
    def done(self) -> bool:
        return self.finish_reason is not None


@dataclass
class SchedulerStats:
    waves: int = 0
    steps: int = 0
    rows: int = 0


class WaveScheduler:
    """Runs :class:`Sequence` objects on a :class:`CpuEngine` from one background thread."""

    def __init__(
        self,
        engine: CpuEngine,
        tokenizer: Decoder | None = None,
        *,
        max_batch: int = 8,
        bucket_tokens: int = 64,
        cancel_check_steps: int = 4,
        on_step: Callable[[int, int], None] | None = None,
    ) -> None:
        self.engine = engine
        self.tokenizer = tokenizer
        self.max_batch = max_batch
        self.bucket_tokens = bucket_tokens
        self.cancel_check_steps = cancel_check_steps
        self.on_step = on_step
        self.stats = SchedulerStats()
        self._queue: deque[Sequence] = deque()
        self._cv = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="wave-scheduler", daemon=True)
        self._thread.start()

    def submit(self, seq: Sequence) -> None:
        if seq.stream and self.tokenizer is not None:
            seq._detok = IncrementalDetokenizer(self.tokenizer, skip_special_tokens=False)
        with self._cv:
            self._queue.append(seq)
            self._cv.notify()

    @property
    def queue_size(self) -> int:
        return len(self._queue)

    def stop(self) -> None:
        with self._cv:
            self._stopping = True
            self._cv.notify()
        self._thread.join(timeout=30)
        for seq in list(self._queue):
            self._finish(seq, "cancelled")

    def _next_wave(self) -> list[Sequence]:
        """The oldest request and the next ones in its length bucket."""
        with self._cv:
            while not self._queue and not self._stopping:
                self._cv.wait()
            if self._stopping:
                return []
            anchor = len(self._queue[0].prompt)
            wave = [s for s in self._queue if abs(len(s.prompt) - anchor) <= self.bucket_tokens]
            wave = wave[: self.max_batch]
            for s in wave:
                self._queue.remove(s)
            return wave

    def _run(self) -> None:
        while True:
            wave = self._next_wave()
            if not wave:
                return
            try:
                self._run_wave(wave)
            except Exception as exc:  # an engine failure ends this wave's requests, not the scheduler
                for seq in wave:
                    if not seq.done:
                        self._finish(seq, f"error: {exc}")
            if self.on_step is not None:  # the wave's slots are free
                self.on_step(len(self._queue), 0)

    def _run_wave(self, wave: list[Sequence]) -> None:
        self.stats.waves += 1
        self.stats.rows += len(wave)
        max_length = max(len(s.prompt) + s.params.max_tokens for s in wave)
        batch = self.engine.wave([s.prompt for s in wave], max_length)
        samplers = [Sampler(s.params, s.prompt) for s in wave]
        step = 0
        while not all(s.done for s in wave):
            if self.on_step is not None:
                self.on_step(len(self._queue), sum(not s.done for s in wave))
            if step % self.cancel_check_steps == 0:
                for s in wave:
                    if not s.done and s.cancelled():
                        self._finish(s, "cancelled")
            logits = batch.logits()
            tokens = []
            for seq, sampler, row in zip(wave, samplers, logits, strict=True):
                position = batch.length
                if position < len(seq.prompt):  # still feeding this row's prompt
                    tokens.append(seq.prompt[position])
                elif seq.done:
                    tokens.append(0)  # filler for a retired row
                else:
                    token, logprob = sampler.choose(row, seq.generated)
                    tokens.append(token)
                    self._append(seq, sampler, token, logprob)
            self.stats.steps += 1
            step += 1
            if all(s.done for s in wave) or batch.length + 1 >= max_length:
                break
            batch.advance(tokens)
        for s in wave:
            if not s.done:
                self._finish(s, "length")

    def _append(self, seq: Sequence, sampler: Sampler, token: int, logprob: float) -> None:
        seq.generated.append(token)
        seq.logprobs.append(logprob)
        if seq.first_token_time is None:
            seq.first_token_time = time.monotonic()
        if sampler.stopped(seq.generated):
            if seq.generated[-1] in seq.params.end_ids:  # like TensorRT-LLM, end ids are not output
                seq.generated.pop()
                seq.logprobs.pop()
            self._finish(seq, "stop")
        elif len(seq.generated) >= seq.params.max_tokens:
            self._finish(seq, "length")
        elif seq.stream and (seq._detok is None or seq._detok.add([token])):
            self._send(seq, None)

    def _send(self, seq: Sequence, reason: str | None) -> None:
        tokens, logprobs = seq.generated[seq._sent :], seq.logprobs[seq._sent :]
        seq._sent = len(seq.generated)
        try:
            seq.emit(tokens, logprobs, reason)
        except Exception as exc:  # the response could not be sent: end the request and free its slot
            seq.finish_reason = seq.finish_reason or "cancelled"
            if reason is None:  # still owed a final response (fails too, harmlessly, if the sender is closed)
                with contextlib.suppress(Exception):
                    seq.emit([], [], f"error: response not sent: {exc}")

    def _finish(self, seq: Sequence, reason: str) -> None:
        seq.finish_reason = reason
        if not seq.stream:
            seq._sent = 0
        self._send(seq, reason)


def run_to_completion(scheduler: WaveScheduler, prompt: list[int], params: SamplingParams) -> Sequence:
    """Submit one non-streaming request and wait for it (benchmarks and tests)."""
    finished = threading.Event()
    seq = Sequence(prompt, params, emit=lambda _t, _l, reason: reason and finished.set(), stream=False)
    scheduler.submit(seq)
    finished.wait()
    return seq
