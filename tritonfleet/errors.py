"""Whose fault an error is, written once: the client's mistake (:class:`ClientError` and its kinds), the
server being unable to answer right now (:class:`Unavailable`), or a real fault with a message worth
showing (:class:`Fault`). Any other exception is an unexpected fault.

Each kind carries what every surface answers with: the HTTP status, the gRPC status code, Triton's
``TritonError`` code for the Python backend (``INVALID_ARG`` is a 400 / INVALID_ARGUMENT to the client,
anything else a 500), and ``reason`` for the rejection metrics. The front door, the ``/v1`` app, the model
code and the tools raise and catch these types; none of them tells a mistake from a fault by the words of
its own messages. Triton's answers are the exception: they cross a process boundary as a code and a
message, and :func:`from_triton` reads them, once for every surface.
"""

from __future__ import annotations

import math


class Error(Exception):
    """An error whose answer is known: ``status`` (HTTP), ``grpc_code``, ``triton_code``, the ``message``
    shown to the client, ``reason`` (rejection metrics) and ``code`` (a machine-readable name where the API
    defines one, OpenAI's ``code``)."""

    status = 500
    grpc_code = "INTERNAL"
    triton_code = "INTERNAL"
    default_reason = "fault"

    def __init__(self, message: str, *, reason: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason
        self.code = code


class ClientError(Error):
    """The request is wrong: the client must change it (HTTP 400, gRPC INVALID_ARGUMENT)."""

    status = 400
    grpc_code = "INVALID_ARGUMENT"
    triton_code = "INVALID_ARG"
    default_reason = "invalid"

    def __init__(
        self, message: str, *, reason: str | None = None, param: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message, reason=reason, code=code)
        self.param = param  # the request field at fault, where one is (OpenAI's ``param``)


class NotFound(ClientError):
    """No such model, version, route or object for this caller (HTTP 404)."""

    status = 404
    grpc_code = "NOT_FOUND"
    triton_code = "NOT_FOUND"
    default_reason = "not_found"


class NotAllowed(ClientError):
    """A route asked with a method it does not take, or a gRPC method not served (HTTP 405)."""

    status = 405
    grpc_code = "UNIMPLEMENTED"
    triton_code = "UNSUPPORTED"
    default_reason = "bad_method"


class Conflict(ClientError):
    """The request does not fit the state of what it names, such as cancelling a batch that has ended (HTTP
    409, gRPC FAILED_PRECONDITION)."""

    status = 409
    grpc_code = "FAILED_PRECONDITION"
    default_reason = "conflict"


class TooLarge(ClientError):
    """The request is over a size limit (HTTP 413; over gRPC a plain INVALID_ARGUMENT, since gRPC keeps
    RESOURCE_EXHAUSTED for a caller's rate)."""

    status = 413
    default_reason = "too_large"


class UnsupportedMediaType(ClientError):
    """A body in an encoding the server does not read, such as a compressed one (HTTP 415)."""

    status = 415
    default_reason = "bad_http"


class Unauthenticated(ClientError):
    """No key, or one that is not known (HTTP 401)."""

    status = 401
    grpc_code = "UNAUTHENTICATED"
    default_reason = "unauthenticated"


class Forbidden(ClientError):
    """A known key that may not do this, or something nobody may do from outside (HTTP 403)."""

    status = 403
    grpc_code = "PERMISSION_DENIED"
    default_reason = "forbidden"


class RateLimited(ClientError):
    """Over the caller's budget: try again after ``retry_s`` seconds (HTTP 429 + Retry-After)."""

    status = 429
    grpc_code = "RESOURCE_EXHAUSTED"
    default_reason = "rate_limited"

    def __init__(
        self, message: str, retry_s: float, *, reason: str | None = None, key: str | None = None
    ) -> None:
        super().__init__(message, reason=reason)
        self.retry_s = retry_s
        self.key = key  # the caller's key name, for the metrics

    @property
    def retry_after(self) -> str:
        return retry_after(self.retry_s)


class Cancelled(ClientError):
    """The client cancelled the request or went away before its answer (HTTP 499, nginx's code)."""

    status = 499
    grpc_code = "CANCELLED"
    triton_code = "CANCELLED"
    default_reason = "cancelled"


class Unavailable(Error):
    """The server cannot answer now (starting, restarting, a model reloading): not the client's fault, worth
    retrying after ``retry_s`` seconds (HTTP 503 + Retry-After, gRPC UNAVAILABLE)."""

    status = 503
    grpc_code = "UNAVAILABLE"
    triton_code = "UNAVAILABLE"
    default_reason = "unavailable"

    def __init__(self, message: str, retry_s: float = 1.0, *, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_s = retry_s

    @property
    def retry_after(self) -> str:
        return retry_after(self.retry_s)


class NotLoaded(Unavailable):
    """A model the server serves is not loaded at the moment (a reload is under way)."""


class StubDied(NotLoaded):
    """A model's Python stub process died; the supervisor reloads the model."""


class Fault(Error):
    """A real fault of the server whose message is worth showing (an upstream's error, an answer that breaks
    its interface): HTTP 500, gRPC INTERNAL."""


INTERNAL_ERROR = ": internal error: "  # how a fault's message names itself (fault())


def fault(model: str, exc: BaseException) -> str:
    """The message of an unexpected exception that a model answers one request with (not the whole batch):
    ``<model>: internal error: <type>: <message>``."""
    return f"{model}{INTERNAL_ERROR}{type(exc).__name__}: {exc}"


def retry_after(seconds: float) -> str:
    """The ``Retry-After`` header's value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))


# --- Triton's answers ---

# What Triton says of a model whose Python stub died while Triton still calls it READY (24.10 does not
# restart stubs), and of a served model that has no version loaded right now (its ensemble lost a step,
# or it is being reloaded). Only models the server serves are called, so these mean "retry".
STUB_DIED = ("is not healthy", "Stub process")
NOT_LOADED = ("has no available versions", "not ready", "unknown model", "is not found")
RESTART_S, RELOAD_S = 5, 2  # how long a client waits before it retries each


def from_triton(message: str, code: str = "", model: str = "") -> Error:
    """Triton's error answer (its message, and its gRPC status code's name where one came) as this family:
    :class:`StubDied` or :class:`NotLoaded` (whatever the code), :class:`ClientError` for INVALID_ARGUMENT,
    :class:`Unavailable`, :class:`Cancelled`, and :class:`Fault` for everything else. ``model``: the model
    called, for the messages."""
    name = model or "the model"
    if any(text in message for text in STUB_DIED):
        return StubDied(f"{name} is restarting; retry", RESTART_S, code="model_not_ready")
    if any(text in message for text in NOT_LOADED):
        return NotLoaded(f"{name} is loading; retry", RELOAD_S, code="model_not_ready")
    if "INVALID_ARG" in code:
        return ClientError(message)
    if "UNAVAILABLE" in code:
        return Unavailable(f"{model} is not ready: {message}", RELOAD_S, code="model_not_ready")
    if "CANCELLED" in code:
        return Cancelled("the request was cancelled")
    return Fault(f"{model}: {message}")
