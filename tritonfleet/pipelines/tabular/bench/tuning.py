"""``fleet bench tabular --tune``: the tabular models' batching settings compared in one server run.

Each setting (instances, onnxruntime intra-op threads, the dynamic batcher's queue delay and preferred
batch sizes, the non-finite check) is loaded into the running server as a config override (explicit model
control), then measured with perf_analyzer over gRPC, one real dataset row per request, at each
concurrency; the rounds go over every setting in turn, so a noisy minute spreads over all of them. The
model's own config is reloaded at the end. Writes reports/tabular_tuning.{json,md,png}.
"""

from __future__ import annotations

import copy
import json
import statistics
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from tritonfleet.clients import tabular as client
from tritonfleet.pipelines.tabular import models
from tritonfleet.server import TritonServer
from tritonfleet.tools.bench import perf_analyzer, report

PIPELINE = "tabular"


@dataclass(frozen=True)
class Setting:
    """What a tuning run varies in a model's config."""

    name: str
    instances: int = 1
    intra_op_threads: int = 1
    max_queue_delay_us: int = 0
    preferred: tuple[int, ...] = ()
    reject_non_finite: bool = True

    @classmethod
    def of(cls, name: str, config: dict[str, Any]) -> Setting:
        """The setting a config (JSON, as the server returns it) has."""
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        batching = config.get("dynamic_batching", {})
        preferred = tuple(int(n) for n in batching.get("preferred_batch_size", ()))
        if preferred == (int(config.get("max_batch_size", 0)),):
            preferred = ()  # what Triton fills in for none
        return cls(
            name,
            instances=sum(int(g.get("count", 1)) for g in config.get("instance_group", [])),
            intra_op_threads=int(params.get("intra_op_thread_count", "0")),
            max_queue_delay_us=int(batching.get("max_queue_delay_microseconds", 0)),
            preferred=preferred,
            reject_non_finite=params.get("reject_non_finite", "false") == "true",
        )

    def apply(self, config: dict[str, Any]) -> dict[str, Any]:
        """``config`` (JSON, as the server returns it) with this setting."""
        out = copy.deepcopy(config)
        out["instance_group"] = [{"count": self.instances, "kind": "KIND_CPU"}]
        batching: dict[str, Any] = {"max_queue_delay_microseconds": self.max_queue_delay_us}
        if self.preferred:
            batching["preferred_batch_size"] = list(self.preferred)
        out["dynamic_batching"] = batching
        params = out.setdefault("parameters", {})
        params["intra_op_thread_count"] = {"string_value": str(self.intra_op_threads)}
        params["reject_non_finite"] = {"string_value": str(self.reject_non_finite).lower()}
        return out


SETTINGS = (
    Setting("as served: 2 instances, no delay"),
    Setting("1 instance (stalls: priority levels)", instances=1),
    Setting("queue delay 100 us", max_queue_delay_us=100),
    Setting("queue delay 500 us", max_queue_delay_us=500),
    Setting("preferred 8,16,32, delay 500 us", max_queue_delay_us=500, preferred=(8, 16, 32)),
    Setting("2 intra-op threads", intra_op_threads=2),
    Setting("no non-finite check", reject_non_finite=False),
)


def dataset_rows(model: str) -> np.ndarray:
    """Every row of the model's dataset as float32 (scikit-learn's bundled copy: the training data)."""
    return models.get(model).dataset().data.astype(np.float32)


def samples(model: str) -> Callable[[Path, int], dict[str, np.ndarray]]:
    """Real inputs of ``model`` for ``fleet tune`` (tritonfleet/tune/inputs.py): its dataset's rows."""
    return lambda repository, count: {client.INPUT: dataset_rows(model)[:count]}


SAMPLES = {model: samples(model) for model in models.discover()}


def write_input_data(rows: np.ndarray, path: Path) -> Path:
    """perf_analyzer ``--input-data``: one entry per row, each a request of batch 1."""
    return perf_analyzer.write_input_data([{client.INPUT: row.astype(np.float32)} for row in rows], path)


STAGES = ("queue", "compute_input", "compute_infer", "compute_output")


def server_stats(grpc_url: str, model: str) -> dict[str, int]:
    """The model's cumulative statistics: inferences, executions, failed and successful requests, and the
    nanoseconds its requests spent in each stage (queue, compute input / infer / output)."""
    import tritonclient.grpc as grpcclient

    with grpcclient.InferenceServerClient(grpc_url) as c:
        stats = c.get_inference_statistics(model, as_json=True)["model_stats"][0]
    infer = stats["inference_stats"]
    out = {
        "inferences": int(stats.get("inference_count", 0)),
        "executions": int(stats.get("execution_count", 0)),
        "failed": int(infer.get("fail", {}).get("count", 0)),
        "succeeded": int(infer.get("success", {}).get("count", 0)),
    }
    return out | {f"{stage}_ns": int(infer.get(stage, {}).get("ns", 0)) for stage in STAGES}


def served(before: dict[str, int], after: dict[str, int], model: str) -> dict[str, float]:
    """What the server did between two ``server_stats``: the average batch it ran and the microseconds a
    request spent in each stage. Raises if a request failed."""
    if after["failed"] != before["failed"]:
        raise RuntimeError(f"{model}: {after['failed'] - before['failed']} requests failed under load")
    requests = max(1, after["succeeded"] - before["succeeded"])
    out = {
        "avg_batch": (after["inferences"] - before["inferences"])
        / max(1, after["executions"] - before["executions"])
    }
    return out | {
        f"server_{stage}_us": (after[f"{stage}_ns"] - before[f"{stage}_ns"]) / requests / 1e3
        for stage in STAGES
    }


def measure_grpc(
    grpc_url: str, model: str, concurrency: int, data: Path, workdir: Path, measurement_ms: int
) -> dict[str, float]:
    """perf_analyzer over gRPC at one concurrency: req/s, p50/p99 ms and the average batch executed."""
    csv_path = workdir / f"{model}-c{concurrency}.csv"
    rows = json.loads(data.read_text())["data"]
    shape = rows[0][client.INPUT]["shape"]
    cmd = perf_analyzer.command(
        model,
        grpc_url,
        concurrency,
        csv_path,
        input_data=data,
        shapes={client.INPUT: shape},
        measurement_ms=measurement_ms,
        # A shared machine rarely gives perf_analyzer three windows within 50%: take the first three and
        # show the spread of the rounds instead.
        stability_percentage=100000,
        max_trials=3,
    )
    before = server_stats(grpc_url, model)
    point = perf_analyzer.run(cmd, csv_path, concurrency)
    after = server_stats(grpc_url, model)
    return {
        "requests_per_s": point.throughput,
        "p50_ms": point.p50_ms,
        "p99_ms": point.p99_ms,
        **served(before, after, model),
    }


def run_tuning(
    repository: Path,
    *,
    models: list[str],
    concurrency: list[int],
    rounds: int,
    measurement_ms: int,
    output: Path,
    console: Console,
    settings: tuple[Setting, ...] = SETTINGS,
) -> Path:
    import tritonclient.grpc as grpcclient

    output.mkdir(parents=True, exist_ok=True)
    server = TritonServer.on_free_ports(repository, models=models, log=output / "tritonserver-tuning.log")
    with console.status("starting tritonserver"):
        server.start()
    results: dict[str, dict[str, dict[int, list[dict[str, float]]]]] = {
        m: {s.name: {c: [] for c in concurrency} for s in settings} for m in models
    }
    try:
        with (
            tempfile.TemporaryDirectory() as tmp,
            grpcclient.InferenceServerClient(server.grpc_url) as triton,
        ):
            data = {m: write_input_data(dataset_rows(m), Path(tmp) / f"{m}.json") for m in models}
            base = {m: triton.get_model_config(m, as_json=True)["config"] for m in models}
            for r in range(rounds):
                for model in models:
                    for setting in settings:
                        triton.load_model(model, config=json.dumps(setting.apply(base[model])))
                        loaded = triton.get_model_config(model, as_json=True)["config"]
                        if Setting.of(setting.name, loaded) != setting:
                            raise RuntimeError(f"{model}: the server did not load {setting}: {loaded}")
                        for c in concurrency:
                            with console.status(f"round {r + 1}: {model}, {setting.name}, concurrency {c}"):
                                point = measure_grpc(
                                    server.grpc_url, model, c, data[model], Path(tmp), measurement_ms
                                )
                            results[model][setting.name][c].append(point)
                            console.print(
                                f"  {model} | {setting.name} | c={c}: {point['requests_per_s']:.0f} req/s, "
                                f"p99 {point['p99_ms']:.2f} ms, batch {point['avg_batch']:.1f}"
                            )
                    triton.load_model(model)  # its own config again
    finally:
        server.stop()
    return _write(output, results, settings, concurrency, rounds, measurement_ms)


def _median(points: list[dict[str, float]], key: str) -> float:
    return statistics.median(p[key] for p in points)


def _write(
    output: Path,
    results: dict[str, dict[str, dict[int, list[dict[str, float]]]]],
    settings: tuple[Setting, ...],
    concurrency: list[int],
    rounds: int,
    measurement_ms: int,
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = report.machine()
    data = {
        "machine": m,
        "method": {
            "load": "perf_analyzer over gRPC, one dataset row per request",
            "rounds": rounds,
            "measurement_ms": measurement_ms,
        },
        "settings": [asdict(s) for s in settings],
        "results": {
            model: {name: {str(c): pts for c, pts in levels.items()} for name, levels in by_setting.items()}
            for model, by_setting in results.items()
        },
    }
    md = [
        f"# tabular batching settings\n\n{m['date']} on {m['cpu']} ({m['cores']} cores). perf_analyzer over "
        f"gRPC, one dataset row per request, {rounds} round(s) over every setting in turn, "
        f"{measurement_ms} ms windows; medians of the rounds (min-max in brackets for req/s).\n"
    ]
    headers = ["setting"]
    for c in concurrency:
        headers += [f"c={c} req/s", f"c={c} p99 ms", f"c={c} batch"]
    fig, axes = plt.subplots(1, len(results), figsize=(7 * len(results), 4), squeeze=False)
    for ax, (model, by_setting) in zip(axes[0], results.items(), strict=True):
        rows = []
        for name, levels in by_setting.items():
            row: list[Any] = [name]
            for c in concurrency:
                pts = levels[c]
                rps = [p["requests_per_s"] for p in pts]
                row += [
                    f"{statistics.median(rps):.0f} [{min(rps):.0f}-{max(rps):.0f}]",
                    _median(pts, "p99_ms"),
                    f"{_median(pts, 'avg_batch'):.1f}",
                ]
            rows.append(row)
        md.append(f"## {model}\n\n" + report.markdown_table(headers, rows) + "\n")
        names = list(by_setting)
        top = max(concurrency)
        med = [_median(by_setting[n][top], "requests_per_s") for n in names]
        lo = [med[i] - min(p["requests_per_s"] for p in by_setting[n][top]) for i, n in enumerate(names)]
        hi = [max(p["requests_per_s"] for p in by_setting[n][top]) - med[i] for i, n in enumerate(names)]
        ax.barh(names, med, xerr=[lo, hi], capsize=3)
        ax.set(xlabel=f"requests/s at concurrency {top} (median)", title=model)
        ax.invert_yaxis()
    fig.suptitle(f"tabular batching settings, {m['cores']} CPU cores ({m['date']})")
    fig.tight_layout()
    return report.write(output, "tabular_tuning", data, "\n".join(md), fig)
