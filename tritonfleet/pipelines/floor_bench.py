"""``fleet bench <pipeline>`` of a served-vs-in-process-floor benchmark
(:mod:`tritonfleet.tools.bench.inprocess`), declared once for the pipelines that have one."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tritonfleet.pipelines import Command, ints

if TYPE_CHECKING:
    from rich.console import Console


def floor_bench(load: Callable[[], Callable[..., Any]]) -> Command:
    """The command with its arguments (``--concurrency``, ``--measurement-ms``): ``load()`` imports the
    pipeline's bench factory (the tools extra's, optional) when the command runs."""

    def arguments(p: argparse.ArgumentParser) -> None:
        p.add_argument("--concurrency", type=ints, default=[1, 4, 16], help="default 1,4,16")
        p.add_argument("--measurement-ms", type=int, default=5000, help="perf_analyzer window")

    def run(args: argparse.Namespace, console: Console) -> int:
        from tritonfleet.tools.bench import inprocess

        return inprocess.command(load(), args, console)

    return Command("perf_analyzer (gRPC) vs the in-process batched floor", arguments, run)
