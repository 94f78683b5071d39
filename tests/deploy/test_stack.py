"""The patched stack: one pin of the GPU image, the versions that follow from it, which ONNX models TensorRT
serves, the flags of every generated build command, and the real inputs int8 calibration is fed."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import numpy as np
import pytest
from tritonclient.grpc import model_config_pb2 as mc

from tests import build_scripts
from tritonfleet import pipelines
from tritonfleet.artifacts import REPOSITORY
from tritonfleet.deploy import calibration, flags, image, tensorrt
from tritonfleet.repository import Repository

ROOT = Path(__file__).resolve().parents[2]
plan = build_scripts.load("build/tensorrt_plan.py")
engine = build_scripts.load("build/llm/trtllm_engine.py")
PIN = image.load()


def test_the_pin_is_release_26_07_or_later_with_the_engine_build() -> None:
    assert PIN.tag == "nvcr.io/nvidia/tritonserver:26.07-trtllm-python-py3"
    assert tuple(map(int, PIN.release.split("."))) >= (26, 7)
    assert PIN.trtllm_version == "1.2.1"  # the last TensorRT-LLM line with trtllm-build (docs/security.md)
    assert PIN.reference == PIN.tag if not PIN.digest else PIN.reference.endswith(PIN.digest)


def test_a_bad_pin_is_refused(tmp_path: Path) -> None:
    text = image.IMAGE_ENV.read_text()
    for old, new, message in [
        ("IMAGE_TRITONCLIENT=2.71.0", "IMAGE_TRITONCLIENT=2.51.0", "not the server's 2.71.0"),
        ("TRITON_REPO_TAG=r26.07", "TRITON_REPO_TAG=r24.10", "is not r26.07"),
        ("TRITON_IMAGE_DIGEST=", "TRITON_IMAGE_DIGEST=sha256:abc", "not sha256"),
        ("26.07-trtllm-python-py3", "26.07-py3", "not an NGC tritonserver trtllm"),
    ]:
        env = tmp_path / "image.env"
        env.write_text(text.replace(old, new))
        with pytest.raises(image.ImageError, match=message):
            image.load(env)


def test_python_range_serves_both_targets() -> None:
    """One pyproject: the CPU target on 3.11 (the bundled 2.51 server's stub), the image on its 3.12."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    spec = project["requires-python"]
    lower, upper = re.fullmatch(r">=3\.(\d+),<3\.(\d+)", spec).groups()
    assert int(lower) <= 11 and PIN.python_minor[1] < int(upper), spec
    # The CPU target keeps its pinned client; the image installs tritonfleet --no-deps with its own.
    assert "tritonclient[grpc,http]==2.51.0" in project["dependencies"]
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    assert '"tritonclient[grpc]==${IMAGE_TRITONCLIENT}"' in dockerfile
    assert "--no-deps" in dockerfile


def test_build_scripts_read_the_one_pin() -> None:
    assert PIN.tag == engine.IMAGE and PIN.trtllm_version == engine.TRTLLM_VERSION


def test_the_rule_decides_every_onnx_model_and_the_gpu_configs_follow_it() -> None:
    pytest.importorskip("onnx")
    models = tensorrt.onnx_models(REPOSITORY)
    if not models:
        pytest.skip("no ONNX exports yet (fleet build)")
    repo = Repository(REPOSITORY)
    decided = {name: tensorrt.decide_file(path) for name, path in models.items()}
    assert {n for n, d in decided.items() if d.platform == tensorrt.ONNXRUNTIME} >= {
        n for n in ("breast_cancer_xgboost", "wine_sklearn") if n in decided
    }
    gpu_plans = {o.split("/")[0] for r in pipelines.recipes("gpu") if r.script == "build/tensorrt_plan.py"
                 for o in r.outputs}  # fmt: skip
    for name, decision in decided.items():
        config = repo.config(name, "gpu")
        assert config.platform == decision.platform, (name, decision.reason)
        assert (name in gpu_plans) == (decision.platform == tensorrt.TENSORRT), name
        if decision.platform == tensorrt.ONNXRUNTIME:
            kinds = {g.kind for g in config.instance_group}
            assert kinds == {mc.ModelInstanceGroup.KIND_CPU}, name


def test_the_rule_reads_operator_domains() -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import helper

    def graph(domain: str, op: str) -> object:
        node = helper.make_node(op, ["x"], ["y"], domain=domain)
        vi = [helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, [1]) for n in ("x", "y")]
        return helper.make_model(helper.make_graph([node], "g", [vi[0]], [vi[1]]))

    assert tensorrt.decide(graph("", "Relu")).platform == tensorrt.TENSORRT
    ml = tensorrt.decide(graph("ai.onnx.ml", "TreeEnsembleRegressor"))
    assert ml.platform == tensorrt.ONNXRUNTIME and "ai.onnx.ml.TreeEnsembleRegressor" in ml.reason


def generated_commands() -> list[list[str]]:
    """Every command the GPU build scripts generate, over their options."""
    commands = []
    for model in ("efficientnet_lite0", "minilm_l6"):
        profiles = plan.profiles_from_config(plan.load_config(REPOSITORY / model))
        for fp16, cache in ((True, None), (False, None), (True, Path("c.cache"))):
            commands.append(plan.trtexec_command(Path("m.onnx"), Path("m.plan"), profiles, fp16, 0.5, cache))
    for kwargs in (
        {},
        {"weight_only": "int8"},
        {"weight_only": "int4"},
        {"fp8": True, "calib_dataset": "d"},
        {"tp_size": 3},
        {"dtype": "bfloat16", "paged_context_fmha": False, "max_num_tokens": 4096},
    ):
        params = engine.EngineParams(checkpoint=Path("/ckpt"), **kwargs)
        commands += [engine.convert_command(params), engine.build_command(params)]  # fmt: skip
    return commands


@pytest.mark.parametrize("command", generated_commands(), ids=lambda c: " ".join(c)[:60])
def test_generated_commands_use_only_documented_flags(command: list[str]) -> None:
    table = flags.tool_of(command)
    assert table.version in (PIN.tensorrt_minor, PIN.trtllm_version), (table.tool, table.version)
    assert flags.undocumented(command) == []
    assert table.source


def test_the_flag_check_catches_removed_and_unknown_flags() -> None:
    assert flags.undocumented(["trtexec", "--onnx=m", "--workspace=4096", "--explicitBatch"]) == [
        "--workspace", "--explicitBatch",
    ]  # fmt: skip
    assert flags.undocumented(["trtllm-build", "--paged_kv_cache", "enable", "--max_output_len", "9"]) == [
        "--paged_kv_cache", "--max_output_len",
    ]  # fmt: skip
    with pytest.raises(KeyError):
        flags.tool_of(["nvcc", "--version"])


def test_every_tensorrt_model_has_real_calibration_inputs_within_its_profile() -> None:
    makers = calibration.producers()
    repo = Repository(REPOSITORY)
    trt_models = [n for n, c in repo.configs("gpu") if c.platform == tensorrt.TENSORRT]
    assert sorted(makers) == sorted(trt_models)
    for model in trt_models:
        if not (REPOSITORY / "tokenizer" / "1" / "tokenizer.json").is_file() and model == "minilm_l6":
            pytest.skip("the tokenizer is not built yet (fleet build text_embedding)")
        samples = makers[model](REPOSITORY, 16)
        profiles = plan.profiles_from_config(plan.load_config(REPOSITORY / model))
        batches = plan.CalibrationBatches(samples, profiles)  # raises when a shape is outside the profile
        assert batches.rows == 16 and sum(1 for _ in batches) == 1
        for name, array in samples.items():
            assert np.isfinite(array).all() and array.std() > 0, (model, name)  # real, varied data


def test_calibration_file_round_trips(tmp_path: Path) -> None:
    path = calibration.write("efficientnet_lite0", REPOSITORY, tmp_path / "e.npz", count=4)
    loaded = plan.load_samples(path)
    assert list(loaded) == ["input"] and loaded["input"].shape == (4, 3, 224, 224)
    with pytest.raises(KeyError, match="no real sample inputs"):
        calibration.write("wine_sklearn", REPOSITORY, tmp_path / "w.npz")
