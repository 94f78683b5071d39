"""Benchmarks. Each pipeline declares its own (``fleet bench <pipeline>``); the ones of the whole system
are listed here (``fleet bench <name>``)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from tritonfleet.pipelines import Command
from tritonfleet.tools.bench import batch, fleet, frontdoor

if TYPE_CHECKING:
    from rich.console import Console


def _openai_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--concurrency", type=lambda t: [int(n) for n in t.split(",")], default=[1, 8, 32])
    p.add_argument("--requests", type=int, default=32, help="requests per point (at least 2x concurrency)")
    p.add_argument("--no-llama-cpp", action="store_true", help="skip llama.cpp's server even if installed")


def _openai(args: argparse.Namespace, console: Console) -> int:
    from tritonfleet.tools.bench.openai import run_openai_bench

    if args.url:
        console.print("[yellow]--url is ignored: this bench starts its own `fleet serve --models llm`[/]")
    path = run_openai_bench(
        args.repository,
        concurrency=args.concurrency,
        requests=args.requests,
        output=args.output,
        console=console,
        with_llama_cpp=not args.no_llama_cpp,
    )
    console.print(path.read_text())
    console.print(f"[green]✓[/] report: {path}")
    return 0


BENCHES = {
    "batch": Command(
        "batch lines vs the same requests straight to /v1; interactive traffic during a batch; recovery",
        batch.arguments,
        batch.run,
    ),
    "fleet": Command(
        "the whole fleet: time to ready and memory over fresh starts", fleet.arguments, fleet.run
    ),
    "frontdoor": Command(
        "the same requests straight to Triton and through the front door (and recovery times)",
        frontdoor.arguments,
        frontdoor.run,
    ),
    "openai": Command(
        "/v1 (genai-perf, chat, streaming) vs the same prompts to the gRPC ensemble (and llama.cpp)",
        _openai_arguments,
        _openai,
    ),
}
