"""Build the GPU engine of the LLM pipeline: Hugging Face checkpoint -> TensorRT-LLM engine.

    python build/llm/trtllm_engine.py --checkpoint DIR [--output DIR] [--dtype float16|bfloat16]
        [--weight-only int8|int4 | --fp8] [--max-batch-size 64] [--max-input-len 2047] [--max-seq-len 2048]
        [--max-num-tokens 8192] [--tp 1] [--pp 1] [--examples DIR] [--print-commands]

Runs inside docker/Dockerfile's image (the tag of docker/image.env, nvcr.io/nvidia/tritonserver:26.07-trtllm-
python-py3: TensorRT-LLM 1.2.1, TensorRT 10.14, Python 3.12) with that TensorRT-LLM release's ``examples/``
(the image has the wheel, not the examples: the Dockerfile checks them out at the tag,
``--examples``/$TRTLLM_EXAMPLES). Elsewhere it prints the three commands and exits non-zero. The checkpoint is
the fp32 one build/llm/cpu_engine.py caches (SmolLM2-135M-Instruct, llama,
``~/.cache/tritonfleet/llm/checkpoint-*``).

0. Stage the checkpoint for the transformers 4.x TensorRT-LLM's converters read: transformers 5 writes
   ``rope_theta`` inside ``rope_parameters`` and ``dtype`` for ``torch_dtype``; read as is, RoPE would
   silently fall back to 10000 instead of this model's 100000. Weights are linked, ``config.json``
   rewritten (``<output>.work/hf``).
1. Convert (``<output>.work/checkpoint``): ``examples/models/core/llama/convert_checkpoint.py`` for
   float16/bfloat16 and weight-only int8/int4, or ModelOpt's ``examples/quantization/quantize.py
   --qformat fp8 --kv_cache_dtype fp8`` (needs nvidia-modelopt and a calibration set: ``--calib-dataset``
   for an offline one; Ada/Hopper GPUs).
2. ``trtllm-build`` into ``<output>``: paged KV cache (``--kv_cache_type paged``; ``--paged_kv_cache`` is
   deprecated since 0.13), packed inputs, and paged context FMHA, which the Triton config's
   ``enable_chunked_context`` and ``enable_kv_cache_reuse`` require.
3. ``examples/generate_xgrammar_tokenizer_info.py`` writes ``<output>/xgrammar_tokenizer_info.json``, the
   tokenizer's vocabulary that the C++ backend's xgrammar needs for guided decoding
   (``xgrammar_tokenizer_info_path``; the backend ignores ``tokenizer_dir``).

The GPU ``tensorrt_llm/config.pbtxt`` must agree with the engine: ``triton_parameters()`` derives what it
must say and ``config_problems()`` checks it (tests/llm/test_trtllm_engine.py checks the committed one).
tp*pp > 1 builds one engine per rank, served by tp*pp GPUs: run tritonserver with TRTLLM_ORCHESTRATOR=1 (the
backend spawns ``executor_worker_path`` per rank) or under mpirun (tensorrtllm_backend's
scripts/launch_triton_server.py).

README: the GPU engine and newer TensorRT-LLM releases
------------------------------------------------------
The GPU image pins ``nvcr.io/nvidia/tritonserver:26.07-trtllm-python-py3`` (TensorRT-LLM 1.2.1 and its
Triton backend), the last line that still compiles TensorRT engines:
``build/llm/trtllm_engine.py`` converts the same Hugging Face checkpoint the CPU engine starts from and
compiles it with ``trtllm-build`` (dtype, batch and sequence limits, ``max_num_tokens``, paged KV cache,
packed inputs, GEMM/attention plugins, tensor/pipeline parallelism, weight-only int8/int4 or fp8);
``model_repository/tensorrt_llm/config.pbtxt`` is the ``tensorrtllm`` backend config for that engine.
TensorRT-LLM has since removed this TensorRT engine backend: after 1.2 there is no ``trtllm-build`` and
no per-model ``convert_checkpoint.py``; its PyTorch backend, driven by the LLM API, is the only one and
loads Hugging Face checkpoints directly, with no conversion or engine build
(https://nvidia.github.io/TensorRT-LLM/legacy/tensorrt-backend-removal.html). On those images, serve the
model with the LLM-API Triton model (``triton_backend/all_models/llmapi`` in TensorRT-LLM) configured by a
``model.yaml`` with the same limits as this build (``llm_api_options``): ``fleet render --llm-path llmapi``
writes that repository variant, ``model.yaml`` from the plan, behind an adapter that keeps the client names
(``tritonfleet/pipelines/llm/llmapi.py``; ``LLM_PATH=llmapi`` in docker/image.env serves it). The same
arguments less ``triton_config`` suit ``trtllm-serve`` (``--extra_llm_api_options``, ``--config`` in recent
releases).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


def _pinned() -> dict[str, str]:
    """``docker/image.env`` (the image's one pin), found beside the project or where the image copies it."""
    here = Path(__file__).resolve()
    for path in (here.parents[2] / "docker" / "image.env", Path("/opt/tritonfleet/image.env")):
        if path.is_file():
            lines = (ln.strip() for ln in path.read_text().splitlines())
            return dict(ln.split("=", 1) for ln in lines if ln and not ln.startswith("#"))
    return {}


IMAGE = _pinned().get("TRITON_IMAGE", "docker/image.env's TRITON_IMAGE")
TRTLLM_VERSION = _pinned().get("TRTLLM_VERSION", "1.2.1")
ENGINE_DIR = Path("/engines/smollm2-135m-instruct/trtllm")  # gpt_model_path in tensorrt_llm/config.pbtxt
EXAMPLES_DIR = Path("/tensorrtllm_backend/tensorrt_llm/examples")  # the backend README's checkout layout
MAX_NUM_TOKENS_LIMIT = 16384  # trtllm-build warns above: no gain, risks exceeding TensorRT's tensor volume
# What TensorRT-LLM 1.2's tensorrtllm backend reads and writes: the tensors and parameters of
# triton_backend/all_models/inflight_batcher_llm/tensorrt_llm/config.pbtxt in NVIDIA/TensorRT-LLM (the stored
# copy at commit 0c8de69a, version 1.2.0rc8: the v1.2.1 tag itself was not among the stored sources), whose
# names inflight_batcher_llm/src/utils.h reads (seed, min_tokens, return_num_*_tokens, guided decoding).
BACKEND_INPUTS = frozenset(
    str.split(
        "input_ids encoder_input_features encoder_output_lengths input_lengths request_output_len "
        "num_return_sequences draft_input_ids decoder_input_ids decoder_input_lengths draft_logits "
        "draft_acceptance_threshold end_id pad_id stop_words_list bad_words_list embedding_bias beam_width "
        "temperature runtime_top_k runtime_top_p runtime_top_p_min runtime_top_p_decay "
        "runtime_top_p_reset_ids len_penalty early_stopping repetition_penalty min_tokens "
        "beam_search_diversity_rate presence_penalty frequency_penalty seed return_log_probs "
        "return_context_logits return_generation_logits return_perf_metrics return_num_input_tokens "
        "return_num_output_tokens exclude_input_in_output stop streaming prompt_embedding_table "
        "prompt_table_extra_ids prompt_vocab_size cross_attention_mask mrope_rotary_cos_sin "
        "mrope_position_deltas lora_task_id lora_weights lora_config context_phase_params "
        "skip_cross_attn_blocks retention_token_range_starts retention_token_range_ends "
        "retention_token_range_priorities retention_token_range_durations_ms retention_decode_priority "
        "retention_decode_duration_ms guided_decoding_guide_type guided_decoding_guide lookahead_window_size "
        "lookahead_ngram_size lookahead_verification_set_size"
    )
)
BACKEND_OUTPUTS = frozenset(
    str.split(
        "output_ids sequence_length cum_log_probs output_log_probs context_logits generation_logits "
        "batch_index sequence_index context_phase_params kv_cache_alloc_new_blocks kv_cache_reused_blocks "
        "kv_cache_alloc_total_blocks arrival_time_ns first_scheduled_time_ns first_token_time_ns "
        "last_token_time_ns acceptance_rate total_accepted_draft_tokens total_draft_tokens num_input_tokens "
        "num_output_tokens"
    )
)
BACKEND_PARAMETERS = frozenset(
    str.split(
        "max_beam_width FORCE_CPU_ONLY_INPUT_TENSORS gpt_model_type gpt_model_path encoder_model_path "
        "max_tokens_in_paged_kv_cache max_attention_window_size sink_token_length batch_scheduler_policy "
        "kv_cache_free_gpu_mem_fraction cross_kv_cache_fraction kv_cache_host_memory_bytes "
        "kv_cache_onboard_blocks enable_trt_overlap exclude_input_in_output cancellation_check_period_ms "
        "stats_check_period_ms iter_stats_max_iterations request_stats_max_iterations enable_kv_cache_reuse "
        "normalize_log_probs enable_chunked_context gpu_device_ids participant_ids num_nodes "
        "lora_cache_optimal_adapter_size lora_cache_max_adapter_size lora_cache_gpu_memory_fraction "
        "lora_cache_host_memory_bytes lora_prefetch_dir decoding_mode executor_worker_path "
        "lookahead_window_size lookahead_ngram_size lookahead_verification_set_size medusa_choices "
        "eagle_choices gpu_weights_percent enable_context_fmha_fp32_acc multi_block_mode cuda_graph_mode "
        "cuda_graph_cache_size speculative_decoding_fast_logits tokenizer_dir guided_decoding_backend "
        "xgrammar_tokenizer_info_path"
    )
)
XGRAMMAR_INFO = "xgrammar_tokenizer_info.json"  # what generate_xgrammar_tokenizer_info.py writes


@dataclass(frozen=True)
class EngineParams:
    """What users tune in a TensorRT-LLM engine build; invalid combinations raise ``ValueError``."""

    checkpoint: Path
    output: Path = ENGINE_DIR
    examples: Path = EXAMPLES_DIR
    dtype: str = "float16"
    weight_only: str | None = None  # "int8" or "int4"
    fp8: bool = False
    max_batch_size: int = 64
    max_input_len: int = 2047  # any prompt the CPU model accepts: prompt + max_tokens <= max_seq_len
    max_seq_len: int = 2048  # configs/cpu.pbtxt's max_seq_len
    max_num_tokens: int = 8192
    max_beam_width: int = 1
    tp_size: int = 1
    pp_size: int = 1
    paged_context_fmha: bool = True  # chunked context and KV-cache reuse need it
    calib_dataset: str | None = None  # fp8: quantize.py's default is cnn_dailymail from the Hub
    calib_size: int = 512

    def __post_init__(self) -> None:
        problems = []
        if self.dtype not in ("float16", "bfloat16"):
            problems.append(f"dtype must be float16 or bfloat16, got {self.dtype!r}")
        if self.weight_only not in (None, "int8", "int4"):
            problems.append(f"weight-only quantization must be int8 or int4, got {self.weight_only!r}")
        elif self.weight_only and self.fp8:
            problems.append("weight-only int8/int4 and fp8 are exclusive: choose one quantization")
        sizes = ("max_batch_size", "max_input_len", "max_num_tokens", "max_beam_width", "tp_size", "pp_size")
        for name in sizes:
            if getattr(self, name) < 1:
                problems.append(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.max_input_len >= self.max_seq_len:
            problems.append(
                f"max_input_len ({self.max_input_len}) must be below max_seq_len ({self.max_seq_len}), "
                "which counts the prompt and the generated tokens"
            )
        if self.max_num_tokens > self.max_batch_size * self.max_seq_len:
            problems.append(
                f"max_num_tokens ({self.max_num_tokens}) exceeds max_batch_size * max_seq_len "
                f"({self.max_batch_size * self.max_seq_len}): a step can never hold that many tokens"
            )
        if self.max_num_tokens > MAX_NUM_TOKENS_LIMIT:
            problems.append(
                f"max_num_tokens above {MAX_NUM_TOKENS_LIMIT} is not useful, got {self.max_num_tokens}"
            )
        if not self.paged_context_fmha and self.max_num_tokens < self.max_input_len:
            problems.append(
                f"max_num_tokens ({self.max_num_tokens}) below max_input_len ({self.max_input_len}) needs "
                "chunked context, which needs paged context FMHA"
            )
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def gpus(self) -> int:
        """GPUs the engine is split over (one engine per rank)."""
        return self.tp_size * self.pp_size

    @property
    def hf_dir(self) -> Path:
        return self.output.with_name(self.output.name + ".work") / "hf"

    @property
    def converted_dir(self) -> Path:
        return self.output.with_name(self.output.name + ".work") / "checkpoint"


def convert_command(params: EngineParams) -> list[str]:
    """Step 1: the Hugging Face checkpoint -> a TensorRT-LLM checkpoint."""
    io = ["--model_dir", str(params.hf_dir), "--output_dir", str(params.converted_dir)]
    io += ["--dtype", params.dtype]
    parallel = ["--tp_size", str(params.tp_size), "--pp_size", str(params.pp_size)]
    if params.fp8:
        cmd = ["python3", str(params.examples / "quantization" / "quantize.py"), *io,
               "--qformat", "fp8", "--kv_cache_dtype", "fp8", "--calib_size", str(params.calib_size),
               *parallel]  # fmt: skip
        return cmd + (["--calib_dataset", params.calib_dataset] if params.calib_dataset else [])
    convert = params.examples / "models" / "core" / "llama" / "convert_checkpoint.py"  # 1.x layout
    cmd = ["python3", str(convert), *io, *parallel]
    if params.weight_only:
        cmd += ["--use_weight_only", "--weight_only_precision", params.weight_only]
    return cmd + (["--workers", str(params.gpus)] if params.gpus > 1 else [])


def build_command(params: EngineParams) -> list[str]:
    """Step 2: the TensorRT-LLM checkpoint -> one engine per rank in ``params.output``."""

    def flag(on: bool) -> str:
        return "enable" if on else "disable"

    cmd = ["trtllm-build", "--checkpoint_dir", str(params.converted_dir), "--output_dir", str(params.output),
           "--max_batch_size", str(params.max_batch_size), "--max_input_len", str(params.max_input_len),
           "--max_seq_len", str(params.max_seq_len), "--max_num_tokens", str(params.max_num_tokens),
           "--max_beam_width", str(params.max_beam_width),
           "--gemm_plugin", params.dtype, "--gpt_attention_plugin", params.dtype,
           "--kv_cache_type", "paged", "--remove_input_padding", "enable",
           "--use_paged_context_fmha", flag(params.paged_context_fmha)]  # fmt: skip
    return cmd + (["--workers", str(params.gpus)] if params.gpus > 1 else [])


def tokenizer_info_command(params: EngineParams) -> list[str]:
    """Step 3: the tokenizer's vocabulary for xgrammar (guided decoding in the C++ backend), written as
    ``<output>/xgrammar_tokenizer_info.json`` (the config's ``xgrammar_tokenizer_info_path``)."""
    script = params.examples / "generate_xgrammar_tokenizer_info.py"
    return ["python3", str(script), "--model_dir", str(params.hf_dir), "--output_dir", str(params.output)]


def triton_parameters(params: EngineParams) -> dict[str, Any]:
    """What the GPU ``tensorrt_llm/config.pbtxt`` must say for this engine.

    The ``enable_*`` features need paged context FMHA: "false" here forbids them, "true" allows them.
    """
    features = "true" if params.paged_context_fmha else "false"
    return {
        "max_batch_size": params.max_batch_size,
        "gpt_model_path": str(params.output),
        "gpt_model_type": "inflight_fused_batching",
        "max_beam_width": str(params.max_beam_width),
        "enable_chunked_context": features,
        "enable_kv_cache_reuse": features,
        "guided_decoding_backend": "xgrammar",
        "xgrammar_tokenizer_info_path": str(params.output / XGRAMMAR_INFO),
    }


def llm_api_options(params: EngineParams) -> dict[str, Any]:
    """The same limits as LLM-API arguments (TensorRT-LLM >= 1.0, no engine): the LLM-API variant's
    model.yaml has them (tests/llm/test_llmapi.py)."""
    return {
        "tensor_parallel_size": params.tp_size,
        "pipeline_parallel_size": params.pp_size,
        "max_batch_size": params.max_batch_size,
        "max_seq_len": params.max_seq_len,
        "max_num_tokens": params.max_num_tokens,
        "max_beam_width": params.max_beam_width,
        "enable_chunked_prefill": params.paged_context_fmha,
    }


def config_problems(config: Any, params: EngineParams) -> list[str]:
    """Where a parsed GPU ``tensorrt_llm`` config disagrees with the engine ``params`` build."""
    problems = []
    if config.backend != "tensorrtllm":
        problems.append(f'backend is "{config.backend}", not "tensorrtllm"')
    if not config.model_transaction_policy.decoupled:
        problems.append("not decoupled: the ensemble streams through it")
    expected = triton_parameters(params)
    if config.max_batch_size != expected.pop("max_batch_size"):
        problems.append(f"max_batch_size {config.max_batch_size}, engine {params.max_batch_size}")
    for key, value in expected.items():
        actual = config.parameters[key].string_value if key in config.parameters else None
        if key.startswith("enable_") and value == "false" and actual == "true":
            problems.append(f"{key} is true but the engine has no paged context FMHA")
        elif not key.startswith("enable_") and actual != value:
            problems.append(f"parameter {key} is {actual!r}, engine wants {value!r}")
    return problems


def unsupported_tensors(config: Any) -> list[str]:
    """Tensors of a config that TensorRT-LLM 1.2's backend neither reads nor writes."""
    return sorted({t.name for t in config.input} - BACKEND_INPUTS) + sorted(
        {t.name for t in config.output} - BACKEND_OUTPUTS
    )


def unknown_parameters(config: Any) -> list[str]:
    """Parameters of a config that TensorRT-LLM 1.2's backend does not read."""
    return sorted(set(config.parameters) - BACKEND_PARAMETERS)


def checkpoint_problems(hf_config: dict[str, Any], params: EngineParams) -> list[str]:
    """Where ``params`` do not fit the model in a Hugging Face ``config.json``."""
    if hf_config.get("architectures") != ["LlamaForCausalLM"]:
        return [f"not a llama checkpoint: {hf_config.get('architectures')}"]
    heads, kv_heads = hf_config["num_attention_heads"], hf_config["num_key_value_heads"]
    problems = []
    if heads % params.tp_size or (kv_heads % params.tp_size and params.tp_size % kv_heads):
        problems.append(
            f"tp_size {params.tp_size} does not split {heads} attention heads / {kv_heads} KV heads evenly"
        )
    layers, positions = hf_config["num_hidden_layers"], hf_config["max_position_embeddings"]
    if layers % params.pp_size:
        problems.append(f"pp_size {params.pp_size} does not split {layers} layers evenly")
    if params.max_seq_len > positions:
        problems.append(f"max_seq_len {params.max_seq_len} exceeds the model's {positions} positions")
    rope = hf_config.get("rope_parameters") or {}
    if rope.get("rope_type", "default") != "default":
        problems.append(f"rope_type {rope['rope_type']!r} is not handled by the staging step")
    return problems


def legacy_hf_config(hf_config: dict[str, Any]) -> dict[str, Any]:
    """``config.json`` as transformers 4.x (TensorRT-LLM 1.2's converters) reads it."""
    out = dict(hf_config)
    rope = out.get("rope_parameters") or {}
    if "rope_theta" not in out and "rope_theta" in rope:
        out["rope_theta"] = rope["rope_theta"]
    if "torch_dtype" not in out and "dtype" in out:
        out["torch_dtype"] = out["dtype"]
    return out


def stage_checkpoint(params: EngineParams) -> None:
    """Link the checkpoint's files into ``params.hf_dir`` with a transformers 4.x ``config.json``."""
    shutil.rmtree(params.hf_dir, ignore_errors=True)
    params.hf_dir.mkdir(parents=True)
    for src in params.checkpoint.iterdir():
        if src.is_file() and src.name != "config.json":
            (params.hf_dir / src.name).symlink_to(src.resolve())
    config = legacy_hf_config(json.loads((params.checkpoint / "config.json").read_text()))
    (params.hf_dir / "config.json").write_text(json.dumps(config, indent=2))


def missing_tools(params: EngineParams) -> list[str]:
    """What this machine lacks to run the commands (empty inside the GPU image with the examples)."""
    missing = [] if importlib.util.find_spec("tensorrt_llm") else ["the tensorrt_llm Python package"]
    if shutil.which("trtllm-build") is None:
        missing.append("trtllm-build on PATH")
    for script in (Path(convert_command(params)[1]), Path(tokenizer_info_command(params)[1])):
        if not script.is_file():
            where = f"TensorRT-LLM v{TRTLLM_VERSION} examples: --examples or $TRTLLM_EXAMPLES"
            missing.append(f"{script} ({where})")
    return missing


def gpu_count() -> int:
    try:
        result = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=False)
    except FileNotFoundError:
        return 0
    return sum(line.startswith("GPU ") for line in result.stdout.splitlines())


def parse_args(argv: list[str] | None = None) -> tuple[EngineParams, argparse.Namespace]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", type=Path, required=True, help="Hugging Face checkpoint (llama)")
    parser.add_argument("--output", type=Path, default=ENGINE_DIR, help="engine directory (gpt_model_path)")
    parser.add_argument(
        "--examples", type=Path, default=Path(os.environ.get("TRTLLM_EXAMPLES", EXAMPLES_DIR))
    )
    parser.add_argument("--dtype", default="float16")
    parser.add_argument("--weight-only", choices=("int8", "int4"))
    parser.add_argument("--fp8", action="store_true", help="fp8 weights, activations and KV cache (ModelOpt)")
    parser.add_argument("--calib-dataset", help="fp8 calibration: Hub name or local directory")
    parser.add_argument("--max-batch-size", type=int, default=EngineParams.max_batch_size)
    parser.add_argument("--max-input-len", type=int, default=EngineParams.max_input_len)
    parser.add_argument("--max-seq-len", type=int, default=EngineParams.max_seq_len)
    parser.add_argument("--max-num-tokens", type=int, default=EngineParams.max_num_tokens)
    parser.add_argument("--tp", type=int, default=1, help="tensor parallel size")
    parser.add_argument("--pp", type=int, default=1, help="pipeline parallel size")
    parser.add_argument("--no-paged-context-fmha", action="store_true")
    parser.add_argument("--print-commands", action="store_true", help="print the three commands and exit")
    args = parser.parse_args(argv)
    try:
        params = EngineParams(
            checkpoint=args.checkpoint, output=args.output, examples=args.examples, dtype=args.dtype,
            weight_only=args.weight_only, fp8=args.fp8, calib_dataset=args.calib_dataset,
            max_batch_size=args.max_batch_size, max_input_len=args.max_input_len,
            max_seq_len=args.max_seq_len, max_num_tokens=args.max_num_tokens,
            tp_size=args.tp, pp_size=args.pp,
            paged_context_fmha=not args.no_paged_context_fmha,
        )  # fmt: skip
    except ValueError as exc:
        parser.error(str(exc))
    return params, args


def main(argv: list[str] | None = None) -> int:
    params, args = parse_args(argv)
    commands = [convert_command(params), build_command(params), tokenizer_info_command(params)]
    listing = "\n".join(shlex.join(c) for c in commands)
    if args.print_commands:
        print(listing)
        return 0
    missing = missing_tools(params)
    if missing:
        print(f"TensorRT-LLM is not available here ({'; '.join(missing)}).\nRun this inside the GPU image "
              f"(docker/Dockerfile: {IMAGE}, TensorRT-LLM {TRTLLM_VERSION}). It would run:\n{listing}",
              file=sys.stderr)  # fmt: skip
        return 1
    version = importlib.metadata.version("tensorrt_llm")
    if version != TRTLLM_VERSION:
        print(f"warning: TensorRT-LLM {version}; these commands are for {TRTLLM_VERSION}", file=sys.stderr)
    hf_config = params.checkpoint / "config.json"
    if not hf_config.is_file():
        print(
            f"cannot build: {hf_config} is missing (python build/llm/cpu_engine.py makes it)", file=sys.stderr
        )
        return 2
    problems = checkpoint_problems(json.loads(hf_config.read_text()), params)
    if (gpus := gpu_count()) < params.gpus:
        problems.append(f"tp*pp = {params.gpus} GPUs, this machine has {gpus}")
    if problems:
        print("cannot build: " + "; ".join(problems), file=sys.stderr)
        return 2
    stage_checkpoint(params)
    for cmd in commands:
        print("+ " + shlex.join(cmd), flush=True)
        if subprocess.run(cmd, check=False).returncode:
            return 1
    shutil.rmtree(params.hf_dir.parent)
    report = {"params": asdict(params), "triton_config": triton_parameters(params)}
    (params.output / "tritonfleet_build.json").write_text(json.dumps(report, indent=2, default=str))
    print(json.dumps(report["triton_config"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
