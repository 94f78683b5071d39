"""Input files read into lines: what fails one line, what fails the whole file (no server)."""

from __future__ import annotations

import json

from tests.batch.conftest import chat_line, embedding_line, jsonl
from tritonfleet.batch.lines import parse

MODELS = {"smollm2-135m-instruct": "chat", "other-chat": "chat", "all-minilm-l6-v2": "embedding"}
PUBLIC = {"wine_sklearn", "image_classifier"}


def read(rows: list, endpoint: str = "/v1/chat/completions", max_lines: int = 100):
    return parse(
        "batch_x", jsonl(rows) if isinstance(rows, list) else rows, endpoint, MODELS, PUBLIC, max_lines
    )


def codes(parsed) -> dict[int, str]:
    return {r.idx: json.loads(r.line)["error"]["code"] for r in parsed.failed}


def test_bad_lines_fail_alone_with_code_and_message() -> None:
    wrong_model = chat_line("c", "hi")
    wrong_model["body"]["model"] = "no-such-model"
    parsed = read(
        [
            chat_line("a", "hi"),
            "{not json",
            {"url": "/v1/chat/completions", "body": {}},
            {"custom_id": "b", "method": "POST", "url": "/v1/nowhere", "body": {}},
            wrong_model,
            {"custom_id": "d", "method": "GET", "url": "/v1/chat/completions", "body": {}},
            {**chat_line("e", "hi"), "body": "text"},
            chat_line("f", "bye"),
        ]
    )
    assert not parsed.errors
    assert [x.custom_id for x in parsed.lines] == ["a", "f"] and [x.idx for x in parsed.lines] == [0, 7]
    assert codes(parsed) == {
        1: "invalid_json",
        2: "invalid_request",
        3: "invalid_url",
        4: "model_not_found",
        5: "invalid_request",
        6: "invalid_request",
    }
    for result in parsed.failed:
        line = json.loads(result.line)
        assert line["response"] is None and line["error"]["message"] and not result.ok
    assert [json.loads(r.line)["custom_id"] for r in parsed.failed] == [None, None, "b", "c", "d", "e"]


def test_v2_lines_name_their_model_by_route() -> None:
    ok = {"custom_id": "w", "url": "/v2/models/wine_sklearn/infer", "body": {"inputs": []}}
    hidden = {"custom_id": "h", "url": "/v2/models/minilm_l6/infer", "body": {"inputs": []}}
    parsed = read([ok, hidden, hidden | {"custom_id": "h2"}], "/v2/models/wine_sklearn/infer")
    assert parsed.errors[0]["code"] == "mismatched_endpoint"  # another known route in the file
    parsed = read([ok], "/v2/models/wine_sklearn/infer")
    assert not parsed.errors and [x.url for x in parsed.lines] == ["/v2/models/wine_sklearn/infer"]


def test_whole_file_failures() -> None:
    assert read(b"\xff\xfe\x00binary").errors[0]["code"] == "invalid_file_format"
    assert read(b"\n\n").errors[0]["code"] == "empty_file"
    assert read(b"not json at all\nnor this\n").errors[0]["code"] == "invalid_file_format"
    mixed = read([chat_line("a", "x"), embedding_line("b", "y")])
    assert mixed.errors[0]["code"] == "mismatched_endpoint" and mixed.errors[0]["line"] == 2
    other = chat_line("b", "x")
    other["body"]["model"] = "other-chat"
    models = read([chat_line("a", "x"), other])
    assert models.errors[0]["code"] == "mismatched_model" and models.errors[0]["line"] == 2
    twice = read([chat_line("a", "x"), chat_line("a", "y")])
    assert twice.errors[0]["code"] == "duplicate_custom_id" and twice.errors[0]["param"] == "custom_id"
    many = read([chat_line(str(i), "x") for i in range(6)], max_lines=5)
    assert many.errors[0]["code"] == "too_many_requests" and not many.lines
