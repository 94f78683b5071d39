"""Past one machine: a real Redis broker, a real PostgreSQL store and two `fleet worker` processes (Celery)
on one batch: every line answered once, both workers take part; then kill -9 of one worker mid-batch: the
other finishes, every custom_id once, the answers those of an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.batch.conftest import embedding_line, read_lines, upload, wait_for
from tests.batch.services import postgres_server, redis_server
from tritonfleet.batch.config import BatchConfig
from tritonfleet.batch.service import BatchService
from tritonfleet.batch.store import Store
from tritonfleet.openai import OpenAIServer
from tritonfleet.server import free_port

pytestmark = pytest.mark.server
TEXTS = [f"Sentence number {i} is about {topic}." for i, topic in enumerate(["cats", "rain", "stocks"] * 40)]


@pytest.fixture(scope="module")
def broker() -> Iterator[str]:
    with redis_server() as url:
        yield url


@pytest.fixture(scope="module")
def store_url() -> Iterator[str]:
    with postgres_server() as url:
        yield url


def start_workers(fleet, broker: str, store: str, home: Path, count: int = 2) -> list[subprocess.Popen]:
    env = {
        **os.environ,
        "TRITONFLEET_HOME": str(home),
        "TRITONFLEET_BATCH_CHUNK": "4",  # small chunks: both workers get lines of one small batch
        "TRITONFLEET_BATCH_CONCURRENCY": "2",
        "TRITONFLEET_BATCH_LEASE_S": "6",
    }
    return [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tritonfleet.cli",
                "worker",
                "--broker",
                broker,
                "--store",
                store,
                "--triton",
                f"127.0.0.1:{fleet.server.grpc_port}",
                "--name",
                f"w{i}",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(home / f"w{i}.log", "w"),
        )
        for i in range(count)
    ]


def stop(workers: list[subprocess.Popen]) -> None:
    for w in workers:
        if w.poll() is None:
            w.send_signal(signal.SIGTERM)
    for w in workers:
        try:
            w.wait(timeout=20)
        except subprocess.TimeoutExpired:
            w.kill()


def batch_api(fleet, broker: str, store: str):
    """The batch API with a broker: no worker in this process, the driver wakes the Celery workers."""
    from openai import OpenAI

    grpc = f"127.0.0.1:{fleet.server.grpc_port}"
    service = BatchService(
        grpc, fleet.repository, fleet.access.public, config=BatchConfig(store=store, broker=broker)
    ).start()
    api = OpenAIServer(grpc, fleet.repository, port=free_port(), routes=service.routes).start()
    return service, api, OpenAI(base_url=api.url, api_key="none", max_retries=0)


def check(c, done, reference: np.ndarray) -> None:
    assert done.status == "completed" and done.request_counts.completed == len(TEXTS), done
    lines = read_lines(c, done.output_file_id)
    assert [x["custom_id"] for x in lines] == [f"e{i}" for i in range(len(TEXTS))]  # each once, in order
    vectors = np.array([x["response"]["body"]["data"][0]["embedding"] for x in lines])
    assert np.allclose(vectors, reference, atol=1e-5)


def test_two_celery_workers_one_batch_each_line_once_and_kill_one(
    batch_fleet, broker: str, store_url: str, tmp_path: Path
) -> None:
    service, api, c = batch_api(batch_fleet, broker, store_url)
    workers = start_workers(batch_fleet, broker, store_url, tmp_path)
    try:
        reference = np.array(
            [d.embedding for d in c.embeddings.create(model="all-minilm-l6-v2", input=TEXTS).data]
        )
        file_id = upload(c, [embedding_line(f"e{i}", t) for i, t in enumerate(TEXTS)])
        first = c.batches.create(input_file_id=file_id, endpoint="/v1/embeddings", completion_window="24h")
        check(c, wait_for(c, first.id), reference)
        store = Store(store_url)
        answered_by = {r.worker for r in store.results(first.id)}
        assert {w.split(":")[0] for w in answered_by} == {"w0", "w1"}, answered_by  # both took part

        second = c.batches.create(input_file_id=file_id, endpoint="/v1/embeddings", completion_window="24h")
        while store.batch(second.id)["request_counts"]["completed"] < 8:
            time.sleep(0.05)
        workers[0].send_signal(signal.SIGKILL)  # mid-batch, holding leases
        workers[0].wait()
        done = wait_for(c, second.id, timeout=300)
        check(c, done, reference)
        results = store.results(second.id)
        assert len(results) == len(TEXTS) == len({r.custom_id for r in results})
        assert len(json.loads(store.content(done.output_file_id, None).decode().splitlines()[0])) == 4
        store.close()
    finally:
        stop(workers)
        api.stop()
        service.stop()
