"""``fleet infer text_embedding`` and ``fleet bench text_embedding``: their arguments and what they run."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from tritonfleet.clients import FleetClient
from tritonfleet.pipelines import Command, ints

if TYPE_CHECKING:
    from rich.console import Console


def infer_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("texts", nargs="+", metavar="TEXT", help="texts to embed (one request)")


def infer(args: argparse.Namespace, console: Console) -> int:
    with FleetClient(args.url, protocol=args.protocol) as fleet:
        result = fleet.embed(args.texts)
    for i, (text, vector) in enumerate(zip(args.texts, result, strict=True)):
        cut = " [yellow]truncated[/]" if result.truncated[i] else ""
        head = ", ".join(f"{v:+.4f}" for v in vector[:4])
        console.print(
            f"[bold]{i}[/] {text!r}: {result.num_tokens[i]} tokens{cut}, [{head}, ...] ({len(vector)})"
        )
    if len(result) > 1:
        console.print("cosine similarity:")
        for i, row in enumerate(result.similarity()):
            console.print(f"  {i}: " + "  ".join(f"{s:6.3f}" for s in row))
    return 0


def bench_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--concurrency", type=ints, default=[1, 4, 16], help="default 1,4,16")
    p.add_argument("--measurement-ms", type=int, default=5000, help="perf_analyzer window")


def bench(args: argparse.Namespace, console: Console) -> int:
    # The benchmark is the tools extra's (optional): imported when it runs.
    from tritonfleet.pipelines.text_embedding.bench import text_embedding_bench
    from tritonfleet.tools.bench import inprocess

    return inprocess.command(text_embedding_bench, args, console)


INFER = Command("embed texts (and print their cosine similarities)", infer_arguments, infer)
BENCH = Command("perf_analyzer (gRPC) vs the in-process batched floor", bench_arguments, bench)
