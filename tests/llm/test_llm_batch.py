"""Batched LLM requests on the real server, as TensorRT-LLM v0.14 serves them: a request of batch B
(``text_input`` shaped ``[B, 1]``, every other input one row each) is B sequences. ``tensorrt_llm_bls``
answers once with ``text_output`` ``[B]``; the decoupled ``ensemble`` and ``tensorrt_llm`` stream each row's
responses tagged with ``batch_index``. Greedy rows equal their prompts sent alone (prompts whose answers are
confident, so rounding cannot part them: tests/llm/rounding.py); each row has its own sampling parameters;
cancelling or stopping the request ends every row."""

from __future__ import annotations

import json
import queue
import time
import urllib.request
from collections import defaultdict

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from tests.llm.conftest import inputs, metric, wait_idle
from tests.llm.rounding import CONFIDENT, CONFIDENT_QUESTIONS
from tests.llm.test_llm_models import CHAT

PROMPTS = [CHAT.format(q) for q in CONFIDENT_QUESTIONS]  # 16 tokens each


def column(*values) -> np.ndarray:
    """One value per row: shape [B, 1]."""
    return np.array([[v] for v in values], dtype=object if isinstance(values[0], str) else None)


@pytest.fixture(scope="module")
def alone(llm_server) -> list[str]:
    """Each prompt's greedy 24-token answer, sent on its own to tensorrt_llm_bls; every token confident."""
    client = grpcclient.InferenceServerClient(llm_server.grpc_url)
    texts = []
    for prompt in PROMPTS:
        values = {"text_input": prompt, "max_tokens": 24, "return_log_probs": True}
        result = client.infer("tensorrt_llm_bls", inputs("tensorrt_llm_bls", values))
        texts.append(result.as_numpy("text_output")[0].decode())
        assert np.exp(result.as_numpy("output_log_probs")).min() >= CONFIDENT, texts[-1]
    assert "Moscow" in texts[0] and "Tokyo" in texts[1] and "Berlin" in texts[2]
    return texts


def stream(url: str, model: str, request_inputs: list, request_id: str = "", drop_after: int = 0) -> list:
    """Every response of one gRPC stream (results), up to the final one or ``drop_after`` responses."""
    got: queue.Queue = queue.Queue()
    client = grpcclient.InferenceServerClient(url)
    client.start_stream(callback=lambda result, error: got.put((result, error)))
    client.async_stream_infer(model, request_inputs, request_id=request_id, enable_empty_final_response=True)
    results = []
    while True:
        result, error = got.get(timeout=120)
        assert error is None, error
        results.append(result)
        if len(results) == drop_after:
            client.stop_stream(cancel_requests=True)
            return results
        if result.get_response().parameters["triton_final_response"].bool_param:
            client.stop_stream()
            return results


def texts_by_row(results: list) -> dict[int, str]:
    rows: dict[int, str] = defaultdict(str)
    for result in results:
        if result.as_numpy("text_output") is not None:
            rows[int(result.as_numpy("batch_index")[0, 0])] += result.as_numpy("text_output")[0].decode()
    return dict(rows)


def test_bls_answers_a_batch_at_once(llm_server, alone) -> None:
    client = grpcclient.InferenceServerClient(llm_server.grpc_url)
    values = {"text_input": column(*PROMPTS), "max_tokens": column(24, 24, 5),
              "return_num_output_tokens": column(True, True, True)}  # fmt: skip
    result = client.infer("tensorrt_llm_bls", inputs("tensorrt_llm_bls", values))
    texts = [t.decode() for t in result.as_numpy("text_output")]
    assert result.as_numpy("text_output").shape == (3,)
    assert texts[:2] == alone[:2] and alone[2].startswith(texts[2])  # row 2 stopped at its own 5 tokens
    assert result.as_numpy("num_output_tokens")[2, 0] == 5


def test_bls_batch_over_http_infer_and_generate(llm_server, alone) -> None:
    client = httpclient.InferenceServerClient(llm_server.http_url)
    values = {"text_input": column(*PROMPTS[:2]), "max_tokens": column(24, 24)}
    result = client.infer("tensorrt_llm_bls", inputs("tensorrt_llm_bls", values, api=httpclient))
    assert [t.decode() for t in result.as_numpy("text_output")] == alone[:2]
    body = json.dumps({"text_input": PROMPTS[:2], "max_tokens": [24, 24]}).encode()  # lists: one row each
    url = f"http://{llm_server.http_url}/v2/models/tensorrt_llm_bls/generate"
    with urllib.request.urlopen(urllib.request.Request(url, body), timeout=120) as response:
        assert json.loads(response.read())["text_output"] == alone[:2]


def test_ensemble_streams_each_row_tagged_with_batch_index(llm_server, alone) -> None:
    values = {
        "text_input": column(*PROMPTS),
        "max_tokens": column(24, 24, 24),
        "stream": column(True, True, True),
    }
    results = stream(llm_server.grpc_url, "ensemble", inputs("ensemble", values))
    assert texts_by_row(results) == dict(enumerate(alone))
    finals = [r.get_response().parameters["triton_final_response"].bool_param for r in results]
    assert finals.count(True) == 1 and finals[-1]  # the last row's end ends the request
    one = {"text_input": PROMPTS[0], "max_tokens": 4, "stream": True}
    single = stream(llm_server.grpc_url, "ensemble", inputs("ensemble", one))
    assert all(r.as_numpy("batch_index") is None for r in single)  # as TensorRT-LLM: a batch of one has none


def test_each_row_has_its_own_sampling_parameters(llm_server, alone) -> None:
    """Row 0 greedy, row 1 sampled with a seed, row 2 held to at least 20 tokens: each as it is alone. Rows 1
    and 2 go on past the greedy answer's end, where tokens are not confident and rounding beside other rows
    may part them from their lone runs (a seed's draws are compared exactly in tests/llm/test_scheduler.py):
    they are held to the greedy answer and past it."""
    rows = [{"top_k": 1, "seed": 0, "min_tokens": 0}, {"top_k": 40, "seed": 7, "min_tokens": 0},
            {"top_k": 1, "seed": 0, "min_tokens": 20}]  # fmt: skip
    client = grpcclient.InferenceServerClient(llm_server.grpc_url)
    each = []
    for prompt, row in zip(PROMPTS, rows, strict=True):
        values = {
            "text_input": prompt,
            "max_tokens": 20,
            "temperature": 1.0,
            "return_num_output_tokens": True,
            **row,
        }
        result = client.infer("tensorrt_llm_bls", inputs("tensorrt_llm_bls", values))
        each.append(
            (result.as_numpy("text_output")[0].decode(), int(result.as_numpy("num_output_tokens")[0, 0]))
        )
    values = {"text_input": column(*PROMPTS), "max_tokens": column(20, 20, 20),
              "temperature": column(1.0, 1.0, 1.0), "return_num_output_tokens": column(True, True, True),
              **{name: column(*(r[name] for r in rows)) for name in rows[0]}}  # fmt: skip
    result = client.infer("tensorrt_llm_bls", inputs("tensorrt_llm_bls", values))
    batched = list(zip([t.decode() for t in result.as_numpy("text_output")],
                       result.as_numpy("num_output_tokens").reshape(-1).tolist(), strict=True))  # fmt: skip
    assert batched[0] == each[0]  # greedy and confident: exactly its lone run
    assert batched[2][1] == each[2][1] == 20  # its own min_tokens
    for i in (1, 2):
        for text, _ in (each[i], batched[i]):
            assert text.startswith(alone[i]) and len(text) > len(alone[i]), (text, alone[i])


def test_a_bad_row_fails_the_request_with_its_index(llm_server) -> None:
    client = grpcclient.InferenceServerClient(llm_server.grpc_url)
    values = {"text_input": column(PROMPTS[0], " "), "max_tokens": column(8, 8)}
    with pytest.raises(grpcclient.InferenceServerException, match=r"row 1: empty prompt") as raised:
        client.infer("tensorrt_llm_bls", inputs("tensorrt_llm_bls", values))
    assert raised.value.status() == "StatusCode.INVALID_ARGUMENT"


def test_cancelling_a_batched_stream_stops_every_row(llm_server) -> None:
    tokens = "tritonfleet_llm_generated_tokens_total"
    before = metric(llm_server, tokens)
    values = {"text_input": column(*PROMPTS[:2]), "max_tokens": column(1000, 1000),
              "min_tokens": column(1000, 1000), "stream": column(True, True)}  # fmt: skip
    stream(llm_server.grpc_url, "ensemble", inputs("ensemble", values), drop_after=6)
    wait_idle(llm_server)
    generated = metric(llm_server, tokens) - before
    time.sleep(1)
    assert metric(llm_server, tokens) - before == generated < 500  # both stopped, far short of 2000


def test_a_stop_request_ends_every_row_of_a_batch(llm_server) -> None:
    values = {"input_ids": np.array([[1, 504, 3458, 282, 253, 1232]] * 2), "input_lengths": column(6, 6),
              "request_output_len": column(1000, 1000), "min_tokens": column(1000, 1000),
              "streaming": column(True, True)}  # fmt: skip
    got: queue.Queue = queue.Queue()
    client = grpcclient.InferenceServerClient(llm_server.grpc_url)
    client.start_stream(callback=lambda result, error: got.put((result, error)))
    client.async_stream_infer("tensorrt_llm", inputs("tensorrt_llm", values), request_id="batch-long")
    for _ in range(4):
        assert got.get(timeout=60)[1] is None
    stop = {"input_ids": [0], "input_lengths": 0, "request_output_len": 0, "stop": True}
    client.async_stream_infer("tensorrt_llm", inputs("tensorrt_llm", stop), request_id="batch-long")
    finals, responses = 0, 4
    while finals < 2:  # the stop's answer and the batch's end
        result, error = got.get(timeout=60)
        assert error is None, error
        responses += 1
        finals += result.get_response().parameters["triton_final_response"].bool_param
    client.stop_stream()
    assert responses < 200  # far short of 2 x 1000 tokens
    wait_idle(llm_server)
