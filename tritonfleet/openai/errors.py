"""Errors in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}`` with the right status.

A client's mistake is a 400 (an unknown model 404), a pipeline that is not loaded or not ready a 503, and only
a real fault a 500. Triton's gRPC status codes map onto these (:func:`from_triton`).
"""

from __future__ import annotations

from typing import Any

import grpc

TYPES = {
    400: "invalid_request_error",
    404: "invalid_request_error",
    503: "service_unavailable",
    500: "server_error",
}
CONTEXT_MESSAGE = "exceeds the context"  # how the pipeline words a prompt too long for the engine


class APIError(Exception):
    """An error answered to the client in OpenAI's shape."""

    def __init__(
        self, status: int, message: str, *, param: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code

    def body(self) -> dict[str, Any]:
        kind = TYPES.get(self.status, "invalid_request_error" if self.status < 500 else "server_error")
        return {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}}


def bad_request(message: str, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, param=param, code=code)


def unknown_model(model: str) -> APIError:
    return APIError(404, f"The model '{model}' does not exist", param="model", code="model_not_found")


def context_exceeded(message: str) -> APIError:
    return APIError(400, message, param="messages", code="context_length_exceeded")


def from_triton(exc: Exception, model: str) -> APIError:
    """A Triton error (tritonclient's ``InferenceServerException`` or a gRPC error) as an API error."""
    status = getattr(exc, "status", None)
    status = status() if callable(status) else status
    message = getattr(exc, "message", None)
    message = message() if callable(message) else (message or str(exc))
    code = str(status or "")
    if isinstance(exc, grpc.aio.AioRpcError):
        code, message = exc.code().name, exc.details() or str(exc)
    if "INVALID_ARG" in code:
        if CONTEXT_MESSAGE in message:
            return context_exceeded(message)
        return bad_request(message)
    if (
        "UNAVAILABLE" in code
        or "not found" in message
        or "not ready" in message
        or "unknown model" in message
    ):
        return APIError(503, f"{model} is not ready: {message}", code="model_not_ready")
    if "CANCELLED" in code:
        return APIError(499, "the request was cancelled")
    return APIError(500, f"{model}: {message}")
