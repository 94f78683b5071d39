"""The OpenAI API's benchmark: ``/v1`` side by side with the same prompts sent to the gRPC ensemble
directly, and (where installed) llama-cpp-python's own OpenAI server on the same GGUF.

``fleet bench openai`` drives every side with one load generator (:mod:`tritonfleet.tools.bench.loadgen`: the
openai client for the OpenAI servers, AsyncFleetClient for the ensemble; why not genai-perf there: see
that module), streaming, the same prompt of ``input_tokens`` tokens in the model's chat template (rendered
by the API, by preprocessing's ``apply_chat_template``, by llama.cpp from the GGUF), greedy, exactly
``output_tokens`` tokens (``min_tokens``).
``scripts/benchmark_inference.py`` measures one OpenAI endpoint with genai-perf 0.0.16 (chat, streaming;
its own venv, :func:`tritonfleet.pipelines.llm.bench.served.genai_perf_venv`), as users measure servers;
or with the load generator (``--loadgen``).

Each point: requests/s, request latency p50/p95/p99, time to first token, output tokens/s, and the memory
the serving processes use (peak PSS of the process tree that listens on the port, sampled through the run).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import shutil
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from tritonfleet.pipelines.llm.bench.served import (
    GENAI_PERF,
    genai_perf_environment,
    genai_perf_venv,
    gguf_path,
)
from tritonfleet.server import free_port
from tritonfleet.tools.bench import loadgen, report

CHAT_MODEL = "smollm2-135m-instruct"
TARGETS = {"tokens_per_s_ratio": 0.95, "ttft_extra_ms": 10.0}  # at concurrency 1 and 8


@dataclass(frozen=True)
class Point:
    """One side at one concurrency (milliseconds, MB)."""

    side: str
    concurrency: int
    request_count: int
    requests_per_s: float
    latency_p50_ms: float
    latency_p95_ms: float
    latency_p99_ms: float
    ttft_p50_ms: float
    ttft_p99_ms: float
    output_tokens_per_s: float
    output_tokens_avg: float
    memory_mb: float | None  # peak PSS of the serving processes during the run


def genai_perf_command(
    genai_perf: Path,
    *,
    side: str,
    url: str,
    model: str,
    concurrency: int,
    requests: int,
    input_tokens: int,
    output_tokens: int,
    tokenizer: Path,
    artifact_dir: Path,
    endpoint: str = "v1/chat/completions",
) -> list[str]:
    """genai-perf for one side: "openai" (an OpenAI server at ``url`` = host:port, ``endpoint``) or
    "ensemble" (the gRPC ensemble at ``url``)."""
    common = [
        "--concurrency", str(concurrency),
        "--request-count", str(requests),
        "--synthetic-input-tokens-mean", str(input_tokens),
        "--synthetic-input-tokens-stddev", "0",
        "--output-tokens-mean", str(output_tokens),
        "--output-tokens-stddev", "0",
        "--tokenizer", str(tokenizer),
        "--random-seed", "0",
        "--artifact-dir", str(artifact_dir),
        "--streaming",
    ]  # fmt: skip
    if side == "ensemble":
        return [
            str(genai_perf), "profile", "-m", "ensemble", "--endpoint-type", "kserve",
            "--backend", "tensorrtllm", "-u", url, "--output-tokens-mean-deterministic",
            "--extra-inputs", "apply_chat_template:true", *common,
        ]  # fmt: skip
    kind = (
        "completions" if endpoint.rstrip("/").endswith("/completions") and "chat" not in endpoint else "chat"
    )
    return [
        str(genai_perf), "profile", "-m", model, "--endpoint-type", kind, "--endpoint", endpoint, "-u", url,
        "--extra-inputs", "temperature:0", "--extra-inputs", f"min_tokens:{output_tokens}", *common,
    ]  # fmt: skip


def parse_export(path: Path, side: str, concurrency: int, memory_mb: float | None) -> Point:
    """genai-perf's ``profile_export_genai_perf.json`` as a :class:`Point`."""
    d = json.loads(path.read_text())
    latency, ttft = d["request_latency"], d["time_to_first_token"]
    return Point(
        side=side,
        concurrency=concurrency,
        request_count=int(d["request_count"]["avg"]),
        requests_per_s=d["request_throughput"]["avg"],
        latency_p50_ms=latency["p50"],
        latency_p95_ms=latency["p95"],
        latency_p99_ms=latency["p99"],
        ttft_p50_ms=ttft["p50"],
        ttft_p99_ms=ttft["p99"],
        output_tokens_per_s=d["output_token_throughput"]["avg"],
        output_tokens_avg=d["output_sequence_length"]["avg"],
        memory_mb=memory_mb,
    )


# --- memory of the serving processes --------------------------------------------------------------------


def listening_pid(port: int) -> int | None:
    """The process listening on ``port`` on this machine (needs the rights to see it), or None."""
    import psutil

    with contextlib.suppress(psutil.Error):
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
                return conn.pid
    return None


def tree_pss_mb(pid: int) -> float:
    """PSS of a process and all its descendants, MB (PSS: shared libraries counted once over the tree)."""
    import psutil

    total = 0
    root = psutil.Process(pid)
    for proc in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            total += proc.memory_full_info().pss
    return total / 2**20


class PeakMemory:
    """Samples :func:`tree_pss_mb` of ``pid`` every ``every`` seconds on a thread; ``peak`` the largest."""

    def __init__(self, pid: int | None, every: float = 1.0) -> None:
        self.pid, self.every, self.peak = pid, every, None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while self.pid is not None and not self._stop.is_set():
            with contextlib.suppress(Exception):
                value = tree_pss_mb(self.pid)
                self.peak = value if self.peak is None else max(self.peak, value)
            self._stop.wait(self.every)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# --- one measurement ----------------------------------------------------------------------------------


def measure(
    cmd: list[str], env: dict[str, str], artifact_dir: Path, side: str, concurrency: int, pid: int | None
) -> Point:
    """Run one genai-perf command (its artifacts in ``artifact_dir``) while sampling ``pid``'s memory."""
    shutil.rmtree(artifact_dir, ignore_errors=True)
    artifact_dir.mkdir(parents=True)
    log = artifact_dir / "genai-perf.log"
    with PeakMemory(pid) as memory, log.open("w") as out:
        code = subprocess.run(cmd, env=env, stdout=out, stderr=subprocess.STDOUT).returncode
    exports = sorted(artifact_dir.rglob("profile_export_genai_perf.json"))
    if code or not exports:
        tail = "\n".join(log.read_text().strip().splitlines()[-25:])
        raise RuntimeError(f"genai-perf failed (exit {code}), see {log}:\n{tail}")
    return parse_export(exports[0], side, concurrency, memory.peak)


def wait_http(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not answer within {timeout:.0f} s") from None
            time.sleep(0.5)


def point_table(points: list[Point]) -> str:
    rows = [
        [p.side, p.concurrency, p.request_count, f"{p.requests_per_s:.2f}", f"{p.output_tokens_per_s:.1f}",
         f"{p.ttft_p50_ms:.0f}", f"{p.ttft_p99_ms:.0f}", f"{p.latency_p50_ms:.0f}", f"{p.latency_p95_ms:.0f}",
         f"{p.latency_p99_ms:.0f}", "" if p.memory_mb is None else f"{p.memory_mb:.0f}"]
        for p in points
    ]  # fmt: skip
    headers = ["side", "concurrency", "requests", "req/s", "output tok/s", "TTFT p50 ms", "TTFT p99 ms",
               "latency p50 ms", "p95 ms", "p99 ms", "memory MB (PSS)"]  # fmt: skip
    return report.markdown_table(headers, rows)


def measure_loadgen(
    stream: loadgen.Stream, side: str, concurrency: int, requests: int, tokenizer: Path, pid: int | None
) -> Point:
    """One side at one concurrency with :mod:`tritonfleet.tools.bench.loadgen`, sampling ``pid``'s memory."""
    import asyncio

    from tokenizers import Tokenizer

    vocab = Tokenizer.from_file(str(tokenizer / "tokenizer.json"))
    with PeakMemory(pid) as memory:
        lines, wall = asyncio.run(loadgen.run(stream, concurrency, requests))
    stats = loadgen.summary(lines, wall, lambda text: len(vocab.encode(text, add_special_tokens=False).ids))
    return Point(side=side, concurrency=concurrency, memory_mb=memory.peak, **stats)  # type: ignore[arg-type]


def bench_prompt(tokenizer: Path, tokens: int) -> str:
    """A fixed English text of ``tokens`` tokens (the LLM bench's filler)."""
    from tokenizers import Tokenizer

    from tritonfleet.pipelines.llm.bench.served import prompt_ids

    return Tokenizer.from_file(str(tokenizer / "tokenizer.json")).decode(
        prompt_ids(tokenizer / "tokenizer.json", tokens)
    )


# --- fleet bench openai ---------------------------------------------------------------------------------


def _serve(repository: Path, log: Path) -> tuple[subprocess.Popen[bytes], dict[str, int]]:
    """``fleet serve --models llm`` with /v1 on free ports, as a user runs it."""
    ports = {name: free_port() for name in ("http", "grpc", "metrics", "openai")}
    cmd = [
        sys.executable,
        "-m",
        "tritonfleet.cli",
        "--repository",
        str(repository),
        "serve",
        "--models",
        "llm",
    ]
    for name, port in ports.items():
        cmd += [f"--{name}-port", str(port)]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    return proc, ports


def _llama_cpp_server(gguf: Path, port: int, log: Path, threads: int) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--port", str(port),
           "--model_alias", CHAT_MODEL, "--n_threads", str(threads), "--n_ctx", "2048"]  # fmt: skip
    with log.open("wb") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)


def run_openai_bench(
    repository: Path,
    *,
    concurrency: list[int],
    requests: int,
    output: Path,
    console: Console,
    input_tokens: int = 128,
    output_tokens: int = 64,
    with_llama_cpp: bool = True,
) -> Path:
    """At each concurrency: /v1 and the ensemble on one ``fleet serve``, then llama.cpp's server if
    installed; ``max(requests, 2 * concurrency)`` requests per point. Writes ``output/openai.{json,md}``."""
    tokenizer = (repository / "preprocessing" / "1" / "tokenizer").resolve()
    if not (tokenizer / "tokenizer.json").is_file():
        raise RuntimeError(f"no tokenizer in {tokenizer}: run `fleet build llm`")
    output.mkdir(parents=True, exist_ok=True)
    prompt = bench_prompt(tokenizer, input_tokens)
    points: list[Point] = []
    notes: list[str] = []
    proc, ports = _serve(repository, output / "fleet-serve-openai.log")
    try:
        with console.status("starting fleet serve --models llm"):
            wait_http(f"http://localhost:{ports['openai']}/v1/models", 300)
            wait_http(f"http://localhost:{ports['http']}/v2/health/ready", 300)
        sides = {
            "openai": lambda: loadgen.openai_stream(
                f"http://localhost:{ports['openai']}/v1", CHAT_MODEL, prompt, output_tokens
            ),
            "ensemble": lambda: loadgen.ensemble_stream(f"localhost:{ports['grpc']}", prompt, output_tokens),
        }
        for side, make in sides.items():  # warm-up: no measured request pays for a first call
            measure_loadgen(make(), side, 1, 1, tokenizer, None)
        for c in concurrency:
            count = max(requests, 2 * c)
            for side, make in sides.items():
                with console.status(f"{side}: concurrency {c}, {count} requests"):
                    point = measure_loadgen(make(), side, c, count, tokenizer, proc.pid)
                points.append(point)
                console.print(
                    f"  {side:>8} c={c:>3}: {point.output_tokens_per_s:6.1f} tok/s, TTFT p50 "
                    f"{point.ttft_p50_ms:6.0f} ms, {point.requests_per_s:5.2f} req/s"
                )
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            proc.kill()
    gguf = gguf_path()
    if with_llama_cpp and importlib.util.find_spec("llama_cpp") and gguf is not None:
        port = free_port()
        peer = _llama_cpp_server(gguf, port, output / "llama-cpp-server.log", threads=2)
        try:
            wait_http(f"http://localhost:{port}/v1/models", 120)
            peer_url = f"http://localhost:{port}/v1"

            def make() -> loadgen.Stream:
                return loadgen.openai_stream(peer_url, CHAT_MODEL, prompt, output_tokens)

            measure_loadgen(make(), "llama.cpp", 1, 1, tokenizer, None)
            for c in concurrency:
                with console.status(f"llama.cpp server, concurrency {c}"):
                    points.append(
                        measure_loadgen(make(), "llama.cpp", c, max(requests, 2 * c), tokenizer, peer.pid)
                    )
        finally:
            peer.terminate()
            peer.wait(timeout=30)
        notes.append(f"llama.cpp: llama-cpp-python's `llama_cpp.server` on {gguf.name}, n_threads 2.")
    else:
        notes.append(
            "llama.cpp not measured: llama-cpp-python (`pip install -e .[llamacpp]`, compiles llama.cpp) "
            "with its server extras is not installed."
        )
    return write_report(output, points, notes, dict(input_tokens=input_tokens, output_tokens=output_tokens))


def compare(points: list[Point]) -> list[dict[str, Any]]:
    """/v1 against the ensemble (and llama.cpp) at each concurrency: tokens/s ratio, TTFT difference."""
    by = {(p.side, p.concurrency): p for p in points}
    out = []
    for c in sorted({p.concurrency for p in points}):
        api, direct, peer = by.get(("openai", c)), by.get(("ensemble", c)), by.get(("llama.cpp", c))
        if api is None or direct is None:
            continue
        row: dict[str, Any] = {
            "concurrency": c,
            "tokens_per_s_ratio": api.output_tokens_per_s / direct.output_tokens_per_s,
            "ttft_extra_ms": api.ttft_p50_ms - direct.ttft_p50_ms,
        }
        if c in (1, 8):
            row["met"] = (
                row["tokens_per_s_ratio"] >= TARGETS["tokens_per_s_ratio"]
                and row["ttft_extra_ms"] <= TARGETS["ttft_extra_ms"]
            )
        if peer is not None:
            row["vs_llama_cpp"] = api.output_tokens_per_s / peer.output_tokens_per_s
        out.append(row)
    return out


def write_report(output: Path, points: list[Point], notes: list[str], settings: dict[str, Any]) -> Path:
    comparison = compare(points)
    data = {
        "machine": report.machine(),
        "load_generator": "tritonfleet.tools.bench.loadgen (openai client; AsyncFleetClient for the "
        "ensemble)",
        "settings": settings,
        "targets": TARGETS,
        "points": [asdict(p) for p in points],
        "comparison": comparison,
        "notes": notes,
    }
    rows = [
        [r["concurrency"], f"{r['tokens_per_s_ratio']:.3f}", f"{r['ttft_extra_ms']:+.1f}",
         {True: "yes", False: "no"}.get(r.get("met"), ""),
         f"{r['vs_llama_cpp']:.2f}" if "vs_llama_cpp" in r else ""]
        for r in comparison
    ]  # fmt: skip
    md = "\n\n".join(
        [
            f"# OpenAI API benchmark ({data['machine']['date']}, {data['machine']['cpu']}, "
            f"{data['machine']['cores']} cores)",
            f"Streaming, {settings['input_tokens']} prompt tokens, "
            f"{settings['output_tokens']} output tokens, greedy, one load generator for every side "
            "(tritonfleet.tools.bench.loadgen). /v1/chat/completions vs the same prompt (the same chat "
            "template) to the gRPC ensemble, one `fleet serve`.",
            point_table(points),
            report.markdown_table(
                [
                    "concurrency",
                    "/v1 tok/s ÷ ensemble",
                    "/v1 TTFT - ensemble (ms)",
                    "target met (≥ 0.95, ≤ +10 ms)",
                    "/v1 ÷ llama.cpp",
                ],
                rows,
            ),
            *notes,
        ]
    )
    return report.write(output, "openai", data, md + "\n")


# --- scripts/benchmark_inference.py ---------------------------------------------------------------------


def benchmark_endpoint(
    endpoint: str,
    model: str,
    *,
    concurrency: int,
    requests: int,
    output: Path,
    console: Console,
    tokenizer: Path,
    input_tokens: int = 128,
    output_tokens: int = 64,
    loadgen_only: bool = False,
) -> Path:
    """One OpenAI endpoint (``http://host:port/v1/chat/completions``) at one concurrency: the JSON and
    Markdown of one :class:`Point` under ``output`` (``inference-c<concurrency>``)."""
    parsed = urllib.parse.urlparse(endpoint)
    if not parsed.hostname or not parsed.port:
        raise ValueError(f"--endpoint needs host and port: {endpoint}")
    pid = listening_pid(parsed.port) if parsed.hostname in ("localhost", "127.0.0.1") else None
    if loadgen_only:
        base = endpoint.split("/chat/completions")[0]
        stream = loadgen.openai_stream(base, model, bench_prompt(tokenizer, input_tokens), output_tokens)
        with console.status(f"{endpoint}: concurrency {concurrency}, {requests} requests"):
            point = measure_loadgen(stream, "openai", concurrency, requests, tokenizer, pid)
    else:
        genai_perf = genai_perf_venv(console)
        env = genai_perf_environment(genai_perf)
        artifacts = output / f"inference-genai-perf-c{concurrency}"
        cmd = genai_perf_command(
            genai_perf, side="openai", url=f"{parsed.hostname}:{parsed.port}", model=model,
            concurrency=concurrency, requests=requests, input_tokens=input_tokens,
            output_tokens=output_tokens, tokenizer=tokenizer, artifact_dir=artifacts,
            endpoint=parsed.path.lstrip("/"),
        )  # fmt: skip
        with console.status(f"genai-perf: {endpoint}, concurrency {concurrency}, {requests} requests"):
            point = measure(cmd, env, artifacts, "openai", concurrency, pid)
    data = {
        "machine": report.machine(),
        "endpoint": endpoint,
        "model": model,
        "load_generator": "tritonfleet.tools.bench.loadgen" if loadgen_only else GENAI_PERF,
        "settings": {"input_tokens": input_tokens, "output_tokens": output_tokens},
        "point": asdict(point),
        "memory_of": None if pid is None else f"pid {pid} and its children",
    }
    md = f"# {endpoint} ({data['machine']['date']})\n\n{point_table([point])}\n"
    return report.write(output, f"inference-c{concurrency}", data, md)
