"""``fleet bench text_embedding``: perf_analyzer (gRPC) vs the in-process batched floor.

Served: one real sentence per request (perf_analyzer ``--input-data``, cycling through ``SENTENCES``) to the
``text_embedding`` ensemble. Floor: the same work with no server, ``tritonfleet.embedding.TextTokenizer`` and
onnxruntime on the same ONNX file with the same thread count, on batches as large as the concurrency. Both
run level by level in the same run, so the ratio served/floor is fair on a noisy machine.
"""

from __future__ import annotations

import base64
import json
import statistics
import struct
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from tritonfleet.bench import perf_analyzer, report
from tritonfleet.bench.vision import executed_batches
from tritonfleet.embedding import OnnxEmbedder
from tritonfleet.repository import Repository
from tritonfleet.server import TritonServer

PIPELINE = "text_embedding"
MODEL = "minilm_l6"
STABILITY_PERCENTAGE = "1000"
# Real sentences of the lengths people embed (6 to 45 word pieces): questions, facts, reviews, titles.
SENTENCES = (
    "How do I reset my password?",
    "The central bank raised interest rates by a quarter of a percentage point on Wednesday.",
    "Best pizza in town, but the service was painfully slow on a Friday night.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "What is the difference between a virus and a bacterium?",
    "Triton Inference Server batches requests dynamically to keep the hardware busy.",
    "A man is playing a guitar on the street corner while people walk past.",
    "Shipping was fast and the package arrived two days early.",
    "The Eiffel Tower was completed in 1889 for the World's Fair in Paris.",
    "Can I cancel my subscription at any time without paying a fee?",
    "Researchers found that regular exercise improves memory in older adults.",
    "The battery lasts all day, although the screen is hard to read in direct sunlight.",
    "Introduction to linear algebra: vectors, matrices and their applications",
    "Heavy rain is expected across the region tomorrow, with local flooding possible in low-lying areas.",
    "Which programming language should I learn first if I want to build websites?",
    "The committee will publish its final report after reviewing the public comments.",
)


def write_input_data(texts: tuple[str, ...], path: Path) -> Path:
    """perf_analyzer ``--input-data`` JSON: one entry per text, BYTES in Triton's serialized form (a
    little-endian uint32 length before each element), base64 encoded."""
    data = [
        {
            "TEXT": {
                "b64": base64.b64encode(struct.pack("<I", len(t.encode())) + t.encode()).decode(),
                "shape": [1],
            }
        }
        for t in texts
    ]
    path.write_text(json.dumps({"data": data}))
    return path


def measure_floor(embedder: OnnxEmbedder, batch: int, seconds: float) -> list[float]:
    """Latencies of tokenizer + onnxruntime on batches of ``batch`` texts in this process, for ``seconds``."""
    work = [SENTENCES[i % len(SENTENCES)] for i in range(batch)]
    latencies: list[float] = []

    def once() -> float:
        start = time.perf_counter()
        embedder.run(embedder.tokenizer.encode(work))
        return time.perf_counter() - start

    once()  # warm-up
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(latencies) < 3:
        latencies.append(once())
    return latencies


def floor_summary(batch: int, latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "throughput": batch * len(latencies) / sum(latencies),
        "p50_ms": statistics.median(latencies) * 1e3,
        "p99_ms": ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1e3,
        "batches": len(latencies),
    }


def run_text_embedding_bench(
    repository: Path,
    *,
    concurrency: list[int],
    url: str | None,
    output: Path,
    measurement_ms: int,
    console: Console,
) -> Path:
    repo = Repository(repository)
    config = repo.config(MODEL, "cpu")
    param = config.parameters.get("intra_op_thread_count")
    intra = int(param.string_value) if param is not None else 0
    embedder = OnnxEmbedder(
        repository / "tokenizer" / "1" / "tokenizer.json", repository / MODEL / "1" / "model.onnx", intra
    )
    server = None
    if url is None:
        output.mkdir(parents=True, exist_ok=True)
        server = TritonServer.on_free_ports(repository, models=[PIPELINE], log=output / "tritonserver.log")
        with console.status("starting tritonserver"):
            server.start()
        url = server.grpc_url
    levels: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            data_file = write_input_data(SENTENCES, Path(tmp) / "input.json")
            for c in concurrency:
                csv_path = Path(tmp) / f"c{c}.csv"
                cmd = perf_analyzer.command(
                    PIPELINE,
                    url,
                    c,
                    csv_path,
                    input_data=data_file,
                    measurement_ms=measurement_ms,
                    # Requests take milliseconds, so on a busy shared machine p99 moves by more than 2x
                    # between windows and perf_analyzer never calls them stable: it then reports the last
                    # three windows, and the floor is measured beside each level anyway.
                    extra=["--stability-percentage", STABILITY_PERCENTAGE],
                )
                # Half the floor just before the served run and half just after, so that the machine's load
                # drifting during a level weighs on both sides alike.
                batch = min(c, config.max_batch_size)
                half = measurement_ms / 2e3
                with console.status(f"in-process floor: batch {batch}"):
                    latencies = measure_floor(embedder, batch, half)
                before = executed_batches(url, MODEL)
                with console.status(f"perf_analyzer: concurrency {c}"):
                    served = perf_analyzer.run(cmd, csv_path, c)
                after = executed_batches(url, MODEL)
                avg_batch = (after[0] - before[0]) / max(1, after[1] - before[1])
                with console.status(f"in-process floor: batch {batch}"):
                    latencies += measure_floor(embedder, batch, half)
                floor = floor_summary(batch, latencies)
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
    return _write_report(output, levels, intra)


def _write_report(output: Path, levels: list[dict[str, Any]], intra: int) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = {
        "pipeline": PIPELINE,
        "machine": report.machine(),
        "settings": {"protocol": "grpc", "sentences": list(SENTENCES), "onnxruntime_intra_op_threads": intra},
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
        "served texts/s",
        "served p50 ms",
        "served p99 ms",
        f"avg batch run by {MODEL}",
        "floor batch",
        "floor texts/s",
        "floor p99 ms (batch)",
        "served/floor",
    ]
    m = data["machine"]
    md = (
        f"# text_embedding benchmark\n\n{m['date']} on {m['cpu']} ({m['cores']} cores), "
        f"Python {m['python']}.\n\n"
        "Served: perf_analyzer over gRPC against tritonserver 2.51.0 (ensemble tokenizer -> minilm_l6, CPU "
        f"configs), one real sentence per request ({len(SENTENCES)} sentences in turn).\n"
        "Floor: the same tokenizer and ONNX model in one process, batched as large as the concurrency, no "
        f"server (onnxruntime intra-op threads {intra}), half just before and half just after each served "
        "level.\n\n" + report.markdown_table(headers, rows)
    )
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    xs = [lv["concurrency"] for lv in levels]
    left.plot(xs, [lv["served"]["throughput"] for lv in levels], "o-", label="served (perf_analyzer)")
    left.plot(xs, [lv["floor"]["throughput"] for lv in levels], "s--", label="in-process floor")
    left.set(xscale="log", xlabel="concurrency", ylabel="texts / s", title="Throughput")
    left.set_xticks(xs, [str(x) for x in xs])
    left.legend()
    right.plot(xs, [lv["served"]["p99_ms"] for lv in levels], "o-", label="served p99")
    right.plot(xs, [lv["served"]["p50_ms"] for lv in levels], "^-", label="served p50")
    right.set(xscale="log", xlabel="concurrency", ylabel="ms", title="Latency")
    right.set_xticks(xs, [str(x) for x in xs])
    right.legend()
    fig.suptitle(f"text_embedding on {m['cores']} CPU cores ({m['date']})")
    return report.write(output, PIPELINE, data, md, fig)
