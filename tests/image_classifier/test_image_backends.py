"""The GPU image can load every GPU config: each names a backend the image has natively or one of the
project's Python-based backends, which the Dockerfile installs where the image has no native library."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tritonclient.grpc import model_config_pb2 as mc

from tritonfleet.artifacts import REPOSITORY
from tritonfleet.repository import Repository
from tritonfleet.server import BACKENDS_SOURCE

DOCKERFILE = Path(__file__).resolve().parents[2] / "docker" / "Dockerfile"
# The trtllm-python-py3 image (docker/image.env) has python and tensorrtllm; the Dockerfile compiles tensorrt.
IMAGE_BACKENDS = {"python", "tensorrtllm", "tensorrt"}
PLATFORMS = {"onnxruntime_onnx": "onnxruntime", "tensorrt_plan": "tensorrt"}
PYTHON_BASED = {d.name for d in BACKENDS_SOURCE.iterdir() if (d / "model.py").is_file()}


def test_every_gpu_config_names_a_backend_the_image_has() -> None:
    for name, config in Repository(REPOSITORY).configs("gpu"):
        if config.platform == "ensemble":
            continue
        backend = config.backend or PLATFORMS[config.platform]
        assert backend in IMAGE_BACKENDS | PYTHON_BASED, (name, backend)
        if backend in PYTHON_BASED - IMAGE_BACKENDS:  # onnxruntime's CPU provider only
            kinds = {g.kind for g in config.instance_group}
            assert kinds == {mc.ModelInstanceGroup.KIND_CPU}, (name, kinds)


def _install_step() -> str:
    """The Dockerfile's RUN step that installs the Python-based backends, as one shell command."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    (step,) = re.findall(r"^RUN (backends=.*done)$", text, re.MULTILINE)
    return step


def test_dockerfile_installs_python_based_backends_where_no_native_one_is(tmp_path: Path) -> None:
    backends = tmp_path / "backends"
    (backends / "tensorrt").mkdir(parents=True)
    (backends / "tensorrt" / "libtriton_tensorrt.so").write_bytes(b"")
    step = (
        _install_step()
        .replace("/opt/tritonserver/backends", str(backends))
        .replace("python3 ", f"{sys.executable} ")
    )
    subprocess.run(["bash", "-euo", "pipefail", "-c", step], check=True)
    for name in PYTHON_BASED:
        installed = backends / name / "model.py"
        assert installed.read_bytes() == (BACKENDS_SOURCE / name / "model.py").read_bytes()
    # A backend the image has natively keeps its library and gets no model.py.
    (backends / "onnxruntime" / "model.py").unlink()
    (backends / "onnxruntime" / "libtriton_onnxruntime.so").write_bytes(b"")
    subprocess.run(["bash", "-euo", "pipefail", "-c", step], check=True)
    assert not (backends / "onnxruntime" / "model.py").exists()
