"""``fleet infer tabular`` and ``fleet bench tabular``: their arguments (rows inline, CSV, JSON) and what they
run."""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tritonfleet.clients import FleetClient
from tritonfleet.clients import tabular as client
from tritonfleet.pipelines import Command, ints, names

if TYPE_CHECKING:
    from rich.console import Console


def infer_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, choices=client.MODELS, help="the classifier to call")
    p.add_argument(
        "rows",
        nargs="*",
        metavar="ROW",
        help='one row: values in feature order ("14.2,1.7,...") or name=value pairs '
        '("alcohol=14.2,malic_acid=1.7,..."); quote names with spaces',
    )
    p.add_argument(
        "--file",
        help="rows from a CSV file (a header of feature names, or values only), JSON (a list of objects "
        "or of lists) or JSON Lines; '-' reads standard input",
    )
    p.add_argument("--describe", action="store_true", help="print the model's features and classes")
    p.add_argument("--json", action="store_true", help="one JSON object per row instead of a table")


def parse_row(text: str) -> dict[str, str] | list[str]:
    """An inline row: ``1.0,2.0`` (values in feature order) or ``name=1.0,other=2.0``."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if all("=" in p for p in parts):
        return {k.strip(): v.strip() for k, v in (p.split("=", 1) for p in parts)}
    if any("=" in p for p in parts):
        raise ValueError(f"row {text!r}: give every value as name=value, or none")
    return parts


def read_rows(text: str, name: str = "") -> list[Any]:
    """Rows from a file's text: JSON (a list, or one row), JSON Lines, or CSV with or without a header."""
    stripped = text.lstrip()
    if name.endswith(".jsonl") or (stripped.startswith("{") and "\n{" in stripped):
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    if name.endswith(".json") or stripped[:1] in "[{":
        data = json.loads(text)
        return data if isinstance(data, list) else [data]
    table = [r for r in csv.reader(io.StringIO(text)) if r]
    if not table:
        return []
    if _is_number(table[0][0]):
        return table
    header = [h.strip() for h in table[0]]
    return [dict(zip(header, row, strict=True)) for row in table[1:]]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def infer(args: argparse.Namespace, console: Console) -> int:
    from rich.table import Table
    from tritonclient.utils import InferenceServerException

    try:
        rows = [parse_row(r) for r in args.rows]
        if args.file:
            text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text()
            from_file = read_rows(text, args.file)
            if not from_file:
                raise ValueError(f"{args.file}: no rows")
            rows += from_file
    except (OSError, ValueError) as exc:
        console.print(f"[red]✗[/] {exc}")
        return 2
    with FleetClient(args.url, protocol=args.protocol) as fleet:
        schema = client.Schema.from_config(args.model, fleet.model_config(args.model))
        if args.describe or not rows:
            console.print(f"[bold]{args.model}[/]: {len(schema.features)} features, in order:")
            console.print("  " + ", ".join(schema.features))
            console.print(f"classes (LABEL order): {', '.join(schema.classes)}")
            if not rows:
                console.print("[dim]give rows inline or with --file to predict[/]")
            return 0
        results = []
        try:
            for start in range(0, len(rows), schema.max_batch_size):
                results.append(fleet.predict_tabular(args.model, rows[start : start + schema.max_batch_size]))
        except (ValueError, InferenceServerException) as exc:
            console.print(f"[red]✗[/] {exc}")
            return 2
    if args.json:
        for batch in results:
            for label, name, probs in zip(batch.labels, batch.class_names, batch.probabilities, strict=True):
                row = {
                    "label": int(label),
                    "class": name,
                    "probabilities": dict(zip(batch.classes, map(float, probs), strict=True)),
                }
                print(json.dumps(row))
        return 0
    table = Table("row", "class", *schema.classes)
    index = 0
    for batch in results:
        for label, name, probs in zip(batch.labels, batch.class_names, batch.probabilities, strict=True):
            cells = [f"[bold]{p:.4f}[/]" if i == label else f"{p:.4f}" for i, p in enumerate(probs)]
            table.add_row(str(index), name, *cells)
            index += 1
    console.print(table)
    return 0


def bench_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--tune", action="store_true", help="compare Triton batching settings instead (docs/tabular.md)"
    )
    p.add_argument("--models", type=names, default=list(client.MODELS), help="default: every one")
    p.add_argument(
        "--systems",
        type=names,
        help="default: triton-grpc,triton-http,fastapi-1,fastapi-<cores>,bentoml,litserve",
    )
    p.add_argument("--concurrency", type=ints, default=None, help="default 1,8,32 (--tune: 1,32)")
    p.add_argument("--rounds", type=int, default=3, help="rounds over every system or setting (the spread)")
    p.add_argument("--seconds", type=float, default=5.0, help="load per point")


def bench(args: argparse.Namespace, console: Console) -> int:
    if args.url:
        console.print("[red]✗[/] fleet bench tabular starts each server itself (one at a time): no --url")
        return 2
    # The benchmarks are the tools extra's (optional): imported when they run.
    if args.tune:
        from tritonfleet.pipelines.tabular.bench.tuning import run_tuning

        path = run_tuning(
            args.repository,
            models=args.models,
            concurrency=args.concurrency or [1, 32],
            rounds=args.rounds,
            measurement_ms=int(args.seconds * 1000 / 3),
            output=args.output,
            console=console,
        )
    else:
        from tritonfleet.pipelines.tabular.bench import SYSTEMS, run_peer_bench

        systems = args.systems or list(SYSTEMS)
        unknown = sorted(set(systems) - set(SYSTEMS))
        if unknown:
            console.print(f"[red]✗[/] unknown systems {unknown}; choose from {', '.join(SYSTEMS)}")
            return 2
        path = run_peer_bench(
            args.repository,
            models=args.models,
            systems=systems,
            concurrency=args.concurrency or [1, 8, 32],
            rounds=args.rounds,
            seconds=args.seconds,
            output=args.output,
            console=console,
        )
    console.print(f"[green]✓[/] report: {path}")
    return 0


INFER = Command("classify rows of features (inline, CSV or JSON)", infer_arguments, infer)
BENCH = Command("Triton vs FastAPI, BentoML and LitServe on the same ONNX files", bench_arguments, bench)
