"""Bad input per line, whole files that fail at validating, per-key limits, cancel and expiry, through the
real server."""

from __future__ import annotations

import json
import time
from pathlib import Path

import openai
import pytest

from tests.batch.conftest import (
    BOB_BATCHES,
    BOB_LINES,
    CHAT_MODEL,
    chat_line,
    client,
    embedding_line,
    jsonl,
    read_lines,
    upload,
    wait_for,
)
from tritonfleet.batch.config import BatchConfig
from tritonfleet.batch.service import BatchService
from tritonfleet.openai import OpenAIServer
from tritonfleet.server import free_port

pytestmark = pytest.mark.server


def ids_once(*files: list[dict]) -> list[str]:
    ids = [line["custom_id"] for lines in files for line in lines]
    assert len(ids) == len(set(ids)), ids
    return ids


def test_bad_lines_go_to_the_error_file_the_rest_is_answered(batch_fleet) -> None:
    c = client(batch_fleet)
    unknown = chat_line("unknown-model", "hi")
    unknown["body"]["model"] = "gpt-none"
    invalid = chat_line("invalid", "hi")
    invalid["body"]["max_tokens"] = -3
    too_long = chat_line("too-long", "word " * 5000)
    rows = [
        chat_line("good-1", "Name three primary colors."),
        "this is not json",
        unknown,
        {"custom_id": "nowhere", "method": "POST", "url": "/v1/nowhere", "body": {}},
        invalid,
        too_long,
        chat_line("good-2", "Say hello."),
    ]
    batch = c.batches.create(
        input_file_id=upload(c, rows), endpoint="/v1/chat/completions", completion_window="24h"
    )
    done = wait_for(c, batch.id)
    assert done.status == "completed"
    assert (
        done.request_counts.total == 7
        and done.request_counts.completed == 2
        and done.request_counts.failed == 5
    )
    output, errors = read_lines(c, done.output_file_id), read_lines(c, done.error_file_id)
    assert [x["custom_id"] for x in output] == ["good-1", "good-2"]
    by_id = {x["custom_id"]: x for x in errors}
    assert [x["custom_id"] for x in errors] == [
        None,
        "unknown-model",
        "nowhere",
        "invalid",
        "too-long",
    ]  # order
    assert by_id[None]["error"]["code"] == "invalid_json" and by_id[None]["response"] is None
    assert by_id["unknown-model"]["error"]["code"] == "model_not_found"
    assert by_id["nowhere"]["error"]["code"] == "invalid_url"
    for name in ("invalid", "too-long"):  # the /v1 app's own 400, as the interactive request gets it
        assert by_id[name]["error"] is None and by_id[name]["response"]["status_code"] == 400
        assert by_id[name]["response"]["body"]["error"]["message"]
    assert by_id["too-long"]["response"]["body"]["error"]["code"] == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError) as same:
        c.chat.completions.create(
            model=CHAT_MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=-3
        )
    assert same.value.body["message"] == by_id["invalid"]["response"]["body"]["error"]["message"]


@pytest.mark.parametrize(
    ("content", "code"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00binary", "invalid_file_format"),
        (jsonl([chat_line("a", "x"), embedding_line("b", "y")]), "mismatched_endpoint"),
        (jsonl([chat_line("a", "x"), chat_line("a", "y")]), "duplicate_custom_id"),
    ],
)
def test_files_that_fail_at_validating(batch_fleet, content: bytes, code: str) -> None:
    c = client(batch_fleet)
    file_id = c.files.create(file=("in.jsonl", content), purpose="batch").id
    batch = c.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h")
    done = wait_for(c, batch.id)
    assert done.status == "failed" and done.failed_at and done.output_file_id is None
    assert done.errors.data[0].code == code and done.errors.data[0].message


def test_requests_that_are_refused_at_once(batch_fleet) -> None:
    c = client(batch_fleet)
    file_id = upload(c, [chat_line("a", "x")])
    with pytest.raises(openai.BadRequestError):
        c.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="1h")
    with pytest.raises(openai.BadRequestError):
        c.batches.create(input_file_id=file_id, endpoint="/v1/images", completion_window="24h")
    with pytest.raises(openai.NotFoundError):
        c.batches.create(input_file_id="file-nope", endpoint="/v1/chat/completions", completion_window="24h")
    with pytest.raises(openai.BadRequestError):
        c.files.create(file=("x.jsonl", b"{}"), purpose="fine-tune")
    deleted = c.files.delete(file_id)
    assert deleted.deleted and deleted.id == file_id
    with pytest.raises(openai.NotFoundError):
        c.files.retrieve(file_id)


def test_per_key_limits(batch_fleet) -> None:
    bob = client(batch_fleet, "bob")
    with pytest.raises(openai.APIStatusError) as big:  # over bob's 1 MB
        bob.files.create(file=("big.jsonl", b"x" * (1 << 20 + 1)), purpose="batch")
    assert big.value.status_code == 413
    many = upload(bob, [embedding_line(str(i), "x") for i in range(BOB_LINES + 1)])
    batch = bob.batches.create(input_file_id=many, endpoint="/v1/embeddings", completion_window="24h")
    done = wait_for(bob, batch.id)
    assert done.status == "failed" and done.errors.data[0].code == "too_many_requests"
    slow = upload(bob, [chat_line(str(i), "Write a long story.", max_tokens=64) for i in range(BOB_LINES)])
    running = [
        bob.batches.create(input_file_id=slow, endpoint="/v1/chat/completions", completion_window="24h")
        for _ in range(BOB_BATCHES)
    ]
    with pytest.raises(openai.RateLimitError):
        bob.batches.create(input_file_id=slow, endpoint="/v1/chat/completions", completion_window="24h")
    alice = client(batch_fleet, "alice")  # another key's batches in flight are not bob's
    alice_batch = alice.batches.create(
        input_file_id=upload(alice, [embedding_line("a", "x")]),
        endpoint="/v1/embeddings",
        completion_window="24h",
    )
    for b in running:
        bob.batches.cancel(b.id)
    for b in running:
        assert wait_for(bob, b.id).status == "cancelled"
    assert wait_for(alice, alice_batch.id).status == "completed"


def test_cancel_stops_within_seconds_and_keeps_what_was_done(batch_fleet) -> None:
    c = client(batch_fleet)
    rows = [chat_line(f"c-{i}", f"Count from {i} to {i + 20}.", max_tokens=32) for i in range(40)]
    batch = c.batches.create(
        input_file_id=upload(c, rows), endpoint="/v1/chat/completions", completion_window="24h"
    )
    while c.batches.retrieve(batch.id).request_counts.completed < 2:
        time.sleep(0.2)
    cancelling = c.batches.cancel(batch.id)
    assert cancelling.status == "cancelling" and cancelling.cancelling_at
    done = wait_for(c, batch.id)  # how fast: fleet bench batch (tests assert no wall-clock bounds)
    assert done.status == "cancelled" and done.cancelled_at, done
    output, errors = read_lines(c, done.output_file_id), read_lines(c, done.error_file_id)
    assert 2 <= len(output) < 40
    assert sorted(ids_once(output, errors)) == sorted(r["custom_id"] for r in rows)
    assert all(e["error"]["code"] == "batch_cancelled" for e in errors)
    assert all(o["response"]["status_code"] == 200 for o in output)
    with pytest.raises(openai.ConflictError):
        c.batches.cancel(batch.id)


def test_a_batch_past_its_window_expires_with_partial_results(batch_fleet, tmp_path: Path) -> None:
    """A service whose store's clock the test moves past the window (60 s: TRITONFLEET_BATCH_WINDOW_S)
    once two lines are answered, over the same server."""
    from openai import OpenAI

    now = [time.time()]
    grpc = f"127.0.0.1:{batch_fleet.server.grpc_port}"
    service = BatchService(
        grpc, batch_fleet.repository, batch_fleet.access.public,
        config=BatchConfig(store=f"sqlite:///{tmp_path / 'b.db'}", window_s=60), clock=lambda: now[0],
    ).start()  # fmt: skip
    try:
        with OpenAIServer(grpc, batch_fleet.repository, port=free_port(), routes=service.routes) as api:
            c = OpenAI(base_url=api.url, api_key="none", max_retries=0)
            rows = [
                chat_line(f"x-{i}", f"Tell a story about the number {i}.", max_tokens=24) for i in range(40)
            ]
            batch = c.batches.create(input_file_id=upload(c, rows), endpoint="/v1/chat/completions",
                                     completion_window="24h")  # fmt: skip
            assert batch.expires_at - batch.created_at == 60
            while c.batches.retrieve(batch.id).request_counts.completed < 2:
                time.sleep(0.2)
            now[0] += 61
            done = wait_for(c, batch.id, timeout=60)
            assert done.status == "expired" and done.expired_at and done.finalizing_at
            output, errors = read_lines(c, done.output_file_id), read_lines(c, done.error_file_id)
            assert 2 <= len(output) < 40 and len(errors) == 40 - len(output)
            assert sorted(ids_once(output, errors)) == sorted(r["custom_id"] for r in rows)
            assert {e["error"]["code"] for e in errors} == {"batch_expired"}
            assert done.request_counts.completed == len(output)
            assert json.loads(json.dumps(output[0]))["response"]["body"]["object"] == "chat.completion"
    finally:
        service.stop()
