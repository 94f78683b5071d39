"""The LLM pipeline on a real tritonserver: HTTP and gRPC, streaming and not, concurrency, cancellation,
bad input next to good requests, and multi-byte text that streams without broken characters."""

from __future__ import annotations

import json
import queue
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tokenizers import Tokenizer

from tests.llm.conftest import inputs, metric, wait_idle

CHAT = "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"
TOKENIZER = Path(__file__).resolve().parents[2] / "model_repository" / "preprocessing" / "1" / "tokenizer"
COUNTS = {"return_num_input_tokens": True, "return_num_output_tokens": True}


def post(url: str, body: dict, timeout: float = 120) -> tuple[int, dict]:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def sse(url: str, body: dict) -> list[dict]:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as r:
        return [json.loads(line[5:]) for line in r.read().decode().splitlines() if line.startswith("data:")]


def request(prompt: str, max_tokens: int, stream: bool, model: str = "ensemble", **extra) -> list:
    """gRPC inputs of one prompt for ``model`` (data types from its config)."""
    return inputs(model, {"text_input": prompt, "max_tokens": max_tokens, "stream": stream, **extra})


def grpc_stream(url: str, prompt: str, max_tokens: int, **extra) -> list[str]:
    """Stream one request through the ensemble; the text pieces in order."""
    results: queue.Queue = queue.Queue()
    client = grpcclient.InferenceServerClient(url)
    client.start_stream(callback=lambda result, error: results.put((result, error)))
    client.async_stream_infer(
        "ensemble", request(prompt, max_tokens, True, **extra), enable_empty_final_response=True
    )
    pieces = []
    while True:
        result, error = results.get(timeout=120)
        assert error is None, error
        response = result.get_response()
        if result.as_numpy("text_output") is not None:
            pieces += [t.decode() for t in result.as_numpy("text_output").reshape(-1)]
        if response.parameters["triton_final_response"].bool_param:
            break
    client.stop_stream()
    return pieces


def test_http_generate_bls_and_ensemble(llm_server):
    prompt = CHAT.format("What is the capital of France?")
    status, bls = post(f"http://{llm_server.http_url}/v2/models/tensorrt_llm_bls/generate",
                       {"text_input": prompt, "max_tokens": 24, **COUNTS})  # fmt: skip
    assert status == 200, bls
    assert "Paris" in bls["text_output"]
    assert bls["num_output_tokens"] == len(bls["output_log_probs"])
    status, ens = post(f"http://{llm_server.http_url}/v2/models/ensemble/generate",
                       {"text_input": prompt, "max_tokens": 24})  # fmt: skip
    assert status == 200, ens
    assert ens["text_output"] == bls["text_output"]  # greedy: the same text on both paths


def test_http_stream_matches_unary(llm_server):
    prompt = CHAT.format("Write a haiku about the sea.")
    events = sse(f"http://{llm_server.http_url}/v2/models/ensemble/generate_stream",
                 {"text_input": prompt, "max_tokens": 32, "stream": True})  # fmt: skip
    assert len(events) > 3 and [e for e in events if "error" in e] == []
    _, whole = post(f"http://{llm_server.http_url}/v2/models/tensorrt_llm_bls/generate",
                    {"text_input": prompt, "max_tokens": 32})  # fmt: skip
    assert "".join(e["text_output"] for e in events) == whole["text_output"]


def test_grpc_unary_bls_and_stream(llm_server):
    client = grpcclient.InferenceServerClient(llm_server.grpc_url)
    prompt = CHAT.format("List the first five prime numbers.")
    result = client.infer("tensorrt_llm_bls", request(prompt, 32, False, "tensorrt_llm_bls"))
    unary = result.as_numpy("text_output").reshape(-1)[0].decode()
    assert "2" in unary and "3" in unary
    assert "".join(grpc_stream(llm_server.grpc_url, prompt, 32)) == unary


def test_legacy_names_and_seeded_sampling(llm_server):
    url = f"http://{llm_server.http_url}/v2/models/tensorrt_llm_bls/generate"
    body = {"text_input": CHAT.format("Tell me a story."), "max_tokens": 16, "top_k": 40, "temperature": 1.0}
    texts = [
        post(url, {**body, "random_seed": 7})[1]["text_output"],
        post(url, {**body, "seed": 7})[1]["text_output"],
    ]
    assert texts[0] == texts[1]  # random_seed is seed
    assert len({post(url, {**body, "seed": s})[1]["text_output"] for s in (1, 2, 3)}) > 1
    status, short = post(url, {**body, "min_length": 12, "top_k": 1, "return_num_output_tokens": True})
    assert status == 200 and short["num_output_tokens"] >= 12


@pytest.mark.parametrize("model", ["ensemble", "tensorrt_llm_bls", "tensorrt_llm", "openai_frontend"])
def test_requests_as_existing_clients_send_them(llm_server, model):
    """The inputs TensorRT-LLM v0.14.0's own clients always send (end_to_end_grpc_client.py to the ensemble,
    inflight_batcher_llm_client.py to tensorrt_llm), num_return_sequences and beam_width included, and those
    of the Triton OpenAI frontend's TensorRT-LLM mapping (a chat completion with its usual options)."""
    prompt = CHAT.format("What is the capital of France?")
    tokenizer = Tokenizer.from_file(str(TOKENIZER / "tokenizer.json"))
    if model == "openai_frontend":
        model = "ensemble"
        values = {"text_input": prompt, "stream": True, "max_tokens": 16, "stop_words": ["London"],
                  "top_p": 0.0, "frequency_penalty": 0.0, "presence_penalty": 0.0, "temperature": 0.0,
                  "exclude_input_in_output": True, "return_num_input_tokens": True,
                  "return_num_output_tokens": True, "seed": 0}  # fmt: skip
    elif model == "tensorrt_llm":
        ids = tokenizer.encode(prompt, add_special_tokens=False).ids
        values = {"input_ids": ids, "input_lengths": len(ids), "request_output_len": 16,
                  "num_return_sequences": 1, "beam_width": 1, "temperature": 1.0, "streaming": True,
                  "end_id": 2, "pad_id": 2, "runtime_top_k": 1, "runtime_top_p": 0.0}  # fmt: skip
    else:
        values = {"text_input": prompt, "max_tokens": 16, "stream": model == "ensemble",
                  "num_return_sequences": 1, "beam_width": 1, "temperature": 1.0}  # fmt: skip
    request_inputs = inputs(model, values)
    client = grpcclient.InferenceServerClient(llm_server.grpc_url)
    if model == "tensorrt_llm_bls":
        results = [client.infer(model, request_inputs)]
    else:
        got: queue.Queue = queue.Queue()
        client.start_stream(callback=lambda result, error: got.put((result, error)))
        client.async_stream_infer(model, request_inputs, enable_empty_final_response=True)
        results = []
        while not results or not results[-1].get_response().parameters["triton_final_response"].bool_param:
            result, error = got.get(timeout=60)
            assert error is None, error
            results.append(result)
        client.stop_stream()
    name = "output_ids" if model == "tensorrt_llm" else "text_output"
    outputs = [r.as_numpy(name).reshape(-1) for r in results if r.as_numpy(name) is not None]
    if model == "tensorrt_llm":
        text = tokenizer.decode([int(t) for out in outputs for t in out])
    else:
        text = "".join(t.decode() for out in outputs for t in out)
    assert "Paris" in text


def prompt_tokens(prompt: str) -> int:
    tokenizer = Tokenizer.from_file(str(TOKENIZER / "tokenizer.json"))
    return len(tokenizer.encode(prompt, add_special_tokens=False))


def stream_results(url: str, model: str, request_inputs: list) -> list:
    """Every response of one gRPC stream that carries outputs."""
    results: queue.Queue = queue.Queue()
    client = grpcclient.InferenceServerClient(url)
    client.start_stream(callback=lambda result, error: results.put((result, error)))
    client.async_stream_infer(model, request_inputs, enable_empty_final_response=True)
    out = []
    while True:
        result, error = results.get(timeout=120)
        assert error is None, error
        if result.as_numpy("text_output") is not None:
            out.append(result)
        if result.get_response().parameters["triton_final_response"].bool_param:
            break
    client.stop_stream()
    return out


@pytest.mark.parametrize("model", ["tensorrt_llm_bls", "ensemble"])
def test_token_counts_only_when_asked(llm_server, model):
    url = f"http://{llm_server.http_url}/v2/models/{model}/generate"
    prompt = CHAT.format("Name a fruit.")
    _, plain = post(url, {"text_input": prompt, "max_tokens": 12})
    assert "num_input_tokens" not in plain and "num_output_tokens" not in plain
    _, counted = post(url, {"text_input": prompt, "max_tokens": 12, **COUNTS})
    assert counted["text_output"] == plain["text_output"]
    assert counted["num_input_tokens"] == prompt_tokens(prompt)
    assert 0 < counted["num_output_tokens"] == len(counted["output_log_probs"]) <= 12
    echo = {"text_input": prompt, "max_tokens": 12, "exclude_input_in_output": False, **COUNTS}
    _, echoed = post(url, echo)
    assert echoed["text_output"].startswith("user\nName a fruit.")  # the prompt is in the text, not the count
    assert echoed["num_output_tokens"] == counted["num_output_tokens"]


def test_token_counts_stream_through_the_ensemble(llm_server):
    prompt = CHAT.format("Count from one to ten.")
    results = stream_results(llm_server.grpc_url, "ensemble", request(prompt, 24, True, **COUNTS))
    assert len(results) > 3
    assert {int(r.as_numpy("num_input_tokens")[0, 0]) for r in results} == {prompt_tokens(prompt)}
    running = [int(r.as_numpy("num_output_tokens")[0, 0]) for r in results]
    assert running == sorted(set(running))  # tokens generated so far: it grows with every response
    _, whole = post(f"http://{llm_server.http_url}/v2/models/tensorrt_llm_bls/generate",
                    {"text_input": prompt, "max_tokens": 24, **COUNTS})  # fmt: skip
    assert running[-1] == whole["num_output_tokens"]
    plain = stream_results(llm_server.grpc_url, "ensemble", request(prompt, 24, True))
    assert [r for r in plain if r.as_numpy("num_input_tokens") is not None] == []
    assert [r for r in plain if r.as_numpy("num_output_tokens") is not None] == []


def test_legacy_names_and_seeds_through_both_models(llm_server):
    """seed / random_seed and min_tokens / min_length are the same thing, streamed or not."""
    prompt = CHAT.format("Tell me a story.")
    client = grpcclient.InferenceServerClient(llm_server.grpc_url)

    def both(**extra) -> tuple[str, str]:
        """The text of the BLS model and of the ensemble streaming, sampling with top_k 40."""
        extra = {"top_k": 40, "temperature": 1.0, **extra}
        bls = client.infer("tensorrt_llm_bls", request(prompt, 16, False, "tensorrt_llm_bls", **extra))
        streamed = "".join(grpc_stream(llm_server.grpc_url, prompt, 16, **extra))
        return bls.as_numpy("text_output").reshape(-1)[0].decode(), streamed

    seven = both(seed=7)
    assert seven[0] == seven[1] and seven == both(random_seed=7)
    assert len({both(seed=s)[1] for s in (1, 2, 3)}) > 1

    short = CHAT.format("Say yes.")
    count = {"top_k": 1, "return_num_output_tokens": True}
    for name in ("min_tokens", "min_length"):
        at_least = {**count, name: 30}
        streamed = stream_results(llm_server.grpc_url, "ensemble", request(short, 40, True, **at_least))
        unary = client.infer("tensorrt_llm_bls", request(short, 40, False, "tensorrt_llm_bls", **at_least))
        assert streamed[-1].as_numpy("num_output_tokens")[0, 0] >= 30
        assert unary.as_numpy("num_output_tokens")[0, 0] >= 30


def test_concurrent_bls_requests_are_in_flight_together(llm_server):
    """Concurrent one-response requests overlap: their decode steps are shared (one BLS instance would run
    them one after another, never sharing a step)."""
    url = f"http://{llm_server.http_url}/v2/models/tensorrt_llm_bls/generate"
    bodies = [
        {
            "text_input": CHAT.format(f"Write one sentence about the number {i}."),
            "max_tokens": 24,
            "min_tokens": 24,
        }
        for i in range(6)
    ]
    before = shared_steps(llm_server)
    with ThreadPoolExecutor(len(bodies)) as pool:
        answers = list(pool.map(lambda body: post(url, body), bodies))
    assert [status for status, _ in answers] == [200] * len(bodies)
    assert shared_steps(llm_server) > before


def test_stop_words_and_max_tokens(llm_server):
    url = f"http://{llm_server.http_url}/v2/models/tensorrt_llm_bls/generate"
    prompt = CHAT.format("Name three colors, with a short sentence about each.")
    _, full = post(url, {"text_input": prompt, "max_tokens": 40})
    stop = next(p for p in (",", ".", ":", "\n") if p in full["text_output"][:-1])
    _, stopped = post(url, {"text_input": prompt, "max_tokens": 40, "stop_words": [stop]})
    assert stopped["text_output"].endswith(stop) and len(stopped["text_output"]) < len(full["text_output"])
    _, two = post(url, {"text_input": prompt, "max_tokens": 2, "return_num_output_tokens": True})
    assert two["num_output_tokens"] == 2


def shared_steps(server) -> float:
    """Decode steps that held more than one live sequence: the rows-per-step histogram less its le="1"."""
    lines = urllib.request.urlopen(server.metrics_url).read().decode().splitlines()
    name = "tritonfleet_llm_rows_per_step"
    count = [float(line.split()[-1]) for line in lines if line.startswith(f"{name}_count")]
    single = [
        float(line.split()[-1]) for line in lines if line.startswith(f"{name}_bucket") and 'le="1"' in line
    ]
    return sum(count) - sum(single)


def test_concurrent_streams_share_steps(llm_server):
    prompts = [CHAT.format(f"Write one sentence about the number {i}.") for i in range(6)]
    before = shared_steps(llm_server)
    with ThreadPoolExecutor(len(prompts)) as pool:
        outs = list(pool.map(lambda p: grpc_stream(llm_server.grpc_url, p, 24), prompts))
    assert all(len("".join(o)) > 10 for o in outs)
    assert shared_steps(llm_server) > before  # some decode steps served several streams at once


# A generation that only a cancellation ends (min_tokens = max_tokens), on each model clients stream from.
LONG = {
    "tensorrt_llm": {"input_ids": [1, 504, 3458, 282, 253, 1232], "input_lengths": 6,
                     "request_output_len": 1000, "min_tokens": 1000, "streaming": True},
    "ensemble": {"text_input": CHAT.format("Write a very long essay about rivers."), "max_tokens": 1000,
                 "min_tokens": 1000, "stream": True},
}  # fmt: skip


def stream_then_drop(server, model: str, transport: str) -> None:
    """Stream LONG[model], read three responses, then cancel (gRPC) or disconnect (HTTP SSE)."""
    if transport == "grpc":
        client = grpcclient.InferenceServerClient(server.grpc_url)
        got: queue.Queue = queue.Queue()
        client.start_stream(callback=lambda result, error: got.put(error))  # tritonclient passes keywords
        client.async_stream_infer(model, inputs(model, LONG[model]))
        for _ in range(3):
            assert got.get(timeout=60) is None
        client.stop_stream(cancel_requests=True)
        return
    url = f"http://{server.http_url}/v2/models/{model}/generate_stream"
    request = urllib.request.Request(
        url, json.dumps(LONG[model]).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as r:
        data = (json.loads(line[5:]) for line in iter(r.readline, b"") if line.startswith(b"data:"))
        for _ in range(3):
            assert "error" not in next(data)
    # leaving the block closed the connection


@pytest.mark.parametrize("transport", ["grpc", "sse"])
@pytest.mark.parametrize("model", ["tensorrt_llm", "ensemble"])
def test_dropped_stream_stops_generating_and_frees_its_slot(llm_server, model, transport):
    tokens = "tritonfleet_llm_generated_tokens_total"
    before = metric(llm_server, tokens)
    stream_then_drop(llm_server, model, transport)
    wait_idle(llm_server)  # its slot is free...
    generated = metric(llm_server, tokens) - before
    time.sleep(1)
    assert metric(llm_server, tokens) - before == generated < 500  # ...because it stopped, far short of 1000
    assert grpc_stream(llm_server.grpc_url, CHAT.format("Say hi."), 8)


STOP = {"input_ids": [0], "input_lengths": 0, "request_output_len": 0, "stop": True}


def stop_inputs() -> list[grpcclient.InferInput]:
    """The stop request as TensorRT-LLM's inflight_batcher_llm_client.py (--stop-after-ms) builds it."""
    stop = inputs("tensorrt_llm", STOP)
    stop[0].set_data_from_numpy(np.empty([1, 1], dtype=np.int32))  # garbage ids, as that client sends
    return stop


def http_stop(server, request_id: str) -> tuple[int, dict]:
    return post(f"http://{server.http_url}/v2/models/tensorrt_llm/generate", {"id": request_id, **STOP})


@pytest.mark.parametrize("model", ["tensorrt_llm", "ensemble"])
def test_stop_request_ends_streams_by_request_id(llm_server, model):
    """TensorRT-LLM's stop request (``stop`` to tensorrt_llm with the request's id) ends a stream: one to
    tensorrt_llm on the same gRPC stream, as TensorRT-LLM's client sends it, and an ensemble stream from
    another connection over HTTP (its tensorrt_llm step carries the ensemble request's id)."""
    client = grpcclient.InferenceServerClient(llm_server.grpc_url)
    got: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: got.put((result, error)))
    client.async_stream_infer(model, inputs(model, LONG[model]), request_id=f"long-{model}")
    for _ in range(3):
        result, error = got.get(timeout=60)
        assert error is None, error
    if model == "tensorrt_llm":
        client.async_stream_infer("tensorrt_llm", stop_inputs(), request_id="long-tensorrt_llm")
        expected = [("tensorrt_llm", False), ("tensorrt_llm", True)]  # the stop's answer, the stream's end
    else:
        answer = {"id": "long-ensemble", "model_name": "tensorrt_llm", "model_version": "1"}
        assert http_stop(llm_server, "long-ensemble") == (200, answer)
        expected = [("ensemble", True)]
    responses, finals = 3, []
    try:
        while len(finals) < len(expected):
            result, error = got.get(timeout=10)
            assert error is None, error
            response = result.get_response()
            responses += 1
            if response.parameters["triton_final_response"].bool_param:
                finals.append((response.model_name, bool(response.outputs)))
    finally:
        client.stop_stream()
    assert sorted(finals) == expected
    assert responses < 100  # far short of its 1000 tokens
    wait_idle(llm_server)


def test_stop_request_needs_an_id_and_ignores_finished_ones(llm_server):
    client = grpcclient.InferenceServerClient(llm_server.grpc_url)
    got: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: got.put((result, error)))
    client.async_stream_infer("tensorrt_llm", stop_inputs())
    result, error = got.get(timeout=30)
    assert result is None and "needs the request id" in str(error)
    client.async_stream_infer("tensorrt_llm", stop_inputs(), request_id="finished-long-ago")
    result, error = got.get(timeout=30)
    client.stop_stream()
    assert error is None and result.get_response().parameters["triton_final_response"].bool_param
    assert not result.get_response().outputs


def test_stopped_bls_request_answers_with_what_it_generated(llm_server):
    """A stop request with a non-streaming request's id ends it early with the text generated so far."""
    url = f"http://{llm_server.http_url}/v2/models/tensorrt_llm_bls/generate"
    with ThreadPoolExecutor(1) as pool:
        steps = "tritonfleet_llm_rows_per_step_count"  # decode steps: one-response requests emit at the end
        before = metric(llm_server, steps)
        answer = pool.submit(post, url, {"id": "bls-long", **LONG["ensemble"], "stream": False, **COUNTS})
        deadline = time.monotonic() + 60  # only a hung request takes that long
        while metric(llm_server, steps) < before + 3:
            assert time.monotonic() < deadline, "the request never started generating"
            time.sleep(0.05)
        assert http_stop(llm_server, "bls-long")[0] == 200
        status, out = answer.result(timeout=10)
    assert status == 200, out
    assert 0 < out["num_output_tokens"] < 1000 and out["text_output"].strip()
    wait_idle(llm_server)


def test_long_max_tokens_streams_and_ends_with_the_answer(llm_server):
    """max_tokens=1000 (the configured maximum is 1024) streams piece by piece, ending with the answer."""
    client = grpcclient.InferenceServerClient(llm_server.grpc_url)
    got: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: got.put((result, error)))
    values = {"text_input": CHAT.format("Say hi."), "max_tokens": 1000, "stream": True}
    client.async_stream_infer("ensemble", inputs("ensemble", values), enable_empty_final_response=True)
    pieces, final = [], False
    while not final:
        result, error = got.get(timeout=60)
        assert error is None, error
        final = result.get_response().parameters["triton_final_response"].bool_param
        if result.as_numpy("text_output") is not None:
            pieces.append(result.as_numpy("text_output")[0].decode())
    client.stop_stream()
    assert pieces[0] and 1 < len(pieces) < 1000  # it ended at the end of the answer, not at max_tokens


def test_short_stream_finishes_while_a_long_one_runs(llm_server):
    """A short request started beside a running 600-token stream joins its batch at the next step.

    Both go over one gRPC stream, so their responses arrive in the order the model sent them."""
    client = grpcclient.InferenceServerClient(llm_server.grpc_url)
    got: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: got.put((result, error)))
    long = {**LONG["tensorrt_llm"], "request_output_len": 600, "min_tokens": 600}
    client.async_stream_infer("tensorrt_llm", inputs("tensorrt_llm", long), request_id="long")
    result, error = got.get(timeout=60)
    assert error is None, error
    short = {"input_ids": [1, 4093, 198, 36218, 15876, 30, 2, 198, 1, 520, 9531, 198],
             "input_lengths": 12, "request_output_len": 8, "streaming": True}  # fmt: skip
    client.async_stream_infer("tensorrt_llm", inputs("tensorrt_llm", short), request_id="short")
    long_tokens = 0
    try:
        while True:
            result, error = got.get(timeout=60)
            assert error is None, error
            response = result.get_response()
            final = response.parameters["triton_final_response"].bool_param
            if response.id == "long":
                assert not final, "the long stream finished before the short one"
                long_tokens += int(result.as_numpy("sequence_length").reshape(-1)[0])
            elif final:
                break
    finally:
        client.stop_stream(cancel_requests=True)  # the long stream is not needed any further
    assert long_tokens < 600


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"text_input": "", "max_tokens": 8}, "empty prompt"),
        ({"text_input": "hi", "max_tokens": 0}, "max_tokens"),
        ({"text_input": "hi", "max_tokens": 100000}, "max_tokens"),
        ({"text_input": "hi " * 3000, "max_tokens": 8}, "exceeds the context"),
        ({"text_input": "hi", "max_tokens": 8, "beam_width": 2}, "beam_width"),
        ({"text_input": "hi", "max_tokens": 8, "num_return_sequences": 2}, "num_return_sequences"),
        ({"text_input": "hi", "max_tokens": 8, "temperature": float("nan")}, "must be finite"),
        ({"text_input": "hi", "max_tokens": 8, "end_id": 10**6}, "end_id must be below"),
        ({"text_input": "hi", "max_tokens": "eight"}, ""),
    ],
)
def test_bad_input_next_to_good_requests(llm_server, body, message):
    """A client's mistake is a 400 for that request; the others carry on. (A JSON value of the wrong type is
    refused by Triton's HTTP frontend itself, with a 500: the front door's to catch.)"""
    url = f"http://{llm_server.http_url}/v2/models/tensorrt_llm_bls/generate"
    good = {"text_input": CHAT.format("Name three colors."), "max_tokens": 16}
    with ThreadPoolExecutor(3) as pool:
        goods = [pool.submit(post, url, good) for _ in range(2)]
        status, bad = post(url, body)
        assert status == (400 if message else 500) and message in bad.get("error", ""), bad
        assert all(f.result()[0] == 200 for f in goods)


def test_invalid_utf8_is_rejected(llm_server):
    client = grpcclient.InferenceServerClient(llm_server.grpc_url)
    with pytest.raises(grpcclient.InferenceServerException, match="UTF-8"):
        client.infer("tensorrt_llm_bls", request(b"\xff\xfe bad", 8, False, "tensorrt_llm_bls"))


def test_multibyte_text_streams_whole_characters(llm_server):
    prompt = CHAT.format("Repeat exactly: café ☕ 日本語 😀 naïve")
    pieces = grpc_stream(llm_server.grpc_url, prompt, 40)
    text = "".join(pieces)
    assert "\ufffd" not in text and all("\ufffd" not in p for p in pieces)
    client = grpcclient.InferenceServerClient(llm_server.grpc_url)
    whole = (
        client.infer("tensorrt_llm_bls", request(prompt, 40, False, "tensorrt_llm_bls"))
        .as_numpy("text_output")
        .reshape(-1)[0]
    )
    assert text == whole.decode()
    assert any(ord(c) > 127 for c in text)


def test_many_clients_do_not_kill_the_stub(llm_server):
    url = f"http://{llm_server.http_url}/v2/models/ensemble/generate"
    threads = [
        threading.Thread(target=post, args=(url, {"text_input": "hi", "max_tokens": -1})) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    status, ok = post(url, {"text_input": CHAT.format("Say yes."), "max_tokens": 4})
    assert status == 200 and ok["text_output"]


def test_concurrent_streams_with_cancellations_all_finish_and_no_stub_dies(llm_server):
    """8 streams at once, round after round, a quarter of them dropped after 3 responses: every other
    stream gets its final response (a decoupled-BLS step crashed its stub so: ensemble/configs/cpu.pbtxt)."""
    stubs = llm_server.stub_pids()

    def client(i: int) -> list[str]:
        outcomes = []
        for r in range(6):
            got: queue.Queue = queue.Queue()
            c = grpcclient.InferenceServerClient(llm_server.grpc_url)
            c.start_stream(callback=lambda result, error, got=got: got.put((result, error)))
            values = {"text_input": CHAT.format(f"Tell me about topic {i}-{r}."), "max_tokens": 24,
                      "min_tokens": 24, "stream": True}  # fmt: skip
            c.async_stream_infer("ensemble", inputs("ensemble", values), enable_empty_final_response=True)
            drop, outcome = (i + r) % 4 == 0, "final"
            for n in range(1, 100):
                result, error = got.get(timeout=60)
                assert error is None, error
                if drop and n == 3:
                    c.stop_stream(cancel_requests=True)
                    outcome = "dropped"
                    break
                if result.get_response().parameters["triton_final_response"].bool_param:
                    break
            else:
                outcome = "no final response"
            if outcome == "final":
                c.stop_stream()
            c.close()
            outcomes.append(outcome)
        return outcomes

    with ThreadPoolExecutor(8) as pool:
        outcomes = [o for os_ in pool.map(client, range(8)) for o in os_]
    assert outcomes.count("final") == 36 and outcomes.count("dropped") == 12
    assert llm_server.stub_pids() == stubs
