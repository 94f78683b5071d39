"""rag through /v1: the question in a chat message, the answer with its sources in the response's
``sources`` field (and in the last streamed chunk); ``num_sources`` passed on."""

from __future__ import annotations

import pytest

from tests.openai.conftest import streamed_text, whole_and_streamed
from tritonfleet import pipelines

QUESTION = [{"role": "user", "content": "How do I add a pipeline to the fleet?"}]


@pytest.fixture
def rag_model() -> str:
    if "rag" not in pipelines.openai_models():
        pytest.skip("no rag pipeline declared")
    return "rag"


def test_rag_answers_with_sources(client, rag_model: str) -> None:
    two = {"num_sources": 2}
    reply, chunks = whole_and_streamed(
        client, model=rag_model, messages=QUESTION, max_tokens=48, temperature=0, extra_body=two
    )
    sources = reply.model_extra["sources"]
    assert len(sources) == 2 and all("#" in s for s in sources), sources
    assert reply.choices[0].message.content and reply.usage.completion_tokens > 0
    last = next(c for c in chunks if c.choices and c.choices[0].finish_reason)
    assert last.model_extra["sources"] == sources
    assert streamed_text(chunks) == reply.choices[0].message.content
