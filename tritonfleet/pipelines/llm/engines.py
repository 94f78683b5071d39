"""The CPU engine a build installed, with its scheduler: what ``engine.json`` names, set up from the
``tensorrt_llm`` model's parameters (``configs/cpu.pbtxt``; strings, as Triton gives them). The served model,
``fleet bench llm`` and the build's quality report all start their engine here.

- ``openvino`` (the default build): the paged-attention model (:mod:`~tritonfleet.pipelines.llm.paged_engine`)
  under continuous batching (:mod:`~tritonfleet.pipelines.llm.batch_scheduler`). Parameters:
  ``intra_op_threads``, ``kv_cache_mb``, ``kv_precision``, ``max_batched_tokens``, ``max_seqs``,
  ``enable_prefix_caching``, ``cancel_check_steps``, ``yield_ms``.
- ``ortgenai`` (``fleet build llm --llm_engine ortgenai``): onnxruntime-genai in waves
  (:mod:`~tritonfleet.pipelines.llm.scheduler`). Parameters: ``intra_op_threads``, ``max_batch``,
  ``bucket_tokens``, ``max_wait_ms``, ``gather_ms``, ``max_waves``, ``max_rows``, ``cancel_check_steps``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from tritonfleet.pipelines.llm.batch_scheduler import BatchScheduler
from tritonfleet.pipelines.llm.detokenizer import Decoder
from tritonfleet.pipelines.llm.engine import CpuEngine
from tritonfleet.pipelines.llm.engine_info import EngineInfo
from tritonfleet.pipelines.llm.paged_engine import PagedEngine
from tritonfleet.pipelines.llm.scheduler import WaveScheduler

PAGED_DEFAULTS = {
    "intra_op_threads": "2",
    "kv_cache_mb": "256",
    "kv_precision": "u8",
    "max_batched_tokens": "512",
    "max_seqs": "32",
    "enable_prefix_caching": "true",
    "cancel_check_steps": "4",
    "yield_ms": "0",
}
WAVE_KEYS = ("max_batch", "bucket_tokens", "max_wait_ms", "gather_ms", "max_waves", "max_rows",
             "cancel_check_steps")  # fmt: skip


def open_scheduler(
    engine_dir: Path,
    params: Mapping[str, str] | None = None,
    tokenizer: Decoder | None = None,
    on_step: Callable[[int, int, int], None] | None = None,
) -> BatchScheduler | WaveScheduler:
    """The engine in ``engine_dir`` and its scheduler (started), set up from ``params``."""
    info = EngineInfo.load(engine_dir)
    given = dict(params or {})
    if info.engine == "openvino":
        p = {**PAGED_DEFAULTS, **given}
        engine = PagedEngine(
            engine_dir, int(p["intra_op_threads"]), float(p["kv_cache_mb"]), p["kv_precision"]
        )
        return BatchScheduler(
            engine,
            tokenizer,
            max_batched_tokens=int(p["max_batched_tokens"]),
            max_seqs=int(p["max_seqs"]),
            prefix_caching=p["enable_prefix_caching"].lower() == "true",
            cancel_check_steps=int(p["cancel_check_steps"]),
            yield_ms=float(p["yield_ms"]),
            on_step=on_step,
        )
    if info.engine == "ortgenai":
        engine = CpuEngine(engine_dir, int(given.get("intra_op_threads", "2")))
        knobs = {k: float(given[k]) if k.endswith("_ms") else int(given[k]) for k in WAVE_KEYS if k in given}
        return WaveScheduler(engine, tokenizer, on_step=on_step, **knobs)
    raise ValueError(f"{engine_dir}: unknown engine {info.engine!r} in engine.json")
