"""Whose fault an error is: Triton's answers read once for every surface, and each surface's rendering."""

from __future__ import annotations

import pytest

from tritonfleet.errors import (
    Cancelled,
    ClientError,
    Fault,
    NotFound,
    NotLoaded,
    RateLimited,
    StubDied,
    TooLarge,
    Unavailable,
    from_triton,
)
from tritonfleet.frontdoor.http import error_answer
from tritonfleet.openai.errors import ContextExceeded, openai_error

# Triton 2.51's own words, as the front door and the /v1 app received them.
STUB = (
    "Failed to process the request(s) for model 'image_preprocess_0_0', message: "
    "Stub process 'image_preprocess_0_0' is not healthy."
)
UNLOADED = "Request for unknown model: 'tensorrt_llm_bls' has no available versions"
UNKNOWN = "Request for unknown model: 'text_embedding' is not found"


@pytest.mark.parametrize(
    ("message", "code", "kind", "text"),
    [
        (STUB, "INTERNAL", StubDied, "image_classifier is restarting; retry"),
        (STUB, "", StubDied, "image_classifier is restarting; retry"),  # a stream's error carries no code
        (UNLOADED, "UNAVAILABLE", NotLoaded, "image_classifier is loading; retry"),
        (UNKNOWN, "StatusCode.NOT_FOUND", NotLoaded, "image_classifier is loading; retry"),
        (
            "preprocessing: empty prompt: text_input has no text",
            "StatusCode.INVALID_ARGUMENT",
            ClientError,
            None,
        ),
        ("Socket closed", "UNAVAILABLE", Unavailable, "image_classifier is not ready: Socket closed"),
        ("Locally cancelled by application!", "CANCELLED", Cancelled, "the request was cancelled"),
        ("boom", "INTERNAL", Fault, "image_classifier: boom"),
    ],
)
def test_triton_answers_are_read_once(message: str, code: str, kind: type, text: str | None) -> None:
    error = from_triton(message, code, "image_classifier")
    assert type(error) is kind and error.message == (text or message)
    if isinstance(error, Unavailable):
        assert error.status == 503 and error.grpc_code == "UNAVAILABLE" and int(error.retry_after) >= 2


def test_each_surface_renders_the_family() -> None:
    status, body, headers = error_answer(RateLimited("over", 12.2, reason="rate"))
    assert (status, body, headers) == (429, b'{"error": "over"}', [(b"retry-after", b"13")])
    status, _, headers = error_answer(from_triton(STUB, "INTERNAL", "m"))
    assert status == 503 and headers == [(b"retry-after", b"5")]
    assert TooLarge("x").grpc_code == "INVALID_ARGUMENT" and NotFound("x").grpc_code == "NOT_FOUND"
    status, body = openai_error(ContextExceeded("too long"))
    assert status == 400 and body["error"] == {
        "message": "too long",
        "type": "invalid_request_error",
        "param": "messages",
        "code": "context_length_exceeded",
    }
    status, body = openai_error(from_triton(UNLOADED, "UNAVAILABLE", "tensorrt_llm_bls"))
    assert status == 503 and body["error"]["type"] == "service_unavailable"
    assert body["error"]["code"] == "model_not_ready"
    status, body = openai_error(KeyError("x"))
    assert status == 500 and body["error"]["message"] == "internal error: KeyError"
