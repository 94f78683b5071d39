"""`fleet bench` machinery: perf_analyzer really sends the photos, and the report is complete.

Not a timed test: it asserts the report's shape and that every benchmarked request succeeded, never a speed.
"""

from __future__ import annotations

import json
from pathlib import Path

import tritonclient.grpc as grpcclient
from rich.console import Console

from tritonfleet.artifacts import REPOSITORY
from tritonfleet.pipelines.image_classifier.bench import image_classifier_bench
from tritonfleet.server import TritonServer
from tritonfleet.tools.bench import inprocess
from tritonfleet.tools.bench.perf_analyzer import parse_csv


def _counts(url: str) -> tuple[int, int]:
    with grpcclient.InferenceServerClient(url) as client:
        stats = client.get_inference_statistics("image_classifier", as_json=True)["model_stats"][0]
    infer = stats["inference_stats"]
    return int(infer.get("success", {}).get("count", 0)), int(infer.get("fail", {}).get("count", 0))


def test_bench_report_against_running_server(server: TritonServer, tmp_path: Path) -> None:
    ok_before, failed_before = _counts(server.grpc_url)
    with image_classifier_bench(REPOSITORY) as bench:
        md = inprocess.run(
            bench,
            REPOSITORY,
            concurrency=[2],
            url=server.grpc_url,
            output=tmp_path,
            measurement_ms=800,
            console=Console(quiet=True),
            # this checks the report, not the numbers: any three non-empty windows will do
            stability_percentage=1000,
            window_requests=20,
        )
    ok_after, failed_after = _counts(server.grpc_url)
    assert failed_after == failed_before, "perf_analyzer's requests failed: its input data is wrong"
    assert ok_after - ok_before > 10

    data = json.loads((tmp_path / "image_classifier.json").read_text())
    (level,) = data["levels"]
    assert level["concurrency"] == 2
    assert level["served"]["throughput"] > 0 and level["floor"]["throughput"] > 0
    assert level["served"]["p50_ms"] <= level["served"]["p99_ms"]
    assert level["ratio"] == level["served"]["throughput"] / level["floor"]["throughput"]
    assert 1.0 <= level["served"]["avg_model_batch"] <= 2.0
    assert data["machine"]["cores"] and data["machine"]["date"]
    text = md.read_text()
    assert "| 2 |" in text and "served/floor" in text
    assert (tmp_path / "image_classifier.png").stat().st_size > 10_000


def test_parse_perf_analyzer_csv(tmp_path: Path) -> None:
    csv = tmp_path / "c.csv"
    csv.write_text(
        "Concurrency,Inferences/Second,Client Send,p50 latency,p90 latency,p95 latency,p99 latency\n"
        "4,106.5,30,36200,50000,55000,61130\n"
    )
    point = parse_csv(csv, 4)
    assert (point.throughput, point.p50_ms, point.p99_ms) == (106.5, 36.2, 61.13)
