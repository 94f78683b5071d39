"""The benchmarks of the whole system as ``fleet bench`` commands (``batch``, ``fleet``, ``frontdoor``,
``openai``): their arguments here, so that the CLI offers them without importing the benchmarks, which are
the ``tools`` extra's (:mod:`tritonfleet.tools.bench`) and imported when one runs. Each pipeline declares
its own."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from tritonfleet.pipelines import Command, ints

if TYPE_CHECKING:
    from rich.console import Console


def _tool(name: str) -> Callable[[argparse.Namespace, Console], int]:
    """The bench that ``tritonfleet.tools.bench.<name>.run(args, console)`` runs, imported when it runs."""

    def run(args: argparse.Namespace, console: Console) -> int:
        return importlib.import_module(f"tritonfleet.tools.bench.{name}").run(args, console)

    return run


def _batch_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--embedding-lines", type=int, default=10_000)
    p.add_argument("--chat-lines", type=int, default=500)
    p.add_argument("--chat-tokens", type=int, default=64)
    p.add_argument("--embedding-concurrency", type=int, default=16)
    p.add_argument("--chat-concurrency", type=int, default=8)
    p.add_argument("--seconds", type=float, default=20.0, help="each interactive measurement")
    p.add_argument(
        "--skip", default="", help="comma-separated parts to skip: throughput,interactive,recovery"
    )


def _fleet_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--starts", type=int, default=3, help="fresh starts to measure")


def _frontdoor_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--concurrency", type=ints, default=[1, 8, 32])
    p.add_argument("--seconds", type=int, default=5, help="wrk duration and perf_analyzer window")
    p.add_argument("--rounds", type=int, default=2, help="direct / front door alternations per point")
    p.add_argument("--llm-requests", type=int, default=16, help="LLM streams per level")
    p.add_argument("--llm-tokens", type=int, default=32, help="tokens each LLM request generates")
    p.add_argument(
        "--skip", default="", help="comma-separated parts to skip: tabular,http,image,llm,recovery"
    )


def _openai_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--concurrency", type=ints, default=[1, 8, 32])
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
        _batch_arguments,
        _tool("batch"),
    ),
    "fleet": Command(
        "the whole fleet: time to ready and memory over fresh starts", _fleet_arguments, _tool("fleet")
    ),
    "frontdoor": Command(
        "the same requests straight to Triton and through the front door (and recovery times)",
        _frontdoor_arguments,
        _tool("frontdoor"),
    ),
    "openai": Command(
        "/v1 (genai-perf, chat, streaming) vs the same prompts to the gRPC ensemble (and llama.cpp)",
        _openai_arguments,
        _openai,
    ),
}
