"""The per-request error loop of the fleet's Python models (tritonfleet/python_backend.py), on the fake
triton_python_backend_utils: each request answered on its own, whose fault an error is told by its type."""

from __future__ import annotations

import importlib
import sys

import pytest

from tests import fake_pb_utils as pb_utils
from tests.python_models import fake_installed
from tritonfleet.errors import ClientError, NotFound


@pytest.fixture(scope="module")
def backend():
    sys.modules.pop("tritonfleet.python_backend", None)
    with fake_installed():
        module = importlib.import_module("tritonfleet.python_backend")
    yield module
    sys.modules.pop("tritonfleet.python_backend", None)


def _request(name: str) -> pb_utils.InferenceRequest:
    return pb_utils.InferenceRequest.incoming("m", [pb_utils.Tensor(name, [[1]])], {"OUT"}, False, "")


def test_each_request_is_answered_on_its_own(backend) -> None:
    def answer(kind: str):
        if kind == "mistake":
            raise ClientError("x must be positive")
        if kind == "unknown":
            raise NotFound("no such thing")
        if kind == "passed":
            raise backend.Passed("tensorrt_llm: engine failure: out of memory")
        if kind == "fault":
            raise KeyError("x")
        return pb_utils.InferenceResponse([pb_utils.Tensor("OUT", [[1]])])

    kinds = ["ok", "mistake", "unknown", "passed", "fault", "ok"]
    responses = backend.answer_each("m", kinds, answer, prefix="m: ")
    errors = [(r.error().message(), r.error().code()) if r.has_error() else None for r in responses]
    assert errors == [
        None,
        ("m: x must be positive", pb_utils.TritonError.INVALID_ARG),
        ("m: no such thing", pb_utils.TritonError.NOT_FOUND),
        ("tensorrt_llm: engine failure: out of memory", pb_utils.TritonError.INTERNAL),
        ("m: internal error: KeyError: 'x'", pb_utils.TritonError.INTERNAL),
        None,
    ]


def test_a_decoupled_request_gets_its_error_as_its_final_response(backend) -> None:
    requests = [_request("A"), _request("B")]

    def answer(request, sender) -> None:
        backend.check_required(request, ["A"])
        sender.send(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", [[1]])]), flags=backend.FINAL)

    backend.send_each("m", requests, answer)
    [(ok, ok_flags)], [(refused, flags)] = (r.get_response_sender().sent for r in requests)
    assert not ok.has_error() and ok_flags == flags == backend.FINAL
    assert refused.error().message() == "missing required input(s) ['A']"
    assert refused.error().code() == pb_utils.TritonError.INVALID_ARG
