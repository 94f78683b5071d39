"""Run Triton's ``perf_analyzer`` (shipped in the tritonclient 2.51.0 wheel) and read its CSV."""

from __future__ import annotations

import base64
import csv
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class PerfPoint:
    """One concurrency level as perf_analyzer measured it (latencies in milliseconds)."""

    concurrency: int
    throughput: float  # inferences per second
    p50_ms: float
    p90_ms: float
    p99_ms: float


def write_input_data(requests: list[dict[str, np.ndarray]], path: Path) -> Path:
    """perf_analyzer ``--input-data`` JSON: one entry per request, each tensor its raw bytes in base64 with
    its shape (BYTES tensors in Triton's serialized form: each element after its uint32 length)."""
    from tritonclient.utils import serialize_byte_tensor

    def encode(array: np.ndarray) -> dict[str, object]:
        raw = serialize_byte_tensor(array).item() if array.dtype == np.object_ else array.tobytes()
        return {"b64": base64.b64encode(raw).decode(), "shape": list(array.shape)}

    data = [{name: encode(array) for name, array in request.items()} for request in requests]
    path.write_text(json.dumps({"data": data}))
    return path


def binary() -> str:
    found = shutil.which("perf_analyzer", path=str(Path(sys.executable).parent)) or shutil.which(
        "perf_analyzer"
    )
    if not found:
        raise RuntimeError("perf_analyzer not found: it ships in tritonclient[all]==2.51.0 (make setup)")
    return found


def environment() -> dict[str, str]:
    """perf_analyzer links libcudart.so.12 even on CPU: take it from the nvidia-cuda-runtime-cu12 wheel."""
    import nvidia.cuda_runtime

    lib = Path(next(iter(nvidia.cuda_runtime.__path__))) / "lib"
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (str(lib), env.get("LD_LIBRARY_PATH")) if p)
    return env


def command(
    model: str,
    url: str,
    concurrency: int,
    csv_path: Path,
    *,
    protocol: str = "grpc",
    input_data: Path | None = None,
    shapes: dict[str, list[int]] | None = None,
    measurement_ms: int = 5000,
    stability_percentage: int = 50,
    max_trials: int = 10,
    window_requests: int | None = None,
    extra: list[str] | None = None,
) -> list[str]:
    """The perf_analyzer command for one concurrency level. It measures until three windows agree within
    ``stability_percentage`` (50: two shared cores are noisy), at most ``max_trials`` windows.

    ``window_requests`` switches to count windows: each window lasts until that many requests completed, so
    a stall on a loaded machine lengthens a window instead of leaving it empty (an empty window is never
    stable, whatever the percentage)."""
    cmd = [
        binary(),
        "-m", model,
        "-u", url,
        "-i", protocol,
        "--concurrency-range", f"{concurrency}:{concurrency}",
        "--measurement-interval", str(measurement_ms),
        "--stability-percentage", str(stability_percentage),
        "--max-trials", str(max_trials),
        "--percentile", "99",
        "-f", str(csv_path),
    ]  # fmt: skip
    if window_requests is not None:
        cmd += ["--measurement-mode", "count_windows", "--measurement-request-count", str(window_requests)]
    if input_data is not None:
        cmd += ["--input-data", str(input_data)]
    for name, shape in (shapes or {}).items():
        cmd += ["--shape", f"{name}:{','.join(map(str, shape))}"]
    return cmd + (extra or [])


def run(cmd: list[str], csv_path: Path, concurrency: int) -> PerfPoint:
    proc = subprocess.run(cmd, env=environment(), capture_output=True, text=True)
    if proc.returncode != 0 or not csv_path.is_file():
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-20:])
        raise RuntimeError(f"perf_analyzer failed (exit {proc.returncode}):\n{tail}")
    return parse_csv(csv_path, concurrency)


def parse_csv(path: Path, concurrency: int) -> PerfPoint:
    with path.open() as f:
        rows = [r for r in csv.DictReader(f) if r.get("Concurrency", "").strip() == str(concurrency)]
    if not rows:
        raise RuntimeError(f"no row for concurrency {concurrency} in {path}")
    row = rows[-1]
    us = 1e-3
    return PerfPoint(
        concurrency=concurrency,
        throughput=float(row["Inferences/Second"]),
        p50_ms=float(row["p50 latency"]) * us,
        p90_ms=float(row["p90 latency"]) * us,
        p99_ms=float(row["p99 latency"]) * us,
    )
