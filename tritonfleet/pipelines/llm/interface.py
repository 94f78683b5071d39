"""The LLM pipeline's models, with the tensor names of TensorRT-LLM's ``inflight_batcher_llm``.

``ensemble`` (streaming) and ``tensorrt_llm_bls`` (one response) take the client's inputs through the same
chain, preprocessing -> the decoupled LLM step -> postprocessing, whose wiring is written once here (the
``PREPROCESS`` ... ``FROM_POSTPROCESSING`` maps and :func:`llm_steps`, which rag's ensemble uses too). The
LLM step is ``tensorrt_llm`` on both targets: TensorRT-LLM 1.2.1's tensorrtllm backend on GPU and the CPU
engine both return the token counts and take guided decoding's inputs. Only rag's GPU ensemble steps through
``tensorrt_llm_passthrough``, which carries its sources past the C++ backend (:func:`llm_step`).

Client-facing tensors have plain names (``TEXT_INPUT``); those of preprocessing and postprocessing carry the
model's prefix (``PRE_QUERY``, ``POST_OUTPUT``); the LLM step's own ones (``INPUT_IDS``, ``STREAMING``) none.
"""

from tritonfleet.spec import CPU, GPU, Batching, Deployment, Model, QueuePolicy, Step, Tensor, ensemble

CPU_ONLY = (CPU,)

# -- the client's interface: TensorRT-LLM's ensemble (1.x names: seed, min_tokens, return_num_*_tokens,
# num_*_tokens), plus the legacy random_seed and min_length and an optional apply_chat_template
TEXT_INPUT = Tensor("text_input", "STRING", [1])
MAX_TOKENS = Tensor("max_tokens", "INT32", [1])
BAD_WORDS = Tensor("bad_words", "STRING", [-1], optional=True)
STOP_WORDS = Tensor("stop_words", "STRING", [-1], optional=True)
EXCLUDE_INPUT_IN_OUTPUT = Tensor("exclude_input_in_output", "BOOL", [1], optional=True)
END_ID = Tensor("end_id", "INT32", [1], optional=True)
PAD_ID = Tensor("pad_id", "INT32", [1], optional=True)
TOP_K = Tensor("top_k", "INT32", [1], optional=True)
TOP_P = Tensor("top_p", "FP32", [1], optional=True)
TEMPERATURE = Tensor("temperature", "FP32", [1], optional=True)
LENGTH_PENALTY = Tensor("length_penalty", "FP32", [1], optional=True)
REPETITION_PENALTY = Tensor("repetition_penalty", "FP32", [1], optional=True)
MIN_TOKENS = Tensor("min_tokens", "INT32", [1], optional=True)
MIN_LENGTH = Tensor("min_length", "INT32", [1], optional=True)
PRESENCE_PENALTY = Tensor("presence_penalty", "FP32", [1], optional=True)
FREQUENCY_PENALTY = Tensor("frequency_penalty", "FP32", [1], optional=True)
SEED = Tensor("seed", "UINT64", [1], optional=True)
RANDOM_SEED = Tensor("random_seed", "UINT64", [1], optional=True)
RETURN_LOG_PROBS = Tensor("return_log_probs", "BOOL", [1], optional=True)
RETURN_NUM_INPUT_TOKENS = Tensor("return_num_input_tokens", "BOOL", [1], optional=True)
RETURN_NUM_OUTPUT_TOKENS = Tensor("return_num_output_tokens", "BOOL", [1], optional=True)
BEAM_WIDTH = Tensor("beam_width", "INT32", [1], optional=True)
NUM_RETURN_SEQUENCES = Tensor("num_return_sequences", "INT32", [1], optional=True)
STREAM = Tensor("stream", "BOOL", [1], optional=True)
APPLY_CHAT_TEMPLATE = Tensor(
    "apply_chat_template", "BOOL", [1], optional=True
)  # text_input: the user's message
# Guided decoding (TensorRT-LLM 1.2.1's inflight_batcher_llm names): xgrammar in the GPU backend, llguidance
# on the CPU engine.
GUIDE_TYPE = Tensor("guided_decoding_guide_type", "STRING", [1], optional=True)
GUIDE = Tensor("guided_decoding_guide", "STRING", [1], optional=True)

TEXT_OUTPUT = Tensor("text_output", "STRING", [-1])
CUM_LOG_PROBS = Tensor("cum_log_probs", "FP32", [-1])
OUTPUT_LOG_PROBS = Tensor("output_log_probs", "FP32", [-1, -1])
NUM_INPUT_TOKENS = Tensor("num_input_tokens", "INT32", [1])
NUM_OUTPUT_TOKENS = Tensor("num_output_tokens", "INT32", [1])
BATCH_INDEX = Tensor("batch_index", "INT32", [1])  # which row of a batched request a response is

# The optional sampling inputs a caller may set (FleetClient.generate / stream: their data types come from the
# served config).
SAMPLING = (
    TEMPERATURE,
    TOP_K,
    TOP_P,
    REPETITION_PENALTY,
    PRESENCE_PENALTY,
    FREQUENCY_PENALTY,
    MIN_TOKENS,
    SEED,
    END_ID,
    PAD_ID,
)

LLM_INPUTS = (
    TEXT_INPUT,
    MAX_TOKENS,
    BAD_WORDS,
    STOP_WORDS,
    EXCLUDE_INPUT_IN_OUTPUT,
    END_ID,
    PAD_ID,
    TOP_K,
    TOP_P,
    TEMPERATURE,
    LENGTH_PENALTY,
    REPETITION_PENALTY,
    MIN_TOKENS,
    MIN_LENGTH,
    PRESENCE_PENALTY,
    FREQUENCY_PENALTY,
    SEED,
    RANDOM_SEED,
    RETURN_LOG_PROBS,
    RETURN_NUM_INPUT_TOKENS,
    RETURN_NUM_OUTPUT_TOKENS,
    BEAM_WIDTH,
    NUM_RETURN_SEQUENCES,
    STREAM,
    APPLY_CHAT_TEMPLATE,
    GUIDE_TYPE,
    GUIDE,
)
LLM_OUTPUTS = (TEXT_OUTPUT, CUM_LOG_PROBS, OUTPUT_LOG_PROBS, NUM_INPUT_TOKENS, NUM_OUTPUT_TOKENS, BATCH_INDEX)

# -- preprocessing -------------------------------------------------------------------------------------------
# Its inputs are the client's, under TensorRT-LLM's preprocessing names.
PREPROCESS = {  # client input -> preprocessing input
    TEXT_INPUT.name: "QUERY",
    MAX_TOKENS.name: "REQUEST_OUTPUT_LEN",
    BAD_WORDS.name: "BAD_WORDS_DICT",
    STOP_WORDS.name: "STOP_WORDS_DICT",
    END_ID.name: "END_ID",
    PAD_ID.name: "PAD_ID",
    SEED.name: "SEED",
    RANDOM_SEED.name: "RANDOM_SEED",
    MIN_TOKENS.name: "MIN_TOKENS",
    MIN_LENGTH.name: "MIN_LENGTH",
    APPLY_CHAT_TEMPLATE.name: "APPLY_CHAT_TEMPLATE",
}
_CLIENT = {t.name: t for t in LLM_INPUTS}
PRE_INPUTS = tuple(_CLIENT[client].but(name=name) for client, name in PREPROCESS.items())
(PRE_QUERY, PRE_REQUEST_OUTPUT_LEN, PRE_BAD_WORDS_DICT, PRE_STOP_WORDS_DICT, PRE_END_ID, PRE_PAD_ID, PRE_SEED,
 PRE_RANDOM_SEED, PRE_MIN_TOKENS, PRE_MIN_LENGTH, PRE_APPLY_CHAT_TEMPLATE) = PRE_INPUTS  # fmt: skip

PRE_INPUT_ID = Tensor("INPUT_ID", "INT32", [-1])  # [batch, longest], padded with each row's pad id
PRE_REQUEST_INPUT_LEN = Tensor("REQUEST_INPUT_LEN", "INT32", [1])
PRE_BAD_WORDS_IDS = Tensor("BAD_WORDS_IDS", "INT32", [2, -1])  # [batch, 2, longest]: flat ids, end offsets
PRE_STOP_WORDS_IDS = Tensor("STOP_WORDS_IDS", "INT32", [2, -1])
PRE_OUT_REQUEST_OUTPUT_LEN = Tensor("REQUEST_OUTPUT_LEN", "INT32", [-1])
PRE_OUT_END_ID = Tensor("OUT_END_ID", "INT32", [1])
PRE_OUT_PAD_ID = Tensor("OUT_PAD_ID", "INT32", [1])
PRE_OUT_SEED = Tensor("OUT_SEED", "UINT64", [1])  # seed or random_seed, whichever the client sent
PRE_OUT_MIN_TOKENS = Tensor("OUT_MIN_TOKENS", "INT32", [1])  # min_tokens or min_length

PREPROCESSING = Model(
    name="preprocessing",
    inputs=PRE_INPUTS,
    outputs=(
        PRE_INPUT_ID,
        PRE_REQUEST_INPUT_LEN,
        PRE_BAD_WORDS_IDS,
        PRE_STOP_WORDS_IDS,
        PRE_OUT_REQUEST_OUTPUT_LEN,
        PRE_OUT_END_ID,
        PRE_OUT_PAD_ID,
        PRE_OUT_SEED,
        PRE_OUT_MIN_TOKENS,
    ),
    max_batch_size=64,
    gpu=Deployment(backend="python", parameters={"tokenizer_dir": "tokenizer"}),
    doc="""Tokenizes text_input and the stop/bad word lists (TensorRT-LLM inflight_batcher_llm names, plus
    OUT_SEED and OUT_MIN_TOKENS: seed or random_seed, min_tokens or min_length, whichever the client sent; the
    ensemble feeds them to tensorrt_llm's seed and min_tokens). Python on CPU cores on both targets.

    No dynamic batcher (the model tokenizes request by request anyway): Triton 24.10 passes a STRING input
    whose last element is cut short, and the Python backend then fails the whole dynamic batch it lands in
    (other clients' requests too) and cannot unload the model any more (tests/frontdoor/test_fuzz.py).""",
)

# -- the LLM step: tensorrt_llm (TensorRT-LLM 1.2.1's inflight_batcher_llm names) and, for rag on GPU,
# tensorrt_llm_passthrough
INPUT_IDS = Tensor("input_ids", "INT32", [-1])
INPUT_LENGTHS = Tensor("input_lengths", "INT32", [1])
REQUEST_OUTPUT_LEN = Tensor("request_output_len", "INT32", [1])
STOP_WORDS_LIST = Tensor("stop_words_list", "INT32", [2, -1], optional=True)
BAD_WORDS_LIST = Tensor("bad_words_list", "INT32", [2, -1], optional=True)
RUNTIME_TOP_K = Tensor("runtime_top_k", "INT32", [1], optional=True)
RUNTIME_TOP_P = Tensor("runtime_top_p", "FP32", [1], optional=True)
LEN_PENALTY = Tensor("len_penalty", "FP32", [1], optional=True)
STOP = Tensor("stop", "BOOL", [1], optional=True)  # TensorRT-LLM's stop request (STOP_REQUEST)
STREAMING = Tensor("streaming", "BOOL", [1], optional=True)
PASSTHROUGH_IN = Tensor("passthrough_in", "STRING", [-1], optional=True)  # back as passthrough_out (rag)

OUTPUT_IDS = Tensor("output_ids", "INT32", [-1, -1])
SEQUENCE_LENGTH = Tensor("sequence_length", "INT32", [-1])
STOP_REQUEST_ID = Tensor("stop_request_id", "STRING", [1])  # the CPU engine's id that stops this sequence
PASSTHROUGH_OUT = Tensor("passthrough_out", "STRING", [-1])

# TensorRT-LLM's stop request, as its inflight_batcher_llm_client.py --stop-after-ms sends it to tensorrt_llm
# with the id of the request to end: stop, and empty values for the inputs tensorrt_llm requires.
STOP_REQUEST = {INPUT_IDS.name: 0, INPUT_LENGTHS.name: 0, REQUEST_OUTPUT_LEN.name: 0, STOP.name: True}

_SAMPLED = (
    BEAM_WIDTH,
    NUM_RETURN_SEQUENCES,
    TEMPERATURE,
    RUNTIME_TOP_K,
    RUNTIME_TOP_P,
    LEN_PENALTY,
    REPETITION_PENALTY,
    MIN_TOKENS,
    PRESENCE_PENALTY,
    FREQUENCY_PENALTY,
    SEED,
    RETURN_LOG_PROBS,
    EXCLUDE_INPUT_IN_OUTPUT,
    RETURN_NUM_INPUT_TOKENS,
    RETURN_NUM_OUTPUT_TOKENS,
)
# What tensorrt_llm and tensorrt_llm_passthrough take alike (TensorRT-LLM 1.2.1's layout).
_REQUEST = (
    INPUT_IDS,
    INPUT_LENGTHS,
    REQUEST_OUTPUT_LEN,
    END_ID,
    PAD_ID,
    STOP_WORDS_LIST,
    BAD_WORDS_LIST,
    *_SAMPLED,
    GUIDE_TYPE,
    GUIDE,
)


def _backend_view(tensor: Tensor) -> Tensor:
    """A tensor as tensorrt_llm takes it: a scalar per row ([1] reshaped to []), the ids and word lists ragged
    (input_ids optional: a stop request has none that count)."""
    if tensor.name == INPUT_IDS.name:
        return tensor.but(allow_ragged_batch=True, optional=True)
    if tensor.dims == (2, -1):
        return tensor.but(allow_ragged_batch=True)
    if tensor.dims == (1,) and tensor.dtype != "STRING":
        return tensor.but(reshape=())
    if tensor.name in (GUIDE_TYPE.name, GUIDE.name):
        return tensor.but(allow_ragged_batch=True)  # as the 1.2.1 template declares them
    return tensor


TENSORRT_LLM_OUTPUTS = (
    OUTPUT_IDS,
    SEQUENCE_LENGTH,
    CUM_LOG_PROBS,
    OUTPUT_LOG_PROBS,
    BATCH_INDEX,
    NUM_INPUT_TOKENS,
    NUM_OUTPUT_TOKENS,
)
EXCLUDE_INPUT_DEFAULT = {"exclude_input_in_output": "true"}  # its default on both targets

# The GPU engine's limits (build/llm/trtllm_engine.py's EngineParams defaults; tests hold them together) and
# the KV cache they need: max_batch_size sequences of max_seq_len tokens in whole blocks of trtllm-build's
# default tokens_per_block. config.pbtxt caps the pool at that; fleet plan writes both caps for what shares
# the GPU (tritonfleet/plan/pack.py).
ENGINE_MAX_BATCH_SIZE = 64
ENGINE_MAX_SEQ_LEN = 2048
KV_TOKENS_PER_BLOCK = 64
KV_CACHE_TOKENS = ENGINE_MAX_BATCH_SIZE * -(-ENGINE_MAX_SEQ_LEN // KV_TOKENS_PER_BLOCK) * KV_TOKENS_PER_BLOCK
ENGINE_DIR = "/engines/smollm2-135m-instruct/trtllm"
XGRAMMAR_TOKENIZER_INFO = f"{ENGINE_DIR}/xgrammar_tokenizer_info.json"  # written beside the engine

TENSORRT_LLM = Model(
    name="tensorrt_llm",
    inputs=tuple(
        _backend_view(t)
        for t in (
            *_REQUEST,
            STOP,
            STREAMING,
            PASSTHROUGH_IN.but(targets=CPU_ONLY),
        )
    ),
    outputs=(*TENSORRT_LLM_OUTPUTS, *(t.but(targets=CPU_ONLY) for t in (STOP_REQUEST_ID, PASSTHROUGH_OUT))),
    max_batch_size=ENGINE_MAX_BATCH_SIZE,
    decoupled=True,
    gpu=Deployment(
        backend="tensorrtllm",
        batching=Batching.interactive_first(
            preferred=(64,), max_queue_delay_us=0, queue_policy=QueuePolicy(max_queue_size=0)
        ),
        # TensorRT-LLM 1.2.1's triton_backend/all_models/inflight_batcher_llm/tensorrt_llm template, filled.
        parameters={
            "max_beam_width": "1",
            "FORCE_CPU_ONLY_INPUT_TENSORS": "no",
            "gpt_model_type": "inflight_fused_batching",
            "gpt_model_path": ENGINE_DIR,
            "batch_scheduler_policy": "guaranteed_no_evict",
            "max_tokens_in_paged_kv_cache": str(KV_CACHE_TOKENS),
            "kv_cache_free_gpu_mem_fraction": "0.5",
            "enable_kv_cache_reuse": "true",
            "enable_chunked_context": "true",
            **EXCLUDE_INPUT_DEFAULT,
            "cancellation_check_period_ms": "100",
            "stats_check_period_ms": "100",
            "normalize_log_probs": "true",
            "executor_worker_path": "/opt/tritonserver/backends/tensorrtllm/trtllmExecutorWorker",
            "guided_decoding_backend": "xgrammar",
            "xgrammar_tokenizer_info_path": XGRAMMAR_TOKENIZER_INFO,
        },
        doc="""GPU production config: the tensorrtllm (C++) backend of the pinned image (docker/image.env:
        tritonserver:26.07-trtllm-python-py3, TensorRT-LLM 1.2.1), in-flight fused batching over the engine
        built by build/llm/trtllm_engine.py; max_batch_size, gpt_model_path and the chunked-context /
        KV-cache-reuse switches must match that build (tests/llm/test_trtllm_engine.py). Parameters are those
        of TensorRT-LLM 1.2.1's triton_backend/all_models/inflight_batcher_llm/tensorrt_llm template, filled
        in here (no template substitution). The backend returns the token counts (return_num_input_tokens /
        return_num_output_tokens) and decodes under a guide with xgrammar (guided_decoding_guide_type /
        guided_decoding_guide; xgrammar_tokenizer_info_path: the tokenizer's vocabulary as the engine build
        writes it). The KV cache is capped: max_tokens_in_paged_kv_cache holds max_batch_size sequences of
        max_seq_len tokens, and TensorRT-LLM takes the smaller of that and kv_cache_free_gpu_mem_fraction of
        the memory free when it loads (a bound here, never the 0.9 default that takes the GPU); the configs
        fleet plan writes set both for what shares the GPU.""",
    ),
    cpu=Deployment(
        backend="python",
        parameters={
            "engine_dir": "cpu_engine",
            "intra_op_threads": "2",
            # The paged engine's and its scheduler's (the doc below says what each is).
            "kv_cache_mb": "256",
            "kv_precision": "u8",
            "max_batched_tokens": "512",
            "max_seqs": "32",
            "max_queue": "256",
            "enable_prefix_caching": "true",
            "yield_ms": "200",
            "max_seq_len": "2048",
            "max_tokens": "1024",
            **EXCLUDE_INPUT_DEFAULT,
        },
        doc="""CPU config: NOT TensorRT-LLM. A decoupled Python model (1/model.py) with TensorRT-LLM's tensor
        interface, running the CPU engine built by build/llm/cpu_engine.py into 1/cpu_engine: OpenVINO's
        paged-attention model (int8 weights) under the continuous-batching scheduler of
        tritonfleet.pipelines.llm (docs/llm.md). Its parameters: the KV cache's size in MB (allocated once; a
        request that could never fit is refused, one that cannot fit now waits) and its element type (u8:
        quantized by the plugin, as close to the fp32 model as bf16 or closer, and 1.7x the blocks), the
        tokens one step may feed (decode tokens first, then prompt chunks: chunked prefill), sequences running
        at once, sequences waiting before a request is UNAVAILABLE, prefix caching (KV blocks shared by
        prompts that start alike), and how long batch lines (priority 2) wait after an interactive request was
        last fed, so that the next one finds no batch step running. Inputs and outputs are the GPU config's,
        less the GPU-only features (LoRA, prompt tables, draft tokens, logits outputs), plus (extra_tensors)
        stop_request_id out: the request id that stops this sequence, which the CPU ensemble passes to
        postprocessing (cancellation, see its model.py), and the pass-through tensor (rag's sources). Guided
        decoding is done with llguidance on the CPU engine's sampler.""",
    ),
    doc="""The LLM: inputs are the subset the ensemble and BLS models use plus `stop` (a request with
    stop=true ends the running requests that carry its request id, as TensorRT-LLM's client sends with
    --stop-after-ms). A request of batch B is B sequences; each response is one row's, tagged with the
    batch_index output when B > 1. passthrough_in (optional) comes back unchanged as passthrough_out on each
    row's first response: how rag's sources reach the client beside the streamed text (an ensemble output
    cannot come from before the decoupled step; docs/rag.md).""",
)

TENSORRT_LLM_PASSTHROUGH = Model(
    name="tensorrt_llm_passthrough",
    inputs=(*_REQUEST, STREAMING, PASSTHROUGH_IN),
    outputs=(*TENSORRT_LLM_OUTPUTS, PASSTHROUGH_OUT),
    max_batch_size=64,
    decoupled=True,
    gpu=Deployment(backend="python", bls_models=(TENSORRT_LLM.name,)),
    doc="""rag's decoupled step on GPU: tensorrt_llm's inputs and outputs plus passthrough_in, which comes
    back unchanged as passthrough_out on each row's first response (rag's sources; docs/rag.md). The C++
    backend has no such tensor, so this step forwards each request to tensorrt_llm (BLS) without it and adds
    it to the first response itself. Python on CPU cores; the CPU target needs no such step (its
    tensorrt_llm passes the tensor through itself).""",
)

# -- postprocessing ------------------------------------------------------------------------------------------
POST_TOKENS_BATCH = Tensor("TOKENS_BATCH", "INT32", [-1, -1])
POST_SEQUENCE_LENGTH = Tensor("SEQUENCE_LENGTH", "INT32", [-1])
POST_STOP_REQUEST_ID = Tensor("STOP_REQUEST_ID", "STRING", [1], optional=True, targets=CPU_ONLY)
POST_OUTPUT = Tensor("OUTPUT", "STRING", [-1])

_POSTPROCESSING_GPU = Deployment(
    backend="python",
    instances=2,
    batching=Batching.interactive_first(max_queue_delay_us=0),
    parameters={"tokenizer_dir": "tokenizer", "skip_special_tokens": "true"},
    doc="""No STRING inputs here, so the dynamic batcher is safe: Triton 24.10 passes a STRING input whose
    last element is cut short, and the Python backend then fails the whole dynamic batch it lands in (other
    clients' requests too) and cannot unload the model any more (tests/frontdoor/test_fuzz.py). The CPU config
    adds STOP_REQUEST_ID (STRING) and has no dynamic batcher.""",
)

POSTPROCESSING = Model(
    name="postprocessing",
    inputs=(POST_TOKENS_BATCH, POST_SEQUENCE_LENGTH, POST_STOP_REQUEST_ID),
    outputs=(POST_OUTPUT,),
    max_batch_size=64,
    gpu=_POSTPROCESSING_GPU,
    cpu=_POSTPROCESSING_GPU.but(
        instances=1,
        batching=None,
        doc="""CPU config: config.pbtxt's with one instance and without dynamic batching (two instances are
        for the GPU config's batcher with priority levels: tritonfleet.spec.least_instances). Triton 24.10
        never cancels an ensemble's running tensorrt_llm step, but it marks every step it schedules after a
        client's cancel as cancelled, and a dynamic batcher drops such requests before the model sees them.
        Without one, the cancelled postprocessing step reaches model.py, which stops the sequence by its
        STOP_REQUEST_ID (tensorrt_llm's stop request), an input of the CPU target only (the GPU ensemble has
        no per-sequence id to pass).""",
    ),
    doc="Detokenizes each response's tokens (TensorRT-LLM inflight_batcher_llm names). Python on CPU on both "
    "targets.",
)

# -- the chain, written once: ensemble, rag and tensorrt_llm_bls read these ----------------------------------


def llm_step(target: str, passthrough: bool = False) -> Model:
    """The chain's decoupled step on ``target``: tensorrt_llm, which returns the token counts on both targets,
    or where an ensemble carries a tensor past it (``passthrough``) on GPU, tensorrt_llm_passthrough."""
    return TENSORRT_LLM_PASSTHROUGH if passthrough and target == GPU else TENSORRT_LLM


FROM_PREPROCESSING = {  # preprocessing output -> LLM step input
    PRE_INPUT_ID.name: INPUT_IDS.name,
    PRE_REQUEST_INPUT_LEN.name: INPUT_LENGTHS.name,
    PRE_OUT_REQUEST_OUTPUT_LEN.name: REQUEST_OUTPUT_LEN.name,
    PRE_OUT_END_ID.name: END_ID.name,
    PRE_OUT_PAD_ID.name: PAD_ID.name,
    PRE_STOP_WORDS_IDS.name: STOP_WORDS_LIST.name,
    PRE_BAD_WORDS_IDS.name: BAD_WORDS_LIST.name,
    PRE_OUT_SEED.name: SEED.name,
    PRE_OUT_MIN_TOKENS.name: MIN_TOKENS.name,
}
TO_LLM = {  # client input -> LLM step input, where both exist on the target
    TOP_K.name: RUNTIME_TOP_K.name,
    TOP_P.name: RUNTIME_TOP_P.name,
    TEMPERATURE.name: TEMPERATURE.name,
    LENGTH_PENALTY.name: LEN_PENALTY.name,
    REPETITION_PENALTY.name: REPETITION_PENALTY.name,
    PRESENCE_PENALTY.name: PRESENCE_PENALTY.name,
    FREQUENCY_PENALTY.name: FREQUENCY_PENALTY.name,
    RETURN_LOG_PROBS.name: RETURN_LOG_PROBS.name,
    RETURN_NUM_INPUT_TOKENS.name: RETURN_NUM_INPUT_TOKENS.name,
    RETURN_NUM_OUTPUT_TOKENS.name: RETURN_NUM_OUTPUT_TOKENS.name,
    EXCLUDE_INPUT_IN_OUTPUT.name: EXCLUDE_INPUT_IN_OUTPUT.name,
    BEAM_WIDTH.name: BEAM_WIDTH.name,
    NUM_RETURN_SEQUENCES.name: NUM_RETURN_SEQUENCES.name,
    STREAM.name: STREAMING.name,
    GUIDE_TYPE.name: GUIDE_TYPE.name,
    GUIDE.name: GUIDE.name,
}
TO_POSTPROCESSING = {  # LLM step output -> postprocessing input, where both exist on the target
    OUTPUT_IDS.name: POST_TOKENS_BATCH.name,
    SEQUENCE_LENGTH.name: POST_SEQUENCE_LENGTH.name,
    STOP_REQUEST_ID.name: POST_STOP_REQUEST_ID.name,
}
FROM_POSTPROCESSING = {POST_OUTPUT.name: TEXT_OUTPUT.name}  # postprocessing output -> client output
# The client's outputs that the LLM step gives under the same name (the others come from postprocessing).
FROM_LLM = tuple(t.name for t in LLM_OUTPUTS if t.name not in FROM_POSTPROCESSING.values())


def _names(tensors: tuple[Tensor, ...], target: str) -> list[str]:
    return [t.name for t in tensors if t.on(target)]


def llm_steps(
    target: str,
    inputs: tuple[Tensor, ...],
    outputs: tuple[Tensor, ...],
    *,
    query: str = TEXT_INPUT.name,
    chat: str = APPLY_CHAT_TEMPLATE.name,
    passthrough: tuple[str, str] | None = None,
) -> tuple[Step, Step, Step]:
    """The chain as ensemble steps on ``target``, for an ensemble with these inputs and outputs: its prompt
    from the ensemble tensor ``query``, the chat-template flag from ``chat``, and ``passthrough`` ``(in,
    out)``: an ensemble tensor carried through the decoupled step to an ensemble output (rag's sources).
    Tensors between the steps are named after what they feed, with a leading underscore."""
    llm = llm_step(target, passthrough is not None)
    have, give = _names(inputs, target), _names(outputs, target)
    llm_in, llm_out = _names(llm.inputs, target), _names(llm.outputs, target)
    post_in = _names(POSTPROCESSING.inputs, target)

    into_pre = {PREPROCESS[n]: n for n in have if n in PREPROCESS}
    into_pre |= {PRE_QUERY.name: query, PRE_APPLY_CHAT_TEMPLATE.name: chat}
    pre = Step(
        PREPROCESSING,
        {n: into_pre[n] for n in _names(PREPROCESSING.inputs, target) if n in into_pre},
        {t.name: f"_{t.name}" for t in PREPROCESSING.outputs},
    )

    into_llm = {llm_name: f"_{pre_name}" for pre_name, llm_name in FROM_PREPROCESSING.items()}
    into_llm |= {llm_name: n for n, llm_name in TO_LLM.items() if n in have and llm_name in llm_in}
    routed = {out: post for out, post in TO_POSTPROCESSING.items() if out in llm_out and post in post_in}
    out_of_llm = {n: f"_{routed[n]}" for n in (OUTPUT_IDS.name, SEQUENCE_LENGTH.name)}
    out_of_llm |= {n: n for n in give if n in FROM_LLM and n in llm_out}
    out_of_llm |= {n: f"_{post}" for n, post in routed.items() if n not in out_of_llm}  # the stop id (CPU)
    if passthrough is not None:
        into_llm[PASSTHROUGH_IN.name], out_of_llm[PASSTHROUGH_OUT.name] = passthrough

    post = Step(POSTPROCESSING, {p: f"_{p}" for p in routed.values()}, FROM_POSTPROCESSING)
    return pre, Step(llm, into_llm, out_of_llm), post


ENSEMBLE = Model(
    name="ensemble",
    inputs=LLM_INPUTS,
    outputs=LLM_OUTPUTS,
    max_batch_size=64,
    gpu=ensemble(*llm_steps(GPU, LLM_INPUTS, LLM_OUTPUTS)),
    cpu=ensemble(
        *llm_steps(CPU, LLM_INPUTS, LLM_OUTPUTS),
        doc="""CPU config: config.pbtxt's ensemble and one more tensor: each sequence's stop_request_id goes
        from tensorrt_llm to postprocessing, which stops the sequence when the client has cancelled (Triton
        24.10 cancels only the steps it schedules after a cancel).""",
    ),
    doc="""The streaming pipeline: preprocessing -> tensorrt_llm (decoupled) -> postprocessing, with the
    inputs and outputs of TensorRT-LLM 1.2.1's inflight_batcher_llm ensemble (seed, min_tokens,
    num_return_sequences, return_num_*_tokens, num_*_tokens, guided_decoding_guide_type /
    guided_decoding_guide), plus the legacy names random_seed and min_length and an optional
    apply_chat_template. preprocessing folds seed/random_seed and min_tokens/min_length into the seed and
    min_tokens tensorrt_llm reads. tensorrt_llm returns the token counts itself on both targets, so no Python
    step sits between it and the client on the streaming path.

    Streaming: gRPC stream and HTTP generate_stream. Non-streaming (stream false) works on gRPC streams and
    HTTP /generate (one response); unary gRPC ModelInfer needs tensorrt_llm_bls (Triton rejects it on
    decoupled models). A request of batch B ([B, 1] text_input, every input one row each) streams each row's
    responses, tagged with batch_index when B > 1, as TensorRT-LLM's ensemble does.""",
)


_BLS = Deployment(
    backend="python",
    bls_models=(PREPROCESSING.name, TENSORRT_LLM.name, POSTPROCESSING.name),
    parameters={"llm_model": TENSORRT_LLM.name},
    instances=16,
)


CPU_BLS_INSTANCES = 8

TENSORRT_LLM_BLS = Model(
    name="tensorrt_llm_bls",
    inputs=LLM_INPUTS,
    outputs=tuple(t for t in LLM_OUTPUTS if t is not BATCH_INDEX),
    max_batch_size=64,
    gpu=_BLS,
    cpu=_BLS.but(
        instances=CPU_BLS_INSTANCES,
        doc="""CPU config: config.pbtxt's with 8 instances, the one-response requests in flight at once
        (streams through the ensemble are not limited by it): each is a Python process of ~50 MB, and
        tritonserver stops them one by one at ~1 s each, so 16 held Ctrl-C of `fleet serve` for 20 s.""",
    ),
    doc="""Non-streaming path for HTTP /generate and unary gRPC: calls preprocessing, the decoupled LLM step
    (parameter llm_model) and postprocessing (BLS) and answers once. Same inputs and outputs as the ensemble
    but batch_index; stream=true is rejected (use "ensemble"). Unlike TensorRT-LLM's own tensorrt_llm_bls, it
    is not decoupled: that is what makes unary calls work. An instance serves one request at a time (execute
    waits for the answer), so the instance count is how many requests are generating together (its unary
    share of tensorrt_llm's running sequences), no dynamic batching (a batch would run its requests one after
    another in one instance).""",
)

MODELS = (PREPROCESSING, TENSORRT_LLM, TENSORRT_LLM_PASSTHROUGH, POSTPROCESSING, ENSEMBLE, TENSORRT_LLM_BLS)
