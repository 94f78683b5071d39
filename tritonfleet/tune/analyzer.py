"""Triton Model Analyzer: its own venv, the profile config for one model, and what it measured.

Model Analyzer (PyPI ``triton-model-analyzer``) pins a tritonclient whose wheel has no perf_analyzer, so it
lives in a venv of its own under the build cache and drives the project venv's perf_analyzer (tritonclient
2.51.0, the server's release; it links libcudart from the nvidia-cuda-runtime wheel even on CPU). It runs
in remote mode against a server started with explicit model control: for each variant of the search it
asks the server to load the model with that config (the load API's config override), then perf_analyzer
measures it at each concurrency. The search is Model Analyzer's manual (brute) one over the instance
counts, the dynamic batcher's queue delays (where the model has a batcher) and the client batch sizes
given, the model's ``max_batch_size`` kept (it is the interface).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from tritonfleet.artifacts import cache_root

PACKAGE = "triton-model-analyzer==1.58.0"
VERSION = PACKAGE.split("==")[1]
BASE_PYTHON = Path("/usr/bin/python3.11")
RESULTS_CSV = "metrics-model-inference.csv"


@dataclass(frozen=True)
class Search:
    """What the search varies: instance counts, queue delays (µs; only where the model has a dynamic
    batcher), client batch sizes (perf_analyzer -b), concurrencies; and each measurement's window."""

    instances: tuple[int, ...] = (1, 2)
    queue_delays_us: tuple[int, ...] = (0, 1000)
    batch_sizes: tuple[int, ...] = (1,)
    concurrency: tuple[int, ...] = (1, 4)
    measurement_ms: int = 3000


@dataclass(frozen=True)
class Measurement:
    """One row of Model Analyzer's results: a variant's config at one batch size and concurrency."""

    variant: str
    batch_size: int
    concurrency: int
    throughput: float  # inferences/s
    latency_p99_ms: float
    instances: int
    max_queue_delay_us: int | None
    preferred_batch_size: tuple[int, ...] | None


def venv(root: Path | None = None) -> Path:
    """The Model Analyzer venv, created on first use (about a minute); its ``model-analyzer`` script."""
    path = root or cache_root() / "model-analyzer-venv"
    script = path / "bin" / "model-analyzer"
    stamp = path / "tritonfleet-pins.txt"
    if stamp.is_file() and stamp.read_text() == PACKAGE and script.is_file():
        return script
    shutil.rmtree(path, ignore_errors=True)
    base = str(BASE_PYTHON) if BASE_PYTHON.exists() else sys.executable
    log = path.with_suffix(".log")
    with log.open("w") as out:
        for cmd in (
            [base, "-m", "venv", str(path)],
            [str(path / "bin" / "python"), "-m", "pip", "install", PACKAGE],
        ):
            if subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, check=False).returncode:
                raise RuntimeError(f"creating the Model Analyzer venv failed: see {log}")
    stamp.write_text(PACKAGE)
    return script


def profile_config(
    model: str,
    config: mc.ModelConfig,
    *,
    view: Path,
    workdir: Path,
    grpc_url: str,
    http_url: str,
    metrics_url: str,
    search: Search,
    input_data: Path | None,
    cpu_only: bool,
) -> dict[str, Any]:
    """Model Analyzer's ``profile`` config for ``model`` (whose served config is ``config``)."""
    kind = "KIND_CPU" if cpu_only else "KIND_GPU"
    parameters: dict[str, Any] = {"instance_group": [{"kind": kind, "count": list(search.instances)}]}
    if config.HasField("dynamic_batching"):
        parameters["dynamic_batching"] = {"max_queue_delay_microseconds": list(search.queue_delays_us)}
    flags: dict[str, Any] = {
        "measurement-interval": search.measurement_ms,
        "stability-percentage": 50,  # two shared cores are noisy (tritonfleet/tools/bench/perf_analyzer.py)
        "max-trials": 6,
    }
    if input_data is not None:
        flags["input-data"] = str(input_data)
    return {
        "model_repository": str(view),
        "triton_launch_mode": "remote",
        "triton_grpc_endpoint": grpc_url,
        "triton_http_endpoint": http_url,
        "triton_metrics_url": metrics_url,
        "client_protocol": "grpc",
        "perf_analyzer_path": _perf_analyzer().binary(),
        "perf_analyzer_flags": flags,
        "output_model_repository_path": str(workdir / "variants"),
        "override_output_model_repository": True,
        "export_path": str(workdir / "export"),
        "checkpoint_directory": str(workdir / "checkpoints"),
        "run_config_search_disable": True,  # the manual search: every combination listed below
        "skip_summary_reports": False,  # the summary step is what exports the results (RESULTS_CSV)
        "dcgm_disable": cpu_only,
        "profile_models": {
            model: {
                "cpu_only": cpu_only,
                "model_config_parameters": parameters,
                "parameters": {
                    "batch_sizes": list(search.batch_sizes),
                    "concurrency": list(search.concurrency),
                },
            }
        },
    }


def command(script: Path, config_file: Path) -> list[str]:
    return [str(script), "profile", "-f", str(config_file)]


# Model Analyzer's own parsing of a profile config (its CLI and ConfigCommandProfile, which reject an unknown
# key or a value of the wrong type), run in its venv; prints what it understood, as JSON.
_CHECK = """
import json, sys
from model_analyzer.cli.cli import CLI
from model_analyzer.config.input.config_command_profile import ConfigCommandProfile
cli = CLI()
cli.add_subcommand(cmd="profile", help="", config=ConfigCommandProfile())
_, config = cli.parse(["profile", "-f", sys.argv[1]])
print(json.dumps({
    "triton_launch_mode": config.triton_launch_mode,
    "run_config_search_disable": config.run_config_search_disable,
    "profile_models": {
        m.model_name(): {
            "cpu_only": m.cpu_only(),
            "model_config_parameters": m.model_config_parameters(),
            "parameters": m.parameters(),
            "perf_analyzer_flags": m.perf_analyzer_flags(),
        }
        for m in config.profile_models
    },
}))
"""


def write_config(config: dict[str, Any], workdir: Path) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "profile.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def check_config(script: Path, config_file: Path) -> dict[str, Any]:
    """What Model Analyzer's own parser makes of ``config_file`` (raises with its message when it refuses
    the file): the launch mode, the search switch and, per profiled model, its search and flags."""
    python = script.parent / "python"
    done = subprocess.run(
        [str(python), "-c", _CHECK, str(config_file)], capture_output=True, text=True, check=False
    )
    if done.returncode:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-8:])
        raise ValueError(f"Model Analyzer refuses {config_file}:\n{tail}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _perf_analyzer() -> Any:
    """tritonclient's perf_analyzer as the benchmarks run it (the tools extra: imported when tuning runs)."""
    from tritonfleet.tools.bench import perf_analyzer

    return perf_analyzer


def environment() -> dict[str, str]:
    """perf_analyzer's (libcudart) with the project venv first on PATH."""
    env = _perf_analyzer().environment()
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def run(script: Path, config: dict[str, Any], workdir: Path, log: Path) -> None:
    """Write ``config``, have Model Analyzer check it, and run its profile; raises with the log's tail on
    failure."""
    config_file = write_config(config, workdir)
    check_config(script, config_file)
    with log.open("w") as out:
        code = subprocess.run(
            command(script, config_file), stdout=out, stderr=subprocess.STDOUT, env=environment(), check=False
        ).returncode
    if code:
        tail = "\n".join(log.read_text(errors="replace").strip().splitlines()[-25:])
        raise RuntimeError(f"model-analyzer profile failed (exit {code}; log {log}):\n{tail}")


def _number(row: dict[str, str], *names: str) -> float:
    for name in names:
        if name in row and row[name].strip():
            return float(row[name])
    raise KeyError(f"none of {names} in Model Analyzer's results: {sorted(row)}")


def instance_count(cell: str) -> int | None:
    """The instances in Model Analyzer's "Instance Group" cell (``2:CPU``, ``1:GPU + 1:CPU``); None: empty."""
    counts = [int(part.split(":")[0]) for part in cell.split("+") if part.strip()]
    return sum(counts) if counts else None


def variant_config(workdir: Path, variant: str) -> mc.ModelConfig:
    path = workdir / "variants" / variant / "config.pbtxt"
    return text_format.Parse(path.read_text(), mc.ModelConfig())


def measurements(workdir: Path) -> list[Measurement]:
    """Every row of Model Analyzer's inference results, with each variant's settings read from the config
    it loaded (``variants/<variant>/config.pbtxt``)."""
    path = workdir / "export" / "results" / RESULTS_CSV
    if not path.is_file():
        log = workdir / "model-analyzer.log"
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:]) if log.is_file() else ""
        raise RuntimeError(f"Model Analyzer wrote no {path} (log {log}):\n{tail}")
    found = []
    with path.open() as f:
        for row in csv.DictReader(f):
            variant = row.get("Model Config Path", "").strip()
            if not variant:
                continue
            config = variant_config(workdir, variant)
            batching = config.dynamic_batching if config.HasField("dynamic_batching") else None
            instances = sum(g.count or 1 for g in config.instance_group) or 1
            listed = instance_count(row.get("Instance Group", ""))
            if listed is not None and listed != instances:
                raise RuntimeError(
                    f"{path}: {variant} has {listed} instance(s) in the results, {instances} in its config"
                )
            found.append(
                Measurement(
                    variant=variant,
                    batch_size=int(_number(row, "Batch", "Batch Size")),
                    concurrency=int(_number(row, "Concurrency")),
                    throughput=_number(row, "Throughput (infer/sec)"),
                    latency_p99_ms=_number(row, "p99 Latency (ms)"),
                    instances=instances,
                    max_queue_delay_us=batching.max_queue_delay_microseconds if batching else None,
                    preferred_batch_size=tuple(batching.preferred_batch_size) or None if batching else None,
                )
            )
    return found


def choose(found: list[Measurement], latency_budget_ms: float | None = None) -> Measurement:
    """The measurement with the most throughput (within the latency budget where one is given, when any
    is); on a tie, fewer instances, then the shorter queue delay."""
    if not found:
        raise ValueError("Model Analyzer measured nothing")
    within = [m for m in found if latency_budget_ms is None or m.latency_p99_ms <= latency_budget_ms]
    return max(within or found, key=lambda m: (m.throughput, -m.instances, -(m.max_queue_delay_us or 0)))
