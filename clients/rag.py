"""Questions to the ``rag`` pipeline: answers with their sources, streamed or in one response.

``rag`` speaks the LLM ensemble's interface, so ``FleetClient.stream(question, model="rag")`` streams its
text like any LLM; these add the sources. ``rag`` is decoupled (its LLM step streams), so a single answer
comes over a gRPC stream with ``stream: false`` or from HTTP ``POST /v2/models/rag/generate``: Triton refuses
unary gRPC inference and HTTP ``/infer`` on decoupled models.
"""

from __future__ import annotations

import json
import queue
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from tritonfleet.clients import llm
from tritonfleet.pipelines.rag import interface

if TYPE_CHECKING:
    from tritonfleet.clients.fleet import FleetClient

MODEL = interface.RAG.name
SOURCES = interface.SOURCES.name


@dataclass(frozen=True)
class Answer:
    """An answer (or, streaming, a piece of one) and the sources it was given, ``path#chunk``, nearest first
    (a stream carries them on its first piece)."""

    text: str
    sources: list[str] = field(default_factory=list)


def request_values(
    question: str, max_tokens: int, stream: bool, num_sources: int | None, **sampling: Any
) -> llm.Values:
    values = llm.request_values(question, max_tokens, stream=stream, chat=True, stop_words=None, **sampling)
    if num_sources is not None:
        values[interface.NUM_SOURCES.name] = np.array([[num_sources]])
    return values


def sources_of(result: Any) -> list[str]:
    out = result.as_numpy(SOURCES)
    return [] if out is None else [s.decode() for s in out.reshape(-1) if s]


def stream(
    fleet: FleetClient,
    question: str,
    max_tokens: int = 128,
    *,
    num_sources: int | None = None,
    timeout: float = 300,
    **sampling: Any,
) -> Iterator[Answer]:
    """The answer as it is generated, over gRPC: the first piece carries the sources."""
    yield from _grpc(fleet, request_values(question, max_tokens, True, num_sources, **sampling), timeout)


def ask(
    fleet: FleetClient,
    question: str,
    max_tokens: int = 128,
    *,
    num_sources: int | None = None,
    timeout: float = 300,
    **sampling: Any,
) -> Answer:
    """The whole answer in one response (gRPC stream with stream false, or HTTP /generate)."""
    values = request_values(question, max_tokens, False, num_sources, **sampling)
    if fleet.protocol == "grpc":
        pieces = list(_grpc(fleet, values, timeout))
        return Answer("".join(p.text for p in pieces), [s for p in pieces for s in p.sources])
    body = {name: llm._json(value) for name, value in values.items()}
    request = urllib.request.Request(
        f"http://{fleet.url}/v2/models/{MODEL}/generate",
        json.dumps(body).encode(),
        {"Content-Type": "application/json", **(fleet.headers or {})},
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        reply = json.loads(response.read())
    text = reply.get(llm.OUTPUT, "")
    found = reply.get(SOURCES, [])
    return Answer(
        "".join(text) if isinstance(text, list) else text, [found] if isinstance(found, str) else found
    )


def _grpc(fleet: FleetClient, values: llm.Values, timeout: float) -> Iterator[Answer]:
    if fleet.protocol != "grpc":
        raise ValueError("rag.stream needs a gRPC FleetClient (or use ask() for one response over HTTP)")
    inputs = fleet._request(MODEL, values, fleet.datatypes(MODEL))
    responses: queue.Queue[tuple[Any, Any]] = queue.Queue()
    fleet.triton.start_stream(
        callback=lambda result, error: responses.put((result, error)), headers=fleet.headers
    )
    try:
        fleet.triton.async_stream_infer(
            MODEL, inputs, request_id=uuid.uuid4().hex, enable_empty_final_response=True
        )
        ended = False
        while not ended:
            result, error = responses.get(timeout=timeout)
            text, ended = llm.stream_piece(result, error)
            found = sources_of(result)
            if text or found:
                yield Answer(text, found)
    finally:
        fleet.triton.stop_stream(cancel_requests=True)
