"""A closed-loop streaming load generator in Python (asyncio), the same for every side of a comparison:
``/v1`` through the ``openai`` client, the gRPC ensemble through
:class:`~tritonfleet.clients.AsyncFleetClient`.

genai-perf drives each side with a client of its own (perf_analyzer's OpenAI HTTP client, its gRPC client),
and at one stream its OpenAI client added ~0.6 s to the first token and ~40% to the request that the API
itself does not (the openai client and FleetClient, alternating: TTFT 179 vs 187 ms, 48 tokens in 830 vs
784 ms, 2026-12-02). Comparing the API with the ensemble needs one measuring method on both sides: this.
Output tokens are counted with the model's tokenizer on the text received, as genai-perf counts them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import numpy as np

from tritonfleet.clients import AsyncFleetClient

Stream = Callable[[], AsyncIterator[str]]  # one streamed request: its text pieces


@dataclass
class Timeline:
    start: float
    first: float | None = None
    end: float = 0.0
    text: list[str] = field(default_factory=list)


async def _one(stream: Stream) -> Timeline:
    line = Timeline(time.perf_counter())
    async for piece in stream():
        if piece:
            if line.first is None:
                line.first = time.perf_counter()
            line.text.append(piece)
    line.end = time.perf_counter()
    return line


async def run(stream: Stream, concurrency: int, requests: int) -> tuple[list[Timeline], float]:
    """``requests`` streamed requests, ``concurrency`` in flight at a time; the timelines, the wall time."""
    lines: list[Timeline] = []
    left = iter(range(requests))

    async def worker() -> None:
        for _ in left:
            lines.append(await _one(stream))

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return lines, time.perf_counter() - start


def summary(lines: list[Timeline], wall: float, count_tokens: Callable[[str], int]) -> dict[str, float]:
    """requests/s, output tokens/s, and the latency and time-to-first-token percentiles (ms)."""
    latency = np.array([(t.end - t.start) * 1e3 for t in lines])
    ttft = np.array([((t.first or t.end) - t.start) * 1e3 for t in lines])
    tokens = [count_tokens("".join(t.text)) for t in lines]
    return {
        "request_count": len(lines),
        "requests_per_s": len(lines) / wall,
        "latency_p50_ms": float(np.percentile(latency, 50)),
        "latency_p95_ms": float(np.percentile(latency, 95)),
        "latency_p99_ms": float(np.percentile(latency, 99)),
        "ttft_p50_ms": float(np.percentile(ttft, 50)),
        "ttft_p99_ms": float(np.percentile(ttft, 99)),
        "output_tokens_per_s": sum(tokens) / wall,
        "output_tokens_avg": sum(tokens) / len(tokens),
    }


def openai_stream(base_url: str, model: str, prompt: str, max_tokens: int) -> Stream:
    """Streamed chat requests to an OpenAI server: greedy, exactly ``max_tokens`` tokens (``min_tokens``)."""
    from openai import AsyncOpenAI

    client: list[AsyncOpenAI] = []

    async def stream() -> AsyncIterator[str]:
        if not client:  # made inside the running loop
            client.append(AsyncOpenAI(base_url=base_url, api_key="none", max_retries=0, timeout=600))
        response = await client[0].chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": prompt}],
            max_tokens=max_tokens,
            temperature=0,
            stream=True,
            extra_body={"min_tokens": max_tokens},
        )
        async for chunk in response:
            if chunk.choices and chunk.choices[0].delta.content:
                yield chunk.choices[0].delta.content

    return stream


def ensemble_stream(grpc_url: str, prompt: str, max_tokens: int) -> Stream:
    """The same request to the gRPC ensemble: the prompt in the model's chat template (preprocessing's
    ``apply_chat_template``), greedy, ``min_tokens`` = ``max_tokens``."""

    client: list[AsyncFleetClient] = []

    async def stream() -> AsyncIterator[str]:
        if not client:  # made inside the running loop (a gRPC channel belongs to one)
            client.append(AsyncFleetClient(grpc_url, protocol="grpc"))
        async for piece in client[0].stream(prompt, max_tokens, chat=True, min_tokens=max_tokens):
            yield piece

    return stream
