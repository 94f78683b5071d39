"""The tokenizer and retriever model.py files and the LLM's pass-through tensor, in process against the fake
of triton_python_backend_utils (tests/python_models.py): one dynamic batch, each request's answer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests import fake_pb_utils as pb_utils
from tests.python_models import PythonModel, load
from tritonfleet.artifacts import REPOSITORY

INVALID = pb_utils.TritonError.INVALID_ARG


@pytest.fixture(scope="module")
def tokenizer() -> PythonModel:
    if not (REPOSITORY / "tokenizer/1/tokenizer.json").is_file():
        pytest.skip("tokenizer.json is not built (fleet build text_embedding)")
    return load("tokenizer")


@pytest.fixture(scope="module")
def retriever(rag_repository: Path) -> PythonModel:
    """The retriever over the RAG tests' frozen corpus (tests/rag/frozen.py)."""
    pytest.importorskip("faiss")
    return load("retriever", repository=rag_repository)


def test_tokenizer_pads_a_dynamic_batch_to_one_length_and_fails_only_the_bad_request(tokenizer) -> None:
    requests = [
        tokenizer.request({"TEXT": [["a man is playing"], ["hello"]]}),
        tokenizer.request({"TEXT": [[b"caf\xe9"]]}),
        tokenizer.request({"TEXT": [[""]]}),
        tokenizer.request({"TEXT": [["one two three four five six seven eight nine"]]}),
    ]
    first, bad_utf8, empty, last = tokenizer.execute(requests)
    assert (
        bad_utf8.error.code() == INVALID
        and "tokenizer: TEXT: text is not valid UTF-8" in bad_utf8.error.message()
    )
    assert (
        empty.error.code() == INVALID
        and "tokenizer: TEXT: text 0 of the request is empty" in empty.error.message()
    )
    a, b = first.outputs, last.outputs
    # One length for the whole execution, rounded up to the config's multiple of 8: both run in one batch of
    # minilm_l6. The counts are each text's own ([CLS] ... [SEP]).
    assert a["input_ids"].shape == (2, 16) and b["input_ids"].shape == (1, 16)
    assert a["NUM_TOKENS"].tolist() == [[6], [3]] and b["NUM_TOKENS"].tolist() == [[11]]
    assert a["attention_mask"].sum(axis=1).tolist() == [6, 3]
    assert a["TRUNCATED"].tolist() == [[False], [False]]


def test_tokenizer_flags_truncation_at_the_model_limit(tokenizer) -> None:
    out = tokenizer.infer({"TEXT": [["word " * 300]]}).outputs
    assert out["input_ids"].shape == (1, 256) and out["NUM_TOKENS"].tolist() == [[256]]
    assert out["TRUNCATED"].tolist() == [[True]]
    assert out["input_ids"][0, -1] == 102  # [SEP] kept


def embedding(text: str) -> np.ndarray:
    from tritonfleet.pipelines.text_embedding.embedding import OnnxEmbedder

    embedder = OnnxEmbedder(REPOSITORY / "tokenizer/1/tokenizer.json", REPOSITORY / "minilm_l6/1/model.onnx")
    return embedder.embed([text])


def test_retriever_prompt_sources_and_per_request_errors(retriever) -> None:
    question = "Which environment variable holds the API key for the Python client?"
    vector = embedding(question)
    good = retriever.request({"QUESTION": [[question]], "EMBEDDING": vector, "NUM_SOURCES": [[2]]})
    default = retriever.request(
        {"QUESTION": [[question]], "EMBEDDING": vector, "APPLY_CHAT_TEMPLATE": [[False]]}
    )
    bad = retriever.request({"QUESTION": [[question]], "EMBEDDING": vector, "NUM_SOURCES": [[0]]})
    # as many inputs as the model needs, but an optional one instead of QUESTION: Triton passes it on
    no_question = retriever.request({"EMBEDDING": vector, "NUM_SOURCES": [[2]]})
    two, three, refused, unasked = retriever.execute([good, default, bad, no_question])
    sources = [s.decode() for s in two.outputs["SOURCES"][0]]
    assert len(sources) == 2 and sources[0].startswith("tests/rag/corpus/README.md#")
    prompt = two.outputs["PROMPT"][0, 0].decode()
    assert prompt.index(f"[1] {sources[0]}") < prompt.index(f"[2] {sources[1]}") < prompt.index(question)
    assert "TRITONFLEET_API_KEY" in prompt
    assert two.outputs["USE_CHAT_TEMPLATE"].tolist() == [[True]]
    assert three.outputs["SOURCES"].shape == (1, 3) and three.outputs["USE_CHAT_TEMPLATE"].tolist() == [
        [False]
    ]
    assert refused.error.code() == INVALID
    assert refused.error.message() == "retriever: num_sources must be between 1 and 8, got [0]"
    assert (
        unasked.error.code() == INVALID
        and "needs the inputs EMBEDDING and QUESTION" in unasked.error.message()
    )


@pytest.fixture(scope="module")
def llm():
    if not (REPOSITORY / "tensorrt_llm/1/cpu_engine/genai_config.json").is_file():
        pytest.skip("no CPU engine (fleet build llm)")
    pytest.importorskip("onnxruntime_genai")
    model = load("tensorrt_llm", parameters={"gather_ms": "0"})
    yield model
    model.finalize()


def test_tensorrt_llm_returns_the_passthrough_on_each_rows_first_response(llm) -> None:
    inputs = {
        "input_ids": [[1, 2, 3], [4, 5, 6]],
        "input_lengths": [[3], [3]],
        "request_output_len": [[4], [4]],
        "streaming": [[True], [True]],
        "passthrough_in": [["README.md#2", "docs/a.md#1"], ["docs/b.md#3", ""]],
    }
    stream = llm.infer(inputs).stream
    by_row = {0: [], 1: []}
    for response in stream:
        by_row[int(response["batch_index"].reshape(-1)[0])].append(response)
    for b, want in ((0, [b"README.md#2", b"docs/a.md#1"]), (1, [b"docs/b.md#3", b""])):
        first, *rest = by_row[b]
        assert first["passthrough_out"].tolist() == [want]
        assert rest and all("passthrough_out" not in r for r in rest)
