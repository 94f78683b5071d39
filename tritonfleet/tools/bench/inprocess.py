"""A served pipeline (perf_analyzer over gRPC) against its in-process floor, level by level in one run.

The floor is what the same work costs with no server: the pipeline's own preprocessing and model code in
this process, on batches as large as the concurrency (up to the model's ``max_batch_size``). At each level
half the floor is measured just before the served run and half just after, so that the machine's load
drifting during a level weighs on both sides alike; served/floor is the number to read on a noisy machine.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from tritonfleet.pipelines.loading import models_to_load
from tritonfleet.server import TritonServer
from tritonfleet.tools.bench import perf_analyzer, report


@dataclass(frozen=True)
class InProcessBench:
    """What a pipeline's served-vs-floor benchmark measures.

    ``requests``: one encoded BYTES item per perf_analyzer request (cycled), sent as ``input_name``.
    ``batch_work(n)`` returns a function that does the work of ``n`` requests in this process.
    ``model`` is the step whose executed batches are counted (the dynamic batcher's average batch).
    ``stability_percentage``: how far perf_analyzer's windows may differ to count as stable (when they never
    do it reports the last three).
    """

    pipeline: str
    model: str
    unit: str  # what one request carries: "images", "texts"
    input_name: str
    requests: list[bytes]
    batch_work: Callable[[int], Callable[[], object]]
    max_batch: int
    served_text: str  # how the served side runs, for the report
    floor_text: str  # how the floor runs
    settings: dict[str, Any] = field(default_factory=dict)
    stability_percentage: int = 50


def parameter(config: Any, key: str, default: int) -> int:
    """An integer ``parameters`` entry of a model's config (``intra_op_thread_count``, ...)."""
    param = config.parameters.get(key)
    return int(param.string_value) if param is not None else default


def command(
    make: Callable[[Path], AbstractContextManager[InProcessBench]], args: argparse.Namespace, console: Console
) -> int:
    """``fleet bench <pipeline>`` of a floor benchmark: ``make(repository)`` gives what to measure (and
    frees what it holds after the run); ``args`` has ``--concurrency`` and ``--measurement-ms``."""
    with make(args.repository) as bench:
        path = run(
            bench,
            args.repository,
            concurrency=args.concurrency,
            url=args.url,
            output=args.output,
            measurement_ms=args.measurement_ms,
            console=console,
        )
    console.print(f"[green]✓[/] report: {path}")
    return 0


def measure(work: Callable[[], object], seconds: float, at_least: int = 3) -> list[float]:
    """Latencies of ``work`` run back to back for ``seconds`` (after one warm-up run)."""
    work()
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(latencies) < at_least:
        start = time.perf_counter()
        work()
        latencies.append(time.perf_counter() - start)
    return latencies


def summary(batch: int, latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "throughput": batch * len(latencies) / sum(latencies),
        "p50_ms": statistics.median(latencies) * 1e3,
        "p99_ms": ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1e3,
        "batches": len(latencies),
    }


def executed_batches(grpc_url: str, model: str) -> tuple[int, int]:
    """(inferences, executions) so far: their ratio over a run is the dynamic batcher's average batch."""
    import tritonclient.grpc as grpcclient

    with grpcclient.InferenceServerClient(grpc_url) as client:
        stats = client.get_inference_statistics(model, as_json=True)["model_stats"][0]
    return int(stats.get("inference_count", 0)), int(stats.get("execution_count", 0))


def run(
    bench: InProcessBench,
    repository: Path,
    *,
    concurrency: list[int],
    url: str | None,
    output: Path,
    measurement_ms: int,
    console: Console,
    stability_percentage: int | None = None,
    window_requests: int | None = None,
) -> Path:
    """Measure each level, write ``output/<pipeline>.{json,md,png}`` and return the Markdown's path
    (``stability_percentage``: instead of the bench's; ``window_requests``: see `perf_analyzer.command`)."""
    server = None
    if url is None:
        output.mkdir(parents=True, exist_ok=True)
        log = output / f"tritonserver-{bench.pipeline}.log"
        models = models_to_load(repository, [bench.pipeline])
        server = TritonServer.on_free_ports(repository, models=models, log=log)
        with console.status("starting tritonserver"):
            server.start()
        url = server.grpc_url
    levels: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            requests = [{bench.input_name: np.array([r], dtype=np.object_)} for r in bench.requests]
            data_file = perf_analyzer.write_input_data(requests, Path(tmp) / "input.json")
            for c in concurrency:
                csv_path = Path(tmp) / f"c{c}.csv"
                cmd = perf_analyzer.command(
                    bench.pipeline,
                    url,
                    c,
                    csv_path,
                    input_data=data_file,
                    shapes={bench.input_name: [1]},
                    measurement_ms=measurement_ms,
                    stability_percentage=stability_percentage or bench.stability_percentage,
                    window_requests=window_requests,
                )
                batch = min(c, bench.max_batch)
                work = bench.batch_work(batch)
                with console.status(f"in-process floor: batch {batch}"):
                    latencies = measure(work, measurement_ms / 2e3)
                before = executed_batches(url, bench.model)
                with console.status(f"perf_analyzer: concurrency {c}"):
                    served = perf_analyzer.run(cmd, csv_path, c)
                after = executed_batches(url, bench.model)
                with console.status(f"in-process floor: batch {batch}"):
                    latencies += measure(work, measurement_ms / 2e3)
                avg_batch = (after[0] - before[0]) / max(1, after[1] - before[1])
                floor = summary(batch, latencies)
                ratio = served.throughput / floor["throughput"]
                console.print(
                    f"  c={c:>3}: served {served.throughput:7.1f}/s p99 {served.p99_ms:6.1f} ms | "
                    f"avg batch {avg_batch:4.1f} | floor (batch {batch}) {floor['throughput']:7.1f}/s | "
                    f"ratio {ratio:.2f}"
                )
                levels.append(
                    {
                        "concurrency": c,
                        "served": {**vars(served), "avg_model_batch": avg_batch},
                        "floor": {"batch": batch, **floor},
                        "ratio": ratio,
                    }
                )
    finally:
        if server is not None:
            server.stop()
    return write_report(bench, output, levels)


def write_report(bench: InProcessBench, output: Path, levels: list[dict[str, Any]]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = {
        "pipeline": bench.pipeline,
        "machine": report.machine(),
        "settings": {"protocol": "grpc", **bench.settings},
        "levels": levels,
    }
    rows = [
        [
            lv["concurrency"],
            lv["served"]["throughput"],
            lv["served"]["p50_ms"],
            lv["served"]["p99_ms"],
            lv["served"]["avg_model_batch"],
            lv["floor"]["batch"],
            lv["floor"]["throughput"],
            lv["floor"]["p99_ms"],
            lv["ratio"],
        ]
        for lv in levels
    ]
    headers = [
        "concurrency",
        f"served {bench.unit}/s",
        "served p50 ms",
        "served p99 ms",
        f"avg batch run by {bench.model}",
        "floor batch",
        f"floor {bench.unit}/s",
        "floor p99 ms (batch)",
        "served/floor",
    ]
    m = data["machine"]
    md = (
        f"# {bench.pipeline} benchmark\n\n{m['date']} on {m['cpu']} ({m['cores']} cores), "
        f"Python {m['python']}.\n\nServed: {bench.served_text}\nFloor: {bench.floor_text}\n\n"
        + report.markdown_table(headers, rows)
    )
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    xs = [lv["concurrency"] for lv in levels]
    left.plot(xs, [lv["served"]["throughput"] for lv in levels], "o-", label="served (perf_analyzer)")
    left.plot(xs, [lv["floor"]["throughput"] for lv in levels], "s--", label="in-process floor")
    left.set(xscale="log", xlabel="concurrency", ylabel=f"{bench.unit} / s", title="Throughput")
    left.set_xticks(xs, [str(x) for x in xs])
    left.legend()
    right.plot(xs, [lv["served"]["p99_ms"] for lv in levels], "o-", label="served p99")
    right.plot(xs, [lv["served"]["p50_ms"] for lv in levels], "^-", label="served p50")
    right.set(xscale="log", xlabel="concurrency", ylabel="ms", title="Latency")
    right.set_xticks(xs, [str(x) for x in xs])
    right.legend()
    fig.suptitle(f"{bench.pipeline} on {m['cores']} CPU cores ({m['date']})")
    return report.write(output, bench.pipeline, data, md, fig)
