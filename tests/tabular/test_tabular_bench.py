"""`fleet bench tabular` machinery: the targets' arithmetic, the tuning's config overrides really loaded, and
the report of a real (short) run. Never a speed: the peers (their venvs, wrk) are for the bench, not CI, so
the run here measures Triton over gRPC alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from tritonfleet.artifacts import REPOSITORY
from tritonfleet.pipelines.tabular.bench import Results, evaluate, run_peer_bench
from tritonfleet.pipelines.tabular.bench.tuning import Setting, run_tuning
from tritonfleet.repository import parse_config


def _point(rps: float, p99: float) -> dict[str, float]:
    return {"requests_per_s": rps, "p50_ms": p99 / 4, "p99_ms": p99}


def test_targets_compare_medians_of_triton_http_with_each_peer() -> None:
    results = Results()
    # (system, c): requests/s of three rounds, p99 ms of each round
    measured = {
        ("triton-http", 1): ([2000, 2400, 2200], 1.0),
        ("triton-http", 32): ([15000, 16000, 9000], 4.0),
        ("fastapi-1", 1): ([1900, 2000, 2100], 1.0),
        ("fastapi-1", 32): ([2500, 2600, 2400], 50.0),
        ("fastapi-2", 1): ([2300, 2500, 2600], 1.0),
        ("fastapi-2", 32): ([5000, 5500, 5200], 40.0),
    }
    for (system, c), (rps, p99) in measured.items():
        for value in rps:
            results.add("m", system, c, _point(value, p99))
    checks = {
        t["target"]: t for t in evaluate(results, "m", ["triton-http", "fastapi-1", "fastapi-2"], [1, 32])
    }
    best = checks["Triton / FastAPI's best setup (fastapi-2) at c=32"]
    assert best["value"] == pytest.approx(15000 / 5200, abs=1e-3) and best["met"]
    assert checks["Triton / FastAPI 1 worker at c=32"]["value"] == pytest.approx(15000 / 2500, abs=1e-3)
    assert checks["Triton p99 / fastapi-2 p99 at c=32"]["value"] == pytest.approx(0.1)
    # At c=1 Triton's median (2200) is below fastapi-2's (2500): not ahead of every peer.
    assert not checks["Triton / fastapi-2 at c=1"]["met"]
    assert checks["Triton / fastapi-1 at c=1"]["met"]
    assert len(checks) == 3 + 2 * 2


@pytest.mark.server
def test_peer_bench_report_of_a_short_triton_run(tmp_path: Path) -> None:
    md = run_peer_bench(
        REPOSITORY,
        models=["wine_sklearn"],
        systems=["triton-grpc"],
        concurrency=[1, 4],
        rounds=2,
        seconds=3.0,  # a window that records requests also on a loaded machine
        output=tmp_path,
        console=Console(quiet=True),
    )
    data = json.loads((tmp_path / "tabular_peers.json").read_text())
    levels = data["points"]["wine_sklearn"]["triton-grpc"]
    assert sorted(levels) == ["1", "4"]
    for c, points in levels.items():
        assert len(points) == 2  # one per round
        for p in points:
            assert p["requests_per_s"] > 0 and p["p50_ms"] <= p["p99_ms"]
            assert 1.0 <= p["avg_batch"] <= int(c)
            assert p["server_compute_infer_us"] > 0 and p["server_queue_us"] >= 0
    [group] = parse_config(REPOSITORY / "wine_sklearn" / "config.pbtxt").instance_group
    assert data["setups"]["triton-grpc"]["instances"] == group.count  # what the server ran
    assert data["method"]["rounds"] == 2 and data["machine"]["cores"]
    text = md.read_text()
    assert "| triton-grpc | 4 |" in text
    assert (tmp_path / "tabular_peers.png").stat().st_size > 10_000


@pytest.mark.server
def test_tuning_loads_each_setting_into_the_server(tmp_path: Path) -> None:
    settings = (Setting("base"), Setting("2 instances, delay 200 us", instances=2, max_queue_delay_us=200))
    run_tuning(
        REPOSITORY,
        models=["breast_cancer_xgboost"],
        concurrency=[2],
        rounds=1,
        measurement_ms=500,
        output=tmp_path,
        console=Console(quiet=True),
        settings=settings,
    )
    data = json.loads((tmp_path / "tabular_tuning.json").read_text())
    results = data["results"]["breast_cancer_xgboost"]
    assert set(results) == {"base", "2 instances, delay 200 us"}
    assert all(
        len(results[name]["2"]) == 1 and results[name]["2"][0]["requests_per_s"] > 0 for name in results
    )
    assert data["settings"][1]["instances"] == 2


def test_a_setting_read_back_from_a_config_is_the_setting() -> None:
    setting = Setting("x", instances=2, intra_op_threads=1, max_queue_delay_us=100, preferred=(8, 16))
    config = {"parameters": {"feature_names": {"string_value": "a"}}}
    assert Setting.of("x", setting.apply(config)) == setting
    assert config == {"parameters": {"feature_names": {"string_value": "a"}}}  # apply copies
