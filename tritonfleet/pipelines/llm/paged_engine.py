"""The CPU LLM's forward pass: OpenVINO's paged-attention model over a KV cache allocated once.

``build/llm/openvino_export.py`` exports the model (int8 weights). Loading it here applies OpenVINO's
``paged_attention_transformation`` (every attention reads and writes the KV cache through block tables, the
tokens of all sequences flattened into one batch), gives the KV inputs their static shape and element type,
and inserts a ``Gather`` before the lm_head over a new ``logits_indices`` input, so that a step computes
logits only for the tokens whose next token is wanted (the last token of each sequence that has been fed
all its context) rather than for every prompt token fed (100 MB of logits for a 512-token chunk, and a fifth
of the step's work). OpenVINO cannot read such a graph back from IR, so this runs at every load (about 2 s);
the compiled model is cached in ``~/.cache/tritonfleet/ov-model-cache``.

The KV cache: one key and one value tensor per layer, ``kv_cache_mb`` in all, in the blocks' layout the
CPU plugin asks for (32 tokens a block): ``u8`` (the default: quantized by the plugin as it writes them, keys
by channel and values by token, with their scales and zero points inside the block: 428 KB a block of this
model, against 720 KB in bf16) or the plugin's compute type (``auto``: bf16 where the CPU has it, the only
unquantized type it takes then; f32 elsewhere). Which sequence owns which block is the scheduler's business
(:mod:`~tritonfleet.pipelines.llm.kv_blocks`); this module only feeds the tables it is given.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tritonfleet.defaults import cache_root
from tritonfleet.pipelines.llm.engine_info import EngineInfo

MODEL_FILE = "openvino_model.xml"
MODEL_CACHE = cache_root() / "ov-model-cache"
KV_INPUTS = ("key_cache.", "value_cache.")
KV_TYPES = ("u8", "bf16", "f16", "f32")


@dataclass(frozen=True)
class Chunk:
    """One sequence's part of a step: ``tokens`` fed at positions ``past`` on, its block table ``blocks``
    (covering at least ``past + len(tokens)`` positions), and whether its last token's logits are wanted."""

    tokens: Sequence[int]
    past: int
    blocks: Sequence[int]
    logits: bool


class PagedEngine:
    """The compiled paged model and its KV cache."""

    def __init__(
        self,
        engine_dir: Path,
        threads: int,
        kv_cache_mb: float,
        kv_precision: str = "u8",
        model_cache: Path | None = MODEL_CACHE,
        properties: dict[str, object] | None = None,
    ) -> None:
        import openvino as ov
        from openvino import opset13 as ops
        from openvino._offline_transformations import paged_attention_transformation

        self.info = EngineInfo.load(engine_dir)
        core = ov.Core()
        if kv_precision == "auto":  # the plugin's compute type: the only unquantized KV type it takes
            kv_precision = core.get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name()
        if kv_precision not in KV_TYPES:
            raise ValueError(
                f"kv_precision must be auto or one of {', '.join(KV_TYPES)}, not {kv_precision!r}"
            )
        self.kv_precision = kv_precision
        kv_type = getattr(ov.Type, kv_precision)

        model = core.read_model(engine_dir / MODEL_FILE)
        paged_attention_transformation(model, False, False)
        for port in model.inputs:
            if port.get_any_name().startswith(KV_INPUTS):  # the plugin sets the block layout
                port.get_node().set_element_type(kv_type)
                port.get_node().set_partial_shape(ov.PartialShape.dynamic(4))
        lm_head = model.get_result().input_value(0).get_node()
        if lm_head.get_type_name() != "MatMul":
            raise RuntimeError(
                f"the model's logits come from a {lm_head.get_type_name()}, not the lm_head MatMul"
            )
        indices = ops.parameter([-1], ov.Type.i64, name="logits_indices")
        indices.output(0).set_names({"logits_indices"})
        hidden = ops.gather(lm_head.input_value(0), indices, ops.constant(np.int64(0)))
        lm_head.input(0).replace_source_output(hidden.output(0))
        model.add_parameters([indices])
        model.validate_nodes_and_infer_types()

        config: dict[str, object] = {"INFERENCE_NUM_THREADS": threads, "KV_CACHE_PRECISION": kv_precision}
        if model_cache is not None:
            model_cache.mkdir(parents=True, exist_ok=True)
            config["CACHE_DIR"] = str(model_cache)
        config.update(properties or {})
        compiled = core.compile_model(model, "CPU", config)
        self._request = compiled.create_infer_request()
        # A block's layout as the plugin wants it: [heads, tokens, head_dim] for the values (with each
        # token's scale and zero point at the end of its row when u8), [heads, tokens (+ the channels'
        # scales and zero points when u8), head_dim] for the keys.
        kv_ports = [p for p in compiled.inputs if p.get_any_name().startswith(KV_INPUTS)]
        shapes = {
            p.get_any_name(): [d.get_length() for d in list(p.get_partial_shape())[1:]] for p in kv_ports
        }
        self.block_size = shapes["value_cache.0"][1]
        self.block_bytes = sum(math.prod(s) for s in shapes.values()) * kv_type.size
        self.num_blocks = int(kv_cache_mb * 2**20) // self.block_bytes
        if self.num_blocks < 1:
            raise ValueError(f"kv_cache_mb={kv_cache_mb} holds no KV block of {self.block_bytes} bytes")
        self._kv = []  # the tensors must outlive the request's use of them
        for name, shape in shapes.items():
            tensor = ov.Tensor(kv_type, [self.num_blocks, *shape])
            self._request.set_tensor(name, tensor)
            self._kv.append(tensor)

    @property
    def kv_bytes(self) -> int:
        return self.num_blocks * self.block_bytes

    def step(self, chunks: Sequence[Chunk]) -> np.ndarray:
        """Feed every chunk in one forward pass; the next-token logits of the chunks that want them, in
        order, shape ``[wanted, vocab]`` (a view valid until the next step)."""
        ids: list[int] = []
        positions: list[int] = []
        past, begins, tables, table_begins, wanted = [], [0], [], [0], []
        longest = 0
        for c in chunks:
            ids += c.tokens
            end = c.past + len(c.tokens)
            positions += range(c.past, end)
            past.append(c.past)
            begins.append(len(ids))
            tables += c.blocks[: -(-end // self.block_size)]
            table_begins.append(len(tables))
            longest = max(longest, end)
            if c.logits:
                wanted.append(len(ids) - 1)
        i32 = np.int32
        self._request.infer(
            {
                "input_ids": np.asarray(ids, dtype=np.int64),
                "position_ids": np.asarray(positions, dtype=np.int64),
                "past_lens": np.asarray(past, dtype=i32),
                "subsequence_begins": np.asarray(begins, dtype=i32),
                "block_indices": np.asarray(tables, dtype=i32),
                "block_indices_begins": np.asarray(table_begins, dtype=i32),
                "max_context_len": np.asarray(longest, dtype=i32),
                "logits_indices": np.asarray(wanted or [len(ids) - 1], dtype=np.int64),
            }
        )
        logits = self._request.get_output_tensor(0).data
        return logits.reshape(logits.shape[0], -1)[: len(wanted)]
