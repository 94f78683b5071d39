"""The `openai` Python client, unchanged, against /v1 over the real pipelines: models, chat and completions
(sync and asyncio, streaming and not), sampling fields, stop strings, logprobs, structured output, errors,
usage, and a client that disconnects."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import urllib.parse
import urllib.request
from pathlib import Path

import httpx
import jsonschema
import openai
import pytest
from tokenizers import Tokenizer

from tests.llm.conftest import metric, wait_idle
from tests.openai.conftest import CHAT_MODEL, streamed_text, whole_and_streamed
from tritonfleet import pipelines

TOKENIZER = Path(__file__).resolve().parents[2] / "model_repository" / "preprocessing" / "1" / "tokenizer"
# SmolLM2's chat template with its default system prompt, written out (the app renders the template itself).
SYSTEM = (
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
)
CHAT = SYSTEM + "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"
COLORS = [{"role": "user", "content": "Name three primary colors."}]
PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 24},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "city": {"type": "string", "enum": ["Paris", "London", "Rome"]},
    },
    "required": ["name", "age", "city"],
    "additionalProperties": False,
}


def tokens(text: str) -> int:
    tokenizer = Tokenizer.from_file(str(TOKENIZER / "tokenizer.json"))
    return len(tokenizer.encode(text, add_special_tokens=False).ids)


def test_models_are_the_declared_ones(client) -> None:
    declared = set(pipelines.openai_models())
    listed = client.models.list()
    assert {m.id for m in listed.data} == declared  # the session server loads every pipeline
    assert CHAT_MODEL in declared
    assert client.models.retrieve(CHAT_MODEL).id == CHAT_MODEL
    with pytest.raises(openai.NotFoundError) as err:
        client.models.retrieve("no-such-model")
    assert err.value.body["code"] == "model_not_found"


def test_chat_greedy_answer_streamed_and_not(client, usage_log) -> None:
    before = len(usage_log)
    usage = {"include_usage": True}
    reply, chunks = whole_and_streamed(
        client, usage, model=CHAT_MODEL, messages=COLORS, max_tokens=32, temperature=0
    )
    text = reply.choices[0].message.content
    assert "Red" in text or "red" in text, text
    assert reply.choices[0].finish_reason == "stop"
    assert reply.object == "chat.completion" and reply.model == CHAT_MODEL
    assert reply.usage.prompt_tokens == tokens(CHAT.format(COLORS[0]["content"]))
    assert 0 < reply.usage.completion_tokens < 32
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens

    assert chunks[0].choices[0].delta.role == "assistant"
    streamed = streamed_text(chunks)
    assert streamed == text
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 3  # token by token
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        "stop"
    ]
    assert chunks[-1].choices == [] and chunks[-1].usage == reply.usage  # the usage chunk comes last
    # on_usage heard of both, with prompt + completion tokens, though only the stream asked for usage
    assert usage_log[before:] == [("/v1/chat/completions", reply.usage.total_tokens)] * 2


def test_async_client_streams_and_answers(base_url: str) -> None:
    async def run() -> tuple[str, str]:
        async with openai.AsyncOpenAI(base_url=base_url, api_key="none", max_retries=0) as client:
            one = await client.chat.completions.create(
                model=CHAT_MODEL, messages=COLORS, max_tokens=24, temperature=0
            )
            stream = await client.chat.completions.create(
                model=CHAT_MODEL, messages=COLORS, max_tokens=24, temperature=0, stream=True
            )
            pieces = [c.choices[0].delta.content or "" async for c in stream if c.choices]
            return one.choices[0].message.content, "".join(pieces)

    one, streamed = asyncio.run(run())
    assert one == streamed and ("Red" in one or "red" in one)


def test_length_and_stop(client) -> None:
    cut = client.chat.completions.create(
        model=CHAT_MODEL, messages=COLORS, max_completion_tokens=5, temperature=0
    )
    assert cut.choices[0].finish_reason == "length" and cut.usage.completion_tokens == 5
    count = [{"role": "user", "content": "Count from 1 to 10, separated by commas."}]
    full = client.chat.completions.create(model=CHAT_MODEL, messages=count, max_tokens=40, temperature=0)
    assert "4, 5, 6" in full.choices[0].message.content
    for stream in (False, True):
        kwargs = dict(model=CHAT_MODEL, messages=count, max_tokens=40, temperature=0, stop=["5", "nine"])
        if stream:
            chunks = list(client.chat.completions.create(stream=True, **kwargs))
            text = streamed_text(chunks)
            reason = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
        else:
            reply = client.chat.completions.create(**kwargs)
            text, reason = reply.choices[0].message.content, [reply.choices[0].finish_reason]
        # the stop string and what follows are trimmed off the greedy answer
        assert text == full.choices[0].message.content.split("5")[0], text
        assert reason == ["stop"]


def bls_stats(server) -> tuple[int, int]:
    """tensorrt_llm_bls's (inferences, executions) so far: a batched request is one execution of B."""
    url = f"http://{server.http_url}/v2/models/tensorrt_llm_bls/stats"
    with urllib.request.urlopen(url, timeout=10) as r:
        stats = json.loads(r.read())["model_stats"][0]
    return int(stats["inference_count"]), int(stats["execution_count"])


def bls_stats_after(server, before: tuple[int, int]) -> tuple[int, int]:
    """The stats once they have moved from ``before``: Triton counts a decoupled model's request when the
    model releases it, which may come after its last response reached the client."""
    for _ in range(300):
        now = bls_stats(server)
        if now != before:
            return now
        time.sleep(0.1)
    return now


def test_completions_batch_echo_and_refusals(client, server) -> None:
    prompts = ["The capital of France is", "1, 2, 3, 4,"]
    before = bls_stats(server)
    reply = client.completions.create(
        model=CHAT_MODEL, prompt=prompts, max_tokens=6, temperature=0, echo=True
    )
    after = bls_stats_after(server, before)
    assert (after[0] - before[0], after[1] - before[1]) == (2, 1)  # the two prompts: one request of batch 2
    assert [c.index for c in reply.choices] == [0, 1]
    assert reply.choices[0].text.startswith(prompts[0]) and "Paris" in reply.choices[0].text
    assert reply.choices[1].text.startswith(prompts[1]) and " 5" in reply.choices[1].text
    assert reply.usage.prompt_tokens == tokens(prompts[0]) + tokens(prompts[1])
    assert reply.usage.completion_tokens == 12 and {c.finish_reason for c in reply.choices} == {"length"}
    # (rows of one batch: not compared with the prompts alone, which may part at a near-tie when the
    # engine's steps batch them differently, see tensorrt_llm's tests)
    alone = client.completions.create(model=CHAT_MODEL, prompt=prompts[1], max_tokens=6, temperature=0)
    streamed = client.completions.create(
        model=CHAT_MODEL, prompt=prompts[1], max_tokens=6, temperature=0, stream=True
    )
    assert "".join(c.choices[0].text for c in streamed if c.choices) == alone.choices[0].text
    with pytest.raises(openai.BadRequestError, match="suffix"):
        client.completions.create(model=CHAT_MODEL, prompt="def f(", suffix="return 1", max_tokens=4)
    with pytest.raises(openai.BadRequestError, match="token arrays"):
        client.completions.create(model=CHAT_MODEL, prompt=[1, 2, 3], max_tokens=4)


def test_n_seed_and_sampling_fields(client) -> None:
    kwargs = dict(
        model=CHAT_MODEL,
        messages=[{"role": "user", "content": "Write a sentence about the sea."}],
        max_tokens=12,
        temperature=1.0,
        top_p=0.95,
        presence_penalty=0.5,
        frequency_penalty=0.5,
        seed=7,
        n=3,
        user="tester",
    )
    # A prompt computed afresh and one read from the prefix cache round differently, which can move a sampled
    # token (tests/llm/rounding.py): the compared calls both find it cached, by the call before them.
    client.chat.completions.create(**kwargs)
    first, again = client.chat.completions.create(**kwargs), client.chat.completions.create(**kwargs)
    texts = [c.message.content for c in first.choices]
    assert [c.index for c in first.choices] == [0, 1, 2]
    assert texts == [c.message.content for c in again.choices]  # a seed reproduces each choice
    assert len(set(texts)) > 1  # ... and the choices differ (seed, seed + 1, ...)
    assert first.usage.prompt_tokens == tokens(CHAT.format(kwargs["messages"][0]["content"]))  # counted once
    lengths = [c.finish_reason == "length" for c in first.choices]
    assert first.usage.completion_tokens == 36 if all(lengths) else first.usage.completion_tokens < 36


def test_logprobs_of_the_chosen_tokens(client) -> None:
    reply = client.chat.completions.create(
        model=CHAT_MODEL, messages=COLORS, max_tokens=12, temperature=0, logprobs=True
    )
    entries = reply.choices[0].logprobs.content
    assert "".join(e.token for e in entries) == reply.choices[0].message.content
    assert len(entries) == reply.usage.completion_tokens  # one token a piece in this ASCII answer
    assert all(e.logprob <= 0 and e.top_logprobs == [] for e in entries)
    assert entries[0].bytes == list(entries[0].token.encode())
    with pytest.raises(openai.BadRequestError, match="top_logprobs"):
        client.chat.completions.create(
            model=CHAT_MODEL, messages=COLORS, max_tokens=4, logprobs=True, top_logprobs=2
        )


@pytest.mark.parametrize("stream", [False, True])
def test_structured_output_follows_the_schema(client, stream: bool) -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON, "strict": True}}
    messages = [{"role": "user", "content": "Describe a person as JSON."}]
    for seed in (1, 2):
        kwargs = dict(model=CHAT_MODEL, messages=messages, max_tokens=96, temperature=0.8, seed=seed)
        if stream:
            chunks = list(client.chat.completions.create(response_format=fmt, stream=True, **kwargs))
            text = streamed_text(chunks)
            (reason,) = {c.choices[0].finish_reason for c in chunks if c.choices} - {None}
        else:
            reply = client.chat.completions.create(response_format=fmt, **kwargs)
            text, reason = reply.choices[0].message.content, reply.choices[0].finish_reason
        assert reason == "stop", text
        jsonschema.validate(json.loads(text), PERSON)
        free = client.chat.completions.create(**kwargs).choices[0].message.content
        with pytest.raises(json.JSONDecodeError):  # without the constraint the model writes prose
            json.loads(free)
    obj = client.chat.completions.create(
        model=CHAT_MODEL,
        messages=[{"role": "user", "content": "Give the colors of the rainbow as a JSON object."}],
        max_tokens=200,
        temperature=0,
        response_format={"type": "json_object"},
    )
    if obj.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(obj.choices[0].message.content), dict)
    else:  # the budget ran out first: still the start of a JSON object
        assert obj.choices[0].message.content.startswith("{")
    with pytest.raises(openai.BadRequestError, match="not supported"):
        client.chat.completions.create(
            model=CHAT_MODEL,
            messages=messages,
            response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "foo"}}},
        )


def test_errors_are_openai_shaped(client) -> None:
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model="gpt-4o", messages=COLORS)
    assert err.value.body == {
        "message": "The model 'gpt-4o' does not exist",
        "type": "invalid_request_error",
        "param": "model",
        "code": "model_not_found",
    }
    long = [{"role": "user", "content": "word " * 3000}]
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=CHAT_MODEL, messages=long)
    assert err.value.body["code"] == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=CHAT_MODEL, messages=COLORS, max_tokens=2040)
    assert err.value.body["code"] == "context_length_exceeded"  # 35 + 2040 > 2048
    with pytest.raises(openai.BadRequestError) as err:  # fits the context, but not the engine's cap
        client.chat.completions.create(model=CHAT_MODEL, messages=COLORS, max_tokens=1500)
    assert err.value.body["param"] == "max_tokens" and "1024" in err.value.body["message"]
    with pytest.raises(openai.BadRequestError, match="tool calls"):
        client.chat.completions.create(
            model=CHAT_MODEL,
            messages=COLORS,
            tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        )
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=CHAT_MODEL, messages=COLORS, temperature=3)
    assert err.value.body["param"] == "temperature"


def test_default_budget_runs_to_the_end_of_the_answer(client) -> None:
    """No max_tokens (the openai client and LangChain send none): the server's default, up to the context."""
    reply = client.chat.completions.create(model=CHAT_MODEL, messages=COLORS, temperature=0)
    assert reply.choices[0].finish_reason == "stop" and "Red" in reply.choices[0].message.content


def _raw_post(base_url: str, path: str, body: dict) -> socket.socket:
    """A POST on a socket of our own, so that the test can drop the connection mid-answer."""
    url = urllib.parse.urlparse(base_url)
    data = json.dumps(body).encode()
    sock = socket.create_connection((url.hostname, url.port))
    head = (
        f"POST {url.path}{path} HTTP/1.1\r\nHost: {url.netloc}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    )
    sock.sendall(head.encode() + data)
    return sock


@pytest.mark.parametrize("stream", [True, False])
def test_a_client_that_disconnects_stops_the_generation(
    server, base_url: str, usage_log, stream: bool
) -> None:
    wait_idle(server)
    before = len(usage_log)
    body = {"model": CHAT_MODEL, "messages": [{"role": "user", "content": "Tell me a very long story."}]}
    body |= {"max_tokens": 1000, "temperature": 0.7, "seed": 1, "stream": stream}
    sock = _raw_post(base_url, "/chat/completions", body)
    if stream:
        received = b""
        while received.count(b"data:") < 4:  # a few tokens in
            received += sock.recv(65536)
    else:  # until it generates (1000 tokens take many seconds here)
        deadline = time.monotonic() + 60
        while metric(server, "tritonfleet_llm_active_sequences") == 0:
            assert time.monotonic() < deadline, "the request never started"
            time.sleep(0.05)
    sock.close()
    wait_idle(server)  # the slot is free again long before 1000 tokens could be generated
    deadline = time.monotonic() + 10
    while len(usage_log) == before and time.monotonic() < deadline:
        time.sleep(0.05)
    ((path, spent),) = usage_log[before:]
    assert path == "/v1/chat/completions" and 0 < spent < 1000


def test_http_errors_of_the_app_are_openai_shaped(base_url: str) -> None:
    with httpx.Client(base_url=base_url, timeout=30) as http:
        for method, path, content in (
            ("POST", "/chat/completions", b"{not json"),
            ("POST", "/chat/completions", b"[1, 2]"),
            ("POST", "/embeddings", b'{"model": 3}'),
            ("GET", "/chat/completions", None),
            ("GET", "/nowhere", None),
        ):
            r = http.request(method, path, content=content, headers={"Content-Type": "application/json"})
            assert r.status_code in (400, 404, 405), (path, r.status_code, r.text)
            error = r.json()["error"]
            assert set(error) == {"message", "type", "param", "code"} and error["message"]
