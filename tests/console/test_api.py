"""The console's API in the real ``/v1`` app, without a tritonserver (what it answers needs none): the
playgrounds from the declarations (the generic form for a pipeline that declares none), a rag source's
passage from the built index, and errors in the app's shape."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from tritonfleet import pipelines
from tritonfleet.artifacts import REPOSITORY
from tritonfleet.console.api import Console
from tritonfleet.frontdoor.policy import PublicModels
from tritonfleet.openai.app import create_app
from tritonfleet.repository import Repository

NO_SERVER = "127.0.0.1:9"  # nothing listens: the routes under test never call Triton


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    loaded = Repository(REPOSITORY).closure(list(pipelines.public_models()), "cpu")
    public = PublicModels.from_repository(REPOSITORY, loaded)
    console = Console(REPOSITORY, public, NO_SERVER, scrape=lambda: "")
    with TestClient(create_app(NO_SERVER, REPOSITORY, routes=console.routes())) as test_client:
        yield test_client


def test_every_served_pipeline_has_a_playground_and_the_chat_models_are_listed(client) -> None:
    found = client.get("/console/api/pipelines").json()
    kinds = {p["pipeline"]: p["kind"] for p in found["playgrounds"]}
    assert kinds == {"image_classifier": "image", "tabular": "tabular", "text_embedding": "texts"}
    tabular = next(p for p in found["playgrounds"] if p["pipeline"] == "tabular")
    assert tabular["models"] == list(pipelines.get("tabular").public) and tabular["streaming"] == []
    chat = {m["id"]: m for m in found["chat"]}
    assert list(chat) == ["smollm2-135m-instruct", "rag"]  # registry order: the first is /chat/stream's
    assert chat["rag"]["passages"] and chat["rag"]["sources"] == ["sources"]
    assert not chat["smollm2-135m-instruct"]["passages"]


def test_a_pipeline_that_declares_no_playground_gets_the_form(client, monkeypatch) -> None:
    for name in ("tabular", "llm"):
        plain = dataclasses.replace(pipelines.get(name), playground=None)
        monkeypatch.setitem(pipelines.registry(), name, plain)
    found = {p["pipeline"]: p for p in client.get("/console/api/pipelines").json()["playgrounds"]}
    assert found["tabular"]["kind"] == "form" and found["tabular"]["params"] == {}
    assert found["llm"]["kind"] == "form" and found["llm"]["models"] == list(pipelines.get("llm").public)
    assert "ensemble" in found["llm"]["streaming"] and "ensemble" not in found["tabular"]["streaming"]
    chat = client.get("/console/api/pipelines").json()["chat"]
    assert [m["id"] for m in chat] == ["smollm2-135m-instruct", "rag"]  # they stay on the chat page


def test_a_source_opens_its_passage(client) -> None:
    chunks = json.loads((REPOSITORY / "retriever" / "1" / "chunks.json").read_text())
    chunk = chunks[len(chunks) // 2]
    source = f"{chunk['path']}#{chunk['number']}"
    answer = client.get(f"/console/api/passage/rag/{source.replace('#', '%23')}")
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"source": source, **{k: chunk[k] for k in ("path", "number", "heading", "text")}}
    missing = client.get("/console/api/passage/rag/README.md%2399999")
    assert missing.status_code == 404 and "no passage" in missing.json()["error"]["message"]
    assert client.get("/console/api/passage/all-minilm-l6-v2/README.md%231").status_code == 404


def test_errors_are_the_apps(client) -> None:
    bad = client.get("/console/api/fleet/yesterday")
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "since"
    down = client.get("/console/api/fleet")  # no tritonserver behind: the page says so and polls on
    assert down.status_code == 503 and down.headers["retry-after"] == "2"
    refused = client.post("/chat/stream", content=b'{"message": ""}')
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "message"
