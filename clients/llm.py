"""Requests and responses of the LLM pipeline (TensorRT-LLM's ``inflight_batcher_llm`` interface).

One response: ``tensorrt_llm_bls`` (HTTP or gRPC). Streaming: ``ensemble``, over a gRPC stream or HTTP
``generate_stream`` (Server-Sent Events). A stream that its reader leaves early is ended with TensorRT-LLM's
stop request (``stop`` to ``tensorrt_llm`` with the stream's request id): Triton 24.10 does not pass a
cancelled ensemble request on to its running ``tensorrt_llm`` step, which on GPU would generate on (the CPU
ensemble stops it by itself, see postprocessing).
"""

from __future__ import annotations

import contextlib
import json
import urllib.request
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from tritonfleet.clients.call import Call
from tritonfleet.pipelines.llm import interface as llm

UNARY_MODEL = llm.TENSORRT_LLM_BLS.name
STREAM_MODEL = llm.ENSEMBLE.name
STOP_MODEL = llm.TENSORRT_LLM.name  # the ensemble's steps carry the ensemble request's id
OUTPUT = llm.TEXT_OUTPUT.name

# The optional inputs a caller may set (their data types come from the model's config).
PARAMETERS = tuple(t.name for t in llm.SAMPLING)

Values = dict[str, np.ndarray]


def request_values(
    prompt: str | Sequence[str],
    max_tokens: int,
    *,
    stream: bool,
    chat: bool,
    stop_words: list[str] | None,
    **params: Any,
) -> Values:
    """Input name -> value shaped [rows, n]: one row for a prompt, one row each for a list of prompts (a
    batched request; every row gets the same parameters)."""
    unknown = set(params) - set(PARAMETERS)
    if unknown:
        raise TypeError(f"unknown sampling parameter(s) {sorted(unknown)}; known: {sorted(PARAMETERS)}")
    prompts = [prompt] if isinstance(prompt, str) else list(prompt)
    if not prompts:
        raise ValueError("no prompt")
    rows = len(prompts)
    values = {
        llm.TEXT_INPUT.name: np.array([[p.encode()] for p in prompts], dtype=np.object_),
        llm.MAX_TOKENS.name: np.array([[max_tokens]] * rows),
        llm.STREAM.name: np.array([[stream]] * rows),
        llm.APPLY_CHAT_TEMPLATE.name: np.array([[chat]] * rows),
    }
    if stop_words:
        values[llm.STOP_WORDS.name] = np.array([[w.encode() for w in stop_words]] * rows, dtype=np.object_)
    for name, value in params.items():
        values[name] = np.array([[value]] * rows)
    return values


def generate(
    prompt: str | Sequence[str],
    max_tokens: int = 64,
    *,
    chat: bool = True,
    stop_words: list[str] | None = None,
    model: str = UNARY_MODEL,
    **sampling: Any,
) -> Call:
    """One response from the LLM (``tensorrt_llm_bls``). ``chat`` wraps ``prompt`` in the chat template;
    ``sampling``: temperature, top_k, top_p, seed, min_tokens, ... (see ``PARAMETERS``). A list of prompts is
    one batched request (each prompt its own sequence): its answer is the list of their texts, in order."""
    values = request_values(prompt, max_tokens, stream=False, chat=chat, stop_words=stop_words, **sampling)
    return Call(model, values, text_of if isinstance(prompt, str) else texts_of)


def stop_values() -> Values:
    """TensorRT-LLM's stop request: send it to ``STOP_MODEL`` with the id of the request to end."""
    return {name: np.full((1, 1), value) for name, value in llm.STOP_REQUEST.items()}


def http_stop(
    http_url: str, request_id: str, timeout: float = 10, headers: dict[str, str] | None = None
) -> None:
    """Send the stop request over HTTP (``POST /v2/models/tensorrt_llm/generate``)."""
    body = {name: _json(value) for name, value in stop_values().items()}
    request = urllib.request.Request(
        f"http://{http_url}/v2/models/{STOP_MODEL}/generate",
        json.dumps({"id": request_id, **body}).encode(),
        {"Content-Type": "application/json", **(headers or {})},
    )
    with urllib.request.urlopen(request, timeout=timeout):
        pass


def text_of(result: Any) -> str:
    """The text of one response ("" for the empty final response of a stream)."""
    out = result.as_numpy(OUTPUT)
    return "" if out is None else "".join(t.decode() for t in out.reshape(-1))


def texts_of(result: Any) -> list[str]:
    """The text of each row of a batched response."""
    return [t.decode() for t in result.as_numpy(OUTPUT).reshape(-1)]


def stream_piece(result: Any, error: Any) -> tuple[str, bool]:
    """The text of one gRPC stream response and whether it is the last; raises the error it carries."""
    if error is not None:
        raise error
    return text_of(result), result.get_response().parameters["triton_final_response"].bool_param


def sse_stream(
    http_url: str,
    values: Values,
    timeout: float,
    request_id: str,
    model: str = STREAM_MODEL,
    headers: dict[str, str] | None = None,
) -> Iterator[str]:
    """Stream over HTTP: ``POST /v2/models/<model>/generate_stream``, one JSON event per response; a stream
    left before its end is stopped (:func:`http_stop`)."""
    body = {name: _json(value) for name, value in values.items()}
    if llm.STOP_WORDS.name in body:
        body[llm.STOP_WORDS.name] = _json(values[llm.STOP_WORDS.name][0], many=True)
    request = urllib.request.Request(
        f"http://{http_url}/v2/models/{model}/generate_stream",
        json.dumps({"id": request_id, **body}).encode(),
        {"Content-Type": "application/json", **(headers or {})},
    )
    ended = False
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            for raw in response:
                line = raw.decode().strip()
                if not line.startswith("data:"):
                    continue
                event = json.loads(line[5:])
                if "error" in event:
                    raise RuntimeError(event["error"])
                yield event.get(OUTPUT, "")
        ended = True
    finally:
        if not ended:
            with contextlib.suppress(OSError):
                http_stop(http_url, request_id, headers=headers)


def _json(value: np.ndarray, many: bool = False) -> Any:
    """A [1, n] tensor as the generate endpoint's JSON: a scalar, or a list when ``many``."""
    items = [v.decode() if isinstance(v, bytes) else v.item() for v in value.reshape(-1)]
    return items if many else items[0]


HELPERS = (generate,)  # FleetClient.<name>(...), AsyncFleetClient.<name>(...)
