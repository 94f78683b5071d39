"""tabular: classic-ML classifiers in ONNX, one row of features in, a class and its probabilities out.

``breast_cancer_xgboost`` (XGBoost on scikit-learn's breast cancer data) and ``wine_sklearn`` (a
scikit-learn StandardScaler + LogisticRegression pipeline on the wine data), trained at build time by
``build/tabular/train.py`` and served by the onnxruntime backend with dynamic batching. Feature and class
names live in each model's config (``clients/tabular.py``).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tritonfleet.artifacts import Recipe
from tritonfleet.clients import tabular as client
from tritonfleet.pipelines import Command, Pipeline, Playground, Slo, ints, names

if TYPE_CHECKING:
    from rich.console import Console

    from tritonfleet.clients import FleetClient

BUILD_PACKAGES = ("scikit-learn", "xgboost-cpu", "skl2onnx", "onnxmltools", "onnx", "onnxruntime", "numpy")

# Real rows of the datasets and their true classes (wine row 0, breast cancer row 19): the probe's requests.
PROBE_ROWS: dict[str, tuple[dict[str, float] | list[float], str]] = {
    "wine_sklearn": (
        {
            "alcohol": 14.23,
            "malic_acid": 1.71,
            "ash": 2.43,
            "alcalinity_of_ash": 15.6,
            "magnesium": 127.0,
            "total_phenols": 2.8,
            "flavanoids": 3.06,
            "nonflavanoid_phenols": 0.28,
            "proanthocyanins": 2.29,
            "color_intensity": 5.64,
            "hue": 1.04,
            "od280/od315_of_diluted_wines": 3.92,
            "proline": 1065.0,
        },
        "class_0",
    ),
    "breast_cancer_xgboost": (
        [13.54, 14.36, 87.46, 566.3, 0.09779, 0.08129, 0.06664, 0.04781, 0.1885, 0.05766, 0.2699, 0.7886,
         2.058, 23.56, 0.008462, 0.0146, 0.02387, 0.01315, 0.0198, 0.0023, 15.11, 19.26, 99.7, 711.2,
         0.144, 0.1773, 0.239, 0.1288, 0.2977, 0.07259],
        "benign",
    ),
}  # fmt: skip


def _infer_arguments(p: argparse.ArgumentParser) -> None:
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


def _infer(args: argparse.Namespace, console: Console) -> int:
    from rich.table import Table
    from tritonclient.utils import InferenceServerException

    from tritonfleet.clients import FleetClient

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


def _bench_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--tune", action="store_true", help="compare Triton batching settings instead (docs/tabular.md)"
    )
    p.add_argument("--models", type=names, default=list(client.MODELS), help="default: both")
    p.add_argument(
        "--systems",
        type=names,
        help="default: triton-grpc,triton-http,fastapi-1,fastapi-<cores>,bentoml,litserve",
    )
    p.add_argument("--concurrency", type=ints, default=None, help="default 1,8,32 (--tune: 1,32)")
    p.add_argument("--rounds", type=int, default=3, help="rounds over every system or setting (the spread)")
    p.add_argument("--seconds", type=float, default=5.0, help="load per point")


def _bench(args: argparse.Namespace, console: Console) -> int:
    if args.url:
        console.print("[red]✗[/] fleet bench tabular starts each server itself (one at a time): no --url")
        return 2
    if args.tune:
        from tritonfleet.pipelines.tabular.tuning import run_tuning

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


def _probe(fleet: FleetClient) -> None:
    """A real row of each dataset gets its true class, with probabilities that sum to one."""
    for model, (row, expected) in PROBE_ROWS.items():
        result = fleet.predict_tabular(model, [row])
        assert result.class_names == [expected], (model, result)
        assert abs(float(result.probabilities.sum()) - 1) < 1e-4, (model, result)


PIPELINE = Pipeline(
    name="tabular",
    summary="classic ML in ONNX: XGBoost (breast cancer) and scikit-learn (wine) classifiers",
    public=client.MODELS,
    recipes=tuple(
        Recipe(
            script="build/tabular/train.py",
            outputs=(f"{model}/1/model.onnx", f"{model}/1/training.json"),
            args=("--model", model, "--repository", "{repository}", "--output", f"{{output}}/{model}/1"),
            sources=(f"model_repository/{model}/config.pbtxt", "clients/tabular.py"),
            packages=BUILD_PACKAGES,
        )
        for model in client.MODELS
    ),
    helpers=(client.predict_tabular,),
    infer=Command("classify rows of features (inline, CSV or JSON)", _infer_arguments, _infer),
    bench=Command("Triton vs FastAPI, BentoML and LitServe on the same ONNX files", _bench_arguments, _bench),
    probe=_probe,
    # The onnxruntime backend's runtime where tritonfleet is installed without its dependencies (the GPU
    # image, whose Python 3.10 gets onnxruntime 1.23 at most).
    requires=("onnxruntime>=1.20",),
    build_requires=("scikit-learn==1.9.1", "xgboost-cpu==3.2.0", "skl2onnx==1.20.0", "onnxmltools==1.16.0"),
    slo=Slo(p99_seconds=0.1),
    playground=Playground(
        "tabular",
        params={
            "input": client.INPUT,
            "output": client.PROBABILITIES,
            "label": client.LABEL,
            "features": client.FEATURE_NAMES,  # config parameters: comma-separated names
            "classes": client.CLASS_NAMES,
            "examples": {m: row for m, (row, _) in PROBE_ROWS.items()},  # a real row each, to start from
        },
    ),
)
