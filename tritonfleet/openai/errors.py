"""Errors in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``, with the status of the
error's kind in :mod:`tritonfleet.errors`.

A client's mistake is a 400 (an unknown model 404), a pipeline that is not loaded or not ready a 503, and only
a real fault a 500; :func:`openai_error` renders any exception so, and is the only place that does.
"""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException

from tritonfleet.errors import ClientError, Error, NotFound, Unavailable


def openai_error(exc: BaseException) -> tuple[int, dict[str, Any]]:
    """The HTTP status and OpenAI's error body for ``exc``: an error of the family, Starlette's own
    (unknown route, wrong method), or anything else (a 500 that names only the exception's type)."""
    param = code = None
    if isinstance(exc, Error):
        status, message, code = exc.status, exc.message, exc.code
        param = exc.param if isinstance(exc, ClientError) else None
    elif isinstance(exc, HTTPException):
        status, message = exc.status_code, str(exc.detail)
    else:
        status, message = 500, f"internal error: {type(exc).__name__}"
    if isinstance(exc, Unavailable):
        kind = "service_unavailable"
    elif status < 500:
        kind = "invalid_request_error"
    else:
        kind = "server_error"
    return status, {"error": {"message": message, "type": kind, "param": param, "code": code}}


class ContextExceeded(ClientError):
    """A prompt with its completion's budget over the model's context (``context_length_exceeded``)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, param="messages", code="context_length_exceeded")


class UnknownModel(NotFound):
    """No model of that id on ``/v1`` (``model_not_found``)."""

    def __init__(self, model_id: str) -> None:
        super().__init__(f"The model '{model_id}' does not exist", param="model", code="model_not_found")
