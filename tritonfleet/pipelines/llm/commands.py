"""``fleet infer llm`` and ``fleet bench llm``: their arguments and what they run."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from tritonfleet.clients import FleetClient
from tritonfleet.pipelines import Command, ints

if TYPE_CHECKING:
    from rich.console import Console


def infer_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("prompt", nargs="+", help="the prompt (the user's message in the chat template)")
    p.add_argument("--max-tokens", type=int, default=128, help="tokens to generate at most")
    p.add_argument("--no-stream", action="store_true", help="one response instead of streaming")


def infer(args: argparse.Namespace, console: Console) -> int:
    prompt = " ".join(args.prompt)
    with FleetClient(args.url, protocol=args.protocol) as fleet:
        if args.no_stream:
            print(fleet.generate(prompt, args.max_tokens))
        else:
            for piece in fleet.stream(prompt, args.max_tokens):
                print(piece, end="", flush=True)
            print()
    return 0


def bench_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--concurrency", type=ints, default=[1, 4, 8])
    p.add_argument("--requests", type=int, default=16, help="requests per level")
    p.add_argument(
        "--engines",
        help="compare CPU engines side by side instead (openvino, genai, ortgenai, llamaserver; "
        "name:key=value,... sets an engine's parameters), e.g. --engines openvino,genai,ortgenai,llamaserver",
    )
    p.add_argument("--levels", type=ints, default=[1, 8, 16, 32], help="--engines: concurrent streams")
    p.add_argument("--mixed", type=int, default=48, help="--engines: requests of the mixed set (0: none)")
    p.add_argument("--prefix-trials", type=int, default=3, help="--engines: prefix-cache probes (0: none)")
    p.add_argument(
        "--build-peer",
        action="store_true",
        help="compile llama.cpp's llama-server into the build cache (once, ~25 min on 2 cores) and stop",
    )


def bench(args: argparse.Namespace, console: Console) -> int:
    # The benchmark is the tools extra's (optional): imported when it runs.
    from tritonfleet.pipelines.llm.bench import engines as engine_bench
    from tritonfleet.pipelines.llm.bench import peer
    from tritonfleet.pipelines.llm.bench.served import run_llm_bench

    if args.build_peer:
        console.print(f"[green]✓[/] {peer.build(console.print)}")
        return 0
    if args.engines:
        work = engine_bench.Workloads(
            levels=tuple(args.levels), mixed=args.mixed, prefix_trials=args.prefix_trials
        )
        specs = engine_bench.split_specs(args.engines)
        path = engine_bench.run_engine_bench(args.repository, specs, args.output, console, work)
        console.print(f"[green]✓[/] report: {path}")
        return 0
    path = run_llm_bench(
        args.repository,
        concurrency=args.concurrency,
        url=args.url,
        output=args.output,
        console=console,
        requests_per_level=args.requests,
    )
    console.print(f"[green]✓[/] report: {path}")
    return 0


INFER = Command("generate text (streams by default)", infer_arguments, infer)
BENCH = Command(
    "genai-perf streaming vs the in-process engine (and llama.cpp); --engines: CPU engines side by side",
    bench_arguments,
    bench,
)
