"""What the build records beside a CPU engine (``engine.json``): which engine it is and what the server
needs to know before loading it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

ENGINE_INFO = "engine.json"


@dataclass(frozen=True)
class EngineInfo:
    """``engine``: "openvino" (the paged-attention model) or "ortgenai" (onnxruntime-genai). ``sentinel_id``:
    a special token the model never emits (onnxruntime-genai's end id, so that it never ends a row itself).
    ``layers``, ``kv_heads``, ``head_dim``: the KV cache's shape (OpenVINO)."""

    engine: str
    precision: str
    vocab_size: int
    context_length: int
    end_ids: tuple[int, ...]
    sentinel_id: int = -1
    layers: int = 0
    kv_heads: int = 0
    head_dim: int = 0

    @classmethod
    def load(cls, engine_dir: Path) -> EngineInfo:
        d = json.loads((engine_dir / ENGINE_INFO).read_text())
        return cls(
            engine=d.get("engine", "ortgenai"),
            precision=d["precision"],
            vocab_size=d["vocab_size"],
            context_length=d["context_length"],
            end_ids=tuple(d["end_ids"]),
            sentinel_id=d.get("sentinel_id", -1),
            layers=d.get("layers", 0),
            kv_heads=d.get("kv_heads", 0),
            head_dim=d.get("head_dim", 0),
        )
