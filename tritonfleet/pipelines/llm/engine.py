"""The onnxruntime-genai CPU engine, a build option (``fleet build llm --llm_engine ortgenai``), built ahead
of time by ``build/llm/cpu_engine.py`` and run by the wave scheduler.

A :class:`Wave` is one static batch (onnxruntime-genai's ``Generator``): rows cannot be added or dropped,
and every row shares one sequence position. Its ``append_tokens`` ignores padding (the attention mask is all
ones), so rows of different lengths are never padded: the wave prefills the length all rows share, then
feeds each longer row its remaining prompt one token per step by forcing that token through ``set_logits``.
Sampling is done by the caller on the returned logits and forced the same way, so every row samples with its
own parameters and seed. onnxruntime-genai's own end-of-sequence is pointed at a special token the model
never emits (``sentinel_id``), so it never retires a row on its own.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tritonfleet.pipelines.llm.engine_info import EngineInfo

FORCED_OUT = np.float32(-1e30)


class CpuEngine:
    """An onnxruntime-genai model with an explicit thread count."""

    def __init__(self, engine_dir: Path, threads: int) -> None:
        import onnxruntime_genai as og

        self.og = og
        self.info = EngineInfo.load(engine_dir)
        config = og.Config(str(engine_dir))
        sentinel = self.info.sentinel_id
        options = {"intra_op_num_threads": threads, "inter_op_num_threads": 1}
        config.overlay(
            json.dumps(
                {
                    "model": {
                        "eos_token_id": sentinel,
                        "pad_token_id": sentinel,
                        "decoder": {"session_options": options},
                    }
                }
            )
        )
        self.model = og.Model(config)

    def wave(self, contexts: Sequence[Sequence[int]], max_length: int) -> Wave:
        return Wave(self, contexts, max_length)


class Wave:
    """One static batch: ``logits()`` then ``advance(tokens)``, step after step."""

    def __init__(self, engine: CpuEngine, contexts: Sequence[Sequence[int]], max_length: int) -> None:
        og = engine.og
        self.rows = len(contexts)
        self.shared = min(len(c) for c in contexts)
        params = og.GeneratorParams(engine.model)
        params.set_search_options(max_length=max_length, batch_size=self.rows)
        self._gen = og.Generator(engine.model, params)
        self._gen.append_tokens(np.array([list(c[: self.shared]) for c in contexts], dtype=np.int32))
        self._forced = np.full((self.rows, 1, engine.info.vocab_size), FORCED_OUT, dtype=np.float32)
        self.length = self.shared

    def logits(self) -> np.ndarray:
        """Next-token logits of every row, shape ``[rows, vocab]``."""
        return np.asarray(self._gen.get_logits())[:, -1, :]

    def advance(self, tokens: Sequence[int]) -> None:
        """Append one token to every row (prompt tokens still to feed, sampled tokens, or filler)."""
        rows = np.arange(self.rows)
        self._forced[rows, 0, tokens] = 0.0
        self._gen.set_logits(self._forced)
        self._gen.generate_next_token()
        self._forced[rows, 0, tokens] = FORCED_OUT
        self.length += 1
