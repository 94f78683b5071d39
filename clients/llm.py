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
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import numpy as np

UNARY_MODEL = "tensorrt_llm_bls"
STREAM_MODEL = "ensemble"
STOP_MODEL = "tensorrt_llm"  # the ensemble's steps carry the ensemble request's id
OUTPUT = "text_output"

# The optional inputs a caller may set, with their Triton data types.
PARAMETERS = {
    "temperature": "FP32",
    "top_k": "INT32",
    "top_p": "FP32",
    "repetition_penalty": "FP32",
    "presence_penalty": "FP32",
    "frequency_penalty": "FP32",
    "min_tokens": "INT32",
    "seed": "UINT64",
    "end_id": "INT32",
    "pad_id": "INT32",
}
NUMPY = {"FP32": np.float32, "INT32": np.int32, "UINT64": np.uint64, "BOOL": np.bool_}


def request_values(
    prompt: str, max_tokens: int, *, stream: bool, chat: bool, stop_words: list[str] | None, **params: Any
) -> dict[str, tuple[np.ndarray, str]]:
    """name -> (value shaped [1, n], Triton data type) for one prompt."""
    unknown = set(params) - set(PARAMETERS)
    if unknown:
        raise TypeError(f"unknown sampling parameter(s) {sorted(unknown)}; known: {sorted(PARAMETERS)}")
    values = {
        "text_input": (np.array([[prompt.encode()]], dtype=np.object_), "BYTES"),
        "max_tokens": (np.array([[max_tokens]], dtype=np.int32), "INT32"),
        "stream": (np.array([[stream]], dtype=np.bool_), "BOOL"),
        "apply_chat_template": (np.array([[chat]], dtype=np.bool_), "BOOL"),
    }
    if stop_words:
        values["stop_words"] = (np.array([[w.encode() for w in stop_words]], dtype=np.object_), "BYTES")
    for name, value in params.items():
        dtype = PARAMETERS[name]
        values[name] = (np.array([[value]], dtype=NUMPY[dtype]), dtype)
    return values


def stop_values() -> dict[str, tuple[np.ndarray, str]]:
    """TensorRT-LLM's stop request: send it to ``STOP_MODEL`` with the id of the request to end."""
    zero = np.zeros((1, 1), dtype=np.int32)
    return {
        "input_ids": (zero, "INT32"),
        "input_lengths": (zero, "INT32"),
        "request_output_len": (zero, "INT32"),
        "stop": (np.ones((1, 1), dtype=np.bool_), "BOOL"),
    }


def http_stop(http_url: str, request_id: str, timeout: float = 10) -> None:
    """Send the stop request over HTTP (``POST /v2/models/tensorrt_llm/generate``)."""
    body = {name: _json(value) for name, (value, _) in stop_values().items()}
    request = urllib.request.Request(
        f"http://{http_url}/v2/models/{STOP_MODEL}/generate",
        json.dumps({"id": request_id, **body}).encode(),
        {"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=timeout):
        pass


def build_inputs(api: ModuleType, values: dict[str, tuple[np.ndarray, str]]) -> list[Any]:
    """tritonclient ``InferInput`` objects; ``api`` is tritonclient.http or tritonclient.grpc."""
    inputs = []
    for name, (value, dtype) in values.items():
        tensor = api.InferInput(name, list(value.shape), dtype)
        tensor.set_data_from_numpy(value)
        inputs.append(tensor)
    return inputs


def text_of(result: Any) -> str:
    """The text of one response ("" for the empty final response of a stream)."""
    out = result.as_numpy(OUTPUT)
    return "" if out is None else "".join(t.decode() for t in out.reshape(-1))


def stream_piece(result: Any, error: Any) -> tuple[str, bool]:
    """The text of one gRPC stream response and whether it is the last; raises the error it carries."""
    if error is not None:
        raise error
    return text_of(result), result.get_response().parameters["triton_final_response"].bool_param


def sse_stream(
    http_url: str, values: dict[str, tuple[np.ndarray, str]], timeout: float, request_id: str
) -> Iterator[str]:
    """Stream over HTTP: ``POST /v2/models/ensemble/generate_stream``, one JSON event per response; a stream
    left before its end is stopped (:func:`http_stop`)."""
    body = {name: _json(value) for name, (value, _) in values.items()}
    if "stop_words" in body:
        body["stop_words"] = _json(values["stop_words"][0], many=True)
    request = urllib.request.Request(
        f"http://{http_url}/v2/models/{STREAM_MODEL}/generate_stream",
        json.dumps({"id": request_id, **body}).encode(),
        {"Content-Type": "application/json"},
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
                http_stop(http_url, request_id)


def _json(value: np.ndarray, many: bool = False) -> Any:
    """A [1, n] tensor as the generate endpoint's JSON: a scalar, or a list when ``many``."""
    items = [v.decode() if isinstance(v, bytes) else v.item() for v in value.reshape(-1)]
    return items if many else items[0]
