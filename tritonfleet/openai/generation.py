"""From an OpenAI request to the LLM pipeline's inputs, and from its responses back to text.

- The prompt: chat messages through the model's own chat template (rendered here, sent with
  ``apply_chat_template`` false: one template, the model's), or the text as it is (completions).
- The budget: ``max_tokens`` as asked, or the server's default up to the context left; a prompt that does
  not fit is a 400 ``context_length_exceeded``, counted with the model's tokenizer.
- Sampling: OpenAI's defaults (temperature 1, top_p 1, a fresh seed per request unless one is given);
  temperature 0 is greedy (``top_k`` 1).
- ``stop`` goes to the pipeline's ``stop_words``; the text is also scanned for the stop strings here, since a
  model can write a stop string in other tokens than the stop word's, and the stop string is trimmed off.
- ``finish_reason``: "length" when the pipeline's ``num_output_tokens`` reached ``max_tokens`` without a stop
  string, "stop" otherwise. No tensor says why a generation ended, but the counts do: end ids are never
  output, so a generation that ended on one has fewer tokens than its limit. The counts exist on both
  targets (TensorRT-LLM 1.2.1's backend returns them on GPU); no tensor of its says why a generation ended.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tritonfleet.errors import ClientError, Fault
from tritonfleet.openai.catalog import GUIDE, GUIDE_TYPE, Served, Tokenizing
from tritonfleet.openai.errors import ContextExceeded
from tritonfleet.openai.schemas import ChatRequest, Message, ResponseFormat, _Sampling
from tritonfleet.pipelines import OpenAIModel
from tritonfleet.pipelines.llm import interface as llm

# JSON output without free whitespace between tokens: a small model left free to indent may fill its
# budget with blank lines (a schema's own "x-guidance" options override these).
JSON_OPTIONS = {"whitespace_flexible": False}
ROLE_NAMES = {"developer": "system"}  # OpenAI's newer name for the system role


def render_chat(tokenizing: Tokenizing | None, messages: Sequence[Message]) -> str:
    """The prompt: ``messages`` through the model's own chat template."""
    if tokenizing is None or tokenizing.template is None:
        raise ClientError("this model has no chat template: use /v1/completions", param="messages")
    turns = [{"role": ROLE_NAMES.get(m.role, m.role), "content": m.text} for m in messages]
    try:
        return tokenizing.template.render(messages=turns, add_generation_prompt=True)
    except Exception as exc:  # the model's template refuses this conversation (say, roles out of order)
        raise ClientError(f"messages: the chat template refused them: {exc}", param="messages") from None


def question(messages: Sequence[Message]) -> str:
    """The last user message (models that build their prompt themselves, such as ``rag``)."""
    users = [m.text for m in messages if m.role == "user"]
    if not users or not users[-1].strip():
        raise ClientError("messages: give a user message with the question", param="messages")
    return users[-1]


def budget(
    prompt_tokens: int | None, asked: int | None, served: Served, default: int | None, param: str
) -> int:
    """Tokens the completion may have: ``asked``, or the default up to the context left."""
    context, cap = served.max_seq_len, served.max_tokens
    if prompt_tokens is not None and context is not None:
        if prompt_tokens >= context:
            raise ContextExceeded(
                f"This model's maximum context length is {context} tokens; the prompt has {prompt_tokens}."
            )
        if asked is not None and prompt_tokens + asked > context:
            raise ContextExceeded(
                f"This model's maximum context length is {context} tokens. However, you requested "
                f"{prompt_tokens + asked} tokens ({prompt_tokens} in the prompt, {asked} for the completion)."
            )
    if asked is not None:
        if cap is not None and asked > cap:
            raise ClientError(f"{param}: at most {cap} tokens on this server, got {asked}", param=param)
        return asked
    limits = [n for n in (default, cap) if n is not None]
    if prompt_tokens is not None and context is not None:
        limits.append(context - prompt_tokens)
    if not limits:
        raise ClientError(f"{param} is required for this model", param=param)
    return min(limits)


def guide(response_format: ResponseFormat | None, served: Served) -> tuple[str, str] | None:
    """``(guide_type, guide)`` for ``guided_decoding_guide_type`` / ``guided_decoding_guide``: TensorRT-LLM's
    guided decoding inputs (tensorrtllm_backend v0.19's names). Checked here with llguidance, the library
    the CPU engine decodes with, so that a bad schema is a 400 before anything runs."""
    if response_format is None or response_format.type == "text":
        return None
    if not served.guided:
        raise ClientError(
            "response_format is not supported by this server: its LLM backend has no guided decoding "
            "(the GPU target's TensorRT-LLM v0.14 backend)",
            param="response_format",
        )
    if response_format.type == "json_object":
        schema: dict[str, Any] = {"type": "object"}
    else:
        assert response_format.json_schema is not None
        schema = response_format.json_schema.schema_ or {}
    from llguidance import LLMatcher

    try:
        grammar = LLMatcher.grammar_from_json_schema(schema, defaults=JSON_OPTIONS)  # type: ignore[arg-type]
        problem = LLMatcher.validate_grammar(grammar)
    except (ValueError, TypeError) as exc:
        problem = str(exc)
    if problem:
        raise ClientError(
            f"response_format: the JSON schema is not supported: {problem}", param="response_format"
        )
    return "json_schema", json.dumps(schema)


@dataclass(frozen=True)
class Row:
    """One sequence to generate: a prompt and the pipeline inputs for it (each shaped [1, n]: a request's
    rows are stacked into one batched request)."""

    prompt: str
    max_tokens: int
    values: dict[str, np.ndarray]


def rows(
    model: OpenAIModel,
    request: _Sampling,
    prompt: str,
    max_tokens: int,
    *,
    stream: bool,
    logprobs: bool,
    guided: tuple[str, str] | None,
) -> list[Row]:
    """The ``n`` rows of one prompt: the same inputs but the seed (``seed + i``, a fresh one if none)."""
    seed = request.seed if request.seed is not None else secrets.randbelow(2**62)
    temperature = 1.0 if request.temperature is None else request.temperature
    values: dict[str, Any] = {
        llm.TEXT_INPUT.name: [[prompt.encode()]],
        llm.MAX_TOKENS.name: [[max_tokens]],
        llm.STREAM.name: [[stream]],
        llm.EXCLUDE_INPUT_IN_OUTPUT.name: [[True]],
        llm.RETURN_NUM_INPUT_TOKENS.name: [[True]],
        llm.RETURN_NUM_OUTPUT_TOKENS.name: [[True]],
    }
    top_k, top_p = llm.TOP_K.name, llm.TOP_P.name
    if temperature == 0:  # greedy, TensorRT-LLM's way (top_k 1, top_p 0: no division by temperature 0)
        values.update({llm.TEMPERATURE.name: [[1.0]], top_k: [[1]], top_p: [[0.0]]})
    else:  # sampling; top_p 1 is the whole distribution (the pipeline reads top_k 0, top_p 0 as greedy)
        values.update({llm.TEMPERATURE.name: [[temperature]], top_k: [[0]], top_p: [[request.top_p or 1.0]]})
    if model.prompt == "chat_template":
        values[llm.APPLY_CHAT_TEMPLATE.name] = [[False]]
    if request.min_tokens:
        values[llm.MIN_TOKENS.name] = [[min(request.min_tokens, max_tokens)]]
    for attribute, name in (
        ("presence_penalty", llm.PRESENCE_PENALTY.name),
        ("frequency_penalty", llm.FREQUENCY_PENALTY.name),
    ):
        if getattr(request, attribute) is not None:
            values[name] = [[getattr(request, attribute)]]
    if request.stop_list:
        values[llm.STOP_WORDS.name] = [[s.encode() for s in request.stop_list]]
    if logprobs:
        values[llm.RETURN_LOG_PROBS.name] = [[True]]
    if guided is not None:
        values[GUIDE_TYPE] = [[guided[0].encode()]]
        values[GUIDE] = [[guided[1].encode()]]
    for name in model.extra_inputs:
        if name in request.extras:
            values[name] = _extra(name, request.extras[name])
    arrays = {k: v if isinstance(v, np.ndarray) else np.array(v, dtype=_dtype(v)) for k, v in values.items()}
    out = []
    for i in range(request.n):
        row = dict(arrays)
        row[llm.SEED.name] = np.array([[(seed + i) % 2**63]], dtype=np.uint64)
        out.append(Row(prompt, max_tokens, row))
    return out


def _dtype(value: Any) -> Any:
    first = (
        value[0][0] if isinstance(value, list) and value and isinstance(value[0], list) and value[0] else None
    )
    return np.object_ if isinstance(first, bytes) else None


def _extra(name: str, value: Any) -> np.ndarray:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ClientError(f"{name}: a number or a string", param=name)
    if isinstance(value, str):
        return np.array([[value.encode()]], dtype=np.object_)
    return np.array([[value]])


class StopScanner:
    """Finds the first stop string in streamed text and trims it (and all after it) off.

    Text that may be the start of a stop string is held back until the next piece tells."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = [s for s in stops if s]
        self.pending = ""
        self.stopped = False

    def feed(self, piece: str) -> str:
        """The text that can be given out now."""
        if self.stopped:
            return ""
        text = self.pending + piece
        cuts = [i for i in (text.find(s) for s in self.stops) if i >= 0]
        if cuts:
            self.stopped, self.pending = True, ""
            return text[: min(cuts)]
        hold = max((k for s in self.stops for k in range(1, len(s)) if text.endswith(s[:k])), default=0)
        self.pending = text[len(text) - hold :] if hold else ""
        return text[: len(text) - hold]

    def flush(self) -> str:
        """What was held back, at the end of a generation that met no stop string."""
        out, self.pending = self.pending, ""
        return out


@dataclass
class Choice:
    """One sequence's output as it comes in: text, counts, log-probs, why it ended."""

    index: int
    max_tokens: int
    scanner: StopScanner
    text: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    logprobs: list[tuple[str, float]] = field(default_factory=list)  # (piece, its tokens' log-prob)
    done: bool = False

    def add(self, result: Any, logprobs: bool) -> str:
        """Take one pipeline response; return the text it adds (stop strings trimmed)."""
        pieces = result.as_numpy(llm.TEXT_OUTPUT.name)
        piece = "" if pieces is None else "".join(p.decode("utf-8", "replace") for p in pieces.reshape(-1))
        counts = result.as_numpy(llm.NUM_INPUT_TOKENS.name), result.as_numpy(llm.NUM_OUTPUT_TOKENS.name)
        if counts[0] is not None and counts[0].size:
            self.prompt_tokens = int(counts[0].reshape(-1)[0])
        if counts[1] is not None and counts[1].size:
            self.completion_tokens = int(counts[1].reshape(-1)[0])
        if logprobs and piece:
            values = result.as_numpy(llm.OUTPUT_LOG_PROBS.name)
            total = float(values.sum()) if values is not None else 0.0
            self.logprobs.append((piece, total))
        out = self.scanner.feed(piece)
        self.text += out
        return out

    def finish(self) -> str:
        """The text held back at the end (nothing when a stop string ended it)."""
        out = self.scanner.flush()
        self.text += out
        self.done = True
        return out

    @property
    def stopped(self) -> bool:
        return self.scanner.stopped

    @property
    def finish_reason(self) -> str:
        if self.scanner.stopped:
            return "stop"
        return "length" if self.completion_tokens >= self.max_tokens else "stop"

    def logprob_entries(self, complete: bool = True) -> list[tuple[str, float]]:
        """The log-prob entries of the text given out so far: the pieces wholly in it, and when
        ``complete`` (the choice has ended) the one a stop string cut too; pieces past the cut are dropped."""
        out, end = [], 0
        for piece, value in self.logprobs:
            if end >= len(self.text) or (not complete and end + len(piece) > len(self.text)):
                break
            out.append((piece, value))
            end += len(piece)
        return out


def check_prompt(text: str, param: str) -> None:
    if not text.strip():
        raise ClientError(f"{param}: the prompt is empty", param=param)


def chat_prompt(model: OpenAIModel, tokenizing: Tokenizing | None, request: ChatRequest) -> str:
    if model.prompt == "question":
        return question(request.messages)
    if model.prompt != "chat_template":
        raise Fault(f"{model.id}: unknown prompt kind {model.prompt!r} in its declaration")
    return render_chat(tokenizing, request.messages)


def chat_logprobs(entries: list[tuple[str, float]]) -> dict[str, Any]:
    """Chat's logprobs: one entry per streamed piece (a token, or the tokens of one UTF-8 character)."""
    return {
        "content": [
            {"token": t, "logprob": v, "bytes": list(t.encode()), "top_logprobs": []} for t, v in entries
        ]
    }


def completion_logprobs(entries: list[tuple[str, float]]) -> dict[str, Any]:
    """Completions' logprobs: the pieces, their log-probs and where each starts in the text."""
    offsets, at = [], 0
    for t, _ in entries:
        offsets.append(at)
        at += len(t)
    return {
        "tokens": [t for t, _ in entries],
        "token_logprobs": [v for _, v in entries],
        "top_logprobs": None,
        "text_offset": offsets,
    }
