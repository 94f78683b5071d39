"""The fuzz cases as raw gRPC: :func:`grpc_request` encodes a case, :func:`send_grpc` sends it to Triton and
reads the answer; :func:`grpc_cases` streams the front door's mistakes (the config-derived kinds and those
only gRPC can make: typed contents in the wrong field, stray raw contents, 10,000 outputs, ...)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from tritonclient.grpc import service_pb2 as pb

from tritonfleet.frontdoor.validation import ModelSpec
from tritonfleet.repository import Repository
from tritonfleet.tools.fuzz import FRONT_DOOR_KINDS, INTERNAL, Case, mutations, valid_case


def grpc_request(case: Case, request_id: str = "", streaming: bool = False) -> pb.ModelInferRequest:
    """The raw gRPC ``ModelInferRequest`` of ``case`` (``streaming``: asking for the empty final response, so
    that the end of a decoupled model's answer is seen)."""
    request = pb.ModelInferRequest(model_name=case.model, id=request_id)
    for t in case.inputs:
        request.inputs.add(name=t.name, datatype=t.datatype, shape=list(t.shape))
        request.raw_input_contents.append(t.raw)
    if streaming:
        request.parameters["triton_enable_empty_final_response"].bool_param = True
    return request


def is_decoupled(repository: Repository, name: str, target: str = "cpu") -> bool:
    """Whether a model streams its responses: decoupled itself, or an ensemble with a decoupled step."""
    config = repository.config(name, target)
    steps = [s.model_name for s in config.ensemble_scheduling.step]
    return config.model_transaction_policy.decoupled or any(
        is_decoupled(repository, s, target) for s in steps
    )


@dataclass(frozen=True)
class Outcome:
    """What the server answered a case over gRPC: the status code's name ("OK", "INVALID_ARGUMENT", ...), the
    error messages (a stream's error responses carry no code), and whether the answer was complete."""

    code: str
    errors: tuple[str, ...]
    ended: bool


def send_grpc(stub: Any, case: Case, decoupled: bool, timeout: float = 60) -> Outcome:
    """Send ``case`` with a ``GRPCInferenceServiceStub``: ``ModelInfer``, or a ``ModelStreamInfer`` stream of
    that one request for a decoupled model, read until the server ends it. (Leaving the stream as soon as the
    final response came, which cancels the call, left tensorrt_llm and ensemble impossible to unload in
    Triton 24.10: stopping the server waited out its exit timeout.)"""
    import grpc

    request = grpc_request(case, streaming=decoupled)
    try:
        if not decoupled:
            stub.ModelInfer(request, timeout=timeout)
            return Outcome("OK", (), True)
        errors, ended = [], False
        for response in stub.ModelStreamInfer(iter([request]), timeout=timeout):
            if response.error_message:
                errors.append(response.error_message)
            ended = ended or bool(response.error_message)  # an error ends its request
            ended = ended or response.infer_response.parameters["triton_final_response"].bool_param
        return Outcome("OK", tuple(errors), ended)
    except grpc.RpcError as exc:
        return Outcome(exc.code().name, (exc.details() or "",), True)


@dataclass
class GrpcCase:
    family: str
    method: str  # "ModelInfer" or "ModelStreamInfer"
    body: bytes


def grpc_cases(specs: list[ModelSpec], rng: random.Random) -> Iterator[GrpcCase]:
    """An endless stream of malformed gRPC requests for the front door (unary, and single-message streams),
    every family in turn, values drawn from ``rng``."""
    while True:
        spec = rng.choice(specs)
        good = valid_case(spec)
        t = rng.randrange(len(good.inputs))
        cases = mutations(spec, good.inputs, rng, FRONT_DOOR_KINDS)
        requests = {case.kind: grpc_request(case) for case in cases}
        for family, change in _PROTO_MISTAKES.items():
            request = grpc_request(good)
            change(request, request.inputs[t], rng)
            requests[family] = request
        for family, request in requests.items():
            method = rng.choice(["ModelInfer", "ModelStreamInfer"])
            yield GrpcCase(family, method, request.SerializeToString())
        yield GrpcCase("random bytes", "ModelInfer", rng.randbytes(rng.randint(1, 200)))


def _contents(r: pb.ModelInferRequest, x: pb.ModelInferInputTensor, rng: random.Random) -> None:
    del r.raw_input_contents[:]
    x.contents.fp64_contents.extend([1.0] * rng.randint(0, 5))


def _outputs(r: pb.ModelInferRequest, x: pb.ModelInferInputTensor, rng: random.Random) -> None:
    for i in range(10_000):
        r.outputs.add(name=f"o{i}")


def _shared_memory(r: pb.ModelInferRequest, x: pb.ModelInferInputTensor, rng: random.Random) -> None:
    x.parameters["shared_memory_region"].string_param = "region"


def _extra_raw(r: pb.ModelInferRequest, x: pb.ModelInferInputTensor, rng: random.Random) -> None:
    r.raw_input_contents.append(b"\x00")


def _internal(r: pb.ModelInferRequest, x: pb.ModelInferInputTensor, rng: random.Random) -> None:
    r.model_name = rng.choice(INTERNAL)


def _version(r: pb.ModelInferRequest, x: pb.ModelInferInputTensor, rng: random.Random) -> None:
    r.model_version = "42"


_PROTO_MISTAKES = {
    "contents in wrong field": _contents,
    "10000 outputs": _outputs,
    "shared memory": _shared_memory,
    "extra raw contents": _extra_raw,
    "internal model": _internal,
    "unknown version": _version,
}
