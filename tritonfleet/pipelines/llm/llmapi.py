"""The LLM pipeline on TensorRT-LLM's LLM API (``triton_backend/all_models/llmapi``), declared once.

For TensorRT-LLM releases without ``trtllm-build`` the LLM is NVIDIA's ``llmapi`` Triton model: a Python
model ``tensorrt_llm`` (its ``model.py`` and ``helpers.py`` come from the image, see
:data:`IMAGE_LLMAPI_DIR`) that loads the Hugging Face checkpoint with ``tensorrt_llm.LLM`` (PyTorch backend)
configured by ``1/model.yaml`` (:func:`model_yaml`). It speaks text, not token ids: ``text_input``,
``sampling_param_*``, ``streaming`` in, ``text_output`` (the whole text so far on each streamed response) out,
one prompt per request (``max_batch_size`` 0).

The llmapi variant of the repository keeps every name a client calls (``fleet render --llm-path llmapi``):

- ``llmapi_adapter`` (Python, decoupled, :mod:`tritonfleet.pipelines.llm.llmapi_adapter`) takes the
  engine path's client tensors, sends each row to ``tensorrt_llm`` under its own names (:data:`TO_LLMAPI`),
  and answers as the engine path does: text deltas per streamed response, ``batch_index``, the token counts,
  the chat template, the pass-through tensor (rag's sources). It exists because the tensors do not agree:
  the llmapi model is unbatched (``[-1]`` vs the ensemble's ``[batch, 1]``), streams whole texts, and lacks
  counts, chat template and pass-through.
- ``ensemble`` is a Triton ensemble of that one step (names unchanged), ``tensorrt_llm_bls`` the adapter's
  code answering once (not decoupled), rag's ensemble steps to the adapter instead of the id chain
  (``tritonfleet/pipelines/rag/interface.py``'s ``RAG_LLMAPI``).
- The engine path's ``postprocessing`` and ``tensorrt_llm_passthrough`` are not in it (:data:`DROPPED`);
  ``preprocessing`` stays, unloaded, for its tokenizer folder, which the OpenAI app reads.

Client inputs the LLM API model has no tensor for (:data:`UNSUPPORTED`) are refused with INVALID_ARG when a
request sets them to anything but their neutral value, never silently ignored.

The llmapi model's tensors are those of ``triton_backend/all_models/llmapi/tensorrt_llm/config.pbtxt`` in
NVIDIA/TensorRT-LLM, read from the stored copy at commit c8c6df08 (2025, before the multimodal and LoRA
inputs of 2026); its behaviour (whole texts per streamed response, the stop request by request id,
``triton_config`` applied by ``auto_complete_config``, the ``sampling_param_*`` it reads) from the stored
``1/model.py`` (044a90d2) and ``1/helpers.py`` (0df60f9a). The v1.2.1 tag was not among the stored sources.
The ``model.yaml`` keys are ``BaseLlmArgs`` and ``KvCacheConfig`` fields of the stored
``tensorrt_llm/llmapi/llm_args.py``: :data:`LLM_API_ARGS`, :data:`KV_CACHE_ARGS`.
"""

from __future__ import annotations

from typing import Any

from tritonfleet.pipelines.llm import interface as llm
from tritonfleet.spec import GPU, Deployment, Model, Step, Tensor, ensemble

# -- NVIDIA's llmapi tensorrt_llm model (stored config.pbtxt, commit c8c6df08) -------------------------------
LLMAPI_TEXT_INPUT = Tensor("text_input", "STRING", [-1])
LLMAPI_STREAMING = Tensor("streaming", "BOOL", [1], optional=True)
LLMAPI_BEST_OF = Tensor("sampling_param_best_of", "INT32", [1], optional=True)
LLMAPI_TEMPERATURE = Tensor("sampling_param_temperature", "FP32", [1], optional=True)
LLMAPI_TOP_K = Tensor("sampling_param_top_k", "INT32", [1], optional=True)
LLMAPI_TOP_P = Tensor("sampling_param_top_p", "FP32", [1], optional=True)
LLMAPI_FREQUENCY_PENALTY = Tensor("sampling_param_frequency_penalty", "FP32", [1], optional=True)
LLMAPI_PRESENCE_PENALTY = Tensor("sampling_param_presence_penalty", "FP32", [1], optional=True)
LLMAPI_MAX_TOKENS = Tensor("sampling_param_max_tokens", "INT32", [1], optional=True)
LLMAPI_STOP_WORDS = Tensor("sampling_param_stop", "STRING", [-1], optional=True)
LLMAPI_SEED = Tensor("sampling_param_seed", "UINT64", [1], optional=True)
LLMAPI_EXCLUDE_INPUT = Tensor("sampling_param_exclude_input_from_output", "BOOL", [1], optional=True)
LLMAPI_PERF_METRICS = Tensor("sampling_param_return_perf_metrics", "BOOL", [1], optional=True)
LLMAPI_RETURN_FINISH_REASON = Tensor("return_finish_reason", "BOOL", [1], optional=True)
LLMAPI_RETURN_STOP_REASON = Tensor("return_stop_reason", "BOOL", [1], optional=True)
LLMAPI_RETURN_CUM_LOGPROB = Tensor("return_cumulative_logprob", "BOOL", [1], optional=True)
LLMAPI_STOP = Tensor("stop", "BOOL", [1], optional=True)  # ends the requests that carry this request id

LLMAPI_INPUTS = (
    LLMAPI_TEXT_INPUT,
    LLMAPI_STREAMING,
    LLMAPI_BEST_OF,
    LLMAPI_TEMPERATURE,
    LLMAPI_TOP_K,
    LLMAPI_TOP_P,
    LLMAPI_FREQUENCY_PENALTY,
    LLMAPI_PRESENCE_PENALTY,
    LLMAPI_MAX_TOKENS,
    LLMAPI_STOP_WORDS,
    LLMAPI_SEED,
    LLMAPI_EXCLUDE_INPUT,
    LLMAPI_PERF_METRICS,
    LLMAPI_RETURN_FINISH_REASON,
    LLMAPI_RETURN_STOP_REASON,
    LLMAPI_RETURN_CUM_LOGPROB,
    LLMAPI_STOP,
)
LLMAPI_TEXT_OUTPUT = Tensor("text_output", "STRING", [-1])  # one text per output sequence, the whole so far
LLMAPI_FINISH_REASON = Tensor("finish_reason", "STRING", [-1])
LLMAPI_OUTPUTS = (
    LLMAPI_TEXT_OUTPUT,
    LLMAPI_FINISH_REASON,
    Tensor("stop_reason", "STRING", [-1]),
    Tensor("cumulative_logprob", "FP32", [-1]),
    *(
        Tensor(name, "INT32", [-1])
        for name in (
            "kv_cache_reused_block",
            "kv_cache_missed_block",
            "kv_cache_alloc_new_blocks",
            "kv_cache_alloc_total_blocks",
        )
    ),
    Tensor("kv_cache_hit_rate", "FP32", [-1]),
    *(
        Tensor(name, "INT64", [1])
        for name in (
            "arrival_time_ns",
            "first_scheduled_time_ns",
            "first_token_time_ns",
            "last_token_time_ns",
        )
    ),
    Tensor("acceptance_rate", "FP32", [1]),
    Tensor("total_accepted_draft_tokens", "INT32", [1]),
    Tensor("total_draft_tokens", "INT32", [1]),
)

# -- the mapping, written once: client input -> llmapi input (same data type, one row per llmapi request) ---
TO_LLMAPI = {
    llm.TEXT_INPUT.name: LLMAPI_TEXT_INPUT.name,
    llm.MAX_TOKENS.name: LLMAPI_MAX_TOKENS.name,
    llm.STOP_WORDS.name: LLMAPI_STOP_WORDS.name,
    llm.EXCLUDE_INPUT_IN_OUTPUT.name: LLMAPI_EXCLUDE_INPUT.name,
    llm.TOP_K.name: LLMAPI_TOP_K.name,
    llm.TOP_P.name: LLMAPI_TOP_P.name,
    llm.TEMPERATURE.name: LLMAPI_TEMPERATURE.name,
    llm.PRESENCE_PENALTY.name: LLMAPI_PRESENCE_PENALTY.name,
    llm.FREQUENCY_PENALTY.name: LLMAPI_FREQUENCY_PENALTY.name,
    llm.SEED.name: LLMAPI_SEED.name,
    llm.RANDOM_SEED.name: LLMAPI_SEED.name,  # the legacy name: seed wins where both are sent
    llm.STREAM.name: LLMAPI_STREAMING.name,
}
# Client inputs the llmapi model has no tensor for, with the value that asks for nothing: any other is
# refused (INVALID_ARG), so a client never gets a different generation than it asked for without knowing.
UNSUPPORTED: dict[str, Any] = {
    llm.BAD_WORDS.name: None,  # any word list
    llm.END_ID.name: None,
    llm.PAD_ID.name: None,
    llm.LENGTH_PENALTY.name: 1.0,
    llm.REPETITION_PENALTY.name: 1.0,
    llm.MIN_TOKENS.name: 0,
    llm.MIN_LENGTH.name: 0,
    llm.RETURN_LOG_PROBS.name: False,
    llm.BEAM_WIDTH.name: 1,
    llm.NUM_RETURN_SEQUENCES.name: 1,
    llm.GUIDE_TYPE.name: None,
    llm.GUIDE.name: None,
}
# Done by the adapter itself: the chat template and the counts (the checkpoint's tokenizer), the row index.
BY_ADAPTER = (
    llm.APPLY_CHAT_TEMPLATE.name,
    llm.RETURN_NUM_INPUT_TOKENS.name,
    llm.RETURN_NUM_OUTPUT_TOKENS.name,
)

# -- where things are in the image ---------------------------------------------------------------------------
# NVIDIA's llmapi model files at the image's TensorRT-LLM version: docker/Dockerfile checks out
# triton_backend/all_models/llmapi at tag v$TRTLLM_VERSION (the NGC image ships the tensorrt_llm wheel,
# not all_models: NVIDIA's llmapi guide copies them from a checkout) and copies it here.
IMAGE_LLMAPI_DIR = "/opt/tritonfleet/trtllm-llmapi/tensorrt_llm/1"
LLMAPI_FILES = ("model.py", "helpers.py")  # model.py imports helpers from its own folder
CHECKPOINT = "/opt/tritonfleet/checkpoints/smollm2-135m-instruct"  # the image's fp32 HF checkpoint

LLMAPI = Model(
    name="tensorrt_llm",
    inputs=LLMAPI_INPUTS,
    outputs=LLMAPI_OUTPUTS,
    max_batch_size=0,  # and decoupled: what model.yaml's triton_config says (auto_complete_config)
    decoupled=True,
    gpu=Deployment(backend="python"),  # KIND_CPU: the LLM API places itself on the GPUs
    doc="""TensorRT-LLM's LLM-API Triton model (triton_backend/all_models/llmapi/tensorrt_llm): NVIDIA's
    model.py and helpers.py from the image (links to /opt/tritonfleet/trtllm-llmapi), tensorrt_llm.LLM
    with the PyTorch backend over the Hugging Face checkpoint, configured by 1/model.yaml (generated by
    fleet render --llm-path llmapi from the plan: KV-cache cap, parallelism). Its tensors are NVIDIA's;
    clients call llmapi_adapter's (ensemble, tensorrt_llm_bls, rag). max_batch_size 0 and decoupled match
    model.yaml's triton_config, which the model's auto_complete_config applies.""",
)

ADAPTER = Model(
    name="llmapi_adapter",
    inputs=(*llm.LLM_INPUTS, llm.PASSTHROUGH_IN),
    outputs=(*llm.LLM_OUTPUTS, llm.PASSTHROUGH_OUT),
    max_batch_size=64,
    decoupled=True,
    gpu=Deployment(
        backend="python",
        bls_models=(LLMAPI.name,),
        parameters={"llm_model": LLMAPI.name, "tokenizer_dir": CHECKPOINT, **llm.EXCLUDE_INPUT_DEFAULT},
        instances=1,
    ),
    doc="""The engine path's client tensors over the LLM-API model: each row of a request becomes one
    tensorrt_llm request under its names (TO_LLMAPI in tritonfleet/pipelines/llm/llmapi.py), on its own
    thread; its whole-text responses become text deltas, tagged with batch_index when the batch has several
    rows, with num_input_tokens / num_output_tokens counted by the checkpoint's tokenizer (the output
    re-tokenized: the LLM-API model returns no ids). The chat template is applied here; passthrough_in comes
    back as passthrough_out on each row's first response (rag's sources). Inputs it cannot honour are
    refused. A client's cancel sends tensorrt_llm the stop request for that row.""",
)


def adapter_step(
    inputs: tuple[Tensor, ...],
    outputs: tuple[Tensor, ...],
    *,
    query: str = llm.TEXT_INPUT.name,
    chat: str = llm.APPLY_CHAT_TEMPLATE.name,
    passthrough: tuple[str, str] | None = None,
) -> Step:
    """The adapter as the one LLM step of an ensemble with these inputs and outputs (as
    :func:`tritonfleet.pipelines.llm.interface.llm_steps`: prompt from ``query``, chat flag from ``chat``,
    ``passthrough`` ``(in, out)``). Every other tensor keeps its name."""
    have = {t.name for t in inputs if t.on(GPU)}
    into = {t.name: t.name for t in ADAPTER.inputs if t.name in have}
    into |= {llm.TEXT_INPUT.name: query, llm.APPLY_CHAT_TEMPLATE.name: chat}
    out = {t.name: t.name for t in outputs if t.name in {o.name for o in ADAPTER.outputs}}
    if passthrough is not None:
        into[llm.PASSTHROUGH_IN.name], out[llm.PASSTHROUGH_OUT.name] = passthrough
    return Step(ADAPTER, into, out)


ENSEMBLE = Model(
    name=llm.ENSEMBLE.name,
    inputs=llm.ENSEMBLE.inputs,
    outputs=llm.ENSEMBLE.outputs,
    max_batch_size=llm.ENSEMBLE.max_batch_size,
    gpu=ensemble(adapter_step(llm.ENSEMBLE.inputs, llm.ENSEMBLE.outputs)),
    doc="""The streaming pipeline on the LLM-API model: the engine path's ensemble interface (tensor names,
    data types, dims), one step, llmapi_adapter, which calls tensorrt_llm (NVIDIA's llmapi model).""",
)

TENSORRT_LLM_BLS = Model(
    name=llm.TENSORRT_LLM_BLS.name,
    inputs=llm.TENSORRT_LLM_BLS.inputs,
    outputs=llm.TENSORRT_LLM_BLS.outputs,
    max_batch_size=llm.TENSORRT_LLM_BLS.max_batch_size,
    gpu=ADAPTER.gpu.but(instances=llm.TENSORRT_LLM_BLS.gpu.instances),
    doc="""The one-response path (HTTP /generate, unary gRPC) on the LLM-API model: llmapi_adapter's code,
    not decoupled, answering each request once with every row's whole text; stream=true is refused (use
    ensemble).""",
)

MODELS = (LLMAPI, ADAPTER, ENSEMBLE, TENSORRT_LLM_BLS)  # rag's is RAG_LLMAPI, in rag's interface
# Not in the variant. preprocessing stays: nothing calls it, but the OpenAI app reads its tokenizer folder.
DROPPED = (llm.POSTPROCESSING.name, llm.TENSORRT_LLM_PASSTHROUGH.name)

# -- model.yaml ----------------------------------------------------------------------------------------------
# The tensorrt_llm.LLM arguments model.yaml sets (BaseLlmArgs fields, stored llm_args.py), KvCacheConfig's.
LLM_API_ARGS = frozenset(
    str.split(
        "model backend tensor_parallel_size pipeline_parallel_size max_batch_size max_seq_len max_input_len "
        "max_num_tokens max_beam_width enable_chunked_prefill kv_cache_config dtype tokenizer"
    )
)
KV_CACHE_ARGS = frozenset(
    str.split(
        "max_tokens free_gpu_memory_fraction max_gpu_total_bytes enable_block_reuse dtype tokens_per_block"
    )
)
# What the llmapi model.py reads from triton_config (auto_complete_config and initialize).
TRITON_CONFIG_KEYS = frozenset(("max_batch_size", "decoupled", "cancellation_check_period_ms"))


def model_yaml(
    *,
    kv_tokens: int,
    kv_fraction: float,
    kv_bytes: int | None = None,
    tp: int = 1,
    pp: int = 1,
    checkpoint: str = CHECKPOINT,
) -> dict[str, Any]:
    """``tensorrt_llm/1/model.yaml``: the engine path's limits as LLM-API arguments, the KV-cache cap
    (``kv_cache_config``: TensorRT-LLM takes the smallest of ``max_tokens``, ``max_gpu_total_bytes`` and
    ``free_gpu_memory_fraction`` of the memory free at load), tensor/pipeline parallelism, and the
    ``triton_config`` the llmapi model applies to its Triton config."""
    if not 0 < kv_fraction < 1:
        raise ValueError(f"kv_fraction {kv_fraction}: a fraction of the free GPU memory, between 0 and 1")
    kv: dict[str, Any] = {
        "max_tokens": int(kv_tokens),
        "free_gpu_memory_fraction": float(kv_fraction),
        "enable_block_reuse": True,  # the engine path's enable_kv_cache_reuse
    }
    if kv_bytes:
        kv["max_gpu_total_bytes"] = int(kv_bytes)
    return {
        "model": checkpoint,
        "backend": "pytorch",
        "tensor_parallel_size": tp,
        "pipeline_parallel_size": pp,
        "max_batch_size": llm.ENGINE_MAX_BATCH_SIZE,
        "max_seq_len": llm.ENGINE_MAX_SEQ_LEN,
        "max_num_tokens": 8192,  # build/llm/trtllm_engine.py's EngineParams default
        "max_beam_width": 1,
        "enable_chunked_prefill": True,
        "kv_cache_config": kv,
        "triton_config": {
            "max_batch_size": LLMAPI.max_batch_size,
            "decoupled": LLMAPI.decoupled,
            "cancellation_check_period_ms": 100,
        },
    }
