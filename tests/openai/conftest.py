"""The /v1 tests: the OpenAI-compatible app on a free port over the session's tritonserver
(tests/conftest.py), which serves every pipeline."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tritonfleet import pipelines
from tritonfleet.artifacts import REPOSITORY
from tritonfleet.openai import OpenAIServer
from tritonfleet.server import TritonServer, free_port

CHAT_MODEL = "smollm2-135m-instruct"


@pytest.fixture(scope="session")
def usage_log() -> list[tuple[str, int]]:
    """What the app told ``on_usage``: (path, tokens), one entry a request."""
    return []


@pytest.fixture(scope="session")
def openai_server(server: TritonServer, usage_log: list[tuple[str, int]]) -> Iterator[OpenAIServer]:
    api = OpenAIServer(
        server.grpc_url,
        REPOSITORY,
        port=free_port(),
        on_usage=lambda request, tokens: usage_log.append((request.url.path, tokens)),
    )
    with api:
        yield api


@pytest.fixture(scope="session")
def base_url(openai_server: OpenAIServer) -> str:
    return openai_server.url


@pytest.fixture
def client(base_url: str):
    from openai import OpenAI

    with OpenAI(base_url=base_url, api_key="none", max_retries=0, timeout=300) as c:
        yield c


def embedding_model() -> str:
    """The id of a declared embedding model, or skip (the text_embedding pipeline may not be there yet)."""
    found = [m.id for m in pipelines.openai_models().values() if m.kind == "embedding"]
    if not found:
        pytest.skip("no pipeline declares an embedding model yet")
    return found[0]


def whole_and_streamed(
    client: Any, stream_options: dict | None = None, **request: Any
) -> tuple[Any, list[Any]]:
    """One chat request answered whole and then streamed (with ``stream_options``): the reply and the
    stream's chunks."""
    reply = client.chat.completions.create(**request)
    streamed = client.chat.completions.create(**request, stream=True, stream_options=stream_options)
    return reply, list(streamed)


def streamed_text(chunks: list[Any]) -> str:
    """The text of a streamed chat completion: its chunks' deltas, joined."""
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
