"""The tuning record ``fleet tune`` writes: read back as written, applied by ``fleet render`` to the CPU
config only (instances and batcher settings; the GPU config and the interface unchanged), checked by
``fleet validate``. The planner's use of GPU records is tests/plan/test_render.py."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from tests.conftest import copy_repository
from tritonfleet.repository import parse_config
from tritonfleet.spec import config as spec_config
from tritonfleet.spec import tuning
from tritonfleet.validate import validate_repository

MODEL = "wine_sklearn"  # one config for both targets until a CPU record makes the CPU's its own

RECORD = tuning.Record(
    model=MODEL, target="cpu", instances=3, throughput_per_instance=1234.5678,
    measured_at="2026-12-07T13:00:00Z", tool="model-analyzer 1.58.0", preferred_batch_size=(8, 16),
    max_queue_delay_microseconds=500, latency_p99_ms=3.25,
)  # fmt: skip


def test_a_record_reads_back_as_written(tmp_path: Path) -> None:
    path = tuning.write(tmp_path / MODEL, RECORD)
    assert path == tmp_path / MODEL / "tuning" / "cpu.json"
    back = tuning.records(tmp_path / MODEL)["cpu"]
    assert dataclasses.replace(back, path="") == dataclasses.replace(RECORD, throughput_per_instance=1234.568)


def test_render_applies_a_cpu_record_to_the_cpu_config_only(tmp_path: Path) -> None:
    root = copy_repository(tmp_path / "model_repository")
    gpu_before = (root / MODEL / "config.pbtxt").read_text()
    assert not (root / MODEL / "configs" / "cpu.pbtxt").exists()
    tuning.write(root / MODEL, RECORD)
    problems = [str(p) for p in validate_repository(root)]
    assert any(f"{MODEL}/configs/cpu.pbtxt" in p and "is missing" in p for p in problems), problems

    assert spec_config.write(root) == [f"{MODEL}/configs/cpu.pbtxt"]
    assert validate_repository(root) == []
    cpu = parse_config(root / MODEL / "configs" / "cpu.pbtxt")
    gpu = parse_config(root / MODEL / "config.pbtxt")
    assert [(g.count, g.kind) for g in cpu.instance_group] == [(3, cpu.instance_group[0].KIND_CPU)]
    assert list(cpu.dynamic_batching.preferred_batch_size) == [8, 16]
    assert cpu.dynamic_batching.max_queue_delay_microseconds == 500
    assert (root / MODEL / "config.pbtxt").read_text() == gpu_before and gpu.instance_group[0].count == 2
    assert (cpu.max_batch_size, list(cpu.input), list(cpu.output)) == (
        gpu.max_batch_size, list(gpu.input), list(gpu.output),
    )  # fmt: skip
    assert "tuning/cpu.json (model-analyzer 1.58.0" in (root / MODEL / "configs" / "cpu.pbtxt").read_text()

    # The record gone: the CPU config is the GPU's again, and the file must go.
    (root / MODEL / "tuning" / "cpu.json").unlink()
    assert any("this file must go" in str(p) for p in validate_repository(root))
    assert spec_config.write(root) == [f"{MODEL}/configs/cpu.pbtxt"]
    assert validate_repository(root) == []


def test_validate_names_a_bad_record_instead_of_raising(tmp_path: Path) -> None:
    root = copy_repository(tmp_path / "model_repository")
    path = tuning.write(root / MODEL, RECORD)
    path.write_text(path.read_text().replace('"instances": 3', '"instances": 0'))
    problems = validate_repository(root)
    assert [(p.model, p.file) for p in problems] == [(MODEL, f"{MODEL}/tuning")]
    assert "instances must be >= 1" in problems[0].message


def test_a_record_of_fewer_instances_than_priority_levels_need_is_refused(tmp_path: Path) -> None:
    # wine_sklearn's batcher has priority levels: one instance would stall (declare.least_instances).
    root = copy_repository(tmp_path / "model_repository")
    tuning.write(root / MODEL, dataclasses.replace(RECORD, instances=1))
    [problem] = validate_repository(root)
    assert (problem.model, problem.file) == (MODEL, f"{MODEL}/tuning")
    assert "1 instance(s), fewer than the 2 a batcher with priority levels needs" in problem.message
