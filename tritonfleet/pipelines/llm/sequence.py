"""One request's generation as the CPU schedulers run it, and how its tokens leave: the same for the
continuous-batching scheduler (:mod:`~tritonfleet.pipelines.llm.batch_scheduler`) and the wave scheduler
(:mod:`~tritonfleet.pipelines.llm.scheduler`).

A sequence's ``emit(tokens, logprobs, finish_reason)`` is called with new tokens as they are released
(streamed in groups that end on a whole UTF-8 character) and once with its finish reason: ``"stop"`` (an
end id or a stop word; end ids are not output, as in TensorRT-LLM), ``"length"``, ``"stopped"`` (the stop
request), ``"cancelled"``, or ``"error: ..."``. A sequence that is not streamed gets everything in that
last call.

Priority is Triton's: level 1 the highest, larger numbers lower, 0 or none meaning 1; batch jobs send 2.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from tritonfleet.pipelines.llm.detokenizer import Decoder, IncrementalDetokenizer
from tritonfleet.pipelines.llm.guided import Guide
from tritonfleet.pipelines.llm.sampling import Sampler, SamplingParams

# emit(tokens, logprobs, finish_reason): finish_reason is None until the request's last call.
Emit = Callable[[list[int], list[float], "str | None"], None]
TOP_LEVEL = 1


@dataclass(eq=False)
class Sequence:
    """One request's generation."""

    prompt: list[int]
    params: SamplingParams
    emit: Emit
    cancelled: Callable[[], bool] = lambda: False
    stream: bool = True
    priority: int = 0  # Triton's priority level: 1 (or 0) highest, larger numbers lower
    arrival: float = field(default_factory=time.monotonic)
    started: float | None = None  # when it was first scheduled (the end of its queueing)
    generated: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    first_token_time: float | None = None
    finish_reason: str | None = None
    halted: bool = False  # set by the scheduler's halt: finish at the next step
    guide: Guide | None = None  # guided decoding: the tokens its grammar allows, step by step
    _sent: int = 0
    _detok: IncrementalDetokenizer | None = None

    @property
    def done(self) -> bool:
        return self.finish_reason is not None

    @property
    def level(self) -> int:
        return max(self.priority, TOP_LEVEL)


class Scheduler(Protocol):
    """What the model and the tools use of a scheduler."""

    def submit(self, seq: Sequence) -> None: ...
    def halt(self, seq: Sequence) -> None: ...
    def stop(self) -> None: ...

    @property
    def queue_size(self) -> int: ...

    @property
    def active(self) -> int: ...


def prepare(seq: Sequence, tokenizer: Decoder | None) -> None:
    """Ready a submitted sequence: a streamed one releases its tokens on whole characters."""
    if seq.stream and tokenizer is not None:
        seq._detok = IncrementalDetokenizer(tokenizer, skip_special_tokens=False)


def accept(seq: Sequence, sampler: Sampler, token: int, logprob: float) -> None:
    """Add a sampled token: the sequence ends on an end id, a stop word or its token budget; else a streamed
    sequence may release what it has."""
    seq.generated.append(token)
    seq.logprobs.append(logprob)
    if seq.first_token_time is None:
        seq.first_token_time = time.monotonic()
    if sampler.stopped(seq.generated):
        if seq.generated[-1] in seq.params.end_ids:  # like TensorRT-LLM, end ids are not output
            seq.generated.pop()
            seq.logprobs.pop()
        finish(seq, "stop")
    elif len(seq.generated) >= seq.params.max_tokens:
        finish(seq, "length")
    elif seq.stream and (seq._detok is None or seq._detok.add([token])):
        send(seq, None)


def send(seq: Sequence, reason: str | None) -> None:
    """Emit what the sequence has not sent yet (with its finish reason at the end)."""
    tokens, logprobs = seq.generated[seq._sent :], seq.logprobs[seq._sent :]
    seq._sent = len(seq.generated)
    try:
        seq.emit(tokens, logprobs, reason)
    except Exception as exc:  # the response could not be sent: end the request and free its slot
        seq.finish_reason = seq.finish_reason or "cancelled"
        if reason is None:  # still owed a final response (fails too, harmlessly, if the sender is closed)
            with contextlib.suppress(Exception):
                seq.emit([], [], f"error: response not sent: {exc}")


def finish(seq: Sequence, reason: str) -> None:
    seq.finish_reason = reason
    if not seq.stream:
        seq._sent = 0
    send(seq, reason)


def run_to_completion(scheduler: Scheduler, prompt: list[int], params: SamplingParams) -> Sequence:
    """Submit one non-streaming request and wait for it (the build's report, benchmarks and tests)."""
    finished = threading.Event()
    seq = Sequence(prompt, params, emit=lambda _t, _l, reason: reason and finished.set(), stream=False)
    scheduler.submit(seq)
    finished.wait()
    return seq
