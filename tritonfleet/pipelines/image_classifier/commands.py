"""``fleet infer image_classifier`` and ``fleet bench image_classifier``: their arguments and what they
run."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tritonfleet.clients import FleetClient
from tritonfleet.pipelines import Command
from tritonfleet.pipelines.floor_bench import floor_bench

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


def bench_factory() -> Callable[..., Any]:
    """The floor benchmark's factory, imported when ``fleet bench`` runs (the tools extra is optional)."""
    from tritonfleet.pipelines.image_classifier.bench import image_classifier_bench

    return image_classifier_bench


INFER = Command("classify images", infer_arguments, infer)
BENCH = floor_bench(bench_factory)
