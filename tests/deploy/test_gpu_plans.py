"""On a GPU: every model the rule gives TensorRT builds a plan that agrees with onnxruntime on the model's
real inputs (fp16, and int8 calibrated on other real inputs). Skipped without TensorRT and a GPU."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from tests import build_scripts
from tritonfleet.artifacts import REPOSITORY
from tritonfleet.deploy import calibration

plan = build_scripts.load("build/tensorrt_plan.py")
pytestmark = pytest.mark.gpu


def model_copy(tmp_path: Path, model: str) -> Path:
    onnx = REPOSITORY / model / "1" / "model.onnx"
    if not onnx.is_file():
        pytest.skip(f"{onnx} is not exported yet (fleet build)")
    dest = tmp_path / model
    (dest / "1").mkdir(parents=True)
    shutil.copy(REPOSITORY / model / "config.pbtxt", dest / "config.pbtxt")
    (dest / "1" / "model.onnx").symlink_to(onnx)
    return dest


@pytest.mark.parametrize("model", sorted(calibration.producers()))
@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_plan_agrees_with_onnxruntime_on_real_inputs(tmp_path: Path, model: str, precision: str) -> None:
    pytest.importorskip("tensorrt")
    pytest.importorskip("torch")
    folder = model_copy(tmp_path, model)
    samples = calibration.producers()[model](REPOSITORY, 48)
    np.savez(tmp_path / "calib.npz", **{k: v[:32] for k, v in samples.items()})
    np.savez(tmp_path / "check.npz", **{k: v[32:] for k, v in samples.items()})  # inputs not calibrated on
    args = ["--model-dir", str(folder), "--check", str(tmp_path / "check.npz")]
    if precision == "int8":
        args += ["--int8", "--calibration", str(tmp_path / "calib.npz")]
    assert plan.main(args) == 0  # built, its tensors match the config, its outputs match onnxruntime
    assert (folder / "1" / "model.plan").stat().st_size > 0
    assert (precision == "int8") == (folder / "1" / "calibration.cache").is_file()
