"""The API's logic without a server: request validation, budgets, stop strings, finish reasons."""

from __future__ import annotations

import pytest

from tritonfleet import pipelines
from tritonfleet.errors import ClientError
from tritonfleet.openai import generation as gen
from tritonfleet.openai.catalog import Served
from tritonfleet.openai.schemas import ChatRequest, CompletionRequest, EmbeddingRequest, parse

SERVED = Served(frozenset({"guided_decoding_guide_type", "guided_decoding_guide"}), 2048, 1024)


def test_stop_scanner_holds_back_what_may_start_a_stop_string() -> None:
    scanner = gen.StopScanner(["\n\nUser:", "END"])
    out = [scanner.feed(p) for p in ["Hello", " wor", "ld\n", "\nUs", "er: more", " text"]]
    assert out == ["Hello", " wor", "ld", "", "", ""] and scanner.stopped
    scanner = gen.StopScanner(["END"])
    assert [scanner.feed(p) for p in ["a E", "N", "x"]] + [scanner.flush()] == ["a ", "", "ENx", ""]
    assert not scanner.stopped


def test_budget_defaults_to_the_context_left_and_refuses_what_does_not_fit() -> None:
    assert gen.budget(100, None, SERVED, None, "max_tokens") == 1024  # the engine's cap
    assert gen.budget(1500, None, SERVED, None, "max_tokens") == 548  # the context left
    assert gen.budget(100, None, SERVED, 64, "max_tokens") == 64  # the server's default
    assert gen.budget(100, 10, SERVED, 64, "max_tokens") == 10
    for prompt, asked in ((2048, None), (2000, 100)):
        with pytest.raises(ClientError) as err:
            gen.budget(prompt, asked, SERVED, None, "max_tokens")
        assert err.value.status == 400 and err.value.code == "context_length_exceeded"
    with pytest.raises(ClientError, match="at most 1024"):
        gen.budget(10, 1025, SERVED, None, "max_tokens")


def test_finish_reason_from_the_counts() -> None:
    class Result:
        def __init__(self, text: str, count: int) -> None:
            import numpy as np

            self.values = {"text_output": np.array([text.encode()], dtype=object),
                           "num_output_tokens": np.array([[count]])}  # fmt: skip

        def as_numpy(self, name: str):
            return self.values.get(name)

    full = gen.Choice(0, 4, gen.StopScanner([]))
    full.add(Result("a b c d", 4), False)
    full.finish()
    assert full.finish_reason == "length"
    short = gen.Choice(0, 4, gen.StopScanner([]))
    short.add(Result("a b", 2), False)  # the end id came before the limit
    short.finish()
    assert short.finish_reason == "stop"
    stopped = gen.Choice(0, 4, gen.StopScanner([" c"]))
    stopped.add(Result("a b c d", 4), False)  # the limit too, but a stop string ended it
    assert stopped.text == "a b" and stopped.finish_reason == "stop"


def test_guide_needs_a_backend_with_guided_decoding() -> None:
    fmt = parse(ChatRequest, {"model": "m", "messages": [{"role": "user", "content": "x"}],
                              "response_format": {"type": "json_object"}}).response_format  # fmt: skip
    assert gen.guide(fmt, SERVED) == ("json_schema", '{"type": "object"}')
    with pytest.raises(ClientError, match="no guided decoding"):
        gen.guide(fmt, Served(frozenset(), 2048, 1024))


@pytest.mark.parametrize(
    ("cls", "body", "message"),
    [
        (ChatRequest, {"model": "m", "messages": []}, "messages"),
        (ChatRequest, {"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 9}, "n"),
        (
            ChatRequest,
            {"model": "m", "messages": [{"role": "user", "content": "x"}], "stop": ["a"] * 9},
            "stop",
        ),
        (ChatRequest, {"model": "m", "messages": [{"role": "user", "content": "x"}], "seed": -1}, "seed"),
        (
            ChatRequest,
            {"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": "5"},
            "max_tokens",
        ),
        (CompletionRequest, {"model": "m", "prompt": "x", "best_of": 3}, "best_of"),
        (CompletionRequest, {"model": "m", "prompt": []}, "prompt"),
        (EmbeddingRequest, {"model": "m", "input": ""}, "empty"),
        (EmbeddingRequest, {"model": "m", "input": "x", "encoding_format": "int8"}, "encoding_format"),
    ],
)
def test_requests_refused_with_the_field_named(cls, body, message) -> None:
    with pytest.raises(ClientError) as err:
        parse(cls, body)
    assert err.value.status == 400 and message in err.value.message


def test_declared_models() -> None:
    chat = pipelines.openai_models()["smollm2-135m-instruct"]
    assert (chat.kind, chat.unary_model, chat.stream_model) == ("chat", "tensorrt_llm_bls", "ensemble")
