"""Whose fault an error is, written once: the client's mistake (:class:`ClientError` and its kinds) or the
server being unable to answer right now (:class:`Unavailable`). Every other exception is a real fault.

Each kind carries what every surface answers with: the HTTP status, the gRPC status code, Triton's
``TritonError`` code for the Python backend (``INVALID_ARG`` is a 400 / INVALID_ARGUMENT to the client,
anything else a 500), and ``reason`` for the rejection metrics. The front door, the ``/v1`` app, the model
code and the tools raise and catch these types; none of them tells a mistake from a fault by the words of
its own messages.
"""

from __future__ import annotations

import math


class ClientError(Exception):
    """The request is wrong: the client must change it (HTTP 400, gRPC INVALID_ARGUMENT)."""

    status = 400
    grpc_code = "INVALID_ARGUMENT"
    triton_code = "INVALID_ARG"
    default_reason = "invalid"

    def __init__(self, message: str, *, reason: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason
        self.param = param  # the request field at fault, where one is (OpenAI's ``param``)


class NotFound(ClientError):
    """No such model, version, route or object for this caller (HTTP 404)."""

    status = 404
    grpc_code = "NOT_FOUND"
    triton_code = "NOT_FOUND"
    default_reason = "not_found"


class TooLarge(ClientError):
    """The request is over a size limit (HTTP 413)."""

    status = 413
    grpc_code = "RESOURCE_EXHAUSTED"
    default_reason = "too_large"


class Unauthenticated(ClientError):
    """No key, or one that is not known (HTTP 401)."""

    status = 401
    grpc_code = "UNAUTHENTICATED"
    default_reason = "unauthenticated"


class Forbidden(ClientError):
    """A known key that may not do this (HTTP 403)."""

    status = 403
    grpc_code = "PERMISSION_DENIED"
    default_reason = "forbidden"


class RateLimited(ClientError):
    """Over the caller's budget: try again after ``retry_s`` seconds (HTTP 429 + Retry-After)."""

    status = 429
    grpc_code = "RESOURCE_EXHAUSTED"
    default_reason = "rate_limited"

    def __init__(self, message: str, retry_s: float, *, reason: str | None = None) -> None:
        super().__init__(message, reason=reason)
        self.retry_s = retry_s

    @property
    def retry_after(self) -> str:
        return retry_after(self.retry_s)


class Unavailable(Exception):
    """The server cannot answer now (starting, restarting, a model reloading): not the client's fault, worth
    retrying after ``retry_s`` seconds (HTTP 503 + Retry-After, gRPC UNAVAILABLE)."""

    status = 503
    grpc_code = "UNAVAILABLE"
    triton_code = "UNAVAILABLE"
    reason = "unavailable"

    def __init__(self, message: str, retry_s: float = 1.0) -> None:
        super().__init__(message)
        self.message = message
        self.retry_s = retry_s

    @property
    def retry_after(self) -> str:
        return retry_after(self.retry_s)


INTERNAL_ERROR = ": internal error: "  # how a fault's message names itself (fault())


def fault(model: str, exc: BaseException) -> str:
    """The message of an unexpected exception that a model answers one request with (not the whole batch):
    ``<model>: internal error: <type>: <message>``."""
    return f"{model}{INTERNAL_ERROR}{type(exc).__name__}: {exc}"


def retry_after(seconds: float) -> str:
    """The ``Retry-After`` header's value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))
