"""One engine of ``fleet bench llm --engines`` in a process of its own, driven over JSON lines.

    python -m tritonfleet.pipelines.llm.bench.worker --engine SPEC --engine-dir DIR [--threads 2] ...

So that each engine's imports, load time, threads and peak RSS are its own. Engines (``SPEC`` is
``name[:key=value,...]``, the options overriding the served model's parameters):

- ``openvino``: the served engine, OpenVINO's paged model under our continuous-batching scheduler
  (:func:`~tritonfleet.pipelines.llm.engines.open_scheduler` with ``tensorrt_llm``'s CPU parameters);
- ``ortgenai``: onnxruntime-genai in waves (the build option, today's former engine);
- ``genai``: OpenVINO GenAI's ``ContinuousBatchingPipeline`` on the same export (paged attention, prefix
  caching, dynamic split-fuse), driven with ``add_request`` and ``step()``; run by the export venv's python,
  which has ``openvino-genai``;
- ``llamaserver``: llama.cpp's ``llama-server`` on the GGUF, ``-np`` slots = streams, restarted when the
  number of streams changes (what Ollama runs).

Commands (one JSON object a line on stdin, one reply a line on stdout): ``closed_loop`` (``concurrency``
streams, each sending its next prompt when its last request ends; every request produces exactly
``max_tokens`` tokens), ``ttft`` (one request alone: its time to first token), ``stats``, ``close``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import threading
import time
import urllib.request
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tritonfleet.pipelines.llm.engines import open_scheduler
from tritonfleet.pipelines.llm.sampling import SamplingParams
from tritonfleet.pipelines.llm.sequence import Sequence


@dataclass
class Request:
    """One generation: the engine calls ``on_token(n, time)`` for new tokens and ``on_done`` once."""

    prompt: list[int]
    max_tokens: int
    on_token: Callable[[int, float], None]
    on_done: Callable[[], None]


@dataclass
class Timeline:
    submitted: float
    prompt_tokens: int
    token_times: list[float] = field(default_factory=list)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = (len(s) - 1) * q / 100
    lo, hi = math.floor(k), math.ceil(k)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


class Engine(ABC):
    """An engine that runs requests from its own thread(s)."""

    def __init__(self, options: dict[str, str], args: argparse.Namespace) -> None:
        self.options = options
        self.args = args
        self.settings: dict[str, Any] = {}

    @abstractmethod
    def submit(self, request: Request) -> None: ...

    def prepare(self, concurrency: int) -> None:  # noqa: B027 - optional hook
        """Called before each workload with its number of streams (llama-server's ``-np``)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Stop the engine's threads."""

    def stats(self) -> dict[str, Any]:
        return {}


class Scheduled(Engine):
    """The served model's engine and scheduler (``openvino``) or the wave build option (``ortgenai``)."""

    def __init__(self, options: dict[str, str], args: argparse.Namespace) -> None:
        super().__init__(options, args)
        params = {**json.loads(args.params), **options, "intra_op_threads": str(args.threads)}
        self.scheduler = open_scheduler(Path(args.engine_dir), params)
        self.end_ids = self.scheduler.engine.info.end_ids
        self.settings = {"engine_dir": args.engine_dir, **params}
        if hasattr(self.scheduler, "pool"):
            self.settings["kv_blocks"] = self.scheduler.pool.num_blocks

    def submit(self, request: Request) -> None:
        n = request.max_tokens
        params = SamplingParams(max_tokens=n, min_tokens=n, end_ids=self.end_ids)

        def emit(tokens: list[int], _logprobs: list[float], reason: str | None) -> None:
            if tokens:
                request.on_token(len(tokens), time.perf_counter())
            if reason is not None:
                request.on_done()

        self.scheduler.submit(Sequence(list(request.prompt), params, emit=emit))

    def close(self) -> None:
        self.scheduler.stop()

    def stats(self) -> dict[str, Any]:
        s = self.scheduler
        out: dict[str, Any] = {"scheduler": vars(s.stats)}
        if hasattr(s, "pool"):
            out["kv"] = {
                "blocks": s.pool.num_blocks,
                "block_tokens": s.pool.block_size,
                "kv_mb": round(s.engine.kv_bytes / 2**20),
                "prefix": vars(s.prefix),
            }
        return out


class GenAI(Engine):
    """OpenVINO GenAI's ContinuousBatchingPipeline, one thread calling ``step()``."""

    def __init__(self, options: dict[str, str], args: argparse.Namespace) -> None:
        super().__init__(options, args)
        import numpy as np
        import openvino as ov
        import openvino_genai as og

        self.np, self.ov, self.og = np, ov, og
        served = json.loads(args.params)
        sc = og.SchedulerConfig()
        sc.num_kv_blocks = int(options.get("kv_blocks", args.kv_blocks))
        sc.max_num_batched_tokens = int(
            options.get("max_batched_tokens", served.get("max_batched_tokens", 512))
        )
        sc.max_num_seqs = int(options.get("max_seqs", served.get("max_seqs", 32)))
        sc.enable_prefix_caching = options.get("prefix_caching", "1") == "1"
        sc.dynamic_split_fuse = True
        props: dict[str, Any] = {"INFERENCE_NUM_THREADS": args.threads}
        self.pipe = og.ContinuousBatchingPipeline(args.engine_dir, sc, "CPU", props)
        self.settings = {
            "engine_dir": args.engine_dir,
            "num_kv_blocks": sc.num_kv_blocks,
            "max_num_batched_tokens": sc.max_num_batched_tokens,
            "max_num_seqs": sc.max_num_seqs,
            "enable_prefix_caching": sc.enable_prefix_caching,
            "dynamic_split_fuse": True,
            "properties": props,
            "openvino_genai": og.__version__,
        }
        self._pending: deque[Request] = deque()
        self._cv = threading.Condition()
        self._stopping = False
        self._next = 0
        self._thread = threading.Thread(target=self._run, name="genai-step", daemon=True)
        self._thread.start()

    def submit(self, request: Request) -> None:
        with self._cv:
            self._pending.append(request)
            self._cv.notify()

    def _run(self) -> None:
        live: dict[int, tuple[Request, Any]] = {}
        while True:
            with self._cv:
                while not self._pending and not live and not self._stopping:
                    self._cv.wait()
                if self._stopping:
                    return
                new, self._pending = list(self._pending), deque()
            for request in new:
                config = self.og.GenerationConfig()
                config.max_new_tokens = request.max_tokens
                config.do_sample = False
                config.ignore_eos = True
                ids = self.ov.Tensor(self.np.asarray([request.prompt], dtype=self.np.int64))
                live[self._next] = (request, self.pipe.add_request(self._next, ids, config))
                self._next += 1
            self.pipe.step()
            now = time.perf_counter()
            for rid, (request, handle) in list(live.items()):
                if handle.can_read():
                    for out in handle.read().values():
                        if out.generated_ids:
                            request.on_token(len(out.generated_ids), now)
                if handle.get_status() != self.og.GenerationStatus.RUNNING:
                    del live[rid]
                    request.on_done()

    def close(self) -> None:
        with self._cv:
            self._stopping = True
            self._cv.notify()
        self._thread.join(timeout=30)

    def stats(self) -> dict[str, Any]:
        m = self.pipe.get_metrics()
        return {
            "max_cache_usage_pct": round(m.max_cache_usage, 2),
            "kv_cache_bytes": m.kv_cache_size_in_bytes,
        }


class LlamaServer(Engine):
    """llama.cpp's ``llama-server``: ``-np`` slots = streams, continuous batching, streamed ``/completion``
    with token-id prompts (``cache_prompt``: its own prefix reuse per slot)."""

    def __init__(self, options: dict[str, str], args: argparse.Namespace) -> None:
        super().__init__(options, args)
        self.binary = Path(args.llama_server)
        self.ctx_per_slot = int(options.get("ctx_per_slot", 1280))
        self.port = int(options.get("port", 0)) or _free_port()
        self.proc: subprocess.Popen | None = None
        self.slots = 0
        self.peak_kb = 0
        self.settings = {
            "binary": str(self.binary),
            "gguf": args.gguf,
            "ctx_per_slot": self.ctx_per_slot,
            "threads": args.threads,
        }
        self.prepare(1)

    def prepare(self, concurrency: int) -> None:
        if concurrency == self.slots and self.proc is not None:
            return
        self._stop_server()
        self.slots = concurrency
        t = str(self.args.threads)
        cmd = [
            str(self.binary),
            "-m",
            self.args.gguf,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "-np",
            str(concurrency),
            "-c",
            str(concurrency * self.ctx_per_slot),
            "-t",
            t,
            "-tb",
            t,
            "-b",
            "512",
            "-ub",
            "512",
            "--no-webui",
            "--log-disable",
        ]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=sys.stderr)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("llama-server did not become healthy")

    def submit(self, request: Request) -> None:
        threading.Thread(target=self._request, args=(request,), daemon=True).start()

    def _request(self, request: Request) -> None:
        import http.client

        body = {
            "prompt": request.prompt,
            "n_predict": request.max_tokens,
            "stream": True,
            "temperature": 0.0,
            "top_k": 1,
            "ignore_eos": True,
            "return_tokens": True,
            "cache_prompt": True,
        }
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
        conn.request("POST", "/completion", json.dumps(body), {"Content-Type": "application/json"})
        for raw in conn.getresponse():
            line = raw.strip()
            if not line.startswith(b"data: "):
                continue
            chunk = json.loads(line[6:])
            if chunk.get("tokens"):
                request.on_token(len(chunk["tokens"]), time.perf_counter())
            if chunk.get("stop"):
                break
        conn.close()
        request.on_done()

    def _hwm_kb(self) -> int:
        try:
            status = Path(f"/proc/{self.proc.pid}/status").read_text() if self.proc else ""  # type: ignore[union-attr]
        except OSError:
            return 0
        return next((int(ln.split()[1]) for ln in status.splitlines() if ln.startswith("VmHWM")), 0)

    def _stop_server(self) -> None:
        if self.proc is None:
            return
        self.peak_kb = max(self.peak_kb, self._hwm_kb())
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.proc = None

    def close(self) -> None:
        self._stop_server()

    def stats(self) -> dict[str, Any]:
        return {"server_peak_rss_kb": max(self.peak_kb, self._hwm_kb()), "note": "llama-server's own process"}


ENGINES: dict[str, type[Engine]] = {
    "openvino": Scheduled,
    "ortgenai": Scheduled,
    "genai": GenAI,
    "llamaserver": LlamaServer,
}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_closed_loop(
    engine: Engine, prompts: list[list[int]], concurrency: int, max_tokens: int
) -> tuple[list[Timeline], float]:
    """``concurrency`` streams, each sending its next prompt as soon as its last request ends."""
    pending: Iterator[list[int]] = iter(prompts)
    lock = threading.Lock()
    timelines: list[Timeline] = []
    finished = threading.Event()
    outstanding = [0]

    def submit_next() -> None:
        with lock:
            prompt = next(pending, None)
            if prompt is None:
                if outstanding[0] == 0:
                    finished.set()
                return
            outstanding[0] += 1
            tl = Timeline(time.perf_counter(), len(prompt))
            timelines.append(tl)

        def on_token(n: int, t: float) -> None:
            tl.token_times.extend([t] * n)

        def on_done() -> None:
            with lock:
                outstanding[0] -= 1
            submit_next()

        engine.submit(Request(prompt, max_tokens, on_token, on_done))

    start = time.perf_counter()
    for _ in range(concurrency):
        submit_next()
    finished.wait()
    return timelines, time.perf_counter() - start


def summarise(timelines: list[Timeline], elapsed: float, expected: int) -> dict[str, Any]:
    wrong = [len(t.token_times) for t in timelines if len(t.token_times) != expected]
    if wrong:
        raise RuntimeError(f"{len(wrong)} requests did not produce {expected} tokens: {wrong[:3]}")
    ttft = [(t.token_times[0] - t.submitted) * 1e3 for t in timelines]
    itl = [
        (t.token_times[-1] - t.token_times[0]) * 1e3 / (len(t.token_times) - 1)
        for t in timelines
        if len(t.token_times) > 1
    ]
    tokens = sum(len(t.token_times) for t in timelines)
    return {
        "requests": len(timelines),
        "output_tokens": tokens,
        "prompt_tokens": sum(t.prompt_tokens for t in timelines),
        "elapsed_s": round(elapsed, 3),
        "tokens_per_s": round(tokens / elapsed, 1),
        "ttft_p50_ms": round(percentile(ttft, 50), 1),
        "ttft_p90_ms": round(percentile(ttft, 90), 1),
        "itl_mean_ms": round(sum(itl) / len(itl), 2) if itl else None,
        "itl_p90_ms": round(percentile(itl, 90), 2),
    }


def rss_kb() -> dict[str, int]:
    status = Path("/proc/self/status").read_text()
    vals = {ln.split(":")[0]: int(ln.split()[1]) for ln in status.splitlines() if ln.startswith("Vm")}
    return {"rss_kb": vals.get("VmRSS", 0), "peak_rss_kb": vals.get("VmHWM", 0)}


def parse_spec(spec: str) -> tuple[str, dict[str, str]]:
    name, _, rest = spec.partition(":")
    if name not in ENGINES:
        raise SystemExit(f"unknown engine {name!r}; choose from {', '.join(ENGINES)}")
    return name, dict(kv.split("=", 1) for kv in rest.split(",") if kv)


def serve(args: argparse.Namespace) -> None:
    """Answer the orchestrator's commands on the original stdout (libraries that print go to stderr)."""
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    name, options = parse_spec(args.engine)
    start = time.perf_counter()
    engine = ENGINES[name](options, args)
    ready = {"ready": True, "load_s": round(time.perf_counter() - start, 2), "settings": engine.settings}
    proto.write(json.dumps({**ready, **rss_kb()}, default=str) + "\n")
    for line in sys.stdin:
        cmd = json.loads(line)
        op = cmd["op"]
        try:
            if op in ("closed_loop", "ttft"):
                engine.prepare(cmd.get("concurrency", 1))
            if op == "closed_loop":
                tls, elapsed = run_closed_loop(engine, cmd["prompts"], cmd["concurrency"], cmd["max_tokens"])
                reply: dict[str, Any] = {
                    "concurrency": cmd["concurrency"],
                    **summarise(tls, elapsed, cmd["max_tokens"]),
                }
            elif op == "ttft":
                tls, _ = run_closed_loop(engine, [cmd["prompt"]], 1, cmd["max_tokens"])
                reply = {"ttft_ms": round((tls[0].token_times[0] - tls[0].submitted) * 1e3, 1)}
            elif op == "stats":
                reply = {**rss_kb(), **engine.stats()}
            elif op == "close":
                engine.close()
                proto.write(json.dumps({"closed": True, **rss_kb()}) + "\n")
                return
            else:
                raise ValueError(f"unknown op {op}")
        except Exception as exc:
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        proto.write(json.dumps(reply, default=str) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--engine", required=True, help="name[:key=value,...]")
    parser.add_argument("--engine-dir", default="", help="the engine's folder (openvino, ortgenai, genai)")
    parser.add_argument("--params", default="{}", help="tensorrt_llm's CPU parameters, as JSON")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--kv-blocks", type=int, default=613, help="genai: KV blocks (as many as ours)")
    parser.add_argument("--llama-server", default="")
    parser.add_argument("--gguf", default="")
    serve(parser.parse_args())


if __name__ == "__main__":
    main()
