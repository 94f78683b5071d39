"""Planned configs: only placement fields change, fleet validate accepts them and refuses a plan config whose
interface differs; fleet plan writes every config, the report and the Kubernetes fragment; tuning records
set instance counts and batcher settings."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from tritonclient.grpc import model_config_pb2 as mc

from tests.conftest import copy_repository
from tritonfleet.artifacts import REPOSITORY
from tritonfleet.cli import main
from tritonfleet.plan import memory, pack, render, spec
from tritonfleet.repository import Repository, parse_config
from tritonfleet.spec import tuning
from tritonfleet.validate import validate_repository


def without_placement(config: mc.ModelConfig) -> mc.ModelConfig:
    out = mc.ModelConfig()
    out.CopyFrom(config)
    out.ClearField("instance_group")
    for key in ("preferred_batch_size", "max_queue_delay_microseconds"):
        out.dynamic_batching.ClearField(key)
    for key in render.PLACEMENT_PARAMETERS:
        out.parameters.pop(key, None)
    return out


@pytest.mark.parametrize("inventory", ["1xL4", "2xA100-40GB", "8xH100-80GB"])
def test_only_placement_fields_change(fleet, inventory: str) -> None:
    plan = pack.pack(fleet, spec.parse(inventory), "p")
    repository = Repository(REPOSITORY)
    for name, config in repository.configs("gpu"):
        planned = render.planned_config(config, plan.placement(name))
        assert without_placement(planned) == without_placement(config), name
        placement = plan.placement(name)
        if placement.groups:
            assert [(g.kind, list(g.gpus), g.count) for g in planned.instance_group] == [
                (mc.ModelInstanceGroup.KIND_GPU, [g.gpu], g.count) for g in placement.groups
            ]
        else:
            assert list(planned.instance_group) == list(config.instance_group)
    llm = render.planned_config(repository.config("tensorrt_llm", "gpu"), plan.placement("tensorrt_llm"))
    assert llm.parameters["max_tokens_in_paged_kv_cache"].string_value == "131072"
    assert llm.parameters["kv_cache_free_gpu_mem_fraction"].string_value == plan.llm[0].fraction
    assert llm.parameters["gpu_device_ids"].string_value == "0"
    assert llm.instance_group[0].kind == mc.ModelInstanceGroup.KIND_CPU  # the backend's own convention


def test_rate_limiter_rendered_where_instances_contend(fleet) -> None:
    """Four efficientnet instances beside minilm on one GPU: 5 > 2 executions, so both are rate limited."""
    tuned = [
        replace(d, instances=4) if d.model == "efficientnet_lite0" else d for d in fleet
    ]  # fmt: skip
    plan = pack.pack(tuned, spec.parse("1xL4"), "busy")
    assert plan.gpus[0].exec_slots == pack.EXEC_SLOTS
    assert "--rate-limit=execution_count" in plan.server_args
    assert f"--rate-limit-resource=gpu_exec:{pack.EXEC_SLOTS}:0" in plan.server_args
    config = Repository(REPOSITORY).config("efficientnet_lite0", "gpu")
    (group,) = render.planned_config(config, plan.placement("efficientnet_lite0")).instance_group
    assert group.count == 4 and group.rate_limiter.priority == 1
    assert [(r.name, r.count, getattr(r, "global")) for r in group.rate_limiter.resources] == [
        ("gpu_exec", 1, False)
    ]


def test_fleet_plan_writes_configs_report_and_kubernetes(tmp_path: Path) -> None:
    """On a copy without artifacts: the rule of thumb sizes the TensorRT models; fleet validate passes."""
    root = copy_repository(tmp_path / "model_repository")
    out = tmp_path / "reports"
    assert main(["--repository", str(root), "plan", "--gpus", "1xL4", "--output", str(out)]) == 0
    names = Repository(root).names()
    assert all((root / n / "configs" / "1xl4.pbtxt").is_file() for n in names)
    assert validate_repository(root) == []
    plan = json.loads((out / "1xl4.json").read_text())
    weights = plan["models"]["efficientnet_lite0"]["memory"]["shared"][0]
    assert weights["bytes"] == int(4_700_000 * 2 * 1.2) and weights["source"].startswith("rule of thumb")
    assert plan["load_order"][0] == ["tensorrt_llm"]
    k8s = json.loads((out / "1xl4.k8s.json").read_text())
    assert k8s["resources"]["limits"] == {"nvidia.com/gpu": 1} and "--model-config-name=1xl4" in k8s["args"]
    assert (out / "1xl4.png").read_bytes()[:4] == b"\x89PNG"
    assert "kv_cache_free_gpu_mem_fraction" in (out / "1xl4.md").read_text()

    # A planned config whose interface drifted is caught, as is one that adds tensors.
    path = root / "efficientnet_lite0" / "configs" / "1xl4.pbtxt"
    path.write_text(path.read_text().replace("dims: 1000", "dims: 1001"))
    problems = [str(p) for p in validate_repository(root)]
    assert any("configs/1xl4.pbtxt and config.pbtxt disagree" in p and "1001" in p for p in problems)
    path = root / "ensemble" / "configs" / "1xl4.pbtxt"
    path.write_text(path.read_text() + 'parameters { key: "extra_tensors" value { string_value: "x" } }\n')
    assert any("declares extra_tensors" in str(p) for p in validate_repository(root))


def test_ensemble_wiring_is_checked_in_a_plans_view(tmp_path: Path) -> None:
    """A plan's step config that an ensemble cannot call is reported for that plan's view."""
    root = copy_repository(tmp_path / "model_repository")
    assert (
        main(["--repository", str(root), "plan", "--gpus", "1xL4", "--output", str(tmp_path), "--name", "l4"])
        == 0
    )
    path = root / "tokenizer" / "configs" / "l4.pbtxt"
    config = parse_config(path)
    config.max_batch_size = 8  # below text_embedding's 64; the interface check reports it too
    path.write_text(render.text_format.MessageToString(config))
    problems = [str(p) for p in validate_repository(root)]
    assert any("text_embedding [l4]" in p and "max_batch_size 8" in p for p in problems), problems


def test_refusal_exit_code_and_message(tmp_path: Path, capsys) -> None:
    root = copy_repository(tmp_path / "model_repository")
    assert main(["--repository", str(root), "plan", "--gpus", "1x2GiB", "--output", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "does not fit on 1x2GiB" in out and "1xT4" in out
    assert not list(root.glob("*/configs/1x2gib.pbtxt"))
    assert main(["--repository", str(root), "plan", "--gpus", "1xL4", "--name", "cpu"]) == 2


def write_record(root: Path, model: str, target: str, fields: dict | None = None) -> Path:
    record = {
        "format": 1, "model": model, "target": target, "measured_at": "2026-12-07T10:00:00Z",
        "tool": "model-analyzer 1.46.0", "instances": 3, "throughput_per_instance": 800.0, **(fields or {}),
    }  # fmt: skip
    path = root / model / "tuning" / f"{tuning.target_key(target)}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))
    return path


def test_tuning_records_set_instances_batching_and_memory(tmp_path: Path) -> None:
    root = copy_repository(tmp_path / "model_repository")
    write_record(
        root, "efficientnet_lite0", "L4",
        {"gpu_memory_bytes": 700 << 20,
         "dynamic_batching": {"preferred_batch_size": [16, 32], "max_queue_delay_microseconds": 200}},
    )  # fmt: skip
    demands = memory.fleet(Repository(root))
    plan = pack.pack(demands, spec.parse("1xL4"), "tuned")
    p = plan.placement("efficientnet_lite0")
    assert [(g.gpu, g.count) for g in p.groups] == [(0, 3)] and "tuned on L4" in p.instances_source
    assert (p.preferred_batch_size, p.max_queue_delay_microseconds) == ((16, 32), 200)
    slot = next(s for s in plan.gpus[0].slots if s.model == "efficientnet_lite0")
    assert slot.parts[-1].bytes == 3 * (700 << 20) and "measured" in slot.parts[-1].source
    # On another GPU kind the record does not apply: the config's count.
    other = pack.pack(demands, spec.parse("1xT4"), "t4").placement("efficientnet_lite0")
    [group] = parse_config(root / "efficientnet_lite0" / "config.pbtxt").instance_group
    assert [g.count for g in other.groups] == [group.count] != [3]
    # A target rate: 4000/s over 2 GPUs at 800/s per instance = 3 instances each (ceil 2.5).
    write_record(root, "efficientnet_lite0", "A100-40GB")
    demands = memory.fleet(Repository(root))
    busy = pack.pack(demands, spec.parse("2xA100-40GB"), "rps", rps={"efficientnet_lite0": 4000})
    assert [(g.gpu, g.count) for g in busy.placement("efficientnet_lite0").groups] == [(0, 3), (1, 3)]
    with pytest.raises(ValueError, match="no throughput recorded for L40S"):
        pack.pack(demands, spec.parse("1xL40S"), "x", rps={"efficientnet_lite0": 10})


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"format": 2}, "format must be 1"),
        ({"model": "minilm_l6"}, "the folder is"),
        ({"target": "T4"}, "belongs in t4.json"),
        ({"instances": 0}, "instances must be >= 1"),
        ({"throughput_per_instance": "fast"}, "throughput_per_instance"),
        ({"gpu_memory_bytes": -1}, "gpu_memory_bytes"),
    ],
)
def test_bad_tuning_records_are_refused(tmp_path: Path, change: dict, says: str) -> None:
    path = write_record(tmp_path, "efficientnet_lite0", "L4", change)
    with pytest.raises(tuning.TuningError, match=says):
        tuning.records(path.parent.parent)
