"""``fleet infer text_embedding`` and ``fleet bench text_embedding``: their arguments and what they run."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tritonfleet.clients import FleetClient
from tritonfleet.pipelines import Command
from tritonfleet.pipelines.floor_bench import floor_bench

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


def bench_factory() -> Callable[..., Any]:
    """The floor benchmark's factory, imported when ``fleet bench`` runs (the tools extra is optional)."""
    from tritonfleet.pipelines.text_embedding.bench import text_embedding_bench

    return text_embedding_bench


INFER = Command("embed texts (and print their cosine similarities)", infer_arguments, infer)
BENCH = floor_bench(bench_factory)
