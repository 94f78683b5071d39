"""Malformed inference requests derived from a model's config: a fuzzer's generator, whatever the protocol.

:func:`cases` turns a model's config (Triton's ``ModelConfig``) and one correct request for it into requests
a client might get wrong, each a :class:`Case`: its inputs as KServe v2 tensors (name, datatype, shape and
raw bytes: little-endian numbers, BOOL as one byte, BYTES as a 4-byte length then the bytes) and the kind
of mistake. A server must answer every case with a client error (gRPC INVALID_ARGUMENT, HTTP 400) or, where
only values the config allows are hostile, with a result or a client error: never an internal error, never
a dead model process. :func:`grpc_request` builds the raw gRPC ``ModelInferRequest`` of a case
(tritonclient's ``InferInput`` refuses to build most of them) and :func:`send_grpc` sends it; an HTTP fuzzer
builds its bodies from the same fields.

Kinds of mistake:

- ``missing``: a required input left out; ``unknown``: an input the model does not have; ``duplicate``: an
  input sent twice;
- ``dtype``: another data type (its bytes consistent with it);
- ``rank`` and ``dims``: a shape against the config's dims; ``batch``: a batch of 0, one over
  ``max_batch_size``, or inputs of different batch sizes;
- ``size``: bytes that do not fill the shape; ``bytes``: a BYTES element whose length runs past the data;
- ``values``: shape and type right, values hostile: integer extremes, NaN and infinities, empty, random and
  truncated bytes, invalid UTF-8, variable dims empty or long.

Integer values are drawn from the extremes and from ``0, 1, 2`` only, never from the middle of the range, so a
case never asks an LLM for hundreds of tokens: fuzzing stays fast.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from tritonclient.grpc import model_config_pb2 as mc
from tritonclient.utils import serialize_byte_tensor, triton_to_np_dtype

from tritonfleet.repository import Repository

KINDS = ("missing", "unknown", "duplicate", "dtype", "rank", "dims", "batch", "size", "bytes", "values")
DATATYPES = (
    "BOOL",
    "UINT8",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "UINT32",
    "UINT64",
    "FP16",
    "FP32",
    "FP64",
    "BYTES",
)
LONG = 300  # elements of a "long" variable dim; BYTES items up to this many bytes


@dataclass(frozen=True)
class Tensor:
    """One input as it travels: KServe v2 name, datatype, shape and raw bytes."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    raw: bytes


@dataclass(frozen=True)
class Case:
    """One malformed request: its inputs, the kind of mistake and what was changed."""

    model: str
    kind: str
    inputs: tuple[Tensor, ...]
    note: str


def datatype(config_type: int) -> str:
    """A config's ``data_type`` as the KServe v2 datatype ("INT32", "BYTES", ...)."""
    name = mc.DataType.Name(config_type).removeprefix("TYPE_")
    return "BYTES" if name == "STRING" else name


def tensor(name: str, value: Any, dtype: str) -> Tensor:
    """A correct tensor: ``value`` in datatype ``dtype``."""
    array = np.asarray(value, dtype=triton_to_np_dtype(dtype))
    return Tensor(name, dtype, tuple(array.shape), raw(array, dtype))


def raw(array: np.ndarray, dtype: str) -> bytes:
    """The KServe v2 binary form of ``array`` in datatype ``dtype``."""
    if dtype == "BYTES":
        items = np.array([_bytes(v) for v in np.asarray(array, dtype=object).reshape(-1)], dtype=object)
        return serialize_byte_tensor(items).item() if items.size else b""
    numpy = np.dtype(triton_to_np_dtype(dtype)).newbyteorder("<")
    return np.ascontiguousarray(array, dtype=numpy).tobytes()


def _bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


def example_tensors(config: mc.ModelConfig, example: Mapping[str, Any]) -> tuple[Tensor, ...]:
    """The correct request ``example`` (name -> value with its batch dim) as tensors of the config's types."""
    types = {i.name: datatype(i.data_type) for i in config.input}
    unknown = set(example) - set(types)
    if unknown:
        raise ValueError(f"{config.name} has no input(s) {sorted(unknown)}")
    return tuple(tensor(name, value, types[name]) for name, value in example.items())


def cases(config: mc.ModelConfig, example: Mapping[str, Any], count: int, seed: int = 0) -> Iterator[Case]:
    """``count`` malformed variants of the correct request ``example`` for the model of ``config``, each kind
    in turn (kinds that do not apply to the model are skipped), reproducible from ``seed``."""
    rng = random.Random(seed)
    base = example_tensors(config, example)
    inputs = {i.name: i for i in config.input}
    made = 0
    while made < count:
        for kind in KINDS:
            case = _MUTATIONS[kind](config, inputs, base, rng)
            if case is not None and made < count:
                made += 1
                yield Case(config.name, kind, case[0], case[1])


def _missing(config, inputs, base, rng):
    required = [t for t in base if not inputs[t.name].optional]
    if not required:
        return None
    drop = rng.choice(required)
    return tuple(t for t in base if t is not drop), f"{drop.name} left out"


def _unknown(config, inputs, base, rng):
    extra = tensor(rng.choice(["NOT_AN_INPUT", "text", "input ", ""]), [[1]], "INT32")
    return (*base, extra), f"unknown input {extra.name!r}"


def _duplicate(config, inputs, base, rng):
    twice = rng.choice(base)
    return (*base, twice), f"{twice.name} twice"


def _dtype(config, inputs, base, rng):
    target = rng.randrange(len(base))
    t = base[target]
    other = rng.choice([d for d in DATATYPES if d != t.datatype])
    count = int(np.prod(t.shape))
    values = [rng.choice([0, 1, 7]) for _ in range(count)]
    changed = tensor(t.name, np.array(values).reshape(t.shape), other)
    return _replace(base, target, changed), f"{t.name}: {t.datatype} sent as {other}"


def _rank(config, inputs, base, rng):
    target = rng.randrange(len(base))
    t = base[target]
    shape = t.shape[:-1] if len(t.shape) > 1 and rng.random() < 0.5 else (*t.shape, 1)
    changed = Tensor(t.name, t.datatype, shape, _resized(t, shape, rng))
    return _replace(base, target, changed), f"{t.name}: shape {list(t.shape)} -> {list(shape)}"


def _dims(config, inputs, base, rng):
    batched = config.max_batch_size > 0
    fixed = [
        (i, k)
        for i, t in enumerate(base)
        for k, d in enumerate(inputs[t.name].dims)
        if d > 0 and len(t.shape) == len(inputs[t.name].dims) + batched
    ]
    if not fixed:
        return None
    target, k = rng.choice(fixed)
    t = base[target]
    shape = list(t.shape)
    shape[k + batched] = rng.choice([0, shape[k + batched] + 1, shape[k + batched] * 2])
    changed = Tensor(t.name, t.datatype, tuple(shape), _resized(t, tuple(shape), rng))
    return _replace(base, target, changed), f"{t.name}: shape {list(t.shape)} -> {shape}"


def _batch(config, inputs, base, rng):
    if config.max_batch_size <= 0:
        return None
    how = rng.choice(["zero", "over", "mismatch"])
    if how == "mismatch" and len(base) < 2:
        how = "over"
    size = {"zero": 0, "over": config.max_batch_size + 1, "mismatch": 2}[how]
    targets = [rng.randrange(len(base))] if how == "mismatch" else range(len(base))
    out = list(base)
    for i in targets:
        t = base[i]
        shape = (size, *t.shape[1:])
        out[i] = Tensor(t.name, t.datatype, shape, _resized(t, shape, rng))
    return tuple(out), f"batch {how}: {size}"


def _size(config, inputs, base, rng):
    target = rng.randrange(len(base))
    t = base[target]
    data = t.raw[:-1] if t.raw and rng.random() < 0.5 else t.raw + b"\x00\x01\x02\x03"
    return _replace(base, target, Tensor(t.name, t.datatype, t.shape, data)), f"{t.name}: {len(data)} bytes"


def _bytes_length(config, inputs, base, rng):
    strings = [i for i, t in enumerate(base) if t.datatype == "BYTES" and t.raw]
    if not strings:
        return None
    target = rng.choice(strings)
    t = base[target]
    claimed = rng.choice([len(t.raw), 1 << 20, 0xFFFFFFFF])
    data = struct.pack("<I", claimed) + t.raw[4:]
    return _replace(base, target, Tensor(t.name, t.datatype, t.shape, data)), f"{t.name}: length {claimed}"


def _values(config, inputs, base, rng):
    batched = config.max_batch_size > 0
    target = rng.randrange(len(base))
    t = base[target]
    dims = list(inputs[t.name].dims)
    shape = list(t.shape)
    for k, d in enumerate(dims):  # a variable dim: empty, the example's, or long
        if d == -1 and len(shape) == len(dims) + batched:
            shape[k + batched] = rng.choice([0, shape[k + batched], LONG])
    array = _hostile(t.datatype, tuple(shape), t, rng)
    return _replace(base, target, tensor(t.name, array, t.datatype)), f"{t.name}: hostile values {shape}"


def _hostile(dtype: str, shape: tuple[int, ...], example: Tensor, rng: random.Random) -> np.ndarray:
    count = int(np.prod(shape))
    if dtype == "BYTES":
        sample = _bytes_items(example)
        options = [
            lambda: b"",
            lambda: rng.randbytes(rng.randrange(1, 64)),
            lambda: b"\xff\xfe\xc3\x28",
            lambda: b"\x00" * rng.randrange(1, 16),
            lambda: "A" * LONG,
            lambda: (s := rng.choice(sample))[: rng.randrange(len(s) + 1)] if sample else b"",
            lambda: rng.choice(sample) + rng.randbytes(8) if sample else b"x",
        ]
        return np.array([rng.choice(options)() for _ in range(count)], dtype=object).reshape(shape)
    numpy = np.dtype(triton_to_np_dtype(dtype))
    if numpy.kind == "b":
        return np.array([rng.random() < 0.5 for _ in range(count)]).reshape(shape)
    if numpy.kind == "f":
        finfo = np.finfo(numpy)
        options = [0.0, -0.0, 1.0, -1.0, np.nan, np.inf, -np.inf, float(finfo.max), float(finfo.min), 1e-30]
        return np.array([rng.choice(options) for _ in range(count)], dtype=numpy).reshape(shape)
    info = np.iinfo(numpy)
    options = [0, 1, 2, info.max, info.min, info.max - 1, -1 if info.min < 0 else 3]
    return np.array([rng.choice(options) for _ in range(count)], dtype=numpy).reshape(shape)


def _bytes_items(t: Tensor) -> list[bytes]:
    items, offset = [], 0
    while offset + 4 <= len(t.raw):
        (n,) = struct.unpack_from("<I", t.raw, offset)
        items.append(t.raw[offset + 4 : offset + 4 + n])
        offset += 4 + n
    return items


def _resized(t: Tensor, shape: tuple[int, ...], rng: random.Random) -> bytes:
    """Bytes of a plausible tensor of ``shape`` and ``t``'s datatype (values from ``t`` where they fit)."""
    count = int(np.prod(shape))
    if t.datatype == "BYTES":
        items = _bytes_items(t) or [b""]
        return raw(np.array([items[i % len(items)] for i in range(count)], dtype=object), "BYTES")
    width = np.dtype(triton_to_np_dtype(t.datatype)).itemsize
    data = t.raw or bytes(width)
    return (data * (count * width // len(data) + 1))[: count * width]


def _replace(base: tuple[Tensor, ...], index: int, changed: Tensor) -> tuple[Tensor, ...]:
    return (*base[:index], changed, *base[index + 1 :])


_MUTATIONS = {
    "missing": _missing,
    "unknown": _unknown,
    "duplicate": _duplicate,
    "dtype": _dtype,
    "rank": _rank,
    "dims": _dims,
    "batch": _batch,
    "size": _size,
    "bytes": _bytes_length,
    "values": _values,
}


def grpc_request(case: Case, request_id: str = "", streaming: bool = False) -> Any:
    """The raw gRPC ``ModelInferRequest`` of ``case`` (``streaming``: asking for the empty final response, so
    that the end of a decoupled model's answer is seen)."""
    from tritonclient.grpc import service_pb2

    request = service_pb2.ModelInferRequest(model_name=case.model, id=request_id)
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
