"""``fleet tune`` for real: Model Analyzer's manual search against the embedded tritonserver (CPU target) on
the tabular model, fed its dataset's rows; the record, the rendered CPU config and the report agree with
what Model Analyzer measured. Values and counts only (the figures themselves belong to the report)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import copy_repository
from tritonfleet.artifacts import REPOSITORY
from tritonfleet.cli import main
from tritonfleet.repository import config_path, parse_config
from tritonfleet.spec import tuning
from tritonfleet.validate import validate_repository

pytestmark = pytest.mark.server

MODEL = "wine_sklearn"


def test_fleet_tune_records_and_renders_the_choice(tmp_path: Path) -> None:
    built = REPOSITORY / MODEL / "1" / "model.onnx"
    if not built.is_file():
        pytest.fail(f"{built} is not built (fleet build tabular)")
    root = copy_repository(tmp_path / "model_repository")
    shutil.rmtree(root / MODEL / "tuning", ignore_errors=True)  # a committed record: measure anew
    shutil.copyfile(built, root / MODEL / "1" / "model.onnx")
    args = [
        "--repository", str(root), "tune", MODEL, "--instances", "1,2,3", "--queue-delays", "0",
        "--concurrency", "1,2", "--measurement-ms", "1000", "--output", str(tmp_path / "reports"),
    ]  # fmt: skip
    assert main(args) == 0

    record = tuning.records(root / MODEL)["cpu"]
    report = json.loads((tmp_path / "reports" / f"{MODEL}-cpu.json").read_text())
    rows = report["measurements"]
    # Model Analyzer's default config (the served 2 instances) plus one variant per instance count, each at
    # both concurrencies; 1 is dropped, below what a batcher with priority levels needs (least_instances).
    assert sorted((r["instances"], r["concurrency"]) for r in rows) == [
        (2, 1),
        (2, 1),
        (2, 2),
        (2, 2),
        (3, 1),
        (3, 2),
    ]
    assert all(r["throughput"] > 0 and r["max_queue_delay_us"] == 0 for r in rows)
    (chosen,) = [r for r in rows if r["chosen"]]
    assert chosen["throughput"] == max(r["throughput"] for r in rows)
    assert report["record"] == tuning.to_json(record)
    assert record.instances == chosen["instances"] and record.max_queue_delay_microseconds == 0
    assert record.throughput_per_instance == pytest.approx(
        chosen["throughput"] / chosen["instances"], rel=1e-3
    )
    # fleet tune rendered the choice: the CPU config serves it, and the repository is valid.
    served = parse_config(config_path(root / MODEL, "cpu"))
    assert served.instance_group[0].count == record.instances
    assert validate_repository(root) == []
