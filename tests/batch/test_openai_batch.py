"""OpenAI's Batch API through `fleet serve`'s front door with the real `openai` client: files.create ->
batches.create -> poll -> files.content, answers equal to the same requests sent interactively."""

from __future__ import annotations

import numpy as np
import openai
import pytest

from tests.batch.conftest import (
    CHAT_MODEL,
    EMBEDDING_MODEL,
    chat_line,
    client,
    embedding_line,
    read_lines,
    upload,
    wait_for,
)

pytestmark = pytest.mark.server
QUESTIONS = ["Name three primary colors.", "What is the capital of France?", "Say hello."]
TEXTS = ["A man plays a guitar.", "Someone strums a guitar.", "The stock market fell sharply today."]


def test_chat_round_trip_equals_interactive_answers(batch_fleet) -> None:
    c = client(batch_fleet)
    file_id = upload(c, [chat_line(f"q-{i}", q) for i, q in enumerate(QUESTIONS)])
    assert c.files.retrieve(file_id).purpose == "batch"
    batch = c.batches.create(
        input_file_id=file_id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata={"job": "colors"},
    )
    assert batch.status in ("validating", "in_progress") and batch.metadata == {"job": "colors"}
    done = wait_for(c, batch.id)
    assert done.status == "completed", done
    assert done.request_counts.total == 3 and done.request_counts.completed == 3
    assert done.request_counts.failed == 0 and done.error_file_id is None
    assert done.in_progress_at and done.finalizing_at and done.completed_at
    lines = read_lines(c, done.output_file_id)
    assert [line["custom_id"] for line in lines] == ["q-0", "q-1", "q-2"]  # the input's order
    for line, question in zip(lines, QUESTIONS, strict=True):
        assert line["error"] is None and line["id"].startswith("batch_req_")
        assert line["response"]["status_code"] == 200 and line["response"]["request_id"]
        body = line["response"]["body"]
        assert body["object"] == "chat.completion" and body["model"] == CHAT_MODEL
        alone = c.chat.completions.create(
            model=CHAT_MODEL, messages=[{"role": "user", "content": question}], max_tokens=12, temperature=0
        )
        assert body["usage"]["prompt_tokens"] == alone.usage.prompt_tokens
        assert 0 < body["usage"]["completion_tokens"] <= 12
    texts = [line["response"]["body"]["choices"][0]["message"]["content"] for line in lines]
    assert "Red" in texts[0] and texts[1] and "Hello" in texts[2], texts  # texts[1]: see the next test


def test_one_line_equals_the_same_request_sent_alone(batch_fleet) -> None:
    """The CPU engine's greedy rows depend on their wave's company (int8: 'capital of France' alone and
    beside two other prompts differ), so exact equality is checked for a line that runs alone."""
    c = client(batch_fleet)
    batch = c.batches.create(
        input_file_id=upload(c, [chat_line("one", QUESTIONS[0], max_tokens=24)]),
        endpoint="/v1/chat/completions",
        completion_window="24h",
    )
    [line] = read_lines(c, wait_for(c, batch.id).output_file_id)
    alone = c.chat.completions.create(
        model=CHAT_MODEL, messages=[{"role": "user", "content": QUESTIONS[0]}], max_tokens=24, temperature=0
    )
    body = line["response"]["body"]
    assert body["choices"][0]["message"]["content"] == alone.choices[0].message.content
    assert body["usage"] == alone.usage.model_dump(exclude_none=True) | {
        k: v
        for k, v in body["usage"].items()
        if k not in ("prompt_tokens", "completion_tokens", "total_tokens")
    }


def test_embeddings_round_trip_equals_interactive(batch_fleet) -> None:
    c = client(batch_fleet)
    file_id = upload(c, [embedding_line(f"e-{i}", t) for i, t in enumerate(TEXTS)])
    batch = c.batches.create(input_file_id=file_id, endpoint="/v1/embeddings", completion_window="24h")
    done = wait_for(c, batch.id)
    assert done.status == "completed" and done.request_counts.completed == 3
    lines = read_lines(c, done.output_file_id)
    vectors = np.array([line["response"]["body"]["data"][0]["embedding"] for line in lines])
    alone = c.embeddings.create(model=EMBEDDING_MODEL, input=TEXTS)
    assert np.allclose(vectors, np.array([d.embedding for d in alone.data]), atol=1e-6)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.2  # paraphrases are closer


def test_a_batch_is_its_keys_only(batch_fleet) -> None:
    alice, bob = client(batch_fleet, "alice"), client(batch_fleet, "bob")
    file_id = upload(alice, [embedding_line("only", "mine")])
    batch = alice.batches.create(input_file_id=file_id, endpoint="/v1/embeddings", completion_window="24h")
    with pytest.raises(openai.NotFoundError):
        bob.batches.retrieve(batch.id)
    with pytest.raises(openai.NotFoundError):
        bob.files.retrieve(file_id)
    with pytest.raises(openai.NotFoundError):
        bob.files.content(file_id)
    with pytest.raises(openai.NotFoundError):
        bob.batches.cancel(batch.id)
    with pytest.raises(openai.NotFoundError):  # bob cannot run alice's file either
        bob.batches.create(input_file_id=file_id, endpoint="/v1/embeddings", completion_window="24h")
    assert batch.id not in {b.id for b in bob.batches.list()}
    assert wait_for(alice, batch.id).status == "completed"


def test_list_paginates_newest_first(batch_fleet) -> None:
    c = client(batch_fleet)
    file_id = upload(c, [embedding_line("p", "page")])
    made = [c.batches.create(input_file_id=file_id, endpoint="/v1/embeddings", completion_window="24h").id
            for _ in range(3)]  # fmt: skip
    first = c.batches.list(limit=2)
    assert [b.id for b in first.data] == made[::-1][:2] and first.has_more
    assert first.first_id == made[2] and first.last_id == made[1]
    rest = c.batches.list(limit=2, after=first.last_id)
    assert rest.data[0].id == made[0]
    every = [b.id for b in c.batches.list(limit=2)]
    assert every.index(made[2]) < every.index(made[1]) < every.index(made[0])
    for batch_id in made:
        wait_for(c, batch_id)
