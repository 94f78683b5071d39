"""``fleet infer image_classifier`` and ``fleet bench image_classifier``: their arguments and what they
run."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from tritonfleet.clients import FleetClient
from tritonfleet.pipelines import Command, ints

if TYPE_CHECKING:
    from rich.console import Console


def infer_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (JPEG, PNG, WebP, ...)")
    p.add_argument("--top-k", type=int, default=5, help="classes to show")


def infer(args: argparse.Namespace, console: Console) -> int:
    with FleetClient(args.url, protocol=args.protocol) as fleet:
        results = fleet.classify_images([Path(p) for p in args.images], top_k=args.top_k)
    for path, classes in zip(args.images, results, strict=True):
        console.print(f"[bold]{path}[/]")
        for c in classes:
            console.print(f"  {c.score:7.2%}  {c.label}  [dim]({c.index})[/]")
    return 0


def bench_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--concurrency", type=ints, default=[1, 4, 16], help="default 1,4,16")
    p.add_argument("--measurement-ms", type=int, default=5000, help="perf_analyzer window")


def bench(args: argparse.Namespace, console: Console) -> int:
    # The benchmark is the tools extra's (optional): imported when it runs.
    from tritonfleet.pipelines.image_classifier.bench import image_classifier_bench
    from tritonfleet.tools.bench import inprocess

    return inprocess.command(image_classifier_bench, args, console)


INFER = Command("classify images", infer_arguments, infer)
BENCH = Command("perf_analyzer (gRPC) vs the in-process batched floor", bench_arguments, bench)
