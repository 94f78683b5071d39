"""The LLM pipeline's model code without a server (tests/python_models.py, the fake pb_utils): preprocessing
and postprocessing with the real tokenizer, tensorrt_llm's request validation and generation on the real CPU
engine, and the BLS models, whose calls are answered by those models or by a scripted tensorrt_llm."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import numpy as np
import pytest
from tokenizers import Tokenizer

from tests import fake_pb_utils as pb_utils
from tests.llm.rounding import assert_same_up_to_rounding
from tests.python_models import PythonModel, bls, load, row
from tritonfleet.artifacts import REPOSITORY
from tritonfleet.pipelines.llm.paged_engine import PagedEngine

TOKENIZER = REPOSITORY / "preprocessing/1/tokenizer/tokenizer.json"
ENGINE = REPOSITORY / "tensorrt_llm/1/cpu_engine/engine.json"
CHAT = "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"
# "<|im_start|>user\nSay hi.<|im_end|>\n<|im_start|>assistant\n" in SmolLM2's vocabulary.
SAY_HI = [1, 4093, 198, 36218, 15876, 30, 2, 198, 1, 520, 9531, 198]
INVALID, INTERNAL = pb_utils.TritonError.INVALID_ARG, pb_utils.TritonError.INTERNAL


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    if not TOKENIZER.is_file():
        pytest.skip(f"no tokenizer at {TOKENIZER} (fleet build llm)")
    return Tokenizer.from_file(str(TOKENIZER))


@pytest.fixture(scope="module")
def preprocessing(tokenizer) -> PythonModel:
    return load("preprocessing")


@pytest.fixture(scope="module")
def postprocessing(tokenizer) -> PythonModel:
    return load("postprocessing")


@pytest.fixture(scope="module")
def llm() -> Iterator[PythonModel]:
    """The CPU tensorrt_llm on the real engine (a smaller KV cache than the served one)."""
    if not ENGINE.is_file():
        pytest.skip(f"no CPU engine at {ENGINE} (fleet build llm)")
    model = load("tensorrt_llm", parameters={"kv_cache_mb": "64"})
    yield model
    model.finalize()


@pytest.fixture(scope="module")
def tiny_llm() -> Iterator[PythonModel]:
    """The CPU tensorrt_llm with a KV cache of one 32-token block, one sequence at a time, one waiting."""
    if not ENGINE.is_file():
        pytest.skip(f"no CPU engine at {ENGINE} (fleet build llm)")
    block = PagedEngine(ENGINE.parent, 2, kv_cache_mb=1).block_bytes  # the served KV type's block
    one_block = f"{1.5 * block / 2**20:.3f}"
    model = load("tensorrt_llm", parameters={"kv_cache_mb": one_block, "max_seqs": "1", "max_queue": "1",
                                             "max_batched_tokens": "32"})  # fmt: skip
    yield model
    model.finalize()


def ids(tokenizer: Tokenizer, text: str) -> list[int]:
    return tokenizer.encode(text, add_special_tokens=False).ids


# preprocessing


def test_preprocessing_tokenizes_and_applies_the_chat_template(preprocessing, tokenizer) -> None:
    plain = preprocessing.infer(row(QUERY=CHAT.format("Say hi."), REQUEST_OUTPUT_LEN=8)).outputs
    assert plain["INPUT_ID"].tolist() == [SAY_HI] and plain["REQUEST_INPUT_LEN"].tolist() == [[12]]
    assert plain["REQUEST_OUTPUT_LEN"].tolist() == [[8]]
    assert (
        plain["OUT_END_ID"].tolist() == [[2]] == plain["OUT_PAD_ID"].tolist()
    )  # <|im_end|>, from the config
    templated = preprocessing.infer(
        row(QUERY="Say hi.", REQUEST_OUTPUT_LEN=8, APPLY_CHAT_TEMPLATE=True)
    ).outputs
    system = tokenizer.decode(templated["INPUT_ID"][0].tolist(), skip_special_tokens=False)
    assert system.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
    assert templated["INPUT_ID"][0, -12:].tolist() == SAY_HI  # the user's message last, then the reply starts


def test_preprocessing_folds_legacy_names(preprocessing) -> None:
    base = {"QUERY": "hi", "REQUEST_OUTPUT_LEN": 4}
    for names in (("SEED", "MIN_TOKENS"), ("RANDOM_SEED", "MIN_LENGTH")):
        out = preprocessing.infer(row(**base, **{names[0]: 7, names[1]: 3})).outputs
        assert (out["OUT_SEED"].tolist(), out["OUT_MIN_TOKENS"].tolist()) == ([[7]], [[3]])
        assert out["OUT_SEED"].dtype == np.uint64
    defaults = preprocessing.infer(row(**base)).outputs
    assert (defaults["OUT_SEED"].tolist(), defaults["OUT_MIN_TOKENS"].tolist()) == ([[0]], [[0]])


def test_preprocessing_word_lists(preprocessing, tokenizer) -> None:
    out = preprocessing.infer(
        row(QUERY="hi", REQUEST_OUTPUT_LEN=4, STOP_WORDS_DICT=["Paris", " London"])
    ).outputs
    words = ids(tokenizer, "Paris") + ids(tokenizer, " London")
    offsets = [len(ids(tokenizer, "Paris")), len(words)]
    assert out["STOP_WORDS_IDS"].tolist() == [[words, offsets + [-1] * (len(words) - 2)]]
    assert out["BAD_WORDS_IDS"].tolist() == [[[0], [-1]]]  # none: TensorRT-LLM's empty list


def test_preprocessing_batch_rows_are_prompts_of_their_own(preprocessing) -> None:
    inputs = {"QUERY": [[CHAT.format("What is the capital of France?")], [CHAT.format("Say hi.")]],
              "REQUEST_OUTPUT_LEN": [[8], [4]], "END_ID": [[2], [7]], "PAD_ID": [[0], [9]],
              "STOP_WORDS_DICT": [["Paris", "."], ["", ""]], "SEED": [[1], [2]]}  # fmt: skip
    out = preprocessing.infer(inputs).outputs
    assert out["REQUEST_INPUT_LEN"].tolist() == [[16], [12]]
    assert out["INPUT_ID"].shape == (2, 16) and out["INPUT_ID"][1].tolist() == SAY_HI + [9] * 4  # its pad id
    assert out["REQUEST_OUTPUT_LEN"].tolist() == [[8], [4]] and out["OUT_END_ID"].tolist() == [[2], [7]]
    assert out["OUT_SEED"].tolist() == [[1], [2]] and out["OUT_MIN_TOKENS"].tolist() == [[0], [0]]
    stop = out["STOP_WORDS_IDS"]
    assert stop.shape == (2, 2, 2) and stop[1].tolist() == [[0, 0], [-1, -1]]  # row 1: no words
    error = preprocessing.infer({**inputs, "QUERY": [["hi"], [" "]]}).error
    assert (
        error.code() == INVALID
        and error.message() == "preprocessing: row 1: empty prompt: text_input has no text"
    )


@pytest.mark.parametrize(
    ("query", "message"),
    [("   ", "empty prompt"), (b"\xff\xfe", "not valid UTF-8")],
)
def test_preprocessing_rejects_bad_text(preprocessing, query, message) -> None:
    error = preprocessing.infer(
        {"QUERY": np.array([[query]], dtype=object), "REQUEST_OUTPUT_LEN": [[4]]}
    ).error
    assert error.code() == INVALID and message in error.message()


# postprocessing


def test_postprocessing_detokenizes(postprocessing, tokenizer) -> None:
    tokens = [*ids(tokenizer, "The capital of France is Paris."), 2, 2]  # padded with <|im_end|>
    out = postprocessing.infer({"TOKENS_BATCH": [[tokens]], "SEQUENCE_LENGTH": [[len(tokens) - 1]]}).outputs
    assert out["OUTPUT"].tolist() == [b"The capital of France is Paris."]  # special tokens skipped


def test_postprocessing_stops_a_cancelled_sequence(postprocessing) -> None:
    """A step Triton hands over already cancelled sends tensorrt_llm the stop request for its id, and is
    decoded as usual: an error would leave Triton 24.10's ensemble request in flight for good."""
    calls = []

    def tensorrt_llm(request, decoupled):
        calls.append((request.request_id(), {t.name(): t.as_numpy().tolist() for t in request.inputs()}))
        return [pb_utils.InferenceResponse()]  # the stop's empty final response

    inputs = {"TOKENS_BATCH": [[[504]]], "SEQUENCE_LENGTH": [[1]], "STOP_REQUEST_ID": [["seq-7"]]}
    request = postprocessing.request(inputs)
    request.cancelled = True
    with bls({"tensorrt_llm": tensorrt_llm}):
        [answer] = postprocessing.execute([request])
        assert postprocessing.infer(inputs).outputs["OUTPUT"].tolist() == [b"The"]  # not cancelled: decoded
    assert answer.error is None and answer.outputs["OUTPUT"].tolist() == [b"The"]
    assert calls == [("seq-7", {"input_ids": [[0]], "input_lengths": [[0]], "request_output_len": [[0]],
                                "stop": [[True]]})]  # fmt: skip


@pytest.mark.parametrize(
    ("tokens", "lengths", "message"),
    [
        (np.zeros((1, 2, 3)), [[3]], "SEQUENCE_LENGTH has shape [1, 1], TOKENS_BATCH [1, 2, 3]"),
        (np.zeros((1, 1, 2)), np.zeros((1, 0)), "one length per beam of each row"),
        ([[[-5, 3]]], [[2]], "TOKENS_BATCH holds token ids outside [0, 49152)"),
        ([[[2**31 - 1]]], [[1]], "TOKENS_BATCH holds token ids outside [0, 49152)"),
        ([[[5, 3]]], [[-1]], "SEQUENCE_LENGTH must lie in [0, 2]"),
        ([[[5, 3]]], [[3]], "SEQUENCE_LENGTH must lie in [0, 2]"),
    ],
)
def test_postprocessing_rejects_tensors_that_do_not_fit(postprocessing, tokens, lengths, message) -> None:
    """Called directly, malformed tensors are the client's error; the rest of the dynamic batch decodes."""
    bad = {"TOKENS_BATCH": np.asarray(tokens, np.int32), "SEQUENCE_LENGTH": np.asarray(lengths, np.int32)}
    good = {"TOKENS_BATCH": [[[504]]], "SEQUENCE_LENGTH": [[1]]}
    answers = postprocessing.execute([postprocessing.request(x) for x in (good, bad, good)])
    assert [a.outputs["OUTPUT"].tolist() for a in answers[::2]] == [[b"The"], [b"The"]]
    assert answers[1].error.code() == INVALID and message in answers[1].error.message()


def test_postprocessing_decodes_empty_sequences(postprocessing) -> None:
    out = postprocessing.infer({"TOKENS_BATCH": np.zeros((2, 1, 0), np.int32), "SEQUENCE_LENGTH": [[0], [0]]})
    assert out.outputs["OUTPUT"].tolist() == [b"", b""]


# tensorrt_llm (CPU)


def test_tensorrt_llm_generates_greedily(llm, tokenizer) -> None:
    prompt = ids(tokenizer, CHAT.format("What is the capital of France?"))
    answer = llm.infer(row(input_ids=prompt, input_lengths=len(prompt), request_output_len=8))
    [response] = answer.stream  # not streaming: one response, then the final flag
    assert tokenizer.decode(response["output_ids"][0, 0].tolist()) == "The capital of France is Paris."
    n = int(response["sequence_length"][0, 0])
    assert response["output_ids"].shape == (1, 1, n) and response["output_log_probs"].shape == (1, 1, n)
    assert response["cum_log_probs"][0, 0] == pytest.approx(response["output_log_probs"].sum(), rel=1e-5)


def test_tensorrt_llm_streams_and_counts(llm, tokenizer) -> None:
    prompt = ids(tokenizer, CHAT.format("What is the capital of France?"))
    inputs = row(input_ids=prompt, input_lengths=len(prompt), request_output_len=8, streaming=True,
                 return_num_input_tokens=True, return_num_output_tokens=True)  # fmt: skip
    stream = llm.infer(inputs).stream
    assert len(stream) > 3
    text = tokenizer.decode([t for r in stream for t in r["output_ids"].reshape(-1).tolist()])
    assert text == "The capital of France is Paris."
    assert {int(r["num_input_tokens"][0, 0]) for r in stream} == {len(prompt)}
    running = [int(r["num_output_tokens"][0, 0]) for r in stream]
    assert running == sorted(running) and running[-1] == sum(int(r["sequence_length"].sum()) for r in stream)


ONE = {"input_ids": [[1, 2]], "input_lengths": [[2]], "request_output_len": [[4]]}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"request_output_len": [[0]]}, "max_tokens must be in [1, 1024], got 0"),
        ({"request_output_len": [[5000]]}, "max_tokens must be in"),
        ({"input_ids": [[1, 99999]]}, "input_ids must lie in [0, 49152)"),
        ({"input_ids": [[-1, 2]]}, "input_ids must lie in"),
        (
            {"input_ids": [[1] * 2000], "input_lengths": [[2000]], "request_output_len": [[100]]},
            "exceeds the",
        ),
        ({"input_ids": None}, "empty prompt"),
        ({"beam_width": [[2]]}, "beam_width 2 is not supported"),
        ({"num_return_sequences": [[3]]}, "num_return_sequences 3"),
        ({"temperature": [[-1.0]]}, "temperature must be >= 0"),
        ({"runtime_top_p": [[1.5]]}, "top_p in [0, 1]"),
        ({"temperature": [[np.nan]]}, "must be finite"),
        ({"presence_penalty": [[np.inf]]}, "must be finite"),
        ({"repetition_penalty": [[0.0]]}, "repetition_penalty must be > 0"),
        ({"end_id": [[10**6]]}, "end_id must be below the vocabulary size 49152"),
        ({"bad_words_list": [[[99999], [1]]]}, "word list ids must lie in [0, 49152)"),
    ],
)
def test_tensorrt_llm_rejects_bad_requests(llm, changes, message) -> None:
    inputs = {name: value for name, value in {**ONE, **changes}.items() if value is not None}
    error = llm.infer(inputs).error
    assert error.code() == INVALID and message in error.message()


def test_tensorrt_llm_refuses_what_never_fits_and_queues_what_does_not_fit_now(tiny_llm) -> None:
    """A prompt and output over the whole KV cache is the request's INVALID_ARG; with the one slot taken
    and the one queue place too, a request is UNAVAILABLE (503: retry); stopped, the queue drains."""
    metric = {f.name: f.metrics[0] for f in tiny_llm.instance.families.values()}
    assert metric["tritonfleet_llm_kv_cache_capacity_tokens"].value() == 32
    error = tiny_llm.infer(row(input_ids=[1] * 30, input_lengths=30, request_output_len=3)).error
    assert error.code() == INVALID
    assert "needs 2 KV blocks of 32 tokens; the KV cache has 1 (32 tokens" in error.message()
    long = row(input_ids=[1, 2], input_lengths=2, request_output_len=30, min_tokens=30, streaming=True)
    [first] = tiny_llm.execute([tiny_llm.request(long, request_id="a")])
    scheduler = tiny_llm.instance.scheduler
    deadline = time.monotonic() + 60
    while not scheduler.active:  # a has started: b waits
        assert time.monotonic() < deadline
        time.sleep(0.01)
    [second] = tiny_llm.execute([tiny_llm.request(long, request_id="b")])
    refused = tiny_llm.infer(long).error
    assert refused.code() == pb_utils.TritonError.UNAVAILABLE and "max_queue 1" in refused.message()
    stop = row(input_ids=0, input_lengths=0, request_output_len=0, stop=True)
    for request_id, answer in (("b", second), ("a", first)):
        assert tiny_llm.infer(stop, request_id=request_id).error is None
        answer.wait()
    assert sum(r["output_ids"].size for r in first.stream) >= 1
    assert sum(r["output_ids"].size for r in second.stream) == 0  # b was stopped while it waited
    assert tiny_llm.infer(row(input_ids=[1, 2], input_lengths=2, request_output_len=2)).error is None


def test_tensorrt_llm_reports_kv_and_prefix_cache_use(llm, tokenizer) -> None:
    """The KV gauges (positions held, capacity) and the prefix cache's hit and miss counters: a second
    request with the same 40-token prompt finds its first 32-token block cached."""
    metric = {f.name: f.metrics[0] for f in llm.instance.families.values()}
    hits, misses = (metric[f"tritonfleet_llm_prefix_cache_{k}_tokens_total"] for k in ("hit", "miss"))
    before = hits.value(), misses.value()
    prompt = ids(tokenizer, "One two three four five six seven eight nine ten. " * 4)[:40]
    for _ in range(2):
        assert llm.infer(row(input_ids=prompt, input_lengths=40, request_output_len=2)).error is None
    llm.instance._on_step(0, 0, 0)  # the scheduler reports at most every KV_REPORT_S: make it report now
    assert (hits.value() - before[0], misses.value() - before[1]) == (32, 40 + 8)
    capacity = llm.instance.scheduler.capacity_tokens
    assert metric["tritonfleet_llm_kv_cache_capacity_tokens"].value() == capacity
    assert metric["tritonfleet_llm_kv_cache_used_tokens"].value() == 0  # nothing running
    assert metric["tritonfleet_llm_max_sequences"].value() == 32


def test_tensorrt_llm_empty_word_lists_are_none(llm) -> None:
    inputs = {**ONE, "request_output_len": [[2]], "stop_words_list": np.zeros((1, 2, 0), np.int32),
              "bad_words_list": np.zeros((1, 2, 0), np.int32)}  # fmt: skip
    [response] = llm.infer(inputs).stream
    assert response["sequence_length"].tolist() == [[2]]


# Three prompts of 16 tokens each, the rows of one request, computed as the prompts alone are, up to the
# kernels' rounding in another batch (tests/llm/rounding.py).
SAME_LENGTH = ["What is the capital of France?", "What is the capital of Japan?", "Write a haiku about rain."]


def prompt_rows(tokenizer, questions):
    prompts = [ids(tokenizer, CHAT.format(q)) for q in questions]
    assert len({len(p) for p in prompts}) == 1
    return prompts


def test_tensorrt_llm_batch_rows_are_sequences_of_their_own(llm, tokenizer) -> None:
    """A request of batch 3: each row its own sequence with its own inputs, one response per row tagged with
    batch_index, the final flag with the last; greedy rows equal the prompts alone."""
    prompts = prompt_rows(tokenizer, SAME_LENGTH)
    limits = [24, 24, 4]
    alone = [
        llm.infer(row(input_ids=p, input_lengths=len(p), request_output_len=n)).stream[0]
        for p, n in zip(prompts, limits, strict=True)
    ]
    assert (
        "batch_index"
        not in llm.infer(row(input_ids=prompts[0], input_lengths=16, request_output_len=2)).stream[0]
    )
    inputs = {"input_ids": prompts, "input_lengths": [[16]] * 3, "request_output_len": [[n] for n in limits]}
    answer = llm.infer(inputs)
    assert [flags for _, flags in answer.sender.sent] == [0, 0, pb_utils.FINAL]
    rows = {int(r["batch_index"][0, 0]): r for r in answer.stream}
    assert sorted(rows) == [0, 1, 2]
    by_row = {i: r["output_ids"][0, 0].tolist() for i, r in rows.items()}
    for i, lone in enumerate(alone):
        logprobs, lone_logprobs = rows[i]["output_log_probs"][0, 0], lone["output_log_probs"][0, 0]
        assert_same_up_to_rounding(by_row[i], logprobs, lone["output_ids"][0, 0], lone_logprobs)
    assert len(by_row[2]) == 4  # its own max_tokens
    assert tokenizer.decode(by_row[1]) == "The capital of Japan is Tokyo."
    streamed = llm.infer({**inputs, "streaming": [[True]] * 3}).stream
    pieces: dict[int, list[int]] = {0: [], 1: [], 2: []}
    for response in streamed:
        pieces[int(response["batch_index"][0, 0])] += response["output_ids"].reshape(-1).tolist()
    assert pieces == by_row


def test_tensorrt_llm_a_bad_row_fails_its_request(llm) -> None:
    inputs = {"input_ids": [[1, 2], [3, 4]], "input_lengths": [[2], [2]], "request_output_len": [[4], [0]]}
    error = llm.infer(inputs).error
    assert error.code() == INVALID and error.message().startswith(
        "tensorrt_llm: row 1: max_tokens must be in [1, 1024]"
    )


def test_tensorrt_llm_stop_request_needs_an_id(llm) -> None:
    stop = row(input_ids=0, input_lengths=0, request_output_len=0, stop=True)
    error = llm.infer(stop).error
    assert error.code() == INVALID and "needs the request id" in error.message()
    answer = llm.infer(stop, request_id="nothing-running")
    assert answer.error is None and answer.stream == []  # the stop's empty final response


# tensorrt_llm_bls and tensorrt_llm_passthrough: their BLS calls


class ScriptedLLM:
    """A tensorrt_llm that answers row b of every request with ``tokens[b:]`` (one response, or one per token
    when streaming; tagged with batch_index for a batch) and records what it was sent."""

    def __init__(self, tokens: list[int]) -> None:
        self.tokens = tokens
        self.requests: list[tuple[str, dict[str, np.ndarray]]] = []

    def __call__(self, request, decoupled):
        assert decoupled, "tensorrt_llm is decoupled"
        inputs = {t.name(): t.as_numpy() for t in request.inputs()}
        self.requests.append((request.request_id(), inputs))
        batch = len(inputs["input_ids"])
        responses = []
        for b in range(batch):  # row b answers tokens[b:]
            tokens = self.tokens[b:]
            for piece in [[t] for t in tokens] if inputs["streaming"][b].any() else [tokens]:
                tensors = {
                    "output_ids": np.array([[piece]], np.int32),
                    "sequence_length": np.array([[len(piece)]], np.int32),
                    "cum_log_probs": np.array([[-1.0 - b]], np.float32),
                    "output_log_probs": np.full((1, 1, len(piece)), -0.5, np.float32),
                }
                if batch > 1:
                    tensors["batch_index"] = np.array([[b]], np.int32)
                responses.append(
                    pb_utils.InferenceResponse([pb_utils.Tensor(k, v) for k, v in tensors.items()])
                )
        return [*responses, pb_utils.InferenceResponse()]  # then the empty final response


def test_bls_calls_the_three_steps(preprocessing, postprocessing, tokenizer) -> None:
    model = load("tensorrt_llm_bls")
    llm = ScriptedLLM(ids(tokenizer, "Paris."))
    inputs = row(text_input="Capital of France?", max_tokens=8, apply_chat_template=True, seed=5, top_k=3,
                 min_length=2)  # fmt: skip
    with bls({"preprocessing": preprocessing, "tensorrt_llm": llm, "postprocessing": postprocessing}):
        out = model.infer(inputs, request_id="req-1").outputs
    assert out["text_output"].tolist() == [b"Paris."]
    assert out["cum_log_probs"].tolist() == [[-1.0]] and out["output_log_probs"].shape == (1, 1, 2)
    [(request_id, sent)] = llm.requests
    assert request_id == "req-1"  # a stop request with the client's id reaches the generation
    assert sent["streaming"].tolist() == [[False]] and sent["request_output_len"].tolist() == [[8]]
    assert sent["seed"].tolist() == [[5]] and sent["runtime_top_k"].tolist() == [[3]]
    assert sent["min_tokens"].tolist() == [[2]] and sent["end_id"].tolist() == [[2]]
    prompt = tokenizer.decode(sent["input_ids"][0].tolist(), skip_special_tokens=False)
    assert prompt.endswith("<|im_start|>user\nCapital of France?<|im_end|>\n<|im_start|>assistant\n")
    assert sent["input_lengths"].tolist() == [[sent["input_ids"].shape[1]]]


def test_bls_errors_name_their_step(preprocessing, postprocessing) -> None:
    model = load("tensorrt_llm_bls")
    with bls(
        {"preprocessing": preprocessing, "tensorrt_llm": ScriptedLLM([1]), "postprocessing": postprocessing}
    ):
        empty = model.infer(row(text_input="", max_tokens=8)).error
        streamed = model.infer(row(text_input="hi", max_tokens=8, stream=True)).error
    assert empty.code() == INVALID and empty.message().startswith("preprocessing: empty prompt")
    assert streamed.code() == INVALID and "send stream=true to the 'ensemble' model" in streamed.message()


def failing_step(message):
    """A step failing every request with ``message`` (as a BLS caller sees it: INTERNAL, its code lost)."""
    return lambda request, decoupled: [pb_utils.InferenceResponse(error=pb_utils.TritonError(message))]


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ("max_tokens must be in [1, 1024], got 0", INVALID),  # a step's validation: the client's mistake
        ("Failed to process the request(s) for model 'tensorrt_llm_0_0', message: KeyError: 'x'", INTERNAL),
        ("Stub process 'tensorrt_llm_0_0' is not healthy.", INTERNAL),
        ("engine failure: onnxruntime_genai error", INTERNAL),
        ("tensorrt_llm: internal error: ZeroDivisionError: division by zero", INTERNAL),
    ],
)
def test_bls_tells_faults_from_client_mistakes(preprocessing, postprocessing, message, code) -> None:
    """BLS drops a step's error code; tensorrt_llm_bls and tensorrt_llm_passthrough read the message."""
    steps = {
        "preprocessing": preprocessing,
        "tensorrt_llm": failing_step(message),
        "postprocessing": postprocessing,
    }
    with bls(steps):
        bls_error = load("tensorrt_llm_bls").infer(row(text_input="hi", max_tokens=8)).error
        step = load("tensorrt_llm_passthrough", target="gpu")
        step_error = step.infer(row(input_ids=[1], input_lengths=1, request_output_len=1)).error
    named = message if message.startswith("tensorrt_llm:") else f"tensorrt_llm: {message}"  # the step's name
    assert (bls_error.code(), bls_error.message()) == (code, named)
    assert (step_error.code(), step_error.message()) == (code, message)


def test_passthrough_adds_its_tensor_to_the_first_response() -> None:
    model = load("tensorrt_llm_passthrough", target="gpu")
    llm = ScriptedLLM([10, 11, 12])
    inputs = row(input_ids=[5, 6, 7, 8], input_lengths=4, request_output_len=3, streaming=True,
                 passthrough_in=[b"README.md#0", b"docs/llm.md#3"])  # fmt: skip
    with bls({"tensorrt_llm": llm}):
        stream = model.infer(inputs, request_id="r").stream
    assert [r["output_ids"].tolist() for r in stream] == [[[[10]]], [[[11]]], [[[12]]]]
    assert stream[0]["passthrough_out"].tolist() == [[b"README.md#0", b"docs/llm.md#3"]]
    assert all("passthrough_out" not in r for r in stream[1:])
    assert llm.requests[0][0] == "r" and "passthrough_in" not in llm.requests[0][1]


def test_bls_batch_is_one_response_of_its_rows_in_order(
    preprocessing, postprocessing, llm, tokenizer
) -> None:
    """Through the real chain (preprocessing, the CPU tensorrt_llm, postprocessing): text_output [B], each row
    the text of its prompt alone."""
    model = load("tensorrt_llm_bls")
    prompts = [CHAT.format(q) for q in SAME_LENGTH]
    with bls({"preprocessing": preprocessing, "tensorrt_llm": llm, "postprocessing": postprocessing}):
        alone = [
            model.infer(row(text_input=p, max_tokens=24)).outputs["text_output"].tolist() for p in prompts
        ]
        out = model.infer({"text_input": [[p] for p in prompts], "max_tokens": [[24], [24], [3]],
                           "return_num_output_tokens": [[True]] * 3}).outputs  # fmt: skip
    assert out["text_output"].tolist()[:2] == [a[0] for a in alone[:2]]
    assert alone[2][0].startswith(out["text_output"][2])  # the same text, cut at its own max_tokens
    counts = out["num_output_tokens"].reshape(-1).tolist()
    assert counts[2] == 3 and out["output_log_probs"].shape == (3, 1, max(counts))
    assert (out["output_log_probs"][2, 0, 3:] == 0).all()  # padding past its length
    assert "num_input_tokens" not in out  # not asked for


def test_passthrough_gives_each_row_its_own_tensor() -> None:
    model = load("tensorrt_llm_passthrough", target="gpu")
    inputs = {
        "input_ids": [[5, 6, 7], [8, 9, 0]],
        "input_lengths": [[3], [2]],
        "request_output_len": [[3], [3]],
        "streaming": [[True], [True]],
        "passthrough_in": [[b"a#0"], [b"b#1"]],
    }
    with bls({"tensorrt_llm": ScriptedLLM([10, 11, 12])}):
        stream = model.infer(inputs).stream
    firsts = [
        (int(r["batch_index"][0, 0]), r["passthrough_out"].tolist()) for r in stream if "passthrough_out" in r
    ]
    assert firsts == [(0, [[b"a#0"]]), (1, [[b"b#1"]])] and len(stream) == 5


# guided decoding (the CPU engine's llguidance; TensorRT-LLM 1.2.1's inputs)

PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 16}, "age": {"type": "integer", "maximum": 120}},
    "required": ["name", "age"],
    "additionalProperties": False,
}


def test_tensorrt_llm_guided_rows_follow_their_guide(llm, tokenizer) -> None:
    """Two rows of one request, the first guided by a JSON schema: its output validates, the other row
    stays prose; an invalid guide is the request's INVALID_ARG."""
    import jsonschema

    prompt = ids(tokenizer, CHAT.format("Describe a person."))
    inputs = {
        "input_ids": [prompt, prompt],
        "input_lengths": [[len(prompt)]] * 2,
        "request_output_len": [[48]] * 2,
        "guided_decoding_guide_type": np.array([[b"json_schema"], [b""]], dtype=np.object_),
        "guided_decoding_guide": np.array([[json.dumps(PERSON).encode()], [b""]], dtype=np.object_),
    }
    answer = llm.infer(inputs)
    texts = {}
    for response in answer.stream:
        index = int(response["batch_index"][0, 0]) if "batch_index" in response else 0
        texts[index] = tokenizer.decode(response["output_ids"].reshape(-1).tolist())
    jsonschema.validate(json.loads(texts[0]), PERSON)
    with pytest.raises(json.JSONDecodeError):
        json.loads(texts[1])
    bad = row(input_ids=prompt, input_lengths=len(prompt), request_output_len=4)
    bad["guided_decoding_guide_type"] = np.array([[b"json_schema"]], dtype=np.object_)
    bad["guided_decoding_guide"] = np.array([[b'{"type": "foo"}']], dtype=np.object_)
    error = llm.infer(bad).error
    assert error.code() == INVALID and "foo" in error.message()
