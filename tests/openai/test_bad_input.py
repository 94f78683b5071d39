"""Hostile and careless clients: every field of every /v1 endpoint given wrong types and out-of-range values
gets a 400 in OpenAI's shape (never a 5xx), and the server answers a good request afterwards."""

from __future__ import annotations

import random

import httpx
import pytest

from tests.openai.conftest import CHAT_MODEL

WRONG = [None, "x", "", -1, 0, 1e308, -1e308, 3.5, True, [], [1], {}, {"a": 1}, "🙂" * 300, 2**70]
CHAT = {
    "model": CHAT_MODEL,
    "messages": [{"role": "user", "content": "Say hi."}],
    "max_tokens": 2,
    "temperature": 0,
}
CHAT_FIELDS = {
    "model": CHAT_MODEL, "messages": CHAT["messages"], "max_tokens": 2, "max_completion_tokens": 2,
    "stream": False, "stream_options": {"include_usage": True}, "stop": ["x"], "temperature": 0, "top_p": 1,
    "seed": 1, "presence_penalty": 0, "frequency_penalty": 0, "n": 1, "logprobs": False, "top_logprobs": 0,
    "user": "u", "response_format": {"type": "text"}, "tools": None, "tool_choice": "none",
    "logit_bias": None, "min_tokens": 0,
}  # fmt: skip
COMPLETION = {"model": CHAT_MODEL, "prompt": "Hello", "max_tokens": 2, "temperature": 0}
COMPLETION_FIELDS = {"prompt": "Hello", "echo": False, "suffix": None, "logprobs": None, "best_of": 1}
EMBEDDING = {"model": "any", "input": "Hello"}
EMBEDDING_FIELDS = {"input": "Hello", "encoding_format": "float", "dimensions": None}
BROKEN_MESSAGES = [
    [], [{}], [{"role": "user"}], [{"role": "wizard", "content": "x"}], [{"role": "user", "content": 5}],
    [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}],
    [{"role": "tool", "content": "x", "tool_call_id": "1"}], [{"role": "user", "content": "   "}],
    [{"role": "assistant", "content": None, "tool_calls": [{"id": "1"}]}], "hello", [["user", "hi"]],
]  # fmt: skip


def _check(response: httpx.Response, case: object) -> None:
    assert response.status_code < 500, (case, response.status_code, response.text)
    if response.status_code != 200:
        assert response.status_code in (400, 404), (case, response.status_code, response.text)
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["message"], (case, error)


def _cases(base: dict, fields: dict) -> list[dict]:
    cases = []
    for field in fields:
        for value in WRONG:
            body = dict(base)
            if value is None:
                body.pop(field, None)
            else:
                body[field] = value
            cases.append(body)
    return cases


def test_every_field_wrong_is_a_client_error(base_url: str, server) -> None:
    cases = [("/chat/completions", c) for c in _cases(CHAT, CHAT_FIELDS)]
    cases += [("/chat/completions", {**CHAT, "messages": m}) for m in BROKEN_MESSAGES]
    cases += [("/completions", c) for c in _cases(COMPLETION, COMPLETION_FIELDS)]
    cases += [("/embeddings", c) for c in _cases(EMBEDDING, EMBEDDING_FIELDS)]
    random.Random(0).shuffle(cases)
    rejected = 0
    with httpx.Client(base_url=base_url, timeout=120) as http:
        for path, body in cases:
            if body.get("stream") is True:  # a valid streamed request: read it to its end
                with http.stream("POST", path, json=body) as r:
                    r.read()
            else:
                r = http.post(path, json=body)
            _check(r, (path, body))
            rejected += r.status_code != 200
        assert rejected > 0.8 * len(cases)  # most of these are wrong; the rest ran and answered
        good = http.post("/chat/completions", json={**CHAT, "max_tokens": 8}).json()
        assert good["choices"][0]["message"]["content"] and good["usage"]["completion_tokens"] > 0


@pytest.mark.parametrize(
    "content",
    [b"", b"{", b"null", b"\xff\xfe", b'{"model": "' + b"a" * 100_000 + b'"}', b'{"messages": {"$ref": 1}}'],
)
def test_bodies_that_are_not_requests(base_url: str, content: bytes) -> None:
    with httpx.Client(base_url=base_url, timeout=30) as http:
        for path in ("/chat/completions", "/completions", "/embeddings"):
            r = http.post(path, content=content, headers={"Content-Type": "application/json"})
            assert r.status_code in (400, 404), (path, content[:20], r.status_code, r.text[:200])
            assert r.json()["error"]["message"]
