"""``fleet bench batch``: batch inference against the same requests sent straight to the fleet, in one run.

On a ``fleet serve`` of its own (a subprocess on free ports, its own $TRITONFLEET_HOME):

- throughput: ``--embedding-lines`` text_embedding lines and ``--chat-lines`` chat lines of exactly
  ``--chat-tokens`` tokens as one batch each, against the same requests sent by the bench's concurrent
  client (asyncio ``openai``, ``--embedding-concurrency`` / ``--chat-concurrency`` in flight) to ``/v1``;
- interactive traffic during a batch: image_classifier over gRPC at concurrency 4 and one LLM stream (``/v1``,
  streaming) for ``--seconds``, without and then with a chat batch running: throughput, p99, TTFT p50;
- recovery: ``kill -9`` of ``fleet serve`` mid-batch, then a restart: seconds until it serves again and until
  the batch answers its next line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tritonfleet.server import free_port
from tritonfleet.tools.bench import report

if TYPE_CHECKING:
    from rich.console import Console

CHAT_MODEL, EMBEDDING_MODEL = "smollm2-135m-instruct", "all-minilm-l6-v2"
TOPICS = ["rivers", "music", "markets", "gardens", "planets", "cities", "bread", "trains"]


class Serve:
    """``fleet serve`` as a user runs it, on free ports, in a folder of its own."""

    def __init__(self, repository: Path, home: Path) -> None:
        self.repository, self.home = repository, home
        self.ports = [free_port() for _ in range(4)]
        self.proc: subprocess.Popen | None = None

    def start(self) -> float:
        """Start it; the seconds until it serves."""
        started = time.monotonic()
        env = {**os.environ, "TRITONFLEET_HOME": str(self.home)}
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tritonfleet.cli",
                "--repository",
                str(self.repository),
                "serve",
                "--models",
                "llm,text_embedding,image_classifier",
                "--http-port",
                str(self.ports[0]),
                "--grpc-port",
                str(self.ports[1]),
                "--metrics-port",
                str(self.ports[2]),
                "--openai-port",
                str(self.ports[3]),
            ],
            stdout=open(self.home / "serve.log", "a"),  # noqa: SIM115 (the child keeps it)
            stderr=subprocess.STDOUT,
            env=env,
        )
        while "Ctrl-C" not in (self.home / "serve.log").read_text().split("=== start")[-1]:
            if self.proc.poll() is not None:
                raise RuntimeError(f"fleet serve exited: see {self.home / 'serve.log'}")
            time.sleep(0.05)
        return time.monotonic() - started

    @property
    def base_url(self) -> str:
        return f"http://localhost:{self.ports[3]}/v1"

    @property
    def grpc_url(self) -> str:
        return f"localhost:{self.ports[1]}"

    def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        with (self.home / "serve.log").open("a") as log:
            log.write("\n=== start\n")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=60)


def texts(n: int) -> list[str]:
    return [f"Sentence {i} is about {TOPICS[i % len(TOPICS)]} and number {i * 7 % 101}." for i in range(n)]


def prompts(n: int) -> list[str]:
    return [f"Write a short story about {TOPICS[i % len(TOPICS)]} number {i}." for i in range(n)]


def chat_body(prompt: str, tokens: int) -> dict[str, Any]:
    return {
        "model": CHAT_MODEL,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": tokens,
        "min_tokens": tokens,
        "temperature": 0,
    }


def run_batch(
    client: Any, url: str, bodies: list[dict[str, Any]], cancel_after_s: float | None = None
) -> dict:
    content = "".join(
        json.dumps({"custom_id": str(i), "method": "POST", "url": url, "body": b}) + "\n"
        for i, b in enumerate(bodies)
    ).encode()
    file_id = client.files.create(file=("bench.jsonl", content), purpose="batch").id
    started = time.monotonic()
    batch = client.batches.create(input_file_id=file_id, endpoint=url, completion_window="24h")
    while batch.status not in ("completed", "failed", "expired", "cancelled"):
        time.sleep(0.25)
        batch = client.batches.retrieve(batch.id)
    wall = time.monotonic() - started
    counts = batch.request_counts
    tokens = batch.usage.total_tokens if batch.usage else 0
    return {
        "status": batch.status,
        "seconds": wall,
        "completed": counts.completed,
        "failed": counts.failed,
        "lines_per_s": counts.completed / wall,
        "tokens": tokens,
        # the batch's own timestamps (whole seconds): where its wall time went
        "validating_s": (batch.in_progress_at or 0) - batch.created_at,
        "in_progress_s": (batch.finalizing_at or 0) - (batch.in_progress_at or 0),
        "finalizing_s": (batch.completed_at or 0) - (batch.finalizing_at or 0),
    }


async def direct(
    base_url: str, kind: str, bodies: list[dict[str, Any]], concurrency: int
) -> dict[str, float]:
    """The same requests sent straight to /v1, ``concurrency`` in flight."""
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=base_url, api_key="none", max_retries=0, timeout=600)
    left = iter(bodies)
    done = 0

    async def worker() -> None:
        nonlocal done
        for body in left:
            if kind == "chat":
                extra = {"min_tokens": body["min_tokens"]}
                rest = {k: v for k, v in body.items() if k != "min_tokens"}
                await client.chat.completions.create(**rest, extra_body=extra)
            else:
                await client.embeddings.create(**body)
            done += 1

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.monotonic() - started
    await client.close()
    return {"seconds": wall, "completed": done, "lines_per_s": done / wall}


async def interactive(grpc_url: str, base_url: str, image: bytes, seconds: float) -> dict[str, float]:
    """image_classifier at concurrency 4 (gRPC) and one LLM stream (/v1) at once, for ``seconds``."""
    import tritonclient.grpc.aio as aio
    from openai import AsyncOpenAI

    grpc = aio.InferenceServerClient(grpc_url)
    llm = AsyncOpenAI(base_url=base_url, api_key="none", max_retries=0, timeout=600)
    end = time.monotonic() + seconds
    latencies: list[float] = []
    ttfts: list[float] = []
    tokens = 0

    async def images() -> None:
        import tritonclient.grpc as grpcclient

        while time.monotonic() < end:
            x = grpcclient.InferInput("IMAGE", [1, 1], "BYTES")
            x.set_data_from_numpy(np.array([[image]], dtype=np.object_))
            t = time.monotonic()
            await grpc.infer("image_classifier", [x])
            latencies.append(time.monotonic() - t)

    async def stream() -> None:
        nonlocal tokens
        while time.monotonic() < end:
            t = time.monotonic()
            first = None
            response = await llm.chat.completions.create(
                **{k: v for k, v in chat_body("Name three primary colors.", 32).items() if k != "min_tokens"},
                stream=True,
                stream_options={"include_usage": True},
                extra_body={"min_tokens": 32},
            )
            async for chunk in response:
                if first is None and chunk.choices and chunk.choices[0].delta.content:
                    first = time.monotonic() - t
                if chunk.usage:
                    tokens += chunk.usage.completion_tokens
            ttfts.append(first or 0.0)

    started = time.monotonic()
    await asyncio.gather(*(images() for _ in range(4)), stream())
    wall = time.monotonic() - started
    await grpc.close()
    await llm.close()
    return {
        "images_per_s": len(latencies) / wall,
        "image_p99_ms": float(np.percentile(latencies, 99) * 1e3),
        "llm_tokens_per_s": tokens / wall,
        "llm_ttft_p50_ms": float(np.percentile(ttfts, 50) * 1e3),
    }


def run(args: argparse.Namespace, console: Console) -> int:
    import skimage.data
    from openai import OpenAI
    from PIL import Image

    skip = set(filter(None, args.skip.split(",")))
    home = Path(tempfile.mkdtemp(prefix="bench-batch-"))
    fleet = Serve(args.repository, home)
    plain = {k: v for k, v in vars(args).items() if isinstance(v, int | float | str)}
    results: dict[str, Any] = {"machine": report.machine(), "args": plain}
    with console.status("starting fleet serve"):
        fleet.start()
    client = OpenAI(base_url=fleet.base_url, api_key="none", max_retries=3, timeout=600)
    try:
        if "throughput" not in skip and args.embedding_lines:
            bodies = [{"model": EMBEDDING_MODEL, "input": t} for t in texts(args.embedding_lines)]
            with console.status(f"{len(bodies)} embedding requests, direct then as a batch"):
                d = asyncio.run(direct(fleet.base_url, "embedding", bodies, args.embedding_concurrency))
                b = run_batch(client, "/v1/embeddings", bodies)
            results["embeddings"] = {"direct": d, "batch": b, "ratio": b["lines_per_s"] / d["lines_per_s"]}
            console.print(f"embeddings: batch/direct {results['embeddings']['ratio']:.2f}")
        if "throughput" not in skip and args.chat_lines:
            bodies = [chat_body(p, args.chat_tokens) for p in prompts(args.chat_lines)]
            with console.status(
                f"{len(bodies)} chat requests of {args.chat_tokens} tokens, direct then batch"
            ):
                d = asyncio.run(direct(fleet.base_url, "chat", bodies, args.chat_concurrency))
                b = run_batch(client, "/v1/chat/completions", bodies)
            results["chat"] = {"direct": d, "batch": b, "ratio": b["lines_per_s"] / d["lines_per_s"]}
            console.print(f"chat: batch/direct {results['chat']['ratio']:.2f}")
        if "interactive" not in skip:
            import io

            buf = io.BytesIO()
            Image.fromarray(skimage.data.chelsea()).save(buf, "JPEG")
            with console.status("interactive traffic without a batch, then during one"):
                alone = asyncio.run(interactive(fleet.grpc_url, fleet.base_url, buf.getvalue(), args.seconds))
                batch_id = _start_batch(client, [chat_body(p, args.chat_tokens) for p in prompts(400)])
                time.sleep(2)
                during = asyncio.run(
                    interactive(fleet.grpc_url, fleet.base_url, buf.getvalue(), args.seconds)
                )
                done = client.batches.retrieve(batch_id).request_counts.completed
                client.batches.cancel(batch_id)
            ratios = {k: during[k] / alone[k] for k in alone if alone[k]}
            results["interactive"] = {
                "alone": alone,
                "during_batch": during,
                "batch_lines_meanwhile": done,
                "ratios": ratios,
            }
            console.print(f"interactive during/alone: {results['interactive']['ratios']}")
        if "recovery" not in skip:
            with console.status("kill -9 of fleet serve mid-batch, then a restart"):
                results["recovery"] = _recovery(fleet, client, args.chat_tokens)
            console.print(f"recovery: {results['recovery']}")
    finally:
        fleet.stop()
    path = report.write(args.output, "batch", results, _markdown(results))
    console.print(path.with_suffix(".md").read_text())
    console.print(f"[green]✓[/] report: {path}")
    return 0


def _start_batch(client: Any, bodies: list[dict[str, Any]]) -> str:
    url = "/v1/chat/completions"
    content = "".join(
        json.dumps({"custom_id": str(i), "method": "POST", "url": url, "body": b}) + "\n"
        for i, b in enumerate(bodies)
    ).encode()
    file_id = client.files.create(file=("bench.jsonl", content), purpose="batch").id
    return client.batches.create(input_file_id=file_id, endpoint=url, completion_window="24h").id


def _recovery(fleet: Serve, client: Any, tokens: int) -> dict[str, float]:
    batch_id = _start_batch(client, [chat_body(p, tokens) for p in prompts(60)])
    while client.batches.retrieve(batch_id).request_counts.completed < 3:
        time.sleep(0.1)
    fleet.kill()
    launched = time.monotonic()
    ready_s = fleet.start()
    start_count = client.batches.retrieve(batch_id).request_counts.completed
    while True:
        batch = client.batches.retrieve(batch_id)
        if batch.request_counts.completed > start_count or batch.status == "completed":
            break
        time.sleep(0.05)
    progress_s = time.monotonic() - launched
    client.batches.cancel(batch_id)
    return {
        "ready_s": ready_s,
        "next_line_s": progress_s,
        "next_line_after_ready_s": progress_s - ready_s,
        "status_after_restart": batch.status,
    }


def _markdown(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = [
        "# Batch inference against the same requests sent straight to the fleet",
        f"{m['date']}, {m['cpu']} ({m['cores']} cores); ratios within this run (the machine may be shared).",
        "",
    ]
    rows = []
    for name in ("embeddings", "chat"):
        if name in r:
            x = r[name]
            rows.append(
                [
                    name,
                    x["batch"]["completed"],
                    f"{x['direct']['lines_per_s']:.1f}",
                    f"{x['batch']['lines_per_s']:.1f}",
                    f"**{x['ratio']:.2f}** (target 0.9)",
                ]
            )
    if rows:
        lines += [
            report.markdown_table(
                ["lines", "count", "direct lines/s", "batch lines/s", "batch / direct"], rows
            ),
            "",
        ]
    if "interactive" in r:
        i = r["interactive"]
        rows = [
            [k, f"{i['alone'][k]:.1f}", f"{i['during_batch'][k]:.1f}", f"{i['ratios'].get(k, 0):.2f}"]
            for k in i["alone"]
        ]
        lines += [
            "Interactive traffic (image_classifier at concurrency 4 + one LLM stream) without and during a "
            f"chat batch ({i['batch_lines_meanwhile']} batch lines answered meanwhile); targets: throughput "
            ">= 0.8x, p99 / TTFT p50 <= 1.25x:",
            "",
            report.markdown_table(["measure", "alone", "during batch", "ratio"], rows),
            "",
        ]
    if "recovery" in r:
        x = r["recovery"]
        lines += [
            f"Recovery after kill -9 of fleet serve mid-batch: serving again {x['ready_s']:.1f} s after the "
            f"restart, the batch's next line answered {x['next_line_s']:.1f} s after it "
            f"({x['next_line_after_ready_s']:.1f} s after serving; target 10 s).",
            "",
        ]
    return "\n".join(lines) + "\n"
