"""Batch jobs for the other pipelines: KServe v2 lines, and `fleet batch run` on a folder of images, a text
file, a CSV and a Parquet file of features (real answers, the input's order and ids), then `fleet batch
list|status|results`."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tritonclient.grpc as grpcclient
from sklearn.datasets import load_wine

from tests.batch.conftest import client, embedding_line, read_lines, upload, wait_for
from tests.conftest import CAT_CLASSES, COFFEE_CLASSES
from tritonfleet.clients import FleetClient

pytestmark = pytest.mark.server
TEXTS = ["A man plays a guitar.", "Someone strums a guitar.", "The stock market fell sharply today."]


def fleet_cli(fleet, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TRITONFLEET_API_KEY": fleet.secrets["alice"]}
    return subprocess.run(
        [sys.executable, "-m", "tritonfleet.cli", *args], capture_output=True, text=True, env=env, timeout=600
    )


def run_job(fleet, tmp_path: Path, *args: str) -> list[dict]:
    out = tmp_path / "out.jsonl"
    done = fleet_cli(fleet, "batch", "run", *args, "--output", str(out), "--url", fleet.openai_url)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "completed" in done.stdout
    return [json.loads(line) for line in out.read_text().splitlines()]


def internal(fleet) -> FleetClient:
    return FleetClient(f"127.0.0.1:{fleet.server.grpc_port}", protocol="grpc", api_key="")


def test_v2_lines_with_a_bad_one(batch_fleet, cat_jpeg: bytes) -> None:
    import base64

    c = client(batch_fleet)
    image = base64.b64encode(cat_jpeg).decode()
    good = {"inputs": [{"name": "IMAGE", "datatype": "BYTES", "shape": [1, 1], "data": [image],
                        "parameters": {"content_type": "base64"}}],
            "outputs": [{"name": "PROBABILITIES", "parameters": {"classification": 3}}]}  # fmt: skip
    wrong = {"inputs": [{"name": "IMAGE", "datatype": "FP32", "shape": [1, 1], "data": [1.0]}]}
    broken = {"inputs": [{"name": "IMAGE", "datatype": "BYTES", "shape": [1, 1], "data": ["bm90IGFuIGltYWdl"],
                          "parameters": {"content_type": "base64"}}]}  # fmt: skip
    url = "/v2/models/image_classifier/infer"
    rows = [{"custom_id": name, "method": "POST", "url": url, "body": body}
            for name, body in (("cat", good), ("wrong-type", wrong), ("not-an-image", broken))]  # fmt: skip
    batch = c.batches.create(input_file_id=upload(c, rows), endpoint=url, completion_window="24h")
    done = wait_for(c, batch.id)
    assert (
        done.status == "completed" and done.request_counts.completed == 1 and done.request_counts.failed == 2
    )
    [cat] = read_lines(c, done.output_file_id)
    labels = cat["response"]["body"]["outputs"][0]["data"]
    assert len(labels) == 3 and int(labels[0].split(":")[1]) in CAT_CLASSES
    errors = {e["custom_id"]: e["response"] for e in read_lines(c, done.error_file_id)}
    assert errors["wrong-type"]["status_code"] == 400 and "IMAGE" in errors["wrong-type"]["body"]["error"]
    assert errors["not-an-image"]["status_code"] == 400  # the server's own 400 for a non-image


def test_fleet_batch_run_images(batch_fleet, tmp_path: Path, cat_jpeg: bytes, coffee_png: bytes) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "b-coffee.png").write_bytes(coffee_png)
    (folder / "a-cat.jpg").write_bytes(cat_jpeg)
    (folder / "notes.txt").write_text("not an image")
    out = run_job(batch_fleet, tmp_path, "image_classifier", str(folder))
    assert [o["id"] for o in out] == ["a-cat.jpg", "b-coffee.png"]
    top = [int(o["outputs"]["PROBABILITIES"][0].split(":")[1]) for o in out]
    assert top[0] in CAT_CLASSES and top[1] in COFFEE_CLASSES


def test_fleet_batch_run_texts(batch_fleet, tmp_path: Path) -> None:
    source = tmp_path / "texts.txt"
    source.write_text("\n".join(TEXTS) + "\n")
    out = run_job(batch_fleet, tmp_path, "text_embedding", str(source))
    assert [o["id"] for o in out] == ["0", "1", "2"]
    vectors = np.array([o["outputs"]["EMBEDDING"] for o in out])
    with internal(batch_fleet) as fleet:
        alone = fleet.embed(TEXTS).vectors
    assert np.allclose(vectors, alone, atol=1e-6)


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_fleet_batch_run_features(batch_fleet, tmp_path: Path, kind: str) -> None:
    wine = load_wine()
    rows = [dict(zip(wine.feature_names, map(float, x), strict=True)) for x in wine.data[::30]]
    ids = [f"wine-{i * 30}" for i in range(len(rows))]
    if kind == "csv":
        source = tmp_path / "wine.csv"
        with source.open("w", newline="") as f:
            writer = csv.DictWriter(f, ["id", *wine.feature_names])
            writer.writeheader()
            writer.writerows({"id": i, **r} for i, r in zip(ids, rows, strict=True))
    else:
        source = tmp_path / "wine.parquet"
        pq.write_table(pa.Table.from_pylist([{"id": i, **r} for i, r in zip(ids, rows, strict=True)]), source)
    out = run_job(batch_fleet, tmp_path, "tabular", str(source), "--model", "wine_sklearn")
    assert [o["id"] for o in out] == ids
    features = np.array([[r[n] for n in wine.feature_names] for r in rows], dtype=np.float32)
    c = grpcclient.InferenceServerClient(f"127.0.0.1:{batch_fleet.server.grpc_port}")
    x = grpcclient.InferInput("FEATURES", list(features.shape), "FP32")
    x.set_data_from_numpy(features)
    labels = c.infer("wine_sklearn", [x]).as_numpy("LABEL").reshape(-1).tolist()
    c.close()
    assert [o["outputs"]["LABEL"][0] for o in out] == labels
    assert labels == wine.target[::30].tolist()  # the model is right on these rows


def test_fleet_batch_list_status_results(batch_fleet, tmp_path: Path) -> None:
    source = tmp_path / "prompts.jsonl"
    source.write_text(json.dumps({"id": "p1", "prompt": "Name three primary colors."}) + "\n")
    out = run_job(batch_fleet, tmp_path, "llm", str(source), "--max-tokens", "16")
    assert out[0]["id"] == "p1" and "red" in out[0]["text"].lower()
    listed = fleet_cli(batch_fleet, "batch", "list", "--url", batch_fleet.openai_url)
    assert listed.returncode == 0 and "completed" in listed.stdout
    batch_id = next(line.split()[0] for line in listed.stdout.splitlines() if line.startswith("batch_"))
    status = fleet_cli(batch_fleet, "batch", "status", batch_id, "--url", batch_fleet.openai_url)
    assert json.loads(status.stdout)["id"] == batch_id
    results = fleet_cli(batch_fleet, "batch", "results", batch_id, "--url", batch_fleet.openai_url)
    assert json.loads(results.stdout.splitlines()[0])["custom_id"] == "p1"


def test_fleet_batch_results_in_the_input_order(batch_fleet) -> None:
    """Answers and errors together, in the input file's order (the output and error files are apart)."""
    c = client(batch_fleet)
    unknown = embedding_line("b", "y")
    unknown["body"]["model"] = "no-such-model"
    rows = [embedding_line("c", "x"), unknown, embedding_line("a", "z"), "not json"]
    batch = c.batches.create(
        input_file_id=upload(c, rows), endpoint="/v1/embeddings", completion_window="24h"
    )
    assert wait_for(c, batch.id).status == "completed"
    results = fleet_cli(batch_fleet, "batch", "results", batch.id, "--url", batch_fleet.openai_url)
    assert results.returncode == 0, results.stderr
    lines = [json.loads(line) for line in results.stdout.splitlines()]
    assert [line["custom_id"] for line in lines] == ["c", "b", "a", None]
    assert [line["error"] is None for line in lines] == [True, False, True, False]
