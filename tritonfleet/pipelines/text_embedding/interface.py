"""The text_embedding pipeline's models: texts in, unit-length all-MiniLM-L6-v2 sentence embeddings out.

``text_embedding`` (ensemble) = ``tokenizer`` (Python, the model's own tokenizer.json) -> ``minilm_l6``
(TensorRT on GPU, onnxruntime on CPU; mean pooling and L2 normalisation are in the graph).
"""

from tritonfleet.spec import Batching, Deployment, Model, Step, Tensor, ensemble, onnxruntime, tensorrt_plan

MAX_WORD_PIECES = 256  # the model's limit; the tokenizer cuts longer texts (TRUNCATED)

TEXT = Tensor("TEXT", "STRING", [1])
INPUT_IDS = Tensor("input_ids", "INT64", [-1])
ATTENTION_MASK = Tensor("attention_mask", "INT64", [-1])
NUM_TOKENS = Tensor("NUM_TOKENS", "INT32", [1])  # word pieces embedded, [CLS] and [SEP] included
TRUNCATED = Tensor("TRUNCATED", "BOOL", [1])  # the text was cut at MAX_WORD_PIECES
SENTENCE_EMBEDDING = Tensor("sentence_embedding", "FP32", [384])
EMBEDDING = Tensor("EMBEDDING", "FP32", [384])  # unit length: cosine similarity is a dot product

_TOKENIZER_GPU = Deployment(
    backend="python",
    instances=2,
    batching=Batching.interactive_first(max_queue_delay_us=500),
    parameters={
        "tokenizer_file": "tokenizer.json",
        # Padded lengths round up to a multiple of 8, so that more requests share a shape
        # (docs/text_embedding.md).
        "pad_to_multiple_of": "8",
    },
)

TOKENIZER = Model(
    name="tokenizer",
    inputs=(TEXT,),
    outputs=(INPUT_IDS, ATTENTION_MASK, NUM_TOKENS, TRUNCATED),
    max_batch_size=64,
    gpu=_TOKENIZER_GPU.but(doc="Here beside the GPU model, with instances enough to keep it fed."),
    cpu=_TOKENIZER_GPU.but(
        batching=Batching.interactive_first(max_queue_delay_us=2000),
        doc="""CPU config: config.pbtxt's with a 2 ms queue delay: requests that arrive together are padded to
        one length, which minilm_l6's batcher needs to batch them (docs/text_embedding.md has the
        measurements).""",
    ),
    doc="""Texts -> word pieces for minilm_l6 (all-MiniLM-L6-v2's own tokenizer.json, written by
    build/text_embedding/export_onnx.py with the model's limit of 256 word pieces). Python on CPU cores on
    both targets.""",
)

MINILM_L6 = Model(
    name="minilm_l6",
    inputs=(INPUT_IDS, ATTENTION_MASK),
    outputs=(SENTENCE_EMBEDDING,),
    max_batch_size=64,
    gpu=tensorrt_plan(
        (16, 32, 64),
        parameters={
            "tensorrt_min_shapes": "input_ids:1,attention_mask:1",
            "tensorrt_opt_shapes": "input_ids:128,attention_mask:128",
            "tensorrt_max_shapes": f"input_ids:{MAX_WORD_PIECES},attention_mask:{MAX_WORD_PIECES}",
        },
        doc="""GPU production config: a TensorRT plan built from model.onnx inside the NGC image
        (build/tensorrt_plan.py; fp16 inner layers). The optimization profile: batch 1..max_batch_size (opt:
        the largest preferred size), sequence 1..256 word pieces (the tokenizer's limit), opt 128 (the
        parameters below).""",
    ),
    cpu=onnxruntime(
        1,
        doc="""CPU config: the same ONNX export served with onnxruntime. Triton's dynamic batcher batches only
        requests of equal shapes (dims -1, no allow_ragged_batch); the tokenizer pads every request of one of
        its executions to the same length, so those run here together. One onnxruntime thread: the other core
        is left to the tokenizer, Triton and the clients; with two, the thread pool contended with them and
        throughput at concurrency 16 halved (docs/text_embedding.md).""",
    ),
    doc="all-MiniLM-L6-v2 with mean pooling and L2 normalisation in the graph: unit-length sentence "
    "embeddings.",
)

TEXT_EMBEDDING = Model(
    name="text_embedding",
    inputs=(TEXT,),
    outputs=(EMBEDDING, NUM_TOKENS, TRUNCATED),
    max_batch_size=64,
    gpu=ensemble(
        Step(
            TOKENIZER,
            {TEXT.name: TEXT.name},
            {
                INPUT_IDS.name: "_input_ids",
                ATTENTION_MASK.name: "_attention_mask",
                NUM_TOKENS.name: NUM_TOKENS.name,
                TRUNCATED.name: TRUNCATED.name,
            },
        ),
        Step(
            MINILM_L6,
            {INPUT_IDS.name: "_input_ids", ATTENTION_MASK.name: "_attention_mask"},
            {SENTENCE_EMBEDDING.name: EMBEDDING.name},
        ),
    ),
    doc="""Texts in, unit-length all-MiniLM-L6-v2 sentence embeddings out (cosine similarity = dot product),
    with each text's token count ([CLS] and [SEP] included, after truncation) and whether it was cut at the
    model's limit of 256 word pieces. The same wiring serves both targets.""",
)

MODELS = (TOKENIZER, MINILM_L6, TEXT_EMBEDDING)
