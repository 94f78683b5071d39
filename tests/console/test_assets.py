"""The console without a server: its files as the front door serves them (headers, no inline code, the page
weight), who may reach its routes, a page for every pipeline, ``/chat/stream``'s bodies."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import pytest

from tritonfleet import pipelines
from tritonfleet.console import assets
from tritonfleet.console.stream import request_body
from tritonfleet.errors import ClientError
from tritonfleet.frontdoor.policy import OPERATIONS, Who, http_operation

PAGE_WEIGHT_LIMIT = 300 * 1024
WEB = assets.STATIC.parent / "web" / "src"


@pytest.fixture(scope="module")
def bundle() -> dict[str, int]:
    weight = assets.page_weight()
    if "console.js" not in weight:
        pytest.fail("the console is not bundled: scripts/setup.sh console (make setup does it)")
    return weight


def headers_of(answer: tuple[int, bytes, list[tuple[bytes, bytes]]]) -> dict[str, str]:
    return {n.decode(): v.decode() for n, v in answer[2]}


def test_the_page_weighs_at_most_300_kb(bundle: dict[str, int]) -> None:
    assert set(bundle) == {"index.html", "console.js", "console.css", "favicon.svg"}
    assert sum(bundle.values()) <= PAGE_WEIGHT_LIMIT, bundle


def test_the_page_has_no_inline_script_or_style(bundle: dict[str, int]) -> None:
    found: list[str] = []

    class Inline(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            names = {n for n, _ in attrs}
            if tag == "style" or "style" in names or any(n.startswith("on") for n in names):
                found.append(tag)
            if tag == "script" and "src" not in names:
                found.append("inline script")

    Inline().feed((assets.STATIC / "index.html").read_text())
    assert found == []
    script = (assets.STATIC / "console.js").read_text()
    assert "eval(" not in script and "new Function" not in script


def test_every_answer_carries_a_strict_policy(bundle: dict[str, int]) -> None:
    status, body, _ = answer = assets.answer("GET", "/", {})
    headers = headers_of(answer)
    assert status == 200 and body.startswith(b"<!doctype html>")
    policy = headers["content-security-policy"]
    assert "'unsafe-inline'" not in policy and "'unsafe-eval'" not in policy
    assert (
        "script-src 'self'" in policy
        and "default-src 'none'" in policy
        and "frame-ancestors 'none'" in policy
    )
    assert headers["x-content-type-options"] == "nosniff" and headers["x-frame-options"] == "DENY"
    assert headers["content-type"].startswith("text/html")
    assert headers_of(assets.answer("GET", "/console/console.js", {}))["content-type"].startswith(
        "text/javascript"
    )


def test_an_unchanged_file_is_a_304_and_head_has_no_body(bundle: dict[str, int]) -> None:
    etag = headers_of(assets.answer("GET", "/console/console.css", {}))["etag"]
    assert assets.answer("GET", "/console/console.css", {"if-none-match": etag})[:2] == (304, b"")
    assert assets.answer("HEAD", "/console/console.css", {})[:2] == (200, b"")


@pytest.mark.parametrize(
    "path",
    ["/console/../pyproject.toml", "/console/web/package.json", "/console/.hidden.js", "/console/a.py"],
)
def test_nothing_but_the_bundle_is_served(path: str) -> None:
    assert assets.answer("GET", path, {})[0] == 404


def test_only_get_and_head() -> None:
    assert assets.answer("POST", "/", {})[0] == 405


@pytest.mark.parametrize(
    ("path", "operation"),
    [
        ("/", "console_page"),
        ("/console/console.js", "console_page"),
        ("/console/api/fleet", "console_api"),
        ("/console/api/passage/rag/docs%2Frag.md%231", "console_api"),
        ("/chat/stream", "chat_stream"),
        ("/v1/models", "openai"),
    ],
)
def test_the_page_is_open_to_all_and_its_data_needs_the_callers_key(path: str, operation: str) -> None:
    call = http_operation(path)
    assert call is not None and call.operation == operation
    assert call.rule.who is (Who.ANYONE if operation == "console_page" else Who.CALLER)
    assert call.rule.upstream == ("door" if operation == "console_page" else "openai")
    assert OPERATIONS["chat_stream"].route == OPERATIONS["openai"].route  # counted and charged as /v1


def test_every_pipeline_has_a_page() -> None:
    """A pipeline declares a playground of a kind the console knows (web/src/playgrounds.js), or gets the
    generic form: a new one gets a page without editing the console."""
    from tritonfleet.console.api import playground_of

    source = (WEB / "playgrounds.js").read_text()
    kinds = set(
        re.search(r"export const KINDS = \{([^}]*)\}", source).group(1).replace(" ", "").split(",")
    ) - {""}
    known = {k.split(":")[0] for k in kinds} | {"chat"}
    assert "form" in known
    for pipeline in pipelines.registry().values():
        playground = playground_of(pipeline)
        assert playground.kind in known, (pipeline.name, playground.kind)
        assert set(playground.models) <= set(pipeline.public)
        json.dumps(dict(playground.params))  # the page gets them as JSON


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"not json", "must be JSON"),
        (b"[1]", "JSON object"),
        (b"{}", "message must be a non-empty string"),
        (b'{"message": "  "}', "message must be a non-empty string"),
        (b'{"message": "hi", "model": 3}', "model must be a string"),
    ],
)
def test_chat_stream_bodies_that_are_refused(body: bytes, problem: str) -> None:
    with pytest.raises(ClientError, match=problem):
        request_body(body, "m")


def test_chat_stream_asks_the_default_model_to_stream() -> None:
    assert request_body(b'{"message": "hi", "max_tokens": 8}', "m") == {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
        "max_tokens": 8,
    }
