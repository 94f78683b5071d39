"""The rag pipeline's models: questions about a corpus answered by the fleet's LLM with the nearest chunks
as numbered sources.

``rag`` (ensemble) = ``tokenizer`` -> ``minilm_l6`` (the question's embedding, text_embedding's models) ->
``retriever`` (FAISS search, the prompt) -> the LLM chain of ``ensemble`` (:func:`llm.llm_steps`), or on the
LLM-API path (``RAG_LLMAPI``) -> ``llmapi_adapter`` (:mod:`tritonfleet.pipelines.llm.llmapi`).
"""

from tritonfleet.pipelines.llm import interface as llm
from tritonfleet.pipelines.llm import llmapi
from tritonfleet.pipelines.text_embedding import interface as embedding
from tritonfleet.spec import CPU, GPU, Batching, Deployment, Model, Step, Tensor, ensemble

QUESTION = Tensor("QUESTION", "STRING", [1])
EMBEDDING = Tensor("EMBEDDING", "FP32", [384])
NUM_SOURCES_IN = Tensor("NUM_SOURCES", "INT32", [1], optional=True)
APPLY_CHAT_TEMPLATE_IN = Tensor("APPLY_CHAT_TEMPLATE", "BOOL", [1], optional=True)
PROMPT = Tensor("PROMPT", "STRING", [1])
USE_CHAT_TEMPLATE = Tensor("USE_CHAT_TEMPLATE", "BOOL", [1])
SOURCES_OUT = Tensor("SOURCES", "STRING", [-1])

NUM_SOURCES = Tensor("num_sources", "INT32", [1], optional=True)  # chunks to retrieve (default_sources)
SOURCES = Tensor("sources", "STRING", [-1])  # one "path#chunk" per chunk, on the first response

RETRIEVER = Model(
    name="retriever",
    inputs=(QUESTION, EMBEDDING, NUM_SOURCES_IN, APPLY_CHAT_TEMPLATE_IN),
    outputs=(PROMPT, USE_CHAT_TEMPLATE, SOURCES_OUT),
    max_batch_size=64,
    gpu=Deployment(
        backend="python",
        instances=2,
        batching=Batching.interactive_first(max_queue_delay_us=0),
        parameters={"default_sources": "3", "max_sources": "8"},
    ),
    doc="""The rag pipeline's retrieval step (tritonfleet.pipelines.rag.retrieval): the question's embedding
    and text in, the prompt with the nearest chunks of the corpus as numbered sources out. Python on CPU cores
    on both targets (the index is small and exact); the same config serves both.""",
)

# rag speaks the LLM ensemble's interface (without the CPU ensemble's own guided decoding inputs), plus these.
INPUTS = (*(t for t in llm.LLM_INPUTS if t.on(GPU)), NUM_SOURCES)
OUTPUTS = (*llm.LLM_OUTPUTS, SOURCES)


def _retrieval() -> tuple[Step, Step, Step]:
    """The steps before the LLM, on every target and path: the question's embedding, the retrieval."""
    question = Step(
        embedding.TOKENIZER,
        {embedding.TEXT.name: llm.TEXT_INPUT.name},
        {embedding.INPUT_IDS.name: "_QUESTION_IDS", embedding.ATTENTION_MASK.name: "_QUESTION_MASK"},
    )
    embedded = Step(
        embedding.MINILM_L6,
        {embedding.INPUT_IDS.name: "_QUESTION_IDS", embedding.ATTENTION_MASK.name: "_QUESTION_MASK"},
        {embedding.SENTENCE_EMBEDDING.name: "_QUESTION_EMBEDDING"},
    )
    retrieved = Step(
        RETRIEVER,
        {
            QUESTION.name: llm.TEXT_INPUT.name,
            EMBEDDING.name: "_QUESTION_EMBEDDING",
            NUM_SOURCES_IN.name: NUM_SOURCES.name,
            APPLY_CHAT_TEMPLATE_IN.name: llm.APPLY_CHAT_TEMPLATE.name,
        },
        {PROMPT.name: "_PROMPT", USE_CHAT_TEMPLATE.name: "_USE_CHAT_TEMPLATE", SOURCES_OUT.name: "_SOURCES"},
    )
    return question, embedded, retrieved


# The LLM step's view of the retrieval: the prompt, the chat flag, the sources carried past the LLM.
_ANSWER = {"query": "_PROMPT", "chat": "_USE_CHAT_TEMPLATE", "passthrough": ("_SOURCES", SOURCES.name)}


def _steps(target: str) -> tuple[Step, ...]:
    return *_retrieval(), *llm.llm_steps(target, INPUTS, OUTPUTS, **_ANSWER)


RAG = Model(
    name="rag",
    inputs=INPUTS,
    outputs=OUTPUTS,
    max_batch_size=64,
    parameters={"interface": llm.ENSEMBLE.name},  # fleet validate checks that rag speaks it
    gpu=ensemble(*_steps(GPU)),
    cpu=ensemble(
        *_steps(CPU),
        doc="""CPU config: config.pbtxt's rag with tensorrt_llm itself as the decoupled step (it returns the
        counts and the pass-through tensor, as in the CPU ensemble) and each sequence's stop_request_id to
        postprocessing.""",
    ),
    doc="""Questions about a corpus (this project's README and docs by default) answered by the fleet's LLM
    with the nearest chunks as numbered sources: tokenizer -> minilm_l6 (the question's embedding) ->
    retriever (FAISS search, the prompt) -> the LLM ensemble's chain. The interface is the LLM ensemble's
    (parameter "interface": fleet validate checks it), plus num_sources (optional: chunks to retrieve) and
    sources (one "path#chunk" per chunk, on the first response). The sources travel through the decoupled step
    as its pass-through tensor: an ensemble output from before it would be refused by Triton
    (docs/rag.md).""",
)

RAG_LLMAPI = Model(
    name=RAG.name,
    inputs=INPUTS,
    outputs=OUTPUTS,
    max_batch_size=RAG.max_batch_size,
    parameters=RAG.parameters,
    gpu=ensemble(*_retrieval(), llmapi.adapter_step(INPUTS, OUTPUTS, **_ANSWER)),
    doc="""rag on the LLM-API path (fleet render --llm-path llmapi): the same interface and retrieval, then
    llmapi_adapter instead of the token-id chain; the sources pass through it.""",
)

MODELS = (RETRIEVER, RAG)
LLMAPI_MODELS = (RAG_LLMAPI,)  # what the LLM-API variant of the repository has instead of RAG
