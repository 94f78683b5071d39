"""``fleet bench image_classifier``: perf_analyzer (gRPC) vs the in-process batched floor.

The floor is what the same work costs with no server: Pillow preprocessing (``tritonfleet.imaging``, the
code the served model runs, with the same decode threads) and onnxruntime on the same ONNX file with the
same thread count, on batches as large as the concurrency. Both run in the same process run, level by
level, so the ratio served/floor is fair on a noisy machine.
"""

from __future__ import annotations

import base64
import io
import json
import statistics
import struct
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from tritonfleet.bench import perf_analyzer, report
from tritonfleet.imaging import DEFAULT_MAX_PIXELS, preprocess
from tritonfleet.repository import Repository
from tritonfleet.server import TritonServer

PIPELINE = "image_classifier"
PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")


def bench_images() -> list[bytes]:
    """Real photos from scikit-image, JPEG-encoded at their native size (what clients send)."""
    import skimage.data
    from PIL import Image

    images = []
    for name in PHOTOS:
        buf = io.BytesIO()
        Image.fromarray(getattr(skimage.data, name)()).convert("RGB").save(buf, "JPEG", quality=90)
        images.append(buf.getvalue())
    return images


def write_input_data(images: list[bytes], path: Path) -> Path:
    """perf_analyzer ``--input-data`` JSON: one entry per photo; BYTES tensors in Triton's serialized
    form (a little-endian uint32 length before each element), base64 encoded."""
    data = [
        {"IMAGE": {"b64": base64.b64encode(struct.pack("<I", len(img)) + img).decode(), "shape": [1]}}
        for img in images
    ]
    path.write_text(json.dumps({"data": data}))
    return path


def _param(repo: Repository, model: str, key: str, default: str) -> int:
    param = repo.config(model, "cpu").parameters.get(key)
    return int(param.string_value if param is not None else default)


def measure_floor(
    images: list[bytes], batch: int, seconds: float, model: Path, intra_threads: int, decode_threads: int
) -> dict[str, float]:
    """Images/s and batch latency of preprocess + onnxruntime in this process, batch by batch."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_threads
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    work = [images[i % len(images)] for i in range(batch)]
    latencies = []
    with ThreadPoolExecutor(decode_threads) as pool:

        def once() -> float:
            start = time.perf_counter()
            pixels = np.stack(list(pool.map(lambda d: preprocess(d, max_pixels=DEFAULT_MAX_PIXELS), work)))
            session.run(["probabilities"], {"input": pixels})
            return time.perf_counter() - start

        once()  # warm-up
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline or len(latencies) < 5:
            latencies.append(once())
    total = sum(latencies)
    ordered = sorted(latencies)
    return {
        "throughput": batch * len(latencies) / total,
        "p50_ms": statistics.median(latencies) * 1e3,
        "p99_ms": ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1e3,
        "batches": len(latencies),
    }


def run_image_classifier_bench(
    repository: Path,
    *,
    concurrency: list[int],
    url: str | None,
    output: Path,
    measurement_ms: int,
    console: Console,
    stability_percentage: int = 50,
) -> Path:
    repo = Repository(repository)
    model_file = repository / "efficientnet_lite0" / "1" / "model.onnx"
    intra = _param(repo, "efficientnet_lite0", "intra_op_thread_count", "0")
    decode = _param(repo, "image_preprocess", "decode_threads", "2")
    max_batch = repo.config("efficientnet_lite0", "cpu").max_batch_size
    images = bench_images()
    server = None
    if url is None:
        server = TritonServer.on_free_ports(repository, models=[PIPELINE], log=output / "tritonserver.log")
        output.mkdir(parents=True, exist_ok=True)
        with console.status("starting tritonserver"):
            server.start()
        url = server.grpc_url
    levels: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            data_file = write_input_data(images, Path(tmp) / "input.json")
            for c in concurrency:
                csv_path = Path(tmp) / f"c{c}.csv"
                cmd = perf_analyzer.command(
                    PIPELINE,
                    url,
                    c,
                    csv_path,
                    input_data=data_file,
                    shapes={"IMAGE": [1]},
                    measurement_ms=measurement_ms,
                    stability_percentage=stability_percentage,
                )
                before = executed_batches(url, "efficientnet_lite0")
                with console.status(f"perf_analyzer: concurrency {c}"):
                    served = perf_analyzer.run(cmd, csv_path, c)
                after = executed_batches(url, "efficientnet_lite0")
                avg_batch = (after[0] - before[0]) / max(1, after[1] - before[1])
                batch = min(c, max_batch)
                with console.status(f"in-process floor: batch {batch}"):
                    floor = measure_floor(images, batch, measurement_ms / 1e3, model_file, intra, decode)
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
    return _write_report(output, levels, intra, decode)


def executed_batches(grpc_url: str, model: str) -> tuple[int, int]:
    """(inferences, executions) so far: their ratio over a run is the dynamic batcher's average batch."""
    import tritonclient.grpc as grpcclient

    with grpcclient.InferenceServerClient(grpc_url) as client:
        stats = client.get_inference_statistics(model, as_json=True)["model_stats"][0]
    return int(stats.get("inference_count", 0)), int(stats.get("execution_count", 0))


def _write_report(output: Path, levels: list[dict[str, Any]], intra: int, decode: int) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = {
        "pipeline": PIPELINE,
        "machine": report.machine(),
        "settings": {
            "protocol": "grpc",
            "photos": list(PHOTOS),
            "onnxruntime_intra_op_threads": intra,
            "decode_threads": decode,
        },
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
        "served img/s",
        "served p50 ms",
        "served p99 ms",
        "avg batch run by efficientnet_lite0",
        "floor batch",
        "floor img/s",
        "floor p99 ms (batch)",
        "served/floor",
    ]
    m = data["machine"]
    md = (
        f"# image_classifier benchmark\n\n{m['date']} on {m['cpu']} ({m['cores']} cores), "
        f"Python {m['python']}.\n\n"
        "Served: perf_analyzer over gRPC against tritonserver 2.51.0 (ensemble image_preprocess -> "
        "efficientnet_lite0, CPU configs), one JPEG photo per request.\n"
        "Floor: the same preprocessing and ONNX model in one process, batched as large as the concurrency, "
        f"no server (onnxruntime intra-op threads {intra}, decode threads {decode}).\n\n"
        + report.markdown_table(headers, rows)
    )
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    xs = [lv["concurrency"] for lv in levels]
    left.plot(xs, [lv["served"]["throughput"] for lv in levels], "o-", label="served (perf_analyzer)")
    left.plot(xs, [lv["floor"]["throughput"] for lv in levels], "s--", label="in-process floor")
    left.set(xscale="log", xlabel="concurrency", ylabel="images / s", title="Throughput")
    left.set_xticks(xs, [str(x) for x in xs])
    left.legend()
    right.plot(xs, [lv["served"]["p99_ms"] for lv in levels], "o-", label="served p99")
    right.plot(xs, [lv["served"]["p50_ms"] for lv in levels], "^-", label="served p50")
    right.set(xscale="log", xlabel="concurrency", ylabel="ms", title="Latency")
    right.set_xticks(xs, [str(x) for x in xs])
    right.legend()
    fig.suptitle(f"image_classifier on {m['cores']} CPU cores ({m['date']})")
    return report.write(output, "image_classifier", data, md, fig)
