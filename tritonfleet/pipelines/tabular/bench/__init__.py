"""``fleet bench tabular``: Triton against FastAPI, BentoML and LitServe on the same ONNX files.

Each system serves the model's built ``model.onnx`` with onnxruntime (intra-op threads 1, as the Triton
config), one dataset row per request, and answers with the row's label and class probabilities:

- ``triton-grpc``: tritonserver with the repository's config (dynamic batching), perf_analyzer over gRPC.
- ``triton-http``: the same server, KServe v2 JSON over HTTP, driven by wrk like every peer.
- ``fastapi-1`` and ``fastapi-N``: a plain FastAPI app
  (tritonfleet/pipelines/tabular/bench/peers/fastapi_app.py) under uvicorn (uvloop, httptools, no access
  log) with 1 worker and with as many workers as cores; no batching.
- ``bentoml``: BentoML 1.4 with a batchable API (adaptive batching).
- ``litserve``: LitServe with batching on.

The peers run in venvs of their own under ``~/.cache/tritonfleet/bench-peers`` (created on first use, pinned,
with this venv's onnxruntime version); wrk comes from Debian (installed on first use). One system runs at a
time: started, checked (three rows answered as onnxruntime in this process answers them), warmed up, measured
at each concurrency, stopped. Rounds repeat that in a rotated order, and the report gives the median and the
spread of the rounds: the machine is noisy. Writes reports/tabular_peers.{json,md,png}.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import os
import signal
import statistics
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from tritonfleet import artifacts
from tritonfleet.clients import tabular as client
from tritonfleet.pipelines import pinned
from tritonfleet.pipelines.tabular.bench.tuning import (
    STAGES,
    dataset_rows,
    measure_grpc,
    served,
    server_stats,
    write_input_data,
)
from tritonfleet.repository import Repository
from tritonfleet.server import TritonServer, free_port
from tritonfleet.tools.bench import report
from tritonfleet.tools.bench import wrk as wrk_tool

PEERS_DIR = Path(__file__).parent / "peers"
CORES = os.cpu_count() or 1
MAX_BATCH = 32  # the peers' batch limit: the highest concurrency measured
SYSTEMS = ("triton-grpc", "triton-http", "fastapi-1", f"fastapi-{CORES}", "bentoml", "litserve")
UVICORN = pinned("uvicorn[standard]")  # the project's uvicorn, which the OpenAI app runs on
PEER_PINS = {
    "fastapi": ("fastapi==0.163.2", UVICORN),
    "bentoml": ("bentoml==1.4.40",),
    "litserve": ("litserve==0.2.19", UVICORN),
}
# Each peer's settings (its app's environment), chosen by measurement: docs/tabular.md.
PEER_SETTINGS = {
    "bentoml": {"PEER_WORKERS": "1", "PEER_MAX_BATCH": str(MAX_BATCH), "PEER_MAX_LATENCY_MS": "60000"},
    "litserve": {
        "PEER_WORKERS": "1",
        "PEER_API_SERVERS": "1",
        "PEER_MAX_BATCH": str(MAX_BATCH),
        "PEER_BATCH_TIMEOUT_MS": "1",
        "PEER_FAST_QUEUE": "0",
    },
}
TARGETS = {"vs_fastapi_best": 2.5, "vs_fastapi_single": 5.0, "p99_fraction_of_fastapi": 0.2}


@dataclass
class Running:
    """A system serving one model: where to send requests and how, and how to stop it."""

    system: str
    url: str  # http://127.0.0.1:PORT/PATH (HTTP systems) or the gRPC address
    body: Callable[[np.ndarray], Any]  # one row -> the JSON body of its request
    answer: Callable[[Any], tuple[int, list[float]]]  # the JSON answer -> (label, probabilities)
    setup: dict[str, Any]
    stop: Callable[[], None]
    grpc_url: str | None = None


# --- environments ---------------------------------------------------------------------------------


def peer_venv(kind: str, console: Console) -> Path:
    """The pinned venv of a peer, created on first use; returns its python."""
    pins = (*PEER_PINS[kind], f"onnxruntime=={importlib.metadata.version('onnxruntime')}")
    key = hashlib.sha256(" ".join(pins).encode()).hexdigest()[:12]
    venv = artifacts.cache_root() / "bench-peers" / f"{kind}-{key}"
    with console.status(f"the {kind} venv {venv} ({', '.join(pins)})"):
        return artifacts.pinned_venv(venv, pins, venv.parent / f"{kind}-{key}.log")


# --- systems --------------------------------------------------------------------------------------


def _wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: exited ({proc.returncode}) before it was ready; see {log}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as resp:
            if resp.status == 200:
                return
        time.sleep(0.25)
    raise RuntimeError(f"{url}: not ready after {timeout:.0f}s; see {log}")


def _stopper(proc: subprocess.Popen[bytes]) -> Callable[[], None]:
    def stop() -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    return stop


def _peer_answer(answer: Any) -> tuple[int, list[float]]:
    one = answer[0] if isinstance(answer, list) else answer  # BentoML answers a batch of one
    return int(one["label"]), [float(p) for p in one["probabilities"]]


def start_peer(system: str, model_file: Path, workdir: Path, console: Console) -> Running:
    kind = system.split("-")[0]
    python = peer_venv(kind, console)
    port = free_port()
    env = {**os.environ, "PEER_MODEL": str(model_file), "PEER_THREADS": "1", "PEER_PORT": str(port)}
    env.pop("PYTHONPATH", None)
    if kind == "fastapi":
        workers = int(system.split("-")[1])
        setup = {"workers": workers, "batching": False, "server": "uvicorn, uvloop, httptools, no access log"}
        cmd = [str(python), "-m", "uvicorn", "fastapi_app:app", "--host", "127.0.0.1", "--port", str(port)]
        cmd += ["--workers", str(workers), "--no-access-log", "--log-level", "warning"]
        cmd += ["--loop", "uvloop", "--http", "httptools"]
        health, body = "/health", (lambda row: {"features": row.tolist()})
    elif kind == "bentoml":
        env |= {"BENTOML_HOME": str(workdir / "bentoml-home"), "BENTOML_DO_NOT_TRACK": "True"}
        cmd = [str(python), "-m", "bentoml", "serve", "bentoml_service:Tabular", "--host", "127.0.0.1"]
        cmd += ["--port", str(port)]
        health, body = "/readyz", (lambda row: {"features": [row.tolist()]})
    elif kind == "litserve":
        cmd = [str(python), "litserve_app.py"]
        health, body = "/health", (lambda row: {"features": row.tolist()})
    else:
        raise ValueError(f"unknown system {system!r}")
    if kind in PEER_SETTINGS:
        env |= PEER_SETTINGS[kind]
        setup = {k.removeprefix("PEER_").lower(): v for k, v in PEER_SETTINGS[kind].items()}
        setup["batching"] = True
    log = workdir / f"{system}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=PEERS_DIR, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    stop = _stopper(proc)
    try:
        _wait_http(f"http://127.0.0.1:{port}{health}", proc, log)
    except BaseException:
        stop()
        raise
    return Running(system, f"http://127.0.0.1:{port}/predict", body, _peer_answer, setup, stop)


def start_triton(repository: Path, model: str, workdir: Path) -> Running:
    server = TritonServer.on_free_ports(repository, models=[model], log=workdir / f"triton-{model}.log")
    server.start()
    config = Repository(repository).config(model, "cpu")
    setup = {
        "instances": sum(g.count for g in config.instance_group),
        "max_queue_delay_us": config.dynamic_batching.max_queue_delay_microseconds,
        "preferred_batch_size": list(config.dynamic_batching.preferred_batch_size),
        "intra_op_threads": config.parameters["intra_op_thread_count"].string_value,
        "backend": "tritonfleet's Python-based onnxruntime backend",
    }

    def body(row: np.ndarray) -> dict[str, Any]:
        tensor = {"name": client.INPUT, "shape": [1, len(row)], "datatype": "FP32", "data": row.tolist()}
        return {"inputs": [tensor]}

    def answer(result: dict[str, Any]) -> tuple[int, list[float]]:
        outputs = {o["name"]: o["data"] for o in result["outputs"]}
        return int(outputs[client.LABEL][0]), [float(p) for p in outputs[client.PROBABILITIES]]

    url = f"http://127.0.0.1:{server.http_port}/v2/models/{model}/infer"
    return Running("triton", url, body, answer, setup, server.stop, grpc_url=server.grpc_url)


@contextlib.contextmanager
def serving(system: str, repository: Path, model: str, workdir: Path, console: Console) -> Iterator[Running]:
    model_file = repository / model / "1" / "model.onnx"
    running = (
        start_triton(repository, model, workdir)
        if system == "triton"
        else start_peer(system, model_file, workdir, console)
    )
    try:
        yield running
    finally:
        running.stop()


def check_answers(running: Running, rows: np.ndarray, expected: tuple[np.ndarray, np.ndarray]) -> None:
    """Three rows answered as onnxruntime in this process answers them: the systems do the same work."""
    for i in (0, len(rows) // 2, len(rows) - 1):
        request = urllib.request.Request(
            running.url, json.dumps(running.body(rows[i])).encode(), {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as resp:
            label, probabilities = running.answer(json.loads(resp.read()))
        if label != expected[0][i] or not np.allclose(probabilities, expected[1][i], atol=1e-5):
            raise RuntimeError(
                f"{running.system}: row {i} answered {label} {probabilities}, expected {expected[0][i]}"
            )


# --- load -----------------------------------------------------------------------------------------


def measure_wrk(
    wrk: str, running: Running, bodies: Path, concurrency: int, seconds: float
) -> dict[str, float]:
    """wrk at one concurrency (connections): req/s, p50/p99 ms. Any error fails the bench."""
    threads = min(concurrency, CORES)
    cmd = [wrk, f"-t{threads}", f"-c{concurrency}", f"-d{max(1, round(seconds))}s", "--timeout", "10s"]
    cmd += ["-s", str(PEERS_DIR / "rows.lua"), running.url, "--", str(bodies)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("WRK_JSON ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed (exit {proc.returncode}): {proc.stdout[-800:]} {proc.stderr[-800:]}")
    out = json.loads(lines[-1].removeprefix("WRK_JSON "))
    errors = sum(out["errors"].values())
    if errors:
        raise RuntimeError(
            f"{running.system}: {errors} of {out['requests']} requests failed under load: {out['errors']}"
        )
    return {
        "requests_per_s": out["requests"] / (out["duration_us"] / 1e6),
        "p50_ms": out["latency_us"]["p50"] / 1e3,
        "p99_ms": out["latency_us"]["p99"] / 1e3,
        "requests": out["requests"],
    }


@dataclass
class Results:
    """points[model][system][concurrency]: one measurement per round."""

    points: dict[str, dict[str, dict[int, list[dict[str, float]]]]] = field(default_factory=dict)
    setups: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add(self, model: str, system: str, c: int, point: dict[str, float]) -> None:
        self.points.setdefault(model, {}).setdefault(system, {}).setdefault(c, []).append(point)

    def median(self, model: str, system: str, c: int, key: str) -> float:
        return statistics.median(p[key] for p in self.points[model][system][c])


def run_peer_bench(
    repository: Path,
    *,
    models: list[str],
    systems: list[str],
    concurrency: list[int],
    rounds: int,
    seconds: float,
    output: Path,
    console: Console,
) -> Path:
    wrk = wrk_tool.binary(console) if any(s != "triton-grpc" for s in systems) else ""
    for kind in {s.split("-")[0] for s in systems} - {"triton"}:
        peer_venv(kind, console)
    # Triton's two protocols are measured on one server start.
    starts = list(dict.fromkeys("triton" if s.startswith("triton") else s for s in systems))
    results = Results()
    output.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for model in models:
            rows = dataset_rows(model)
            expected = _reference(repository / model / "1" / "model.onnx", rows)
            grpc_data = write_input_data(rows, workdir / f"{model}-grpc.json")
            for r in range(rounds):
                for start in starts[r % len(starts) :] + starts[: r % len(starts)]:
                    label = f"round {r + 1}/{rounds}: {model}"
                    with contextlib.ExitStack() as stack:
                        with console.status(f"{label}: starting {start}"):
                            running = stack.enter_context(serving(start, repository, model, workdir, console))
                        check_answers(running, rows, expected)
                        for system in (s for s in systems if s.startswith(start)):
                            results.setups[system] = running.setup
                            bodies = workdir / f"{model}-{system}.txt"
                            bodies.write_text("".join(json.dumps(running.body(row)) + "\n" for row in rows))
                            measure = _measurer(system, running, wrk, bodies, grpc_data, model, workdir)
                            measure(max(concurrency), min(2.0, seconds))  # warm-up (BentoML fits its batcher)
                            for c in concurrency:
                                load = os.getloadavg()[0]
                                with console.status(f"{label}: {system} at concurrency {c}"):
                                    point = measure(c, seconds)
                                results.add(model, system, c, {**point, "loadavg_1m": load})
                                console.print(
                                    f"  {model} {system:12} c={c:<3} {point['requests_per_s']:8.0f} req/s  "
                                    f"p50 {point['p50_ms']:6.2f} ms  p99 {point['p99_ms']:6.2f} ms"
                                )
    return _write(output, results, models, systems, concurrency, rounds, seconds)


def _measurer(
    system: str, running: Running, wrk: str, bodies: Path, grpc_data: Path, model: str, workdir: Path
) -> Callable[[int, float], dict[str, float]]:
    if system == "triton-grpc":
        assert running.grpc_url is not None

        def grpc(c: int, seconds: float) -> dict[str, float]:
            # Three windows of a third each (stability is loosened: the spread is the rounds').
            return measure_grpc(running.grpc_url, model, c, grpc_data, workdir, int(seconds * 1000 / 3))

        return grpc
    if system == "triton-http":
        assert running.grpc_url is not None
        grpc_url = running.grpc_url

        def http(c: int, seconds: float) -> dict[str, float]:
            before = server_stats(grpc_url, model)
            point = measure_wrk(wrk, running, bodies, c, seconds)
            return {**point, **served(before, server_stats(grpc_url, model), model)}

        return http
    return lambda c, seconds: measure_wrk(wrk, running, bodies, c, seconds)


def _reference(model_file: Path, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
    labels, probabilities = session.run([client.LABEL, client.PROBABILITIES], {client.INPUT: rows})
    return labels.reshape(-1), probabilities


# --- report ---------------------------------------------------------------------------------------


def evaluate(
    results: Results, model: str, systems: list[str], concurrency: list[int]
) -> list[dict[str, Any]]:
    """The issue's targets on the medians: Triton over HTTP (the peers' load generator) against the peers."""
    checks: list[dict[str, Any]] = []
    triton = "triton-http"
    if triton not in systems:
        return checks
    top = max(concurrency)

    def rps(system: str, c: int) -> float:
        return results.median(model, system, c, "requests_per_s")

    def add(name: str, value: float, goal: str, ok: bool) -> None:
        checks.append({"target": name, "value": round(value, 3), "goal": goal, "met": ok})

    fastapis = [s for s in systems if s.startswith("fastapi")]
    if fastapis:
        best = max(fastapis, key=lambda s: rps(s, top))
        ratio = rps(triton, top) / rps(best, top)
        add(
            f"Triton / FastAPI's best setup ({best}) at c={top}",
            ratio,
            f">= {TARGETS['vs_fastapi_best']}",
            ratio >= TARGETS["vs_fastapi_best"],
        )
        if "fastapi-1" in fastapis:
            ratio = rps(triton, top) / rps("fastapi-1", top)
            add(
                f"Triton / FastAPI 1 worker at c={top}",
                ratio,
                f">= {TARGETS['vs_fastapi_single']}",
                ratio >= TARGETS["vs_fastapi_single"],
            )
        fraction = results.median(model, triton, top, "p99_ms") / results.median(model, best, top, "p99_ms")
        add(
            f"Triton p99 / {best} p99 at c={top}",
            fraction,
            f"<= {TARGETS['p99_fraction_of_fastapi']}",
            fraction <= TARGETS["p99_fraction_of_fastapi"],
        )
    for peer in (s for s in systems if not s.startswith("triton")):
        for c in concurrency:
            ratio = rps(triton, c) / rps(peer, c)
            add(f"Triton / {peer} at c={c}", ratio, "> 1", ratio > 1)
    return checks  # fmt: skip


def _write(
    output: Path,
    results: Results,
    models: list[str],
    systems: list[str],
    concurrency: list[int],
    rounds: int,
    seconds: float,
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = report.machine()
    targets = {model: evaluate(results, model, systems, concurrency) for model in models}
    data = {
        "machine": m,
        "method": {
            "rows_per_request": 1,
            "rounds": rounds,
            "seconds_per_point": seconds,
            "http_load": "wrk (tritonfleet/pipelines/tabular/bench/peers/rows.lua), "
            "threads = min(concurrency, cores)",
            "grpc_load": "perf_analyzer",
            "versions": {k: list(v) for k, v in PEER_PINS.items()},
            "onnxruntime": importlib.metadata.version("onnxruntime"),
        },
        "setups": results.setups,
        "points": {
            model: {
                system: {str(c): pts for c, pts in levels.items()} for system, levels in by_system.items()
            }
            for model, by_system in results.points.items()
        },
        "targets": targets,
    }
    md = [
        f"# tabular: Triton vs FastAPI, BentoML, LitServe\n\n{m['date']} on {m['cpu']} ({m['cores']} cores), "
        f"one dataset row per request, {rounds} round(s) of {seconds:g} s per point, one system running at a "
        "time; medians of the rounds, [min-max] of req/s. HTTP load: wrk; gRPC: perf_analyzer.\n"
    ]
    for system, setup in results.setups.items():
        md.append(f"- `{system}`: " + ", ".join(f"{k} {v}" for k, v in setup.items()))
    headers = ["system", "concurrency", "req/s", "p50 ms", "p99 ms", "Triton HTTP / this", "batch run"]
    headers.append("server us per request: queue, input, infer, output")
    fig, axes = plt.subplots(2, len(models), figsize=(6 * len(models), 8), squeeze=False)
    for col, model in enumerate(models):
        rows = []
        for system in systems:
            for c in concurrency:
                pts = results.points[model][system][c]
                rps = [p["requests_per_s"] for p in pts]
                vs = (
                    results.median(model, "triton-http", c, "requests_per_s") / statistics.median(rps)
                    if "triton-http" in systems
                    else float("nan")
                )
                rows.append(
                    [
                        system,
                        c,
                        f"{statistics.median(rps):.0f} [{min(rps):.0f}-{max(rps):.0f}]",
                        results.median(model, system, c, "p50_ms"),
                        results.median(model, system, c, "p99_ms"),
                        f"{vs:.2f}x",
                        f"{statistics.median(p['avg_batch'] for p in pts):.1f}"
                        if "avg_batch" in pts[0]
                        else "",
                        ", ".join(
                            f"{statistics.median(p[f'server_{st}_us'] for p in pts):.0f}" for st in STAGES
                        )
                        if "avg_batch" in pts[0]
                        else "",
                    ]
                )
        loads = ", ".join(
            f"{system} {statistics.median(p['loadavg_1m'] for pts in levels.values() for p in pts):.1f}"
            for system, levels in results.points[model].items()
        )
        md.append(
            f"\n## {model}\n\nThe machine's 1-minute load average as each point started, median per "
            f"system ({CORES} cores): {loads}.\n\n" + report.markdown_table(headers, rows)
        )
        if targets[model]:
            md.append(
                "\nTargets:\n\n"
                + report.markdown_table(
                    ["target", "measured", "goal", "met"],
                    [
                        [t["target"], t["value"], t["goal"], "yes" if t["met"] else "**no**"]
                        for t in targets[model]
                    ],
                )
            )
        top, bottom = axes[0][col], axes[1][col]
        for system in systems:
            med = [results.median(model, system, c, "requests_per_s") for c in concurrency]
            lo = [min(p["requests_per_s"] for p in results.points[model][system][c]) for c in concurrency]
            hi = [max(p["requests_per_s"] for p in results.points[model][system][c]) for c in concurrency]
            top.errorbar(concurrency, med, yerr=[np.subtract(med, lo), np.subtract(hi, med)], marker="o",
                         capsize=3, label=system)  # fmt: skip
            bottom.plot(concurrency, [results.median(model, system, c, "p99_ms") for c in concurrency], "o-",
                        label=system)  # fmt: skip
        top.set(xscale="log", xlabel="concurrency", ylabel="requests / s", title=f"{model}: throughput")
        bottom.set(
            xscale="log", yscale="log", xlabel="concurrency", ylabel="p99 ms", title=f"{model}: p99 latency"
        )
        for ax in (top, bottom):
            ax.set_xticks(concurrency, [str(c) for c in concurrency])
            ax.legend(fontsize=8)
    fig.suptitle(f"tabular serving, one row per request, {m['cores']} CPU cores ({m['date']})")
    fig.tight_layout()
    return report.write(output, "tabular_peers", data, "\n".join(md) + "\n", fig)
