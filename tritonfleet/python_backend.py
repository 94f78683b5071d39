"""The fleet's Python models answer every request of an execution on its own, written once here.

Imported only by model code (``model_repository/*/1/model.py``): it needs the stub's
``triton_python_backend_utils`` (in tests, ``tests/fake_pb_utils.py``). A request's exception is that
request's error, never the batch's: the client's mistake (:class:`tritonfleet.errors.ClientError`) with its
kind's code (``INVALID_ARG``: a 400) and its message, a model that cannot take it now
(:class:`tritonfleet.errors.Unavailable`: ``UNAVAILABLE``, a 503), a :class:`Passed` error (another model's,
reached over BLS) as it is, and any other exception as a fault of this model (INTERNAL,
:func:`tritonfleet.errors.fault`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import triton_python_backend_utils as pb_utils

from tritonfleet.errors import ClientError, Unavailable, fault

FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL


class Passed(Exception):
    """A fault another model answered with (a BLS step's), its message already naming it: passed on as
    INTERNAL with that message."""


def error(model: str, exc: BaseException, prefix: str = "") -> Any:
    """The ``TritonError`` that answers a request whose handling raised ``exc``. ``prefix`` starts a client
    mistake's message (what it is about: the model, an input)."""
    if isinstance(exc, ClientError | Unavailable):
        return pb_utils.TritonError(f"{prefix}{exc.message}", getattr(pb_utils.TritonError, exc.triton_code))
    if isinstance(exc, Passed):
        return pb_utils.TritonError(str(exc), pb_utils.TritonError.INTERNAL)
    return pb_utils.TritonError(fault(model, exc))


def answer_each(model: str, requests: Iterable[Any], answer: Callable[[Any], Any], prefix: str = "") -> list:
    """The responses of a non-decoupled model's ``execute``: ``answer(request)``'s for each request (any item
    of ``requests``, such as a request and what was prepared for it), or its error (:func:`error`)."""
    responses = []
    for request in requests:
        try:
            responses.append(answer(request))
        except Exception as exc:  # this request's error; the others are answered
            responses.append(pb_utils.InferenceResponse(error=error(model, exc, prefix)))
    return responses


def send_each(
    model: str, requests: Iterable[Any], answer: Callable[[Any, Any], None], prefix: str = ""
) -> None:
    """A decoupled model's ``execute``: ``answer(request, sender)`` sends each request's responses (or starts
    what will); what it raises, before it sent anything, is sent as the request's error with the final
    flag."""
    for request in requests:
        sender = request.get_response_sender()
        try:
            answer(request, sender)
        except Exception as exc:
            sender.send(pb_utils.InferenceResponse(error=error(model, exc, prefix)), flags=FINAL)


def required_inputs(config: dict[str, Any]) -> list[str]:
    """The inputs a model's config (as JSON) does not mark optional."""
    return [t["name"] for t in config["input"] if not t.get("optional")]


def check_required(request: Any, required: Iterable[str]) -> None:
    """Triton 24.10 checks how many inputs a request has, not which: a required one may be missing."""
    missing = [n for n in required if pb_utils.get_input_tensor_by_name(request, n) is None]
    if missing:
        raise ClientError(f"missing required input(s) {missing}")


def numpy_type(tensor: Any) -> Any:
    """The numpy type of a declared :class:`tritonfleet.spec.Tensor`."""
    return pb_utils.triton_string_to_numpy(f"TYPE_{tensor.dtype}")
