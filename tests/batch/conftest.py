"""The batch tests' fleet: `fleet serve`'s Fleet (front door, /v1, batch service on its own SQLite store) over
the LLM, text embeddings, wine_sklearn and image_classifier, with two keys: alice (no batch limits) and bob
(small ones)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import running_fleet
from tritonfleet.fleet import Fleet
from tritonfleet.frontdoor.keys import KeyFile

MODELS = ["llm", "text_embedding", "wine_sklearn", "image_classifier"]
CHAT_MODEL = "smollm2-135m-instruct"
EMBEDDING_MODEL = "all-minilm-l6-v2"
BOB_LINES, BOB_FILE_MB, BOB_BATCHES = 5, 1, 2


@pytest.fixture(scope="session")
def batch_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    home = tmp_path_factory.mktemp("batch")
    keys = KeyFile(home / "keys.json")
    secrets = {
        "alice": keys.add("alice"),
        "bob": keys.add("bob", batch_lines=BOB_LINES, batch_file_mb=BOB_FILE_MB, batches=BOB_BATCHES),
    }
    with running_fleet(home, models=MODELS) as fleet:  # its batch store in home
        fleet.secrets = secrets  # type: ignore[attr-defined]
        yield fleet


def client(fleet: Fleet, who: str = "alice"):
    from openai import OpenAI

    return OpenAI(base_url=fleet.openai_url, api_key=fleet.secrets[who], max_retries=0, timeout=120)


def jsonl(rows: list[Any]) -> bytes:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows).encode()


def wait_for(openai_client: Any, batch_id: str, timeout: float = 300, until: tuple = ()) -> Any:
    """Poll a batch until it ends (or reaches a status of ``until``)."""
    deadline = time.monotonic() + timeout
    while True:
        batch = openai_client.batches.retrieve(batch_id)
        if batch.status in ("completed", "failed", "expired", "cancelled", *until):
            return batch
        assert time.monotonic() < deadline, f"batch {batch_id} still {batch.status} after {timeout} s"
        time.sleep(0.2)


def read_lines(openai_client: Any, file_id: str | None) -> list[dict[str, Any]]:
    if file_id is None:
        return []
    text = openai_client.files.content(file_id).text
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def chat_line(custom_id: str, content: str, max_tokens: int = 12) -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {
            "model": CHAT_MODEL,
            "messages": [{"role": "user", "content": content}],
            "max_tokens": max_tokens,
            "temperature": 0,
        },
    }


def embedding_line(custom_id: str, text: str) -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/embeddings",
        "body": {"model": EMBEDDING_MODEL, "input": text},
    }


def upload(openai_client: Any, rows: list[Any], name: str = "in.jsonl") -> str:
    return openai_client.files.create(file=(name, jsonl(rows)), purpose="batch").id


def path_of(p: str) -> Path:
    return Path(p)
