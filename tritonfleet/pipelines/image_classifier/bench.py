"""``fleet bench image_classifier``: perf_analyzer (gRPC) vs the in-process batched inprocess.

The floor is what the same work costs with no server: Pillow preprocessing
(``tritonfleet.pipelines.image_classifier.imaging``, the code the served model runs, with the same decode
threads) and onnxruntime on the same ONNX file with the same thread count, on batches as large as the
concurrency (``tritonfleet.tools.bench.inprocess``).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from tritonfleet.pipelines.image_classifier.imaging import DEFAULT_MAX_PIXELS, preprocess
from tritonfleet.repository import Repository
from tritonfleet.tools.bench import inprocess

PIPELINE = "image_classifier"
MODEL = "efficientnet_lite0"
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


@contextmanager
def image_classifier_bench(repository: Path) -> Iterator[inprocess.InProcessBench]:
    import onnxruntime as ort

    repo = Repository(repository)
    intra = inprocess.parameter(repo.config(MODEL, "cpu"), "intra_op_thread_count", 0)
    decode = inprocess.parameter(repo.config("image_preprocess", "cpu"), "decode_threads", 2)
    images = bench_images()
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra
    session = ort.InferenceSession(
        str(repository / MODEL / "1" / "model.onnx"), options, providers=["CPUExecutionProvider"]
    )
    with ThreadPoolExecutor(decode) as pool:

        def batch_work(batch: int) -> Callable[[], object]:
            work = [images[i % len(images)] for i in range(batch)]

            def once() -> object:
                pixels = np.stack(
                    list(pool.map(lambda d: preprocess(d, max_pixels=DEFAULT_MAX_PIXELS), work))
                )
                return session.run(["probabilities"], {"input": pixels})

            return once

        yield inprocess.InProcessBench(
            pipeline=PIPELINE,
            model=MODEL,
            unit="images",
            input_name="IMAGE",
            requests=images,
            batch_work=batch_work,
            max_batch=repo.config(MODEL, "cpu").max_batch_size,
            served_text="perf_analyzer over gRPC against tritonserver 2.51.0 (ensemble image_preprocess -> "
            "efficientnet_lite0, CPU configs), one JPEG photo per request.",
            floor_text="the same preprocessing and ONNX model in one process, batched as large as the "
            f"concurrency, no server (onnxruntime intra-op threads {intra}, decode threads {decode}).",
            settings={
                "photos": list(PHOTOS),
                "onnxruntime_intra_op_threads": intra,
                "decode_threads": decode,
            },
        )
