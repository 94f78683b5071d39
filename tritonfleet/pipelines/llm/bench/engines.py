"""``fleet bench llm --engines openvino,genai,ortgenai,llamaserver``: CPU LLM engines side by side in one run.

Each engine runs in a worker process of its own (:mod:`~tritonfleet.pipelines.llm.bench.worker`); the
orchestrator sends every worker the same token prompts and, at each level, runs the engines one after the
other, rotating which goes first, so that a shared machine's drift weighs on all of them alike. Workloads:

- closed-loop streams at each level (1, 8, 16, 32): each stream sends its next request when its last one
  ends, as genai-perf's ``--concurrency`` does; 128-token prompts, exactly 64 greedy output tokens (end of
  sequence ignored), prompts distinct from their first token on so that no prefix cache helps;
- a mixed set: 48 prompts of 16 to 1024 tokens (log-uniform), 16 streams;
- the prefix cache: time to first token of a request alone whose 512-token prefix another request just had
  (a hit), against one whose prefix is new (a miss);
- each worker's RSS after load and at its peak.

Engine folders come from the build (``build/llm/cpu_engine.py --engine NAME --no-install``, cached);
``genai`` runs on the OpenVINO export in the export venv (which has ``openvino-genai``); ``llamaserver`` needs
``--build-peer`` once (:mod:`~tritonfleet.pipelines.llm.bench.peer`) and is reported missing otherwise.
"""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from tritonfleet.artifacts import PROJECT_ROOT
from tritonfleet.pipelines.llm.bench import peer
from tritonfleet.pipelines.llm.bench.worker import parse_spec, percentile
from tritonfleet.repository import Repository
from tritonfleet.tools.bench import report

BUILD = PROJECT_ROOT / "build" / "llm"
GENAI_U8_BLOCK_BYTES = 437_760  # a u8 KV block of this model (30 layers), GenAI's and ours alike
SENTENCES = (
    "The quick brown fox jumps over the lazy dog.",
    "A farmer counts his sheep in the morning light.",
    "The river runs past the old mill towards the sea.",
    "Rain fell softly on the tin roof all night.",
    "She packed her bag and walked to the station.",
    "Three ships sailed into the harbour at dawn.",
    "The library smelled of dust, paper and coffee.",
    "A small robot learned to sort coloured blocks.",
    "Mountains rose above the clouds like islands.",
    "The baker opened his shop before sunrise.",
    "Children built a castle of sand on the beach.",
    "An owl watched the field from the oak tree.",
)
# The targets (ratios within one run).
TARGETS = {
    "scaling_8": 3.0,  # 8 streams vs one stream's tokens/s, same engine
    "scaling_32": 4.0,
    "ttft_8_s": 0.4,
    "ttft_32_s": 1.0,
    "prefix_hit_over_miss": 1 / 3,
    "single_vs_today": 0.95,  # one stream vs onnxruntime-genai's
    "gate_vs_genai": 0.9,  # our scheduler vs GenAI's pipeline at 8 and 32 streams (the integration's gate)
    "vs_llama_server": 2.0,
}


@dataclass(frozen=True)
class Workloads:
    levels: tuple[int, ...] = (1, 8, 16, 32)
    prompt_tokens: int = 128
    output_tokens: int = 64
    rounds: int = 2  # requests per stream at each level
    min_requests: int = 8
    mixed: int = 48  # requests of the mixed set (0: none)
    mixed_concurrency: int = 16
    prefix_tokens: int = 512
    prefix_trials: int = 3  # 0: no prefix probe
    threads: int = 2
    seed: int = 0


class Prompts:
    """Token prompts of exact lengths, distinct from their first token on."""

    def __init__(self, tokenizer_json: Path, seed: int) -> None:
        from tokenizers import Tokenizer

        self.tok = Tokenizer.from_file(str(tokenizer_json))
        self.rng = random.Random(seed)
        self.serial = 0

    def text(self, length: int) -> list[int]:
        self.serial += 1
        ids = self.tok.encode(f"Note {self.serial}:", add_special_tokens=False).ids
        while len(ids) < length:
            ids += self.tok.encode(" " + self.rng.choice(SENTENCES), add_special_tokens=False).ids
        return ids[:length]


def split_specs(text: str) -> list[str]:
    """``a,b:k=v,k2=v2,c`` -> ``["a", "b:k=v,k2=v2", "c"]`` (an option has ``=``, an engine name does not)."""
    specs: list[str] = []
    for part in text.split(","):
        if "=" in part and ":" not in part and specs:
            specs[-1] += "," + part
        elif part:
            specs.append(part)
    for spec in specs:
        parse_spec(spec)
    return specs


def engine_dir(kind: str, console: Console) -> Path:
    """The cached engine folder of ``kind`` (built now if missing: ``cpu_engine.py --no-install``)."""
    cmd = [sys.executable, str(BUILD / "cpu_engine.py"), "--engine", kind, "--no-install"]
    with console.status(f"finding (or building) the {kind} engine"):
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=PROJECT_ROOT)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return Path(proc.stdout.strip().splitlines()[-1])


def export_python(console: Console) -> Path:
    """The OpenVINO export venv's python (made on first use), which has openvino-genai."""
    cmd = [sys.executable, str(BUILD / "openvino_export.py"), "--venv"]
    with console.status("finding (or making) the OpenVINO export venv"):
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=PROJECT_ROOT)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    return Path(proc.stdout.strip().splitlines()[-1])


class Worker:
    """The orchestrator's handle on one worker process."""

    def __init__(self, spec: str, cmd: list[str], log: Path, env: dict[str, str]) -> None:
        self.spec = spec
        self.log = log.open("w")
        start = time.perf_counter()
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True, env=env
        )
        self.info = self._read()
        self.info["start_s"] = round(time.perf_counter() - start, 2)  # interpreter, imports and load

    def _read(self) -> dict[str, Any]:
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        if not line:
            raise RuntimeError(f"bench worker {self.spec} died: see {self.log.name}")
        return json.loads(line)

    def call(self, op: str, **kw: Any) -> dict[str, Any]:
        self.proc.stdin.write(json.dumps({"op": op, **kw}) + "\n")  # type: ignore[union-attr]
        self.proc.stdin.flush()  # type: ignore[union-attr]
        reply = self._read()
        if "error" in reply:
            raise RuntimeError(f"{self.spec} {op}: {reply['error']}")
        return reply

    def close(self) -> dict[str, Any]:
        try:
            return self.call("close")
        except Exception as exc:  # a dead worker: say so
            self.proc.kill()
            return {"error": str(exc)}
        finally:
            self.proc.wait(timeout=60)
            self.log.close()


def loadavg() -> list[str]:
    return Path("/proc/loadavg").read_text().split()[:3]


def start_workers(
    specs: list[str], repository: Path, work: Workloads, output: Path, console: Console
) -> tuple[dict[str, Worker], dict[str, str]]:
    """One worker per engine; the engines that cannot run here, with why."""
    params = {
        k: v.string_value for k, v in Repository(repository).config("tensorrt_llm", "cpu").parameters.items()
    }
    served = {
        k: params[k]
        for k in ("kv_cache_mb", "kv_precision", "max_batched_tokens", "max_seqs", "enable_prefix_caching")
        if k in params
    }
    dirs: dict[str, Path] = {}
    workers: dict[str, Worker] = {}
    missing: dict[str, str] = {}
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": str(work.threads),
        "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    # GenAI gets as many KV blocks as our engine has (started first), of the same size in u8, its default.
    ordered = sorted(specs, key=lambda s: parse_spec(s)[0] != "openvino")
    blocks = int(float(served.get("kv_cache_mb", 256)) * 2**20) // GENAI_U8_BLOCK_BYTES
    for spec in ordered:
        name, _ = parse_spec(spec)
        python = Path(sys.executable)
        args = ["--threads", str(work.threads), "--params", json.dumps(served)]
        if name == "llamaserver":
            why = peer.missing()
            if why is not None:
                missing[spec] = why
                continue
            args += ["--llama-server", str(peer.llama_server()), "--gguf", str(peer.gguf())]
        else:
            kind = "ortgenai" if name == "ortgenai" else "openvino"
            if kind not in dirs:
                dirs[kind] = engine_dir(kind, console)
            args += ["--engine-dir", str(dirs[kind])]
            if name == "genai":
                python = export_python(console)
                args += ["--kv-blocks", str(blocks)]
        cmd = [str(python), "-m", "tritonfleet.pipelines.llm.bench.worker", "--engine", spec, *args]
        safe = "".join(c if c.isalnum() else "_" for c in spec)
        with console.status(f"starting {spec}"):
            workers[spec] = Worker(spec, cmd, output / f"llm-engines-{safe}.log", env)
        i = workers[spec].info
        blocks = i["settings"].get("kv_blocks", blocks)
        console.print(
            f"  {spec}: started in {i['start_s']} s (load {i['load_s']} s), RSS {i['rss_kb'] // 1024} MB"
        )
    return workers, missing


def run_engine_bench(
    repository: Path, specs: list[str], output: Path, console: Console, work: Workloads | None = None
) -> Path:
    """Measure ``specs`` side by side; write ``output/llm-engines.{json,md,png}``."""
    work = work or Workloads()
    output.mkdir(parents=True, exist_ok=True)
    started = {**report.machine(), "loadavg": loadavg()}
    workers, missing = start_workers(specs, repository, work, output, console)
    ran = [s for s in specs if s in workers]
    if not ran:
        raise RuntimeError("no engine could run: " + "; ".join(missing.values()))
    tokenizer = Path(workers[ran[0]].info["settings"].get("engine_dir", "")) / "tokenizer.json"
    if not tokenizer.is_file():
        tokenizer = repository / "preprocessing" / "1" / "tokenizer" / "tokenizer.json"
    prompts = Prompts(tokenizer, work.seed)
    data: dict[str, Any] = {
        "pipeline": "llm",
        "machine": started,
        "workloads": vars(work),
        "engines": {s: {"start": w.info} for s, w in workers.items()},
        "missing": missing,
        "levels": [],
    }
    try:
        for w in workers.values():  # warm-up
            w.call(
                "closed_loop",
                prompts=[prompts.text(work.prompt_tokens) for _ in range(2)],
                concurrency=2,
                max_tokens=8,
            )
        for i, c in enumerate(work.levels):
            count = max(work.min_requests, work.rounds * c)
            level_prompts = [prompts.text(work.prompt_tokens) for _ in range(count)]
            row: dict[str, Any] = {"concurrency": c, "requests": count, "engines": {}, "loadavg": loadavg()}
            for spec in ran[i % len(ran) :] + ran[: i % len(ran)]:
                r = workers[spec].call(
                    "closed_loop", prompts=level_prompts, concurrency=c, max_tokens=work.output_tokens
                )
                row["engines"][spec] = r
                console.print(
                    f"  c={c:>3} {spec:<28} {r['tokens_per_s']:7.1f} tok/s  TTFT p50 "
                    f"{r['ttft_p50_ms']:7.0f} ms  ITL {r['itl_mean_ms']} ms"
                )
            data["levels"].append(row)
        if work.mixed:
            rng = random.Random(work.seed + 1)
            lengths = [round(math.exp(rng.uniform(math.log(16), math.log(1024)))) for _ in range(work.mixed)]
            mixed = [prompts.text(n) for n in lengths]
            data["mixed"] = {"concurrency": work.mixed_concurrency, "lengths": lengths, "engines": {}}
            for spec in ran:
                r = workers[spec].call(
                    "closed_loop",
                    prompts=mixed,
                    concurrency=work.mixed_concurrency,
                    max_tokens=work.output_tokens,
                )
                data["mixed"]["engines"][spec] = r
                console.print(
                    f"  mixed {spec:<26} {r['tokens_per_s']:7.1f} tok/s  TTFT p50 {r['ttft_p50_ms']:7.0f} ms"
                )
        if work.prefix_trials:
            data["prefix"] = prefix_probe(workers, ran, prompts, work, console)
        for spec, w in workers.items():
            data["engines"][spec]["stats"] = w.call("stats")
    finally:
        for spec, w in workers.items():
            data["engines"][spec]["closed"] = w.close()
    data["machine_end"] = {"date": report.machine()["date"], "loadavg": loadavg()}
    data["targets"] = targets(data, ran)
    return report.write(output, "llm-engines", data, markdown(data, ran), plot(data, ran))


def prefix_probe(
    workers: dict[str, Worker], specs: list[str], prompts: Prompts, work: Workloads, console: Console
) -> dict[str, Any]:
    """TTFT of a request alone with a new ``prefix_tokens`` prefix (a miss) and with the prefix of the
    request just before (a hit), 16 tokens after the prefix each."""
    trials = []
    for _ in range(work.prefix_trials):
        shared = prompts.text(work.prefix_tokens)
        trials.append(
            {
                "cold": prompts.text(work.prefix_tokens + 16),
                "first": shared + prompts.text(16),
                "second": shared + prompts.text(16),
            }
        )
    out: dict[str, Any] = {"prefix_tokens": work.prefix_tokens, "suffix_tokens": 16, "engines": {}}
    for spec in specs:
        miss, hit = [], []
        for t in trials:
            miss.append(workers[spec].call("ttft", prompt=t["cold"], max_tokens=4)["ttft_ms"])
            miss.append(workers[spec].call("ttft", prompt=t["first"], max_tokens=4)["ttft_ms"])
            hit.append(workers[spec].call("ttft", prompt=t["second"], max_tokens=4)["ttft_ms"])
        m, h = percentile(miss, 50), percentile(hit, 50)
        out["engines"][spec] = {
            "miss_ttft_ms": miss,
            "hit_ttft_ms": hit,
            "miss_p50_ms": round(m, 1),
            "hit_p50_ms": round(h, 1),
            "hit_over_miss": round(h / m, 3),
        }
        console.print(f"  prefix {spec:<25} miss {m:6.0f} ms  hit {h:6.0f} ms  ratio {h / m:.2f}")
    return out


def _level(data: dict[str, Any], c: int) -> dict[str, Any] | None:
    return next((lv["engines"] for lv in data["levels"] if lv["concurrency"] == c), None)


def targets(data: dict[str, Any], specs: list[str]) -> list[dict[str, Any]]:
    """The issue's targets that this run can check, for the served engine (``openvino``)."""
    ours = next((s for s in specs if parse_spec(s)[0] == "openvino"), None)
    if ours is None:
        return []
    rows: list[dict[str, Any]] = []

    def tps(c: int, spec: str | None) -> float | None:
        level = _level(data, c)
        return level[spec]["tokens_per_s"] if level and spec in level else None

    def ttft(c: int, spec: str | None) -> float | None:
        level = _level(data, c)
        return level[spec]["ttft_p50_ms"] / 1e3 if level and spec in level else None

    def add(check: str, value: float | None, target: float, lower: bool = False) -> None:
        if value is not None:
            met = value <= target if lower else value >= target
            rows.append(
                {
                    "check": check,
                    "value": round(value, 3),
                    "target": round(target, 3),
                    "lower": lower,
                    "met": met,
                }
            )

    def ratio(a: float | None, b: float | None) -> float | None:
        return a / b if a is not None and b else None

    add("8 streams vs 1, tokens/s", ratio(tps(8, ours), tps(1, ours)), TARGETS["scaling_8"])
    add("32 streams vs 1, tokens/s", ratio(tps(32, ours), tps(1, ours)), TARGETS["scaling_32"])
    add("TTFT p50 at 8 streams, s", ttft(8, ours), TARGETS["ttft_8_s"], lower=True)
    add("TTFT p50 at 32 streams, s", ttft(32, ours), TARGETS["ttft_32_s"], lower=True)
    if "prefix" in data and ours in data["prefix"]["engines"]:
        hit = data["prefix"]["engines"][ours]["hit_over_miss"]
        add("prefix hit / miss TTFT", hit, TARGETS["prefix_hit_over_miss"], lower=True)
    by_name = {parse_spec(s)[0]: s for s in specs}
    today, genai, peer_ = by_name.get("ortgenai"), by_name.get("genai"), by_name.get("llamaserver")
    add("1 stream vs ortgenai, tokens/s", ratio(tps(1, ours), tps(1, today)), TARGETS["single_vs_today"])
    for c in (8, 32):
        add(
            f"{c} streams vs genai, tokens/s (gate)",
            ratio(tps(c, ours), tps(c, genai)),
            TARGETS["gate_vs_genai"],
        )
        add(
            f"{c} streams vs llamaserver, tokens/s",
            ratio(tps(c, ours), tps(c, peer_)),
            TARGETS["vs_llama_server"],
        )
        add(f"{c} streams TTFT p50 vs llamaserver", ratio(ttft(c, ours), ttft(c, peer_)), 1.0, lower=True)
    return rows


def markdown(data: dict[str, Any], specs: list[str]) -> str:
    m0, m1, w = data["machine"], data["machine_end"], data["workloads"]
    lines = [
        "# CPU LLM engines side by side",
        "",
        f"{m0['date']} to {m1['date']} on {m0['cpu']} ({m0['cores']} cores); load average at start "
        f"{' '.join(m0['loadavg'])}, at end {' '.join(m1['loadavg'])} (compare ratios within this run).",
        "",
        f"Threads per engine: {w['threads']}. Prompts {w['prompt_tokens']} tokens, exactly "
        f"{w['output_tokens']} output tokens (end of sequence ignored), greedy, closed-loop streams. TTFT: "
        "request sent to first token; ITL: (last - first token) / (tokens - 1) per request; tok/s: output "
        "tokens / wall time of the level.",
        "",
    ]
    lines += [f"- `{spec}`: {why}" for spec, why in data["missing"].items()]
    engines = []
    for s in specs:
        e = data["engines"][s]
        peak = max(e.get("closed", {}).get("peak_rss_kb", 0), e.get("stats", {}).get("server_peak_rss_kb", 0))
        settings = json.dumps(e["start"]["settings"], default=str).replace("|", "/")
        engines.append(
            [
                s,
                e["start"]["start_s"],
                e["start"]["load_s"],
                e["start"]["rss_kb"] // 1024,
                peak // 1024,
                f"`{settings}`",
            ]
        )
    headers = ["engine", "start s", "load s", "RSS after load MB", "peak RSS MB", "settings"]
    lines += ["", "## Engines", "", report.markdown_table(headers, engines)]
    one = _level(data, 1)
    rows = []
    for lv in data["levels"]:
        base = lv["engines"][specs[0]]["tokens_per_s"]
        for s in specs:
            e = lv["engines"][s]
            scale = e["tokens_per_s"] / one[s]["tokens_per_s"] if one else float("nan")
            ratio = e["tokens_per_s"] / base
            rows.append(
                [
                    lv["concurrency"],
                    s,
                    e["tokens_per_s"],
                    f"{scale:.2f}",
                    f"{ratio:.2f}",
                    e["ttft_p50_ms"],
                    e["ttft_p90_ms"],
                    e["itl_mean_ms"],
                    " ".join(lv["loadavg"]),
                ]
            )
    headers = [
        "streams",
        "engine",
        "tok/s",
        "x one stream",
        f"vs {specs[0]}",
        "TTFT p50 ms",
        "TTFT p90 ms",
        "ITL mean ms",
        "load avg",
    ]
    lines += ["", "## Concurrent streams", "", report.markdown_table(headers, rows)]
    if "mixed" in data:
        mx = data["mixed"]
        n, lo, hi = len(mx["lengths"]), min(mx["lengths"]), max(mx["lengths"])
        rows = [
            [s, e["tokens_per_s"], e["ttft_p50_ms"], e["ttft_p90_ms"], e["itl_mean_ms"]]
            for s, e in ((s, mx["engines"][s]) for s in specs)
        ]
        headers = ["engine", "tok/s", "TTFT p50 ms", "TTFT p90 ms", "ITL mean ms"]
        title = f"## Mixed prompts ({n} requests, {lo}-{hi} tokens, log-uniform, {mx['concurrency']} streams)"
        lines += ["", title, "", report.markdown_table(headers, rows)]
    if "prefix" in data:
        px = data["prefix"]
        rows = [
            [s, e["miss_p50_ms"], e["hit_p50_ms"], e["hit_over_miss"]]
            for s, e in ((s, px["engines"][s]) for s in specs)
        ]
        headers = ["engine", "miss TTFT p50 ms", "hit TTFT p50 ms", "hit / miss"]
        shape = f"{px['prefix_tokens']}-token shared prefix + {px['suffix_tokens']} tokens"
        title = f"## Prefix cache ({shape}, a request alone)"
        lines += ["", title, "", report.markdown_table(headers, rows)]
    if data["targets"]:
        rows = [
            [
                t["check"],
                t["value"],
                ("≤ " if t["lower"] else "≥ ") + str(t["target"]),
                "yes" if t["met"] else "NO",
            ]
            for t in data["targets"]
        ]
        lines += [
            "",
            "## Targets (the served engine, `openvino`)",
            "",
            report.markdown_table(["check", "value", "target", "met"], rows),
        ]
    return "\n".join(lines) + "\n"


def plot(data: dict[str, Any], specs: list[str]) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    xs = [lv["concurrency"] for lv in data["levels"]]
    for s in specs:
        left.plot(xs, [lv["engines"][s]["tokens_per_s"] for lv in data["levels"]], "o-", label=s)
        right.plot(xs, [lv["engines"][s]["ttft_p50_ms"] for lv in data["levels"]], "o-", label=s)
    left.set(xscale="log", xlabel="streams", ylabel="output tokens / s", title="Throughput")
    right.set(xscale="log", yscale="log", xlabel="streams", ylabel="ms", title="TTFT p50")
    for ax in (left, right):
        ax.minorticks_off()
        ax.set_xticks(xs, [str(x) for x in xs])
        ax.legend()
    fig.suptitle(f"SmolLM2-135M, CPU engines on {data['machine']['cores']} cores ({data['machine']['date']})")
    return fig
