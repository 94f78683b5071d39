"""``fleet bench text_embedding``: perf_analyzer (gRPC) vs the in-process batched inprocess.

Served: one real sentence per request (perf_analyzer ``--input-data``, cycling through ``SENTENCES``) to the
``text_embedding`` ensemble. Floor: the same work with no server,
``tritonfleet.pipelines.text_embedding.embedding.TextTokenizer`` and onnxruntime on the same ONNX file with
the same thread count, on batches as large as the concurrency (``tritonfleet.tools.bench.inprocess``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tritonfleet.pipelines.text_embedding.embedding import OnnxEmbedder
from tritonfleet.repository import Repository
from tritonfleet.tools.bench import inprocess

PIPELINE = "text_embedding"
MODEL = "minilm_l6"
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


@contextmanager
def text_embedding_bench(repository: Path) -> Iterator[inprocess.InProcessBench]:
    config = Repository(repository).config(MODEL, "cpu")
    intra = inprocess.parameter(config, "intra_op_thread_count", 0)
    embedder = OnnxEmbedder(
        repository / "tokenizer" / "1" / "tokenizer.json", repository / MODEL / "1" / "model.onnx", intra
    )

    def batch_work(batch: int) -> Callable[[], object]:
        work = [SENTENCES[i % len(SENTENCES)] for i in range(batch)]
        return lambda: embedder.run(embedder.tokenizer.encode(work))

    yield inprocess.InProcessBench(
        pipeline=PIPELINE,
        model=MODEL,
        unit="texts",
        input_name="TEXT",
        requests=[t.encode() for t in SENTENCES],
        batch_work=batch_work,
        max_batch=config.max_batch_size,
        served_text="perf_analyzer over gRPC against tritonserver 2.51.0 (ensemble tokenizer -> "
        "minilm_l6, CPU configs), one real sentence per request.",
        floor_text="the same tokenizer (tritonfleet.pipelines.text_embedding.embedding) and ONNX model in "
        f"one process, batched as large as the concurrency, no server (onnxruntime intra-op threads "
        f"{intra}).",
        settings={"sentences": list(SENTENCES), "onnxruntime_intra_op_threads": intra},
        # Requests take milliseconds, so on a busy shared machine p99 moves by more than 2x between windows
        # and perf_analyzer never calls them stable: it then reports the last three windows.
        stability_percentage=1000,
    )
