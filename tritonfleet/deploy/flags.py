"""The command-line flags each pinned GPU tool documents, per version, with where each list comes from, and
the check that a generated command uses only those (tests run it on every command the build scripts make).

Sources were read from stored copies of NVIDIA's documentation and code; where the pinned version's own
text was not among them, ``confirmed`` is False and ``source`` says what stands in for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Documented:
    tool: str
    version: str  # the pinned release the list is for (docker/image.env)
    flags: frozenset[str]
    removed: frozenset[str]  # flags earlier releases had that this one rejects or deprecates
    source: str
    confirmed: bool  # the source is that version's own text


def _flags(text: str) -> frozenset[str]:
    return frozenset(text.split())


TRTEXEC = Documented(
    tool="trtexec",
    version="10.14",
    flags=_flags(
        "--onnx --saveEngine --loadEngine --minShapes --optShapes --maxShapes --shapes --memPoolSize "
        "--fp16 --bf16 --int8 --fp8 --best --calib --timingCacheFile --builderOptimizationLevel "
        "--skipInference --noDataTransfers --useCudaGraph --verbose --avgTiming"
    ),
    removed=_flags("--workspace --explicitBatch --minTiming --deploy --model --uff --output --maxBatch"),
    source=(
        "TensorRT 10.x trtexec reference and 'Migrating trtexec Usage from TensorRT 8.x to 10.x' "
        "(docs.nvidia.com/deeplearning/tensorrt/10.16.1/api/tensorrt-8x-to-10x-trtexec.html: --workspace "
        "replaced by --memPoolSize=workspace:<size>, default unit MiB; --minTiming, --explicitBatch, Caffe/"
        "UFF flags removed). The 10.14 page itself is not among the stored sources; 10.x keeps one flag set."
    ),
    confirmed=False,
)

TRTLLM_BUILD = Documented(
    tool="trtllm-build",
    version="1.2.1",
    flags=_flags(
        # tensorrt_llm/commands/build.py parse_arguments()
        "--checkpoint_dir --model_config --build_config --model_cls_file --model_cls_name --output_dir "
        "--max_batch_size --max_input_len --max_seq_len --max_decoder_seq_len --max_beam_width "
        "--max_num_tokens --opt_num_tokens --max_encoder_input_len --max_prompt_embedding_table_size "
        "--max_multimodal_len --kv_cache_type --input_timing_cache --output_timing_cache "
        "--profiling_verbosity --strip_plan --weight_sparsity --weight_streaming --fast_build --workers "
        "--log_level --enable_debug_output --visualize_network --dry_run --monitor_memory --logits_dtype "
        "--gather_context_logits --gather_generation_logits --gather_all_token_logits --lora_dir "
        "--lora_ckpt_source --lora_target_modules --max_lora_rank --speculative_decoding_mode "
        "--max_draft_len "
        # tensorrt_llm/plugin/plugin.py cli_plugin_args (the pydantic PluginConfig of 1.x)
        "--bert_attention_plugin --gpt_attention_plugin --gemm_plugin --gemm_swiglu_plugin "
        "--fp8_rowwise_gemm_plugin --lora_plugin --dora_plugin --moe_plugin --mamba_conv1d_plugin "
        "--nccl_plugin --low_latency_gemm_plugin --low_latency_gemm_swiglu_plugin --gemm_allreduce_plugin "
        "--context_fmha --bert_context_fmha_fp32_acc --remove_input_padding --tokens_per_block "
        "--use_paged_context_fmha --use_fp8_context_fmha --fuse_fp4_quant --multiple_profiles --paged_state "
        "--streamingllm --norm_quant_fusion --reduce_fusion --user_buffer --use_fused_mlp --pp_reduce_scatter"
    ),
    removed=_flags(
        "--paged_kv_cache --use_custom_all_reduce --multi_block_mode --enable_xqa --context_fmha_fp32_acc "
        "--lookup_plugin --use_context_fmha_for_generation"
    ),
    source=(
        "trtllm-build reference (nvidia.github.io/TensorRT-LLM/commands/trtllm-build.html) and NVIDIA/"
        "TensorRT-LLM tensorrt_llm/commands/build.py + tensorrt_llm/plugin/plugin.py of the 1.x line "
        "(pydantic PluginConfig; --paged_kv_cache 'Deprecated', use --kv_cache_type paged; the 0.x-only "
        "plugin flags gone). The v1.2.1 tag's own files are not among the stored versions."
    ),
    confirmed=False,
)

CONVERT_CHECKPOINT = Documented(
    tool="examples/models/core/llama/convert_checkpoint.py",
    version="1.2.1",
    flags=_flags(
        "--model_dir --meta_ckpt_dir --tp_size --pp_size --moe_tp_size --cp_size --moe_ep_size --dtype "
        "--use_weight_only --disable_weight_only_quant_plugin --weight_only_precision --calib_dataset "
        "--calib_size --calib_max_seq_length --smoothquant --per_channel --per_token --int8_kv_cache "
        "--fp8_kv_cache --use_fp8 --use_fp8_rowwise --per_group --load_by_shard --rotary_base --group_size "
        "--load_model_on_cpu --use_parallel_embedding --embedding_sharding_dim --output_dir --workers "
        "--log_level"
    ),
    removed=frozenset(),
    source=(
        "NVIDIA/TensorRT-LLM examples/models/core/llama/convert_checkpoint.py, stored commit 368f8f2a (a 1.x "
        "commit: it emits the engine-architecture deprecation notice); the v1.2.1 tag not stored. The 0.x "
        "path examples/llama/ moved to examples/models/core/llama/."
    ),
    confirmed=False,
)

QUANTIZE = Documented(
    tool="examples/quantization/quantize.py",
    version="1.2.1",
    flags=_flags(
        "--model_dir --output_dir --dtype --qformat --kv_cache_dtype --calib_size --calib_dataset --tp_size "
        "--pp_size --batch_size --calib_max_seq_length --awq_block_size --device"
    ),
    removed=frozenset(),
    source=(
        "NVIDIA/TensorRT-LLM examples/quantization/quantize.py as used since 0.14 (the fp8 path); no 1.x "
        "copy was among the stored sources, so this list is the 0.14 one, unconfirmed for 1.2.1."
    ),
    confirmed=False,
)

XGRAMMAR_TOKENIZER_INFO = Documented(
    tool="examples/generate_xgrammar_tokenizer_info.py",
    version="1.2.1",
    flags=_flags("--model_dir --output_dir"),
    removed=frozenset(),
    source=(
        "NVIDIA/TensorRT-LLM examples/generate_xgrammar_tokenizer_info.py (stored commit 7ed07f06: argparse "
        "--model_dir, --output_dir; writes <output_dir>/xgrammar_tokenizer_info.json) and the Triton "
        "backend's guided-decoding guide (docs/guided_decoding.md, 'C++ Backend': fill "
        "xgrammar_tokenizer_info_path with that file). The v1.2.1 tag itself not stored."
    ),
    confirmed=False,
)

BY_TOOL = {
    d.tool.rsplit("/", 1)[-1]: d
    for d in (TRTEXEC, TRTLLM_BUILD, CONVERT_CHECKPOINT, QUANTIZE, XGRAMMAR_TOKENIZER_INFO)
}


def tool_of(command: Sequence[str]) -> Documented:
    """The table of the tool a command runs (``trtexec ...``, ``trtllm-build ...``, ``python3 .../X.py``)."""
    for word in command[:2]:
        name = word.rsplit("/", 1)[-1]
        if name in BY_TOOL:
            return BY_TOOL[name]
    raise KeyError(f"no documented flags for {' '.join(command[:2])!r}")


def used_flags(command: Sequence[str]) -> list[str]:
    """The ``--flags`` of a command (``--name=value`` counts as ``--name``), in order."""
    return [word.split("=", 1)[0] for word in command if word.startswith("--")]


def undocumented(command: Sequence[str]) -> list[str]:
    """Flags of ``command`` that its pinned tool does not document (empty: every one is)."""
    table = tool_of(command)
    return [f for f in used_flags(command) if f not in table.flags or f in table.removed]
