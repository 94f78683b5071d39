"""kill -9 of the whole `fleet serve` mid-batch, then a restart on the same $TRITONFLEET_HOME: the batches
resume and complete, every custom_id exactly once, the answers those of an uninterrupted run (greedy chat
lines, embeddings, wine labels). The in-process worker runs one line at a time here, so that each greedy
line runs alone in both runs (the CPU engine's greedy rows depend on their wave's company)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_wine

from tests.batch.conftest import chat_line, embedding_line, read_lines, upload, wait_for
from tritonfleet.server import free_port

pytestmark = pytest.mark.server
WINE = "/v2/models/wine_sklearn/infer"


def serve(home: Path, ports: list[int]) -> subprocess.Popen:
    env = {**os.environ, "TRITONFLEET_HOME": str(home), "TRITONFLEET_BATCH_CONCURRENCY": "1",
           "TRITONFLEET_BATCH_LEASE_S": "5"}  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "tritonfleet.cli", "serve", "--models", "llm,text_embedding,wine_sklearn",
         "--http-port", str(ports[0]), "--grpc-port", str(ports[1]), "--metrics-port", str(ports[2]),
         "--openai-port", str(ports[3])],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if "Ctrl-C" in line:
            return proc
    raise AssertionError("fleet serve did not start:\n" + "".join(seen))


def jobs(c) -> list[str]:
    wine = load_wine()
    chat = [chat_line(f"chat-{i}", q, max_tokens=16) for i, q in enumerate(
        ["Name three primary colors.", "What is 2 + 2?", "Say hello.", "Name a fruit.", "What is the sun?",
         "Name a planet.", "Name an animal.", "What is water?"])]  # fmt: skip
    texts = [
        embedding_line(f"emb-{i}", f"Line {i} talks about {w}.") for i, w in enumerate(["cats", "rain"] * 15)
    ]
    rows = [
        {"custom_id": f"wine-{i}", "method": "POST", "url": WINE,
         "body": {"inputs": [{"name": "FEATURES", "datatype": "FP32", "shape": [1, 13],
                              "data": [float(v) for v in wine.data[i]]}]}}
        for i in range(0, 178, 18)
    ]  # fmt: skip
    return [
        c.batches.create(input_file_id=upload(c, lines), endpoint=endpoint, completion_window="24h").id
        for lines, endpoint in ((chat, "/v1/chat/completions"), (texts, "/v1/embeddings"), (rows, WINE))
    ]


def answers(c, batch_id: str) -> dict[str, object]:
    done = wait_for(c, batch_id, timeout=600)
    assert done.status == "completed" and not done.request_counts.failed, done
    lines = read_lines(c, done.output_file_id)
    ids = [x["custom_id"] for x in lines]
    assert len(ids) == len(set(ids)) == done.request_counts.total  # every custom_id exactly once
    out: dict[str, object] = {}
    for x in lines:
        body = x["response"]["body"]
        if "choices" in body:
            out[x["custom_id"]] = body["choices"][0]["message"]["content"]
        elif "data" in body:
            out[x["custom_id"]] = np.array(body["data"][0]["embedding"])
        else:
            out[x["custom_id"]] = body["outputs"][[o["name"] for o in body["outputs"]].index("LABEL")]["data"]
    return out


def test_kill_9_of_fleet_serve_mid_batch_then_restart(tmp_path: Path) -> None:
    from openai import OpenAI

    ports = [free_port() for _ in range(4)]
    proc = serve(tmp_path, ports)
    try:
        c = OpenAI(base_url=f"http://localhost:{ports[3]}/v1", api_key="none", max_retries=3)
        reference = [answers(c, b) for b in jobs(c)]  # uninterrupted
        batches = jobs(c)
        while c.batches.retrieve(batches[0]).request_counts.completed < 2:
            time.sleep(0.1)
        metrics = urllib.request.urlopen(f"http://localhost:{ports[2]}/metrics", timeout=10).read().decode()
        assert (
            'tritonfleet_batch_lines{state="pending"}' in metrics
            and "tritonfleet_batch_queue_depth" in metrics
        )
        assert 'tritonfleet_batch_in_flight{status="in_progress"} 3.0' in metrics
        os.kill(proc.pid, signal.SIGKILL)  # mid-batch: a chat line in flight, two batches waiting
        proc.wait()
        time.sleep(1)
        proc = serve(tmp_path, ports)
        after = [answers(c, b) for b in batches]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    for before, now in zip(reference, after, strict=True):
        assert before.keys() == now.keys()
        for key, value in before.items():
            if isinstance(value, np.ndarray):
                assert np.allclose(value, now[key], atol=1e-5), key
            else:
                assert value == now[key], key
    assert "Red" in str(after[0]["chat-0"]) or "red" in str(after[0]["chat-0"])
