"""Malformed requests generated from the public models' configs, for the front door's fuzz test and
``fleet stress``.

:func:`http_cases` and :func:`grpc_cases` yield ``(family, request)`` pairs, a family being one kind of
client mistake (a lying shape, a wrong element count, bad JSON, bad BYTES length prefixes, shared-memory
parameters, 10,000 outputs, an internal model, ...). Every one is a client's mistake: the front door must
answer 4xx (gRPC: a client-error code), never 5xx, and the server must live on.
"""

from __future__ import annotations

import json
import math
import random
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from tritonclient.grpc import service_pb2 as pb

from tritonfleet.frontdoor.validation import ELEMENT_SIZE, INT_RANGE, ModelSpec

HUGE_DIMS = (100_000_000, 2**31, 2**32 + 1, 2**62, 2**63 - 1)
INTERNAL = ("image_preprocess", "efficientnet_lite0", "preprocessing", "postprocessing", "no_such_model")


@dataclass
class HttpCase:
    family: str
    method: str
    path: str
    body: bytes
    headers: dict[str, str]


@dataclass
class GrpcCase:
    family: str
    method: str  # "ModelInfer" or "ModelStreamInfer"
    body: bytes


def _shape(spec: ModelSpec, dims: tuple[int, ...]) -> list[int]:
    fixed = [d if d > 0 else 1 for d in dims]
    return [1, *fixed] if spec.max_batch_size > 0 else fixed


def _value(datatype: str) -> object:
    if datatype == "BOOL":
        return True
    if datatype == "BYTES":
        return "x"
    if datatype in INT_RANGE:
        return 1
    return 0.5


def valid_json(spec: ModelSpec) -> dict:
    """A structurally valid request: every input with batch 1 and -1 dims as 1."""
    inputs = []
    for t in spec.inputs.values():
        shape = _shape(spec, t.dims)
        inputs.append(
            {
                "name": t.name,
                "shape": shape,
                "datatype": t.datatype,
                "data": [_value(t.datatype)] * math.prod(shape),
            }
        )
    return {"inputs": inputs}


def _post(path: str, body: object, **headers: str) -> tuple[str, bytes, dict[str, str]]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return path, data, {"Content-Type": "application/json", **headers}


def http_cases(specs: list[ModelSpec], rng: random.Random) -> Iterator[HttpCase]:
    """An endless stream of malformed HTTP requests, every family in turn, values drawn from ``rng``."""
    while True:
        spec = rng.choice(specs)
        path = f"/v2/models/{spec.name}/infer"
        good = valid_json(spec)
        t = rng.randrange(len(good["inputs"]))
        name = good["inputs"][t]["name"]

        def mutate(fn: object, good: dict = good, t: int = t) -> dict:
            request = json.loads(json.dumps(good))
            fn(request["inputs"][t])  # type: ignore[operator]
            return request

        other = rng.choice([d for d in ELEMENT_SIZE if d != good["inputs"][t]["datatype"]])
        families = {
            "huge shape": mutate(
                lambda x: x.update(shape=[rng.choice(HUGE_DIMS), *x["shape"][1:]], data=[1])
            ),
            "huge inner dim": mutate(lambda x: x.update(shape=[*x["shape"][:-1], rng.choice(HUGE_DIMS)])),
            "negative dim": mutate(lambda x: x.update(shape=[-rng.randint(1, 9), *x["shape"][1:]])),
            "wrong rank": mutate(lambda x: x.update(shape=[*x["shape"], 1])),
            "zero batch": mutate(lambda x: x.update(shape=[0, *x["shape"][1:]], data=[])),
            "wrong datatype": mutate(lambda x: x.update(datatype=other)),  # noqa: B023 (called at once)
            "unknown datatype": mutate(lambda x: x.update(datatype="FP128")),
            "count mismatch": mutate(lambda x: x.update(data=x["data"] * rng.randint(2, 5))),
            "no data": mutate(lambda x: x.pop("data")),
            "wrong value type": mutate(
                lambda x: x.update(data=[rng.choice([None, {}, [{}]])] * len(x["data"]))
            ),
            "shape not ints": mutate(lambda x: x.update(shape=[1.5, "2"])),
            "unknown input": mutate(lambda x: x.update(name=x["name"] + "_nope")),
            "shared memory": mutate(
                lambda x: x.update(parameters={"shared_memory_region": "r", "shared_memory_byte_size": 4})
            ),
            "duplicate input": {"inputs": good["inputs"] + [good["inputs"][t]]},
            "missing inputs": {"inputs": []},
            "unknown output": {**good, "outputs": [{"name": "nope"}]},
            "10000 outputs": {**good, "outputs": [{"name": f"o{i}"} for i in range(10_000)]},
            "huge classification": {
                **good,
                "outputs": [{"name": next(iter(spec.outputs)), "parameters": {"classification": 2**40}}],
            },
            "unknown field": {**good, "extra": 1},
            "not an object": rng.choice([[], "x", 1, None]),
        }
        for family, body in families.items():
            yield HttpCase(family, "POST", *_post(path, body))
        yield HttpCase(
            "malformed json", "POST", *_post(path, json.dumps(good).encode()[: rng.randint(1, 40)])
        )
        yield HttpCase("random bytes", "POST", *_post(path, rng.randbytes(rng.randint(1, 300))))
        yield HttpCase("deep nesting", "POST", *_post(path, b"[" * 100_000 + b"]" * 100_000))
        nan = json.dumps(good).replace('"shape": [', '"shape": [NaN, ', 1).encode()
        yield HttpCase("nan", "POST", *_post(path, nan))
        yield HttpCase(
            "form-urlencoded, bad json",
            "POST",
            path,
            b"a=1&b=2",
            {"Content-Type": "application/x-www-form-urlencoded"},
        )
        header = json.dumps(good).encode()
        yield HttpCase(
            "binary header length",
            "POST",
            path,
            header,
            {
                "Inference-Header-Content-Length": rng.choice(
                    ["-1", "x", str(len(header) + 10), "99999999999"]
                )
            },
        )
        binary = {"inputs": [dict(x, parameters={"binary_data_size": 3}) for x in good["inputs"]]}
        for x in binary["inputs"]:
            x.pop("data")
        head = json.dumps(binary).encode()
        yield HttpCase(
            "binary size mismatch",
            "POST",
            path,
            head + rng.randbytes(3 * len(binary["inputs"]) + rng.choice([-1, 1, 7])),
            {"Inference-Header-Content-Length": str(len(head))},
        )
        bytes_inputs = [x for x in good["inputs"] if x["datatype"] == "BYTES"]
        if bytes_inputs:
            x = dict(bytes_inputs[0])
            x.pop("data")
            prefix = struct.pack("<I", rng.choice([2**31, 100, 2**32 - 1])) + b"abc"
            x["parameters"] = {"binary_data_size": len(prefix)}
            head = json.dumps({"inputs": [x]}).encode()
            yield HttpCase(
                "bad BYTES prefix",
                "POST",
                path,
                head + prefix,
                {"Inference-Header-Content-Length": str(len(head))},
            )
        yield HttpCase("internal model", "POST", *_post(f"/v2/models/{rng.choice(INTERNAL)}/infer", good))
        yield HttpCase("unknown version", "POST", *_post(f"/v2/models/{spec.name}/versions/99/infer", good))
        yield HttpCase("bad path", "GET", f"/v2/models/{spec.name}/%2e%2e/config", b"", {})
        yield HttpCase("shared memory api", "POST", "/v2/systemsharedmemory/region/x/register", b"{}", {})
        yield HttpCase("admin api", "POST", f"/v2/repository/models/{spec.name}/unload", b"{}", {})
        yield HttpCase("wrong method", "GET", path, b"", {})
        yield HttpCase(
            "generate bad types", "POST", *_post(f"/v2/models/{spec.name}/generate", {name: {"a": 1}})
        )
        yield HttpCase("compressed body", "POST", path, b"\x1f\x8b", {"Content-Encoding": "gzip"})


def valid_grpc(spec: ModelSpec) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=spec.name)
    for t in spec.inputs.values():
        tensor = request.inputs.add(name=t.name, datatype=t.datatype, shape=_shape(spec, t.dims))
        count = math.prod(tensor.shape)
        if t.datatype == "BYTES":
            request.raw_input_contents.append(b"".join(struct.pack("<I", 1) + b"x" for _ in range(count)))
        else:
            request.raw_input_contents.append(b"\x01" * (count * ELEMENT_SIZE[t.datatype]))
    return request


def grpc_cases(specs: list[ModelSpec], rng: random.Random) -> Iterator[GrpcCase]:
    """An endless stream of malformed gRPC requests (unary, and single-message streams)."""
    while True:
        spec = rng.choice(specs)
        good = valid_grpc(spec)
        t = rng.randrange(len(good.inputs))

        def mutate(fn: object, good: pb.ModelInferRequest = good, t: int = t) -> pb.ModelInferRequest:
            request = pb.ModelInferRequest()
            request.CopyFrom(good)
            fn(request, request.inputs[t])  # type: ignore[operator]
            return request

        def shape(r: pb.ModelInferRequest, x: pb.ModelInferInputTensor) -> None:
            x.shape[0] = rng.choice(HUGE_DIMS)

        def negative(r: pb.ModelInferRequest, x: pb.ModelInferInputTensor) -> None:
            x.shape[-1] = -rng.randint(1, 9)

        def raw_size(r: pb.ModelInferRequest, x: pb.ModelInferInputTensor) -> None:
            r.raw_input_contents[t] += b"\x00" * rng.randint(1, 9)  # noqa: B023

        def bytes_prefix(r: pb.ModelInferRequest, x: pb.ModelInferInputTensor) -> None:
            r.raw_input_contents[t] = struct.pack("<I", rng.choice([2**31, 2**32 - 1, 5])) + b"ab"  # noqa: B023

        def datatype(r: pb.ModelInferRequest, x: pb.ModelInferInputTensor) -> None:
            x.datatype = rng.choice([d for d in ELEMENT_SIZE if d != x.datatype] + ["FP128"])

        def contents(r: pb.ModelInferRequest, x: pb.ModelInferInputTensor) -> None:
            del r.raw_input_contents[:]
            x.contents.fp64_contents.extend([1.0] * rng.randint(0, 5))

        def outputs(r: pb.ModelInferRequest, x: pb.ModelInferInputTensor) -> None:
            for i in range(10_000):
                r.outputs.add(name=f"o{i}")

        def shm(r: pb.ModelInferRequest, x: pb.ModelInferInputTensor) -> None:
            x.parameters["shared_memory_region"].string_param = "region"

        def missing_raw(r: pb.ModelInferRequest, x: pb.ModelInferInputTensor) -> None:
            r.raw_input_contents.append(b"\x00")

        def internal(r: pb.ModelInferRequest, x: pb.ModelInferInputTensor) -> None:
            r.model_name = rng.choice(INTERNAL)

        def version(r: pb.ModelInferRequest, x: pb.ModelInferInputTensor) -> None:
            r.model_version = "42"

        def unknown_input(r: pb.ModelInferRequest, x: pb.ModelInferInputTensor) -> None:
            x.name += "_nope"

        mutations = {
            "huge shape": shape, "negative dim": negative, "raw size": raw_size, "wrong datatype": datatype,
            "contents in wrong field": contents, "10000 outputs": outputs, "shared memory": shm,
            "extra raw contents": missing_raw, "internal model": internal, "unknown version": version,
            "unknown input": unknown_input,
        }  # fmt: skip
        if good.inputs[t].datatype == "BYTES":
            mutations["bad BYTES prefix"] = bytes_prefix
        for family, fn in mutations.items():
            body = mutate(fn).SerializeToString()
            yield GrpcCase(family, rng.choice(["ModelInfer", "ModelStreamInfer"]), body)
        yield GrpcCase("random bytes", "ModelInfer", rng.randbytes(rng.randint(1, 200)))


@dataclass
class StormResult:
    """What a storm of malformed requests got back."""

    answers: dict[tuple[str, str], int]  # (family, status) -> count
    failures: list[str]  # a 5xx, a hang, a server-error code, a correct request answered differently

    @property
    def sent(self) -> int:
        return sum(self.answers.values())


CLIENT_CODES = {"INVALID_ARGUMENT", "NOT_FOUND", "UNIMPLEMENTED", "PERMISSION_DENIED", "UNAUTHENTICATED"}


def storm(
    http_url: str,
    grpc_url: str,
    specs: list[ModelSpec],
    *,
    http_count: int,
    grpc_count: int,
    seed: int = 1,
    correct: object = None,
    every: int = 500,
    timeout: float = 60.0,
    headers: dict[str, str] | None = None,
) -> StormResult:
    """Send ``http_count`` + ``grpc_count`` malformed requests (every family in turn); every ``every``
    requests call ``correct()`` (a correct request that raises AssertionError on a different answer)."""
    import grpc
    import requests

    rng = random.Random(seed)
    answers: dict[tuple[str, str], int] = {}
    failures: list[str] = []

    def note(family: str, status: str, ok: bool, detail: str = "") -> None:
        answers[(family, status)] = answers.get((family, status), 0) + 1
        if not ok and len(failures) < 50:
            failures.append(f"{family}: {status} {detail[:200]}")

    def check_correct(i: int) -> None:
        if correct is not None and i % every == 0:
            try:
                correct()  # type: ignore[operator]
            except Exception as exc:
                failures.append(f"correct request #{i}: {str(exc)[:200]}")

    auth = headers or {}
    session = requests.Session()
    cases = http_cases(specs, rng)
    for i in range(http_count):
        case = next(cases)
        try:
            r = session.request(
                case.method,
                f"http://{http_url}{case.path}",
                data=case.body,
                headers={**case.headers, **auth},
                timeout=timeout,
            )
            note(case.family, str(r.status_code), 400 <= r.status_code < 500, r.text)
        except requests.RequestException as exc:
            note(case.family, "no answer", False, str(exc))
        check_correct(i)
    metadata = tuple((k.lower(), v) for k, v in auth.items()) or None
    with grpc.insecure_channel(grpc_url, options=[("grpc.max_receive_message_length", -1)]) as channel:
        unary = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
        stream = channel.stream_stream("/inference.GRPCInferenceService/ModelStreamInfer")
        gcases = grpc_cases(specs, rng)
        for i in range(grpc_count):
            case = next(gcases)
            try:
                if case.method == "ModelInfer":
                    unary(case.body, timeout=timeout, metadata=metadata)
                    note(case.family, "OK", False, "a malformed request was answered")
                else:
                    got = [
                        pb.ModelStreamInferResponse.FromString(a)
                        for a in stream(iter([case.body]), timeout=timeout, metadata=metadata)
                    ]
                    refused = len(got) == 1 and bool(got[0].error_message)
                    note(case.family, "stream error" if refused else "stream answer", refused, str(got)[:200])
            except grpc.RpcError as exc:
                code = exc.code().name  # type: ignore[attr-defined]
                note(case.family, code, code in CLIENT_CODES, exc.details() or "")  # type: ignore[attr-defined]
            check_correct(http_count + i)
    return StormResult(answers, failures)
