"""scripts/gpu_check.sh: the prepared first run on a GPU machine parses, and checks what the issue asks."""

from __future__ import annotations

import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "gpu_check.sh"


def test_gpu_check_parses_and_covers_each_step() -> None:
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True).returncode == 0
    text = SCRIPT.read_text()
    for step in ("nvidia-smi", "make image", "--model-config-name=1xl4", "TRITONFLEET_CHECK_PLANS=1",
                 "pipeline.probe(fleet)", "--measurement-ms 30000",
                 "tune efficientnet_lite0 --target 1xl4 --gpu L4", 'echo "CHECK $1: $2 $3"'):  # fmt: skip
        assert step in text, step
