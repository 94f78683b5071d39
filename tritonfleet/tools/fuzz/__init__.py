"""Malformed inference requests derived from a model's config: the mistakes a fuzzer sends, whatever the
protocol.

A :class:`Case` is one request a client might get wrong: its inputs as KServe v2 tensors (name, datatype,
shape and raw bytes: little-endian numbers, BOOL as one byte, BYTES as a 4-byte length then the bytes) and
the kind of mistake. :func:`mutations` derives every kind from a model's :class:`ModelSpec` (read from its
config) and one correct request (a given example, or :func:`valid_case`); :func:`cases` makes a reproducible
list of them. The protocols encode the same cases: :mod:`tritonfleet.tools.fuzz.grpc` as raw gRPC
``ModelInferRequest`` messages (tritonclient's ``InferInput`` refuses to build most of them),
:mod:`tritonfleet.tools.fuzz.http` as HTTP JSON or binary-extension bodies; each adds the mistakes only its
protocol can make (bad JSON, wrong paths, typed contents in the wrong field, ...).

Kinds of mistake (:data:`KINDS`, sent straight to Triton's models):

- ``missing``: a required input left out; ``unknown``: an input the model does not have; ``duplicate``: an
  input sent twice;
- ``dtype``: another data type (its bytes consistent with it);
- ``rank`` and ``dims``: a shape against the config's dims; ``batch``: a batch of 0, one over
  ``max_batch_size``, or inputs of different batch sizes;
- ``size``: bytes that do not fill the shape; ``bytes``: a BYTES element whose length runs past the data;
- ``values``: shape and type right, values hostile: integer extremes, NaN and infinities, empty, random and
  truncated bytes, invalid UTF-8, variable dims empty or long.

A server must answer every case with a client error (gRPC INVALID_ARGUMENT, HTTP 400) or, where only values
the config allows are hostile, with a result or a client error: never an internal error, never a dead model
process. The front door also gets :data:`FRONT_DOOR_KINDS`: every kind but ``values`` (each must be refused)
and shapes it refuses before Triton sees them (``huge shape``, ``huge inner dim``, ``negative dim``) and
``unknown datatype``.

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

from tritonfleet import pipelines, spec
from tritonfleet.frontdoor.validation import INT_RANGE, ModelSpec

KINDS = ("missing", "unknown", "duplicate", "dtype", "rank", "dims", "batch", "size", "bytes", "values")
FRONT_DOOR_KINDS = (
    *(k for k in KINDS if k != "values"),
    "huge shape",
    "huge inner dim",
    "negative dim",
    "unknown datatype",
)
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
HUGE_DIMS = (100_000_000, 2**31, 2**32 + 1, 2**62, 2**63 - 1)
# Models the front door does not serve: the declared ones no pipeline makes public, and one that is none.
INTERNAL = (*sorted(set(spec.models()) - set(pipelines.public_models())), "no_such_model")


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


def spec_of(model: ModelSpec | mc.ModelConfig) -> ModelSpec:
    """The model's name, batch size and inputs (name, datatype, dims, optional) from its config."""
    return model if isinstance(model, ModelSpec) else ModelSpec.from_config(model)


def example_tensors(model: ModelSpec | mc.ModelConfig, example: Mapping[str, Any]) -> tuple[Tensor, ...]:
    """The correct request ``example`` (name -> value with its batch dim) as tensors of the config's types."""
    spec = spec_of(model)
    unknown = set(example) - set(spec.inputs)
    if unknown:
        raise ValueError(f"{spec.name} has no input(s) {sorted(unknown)}")
    return tuple(tensor(name, value, spec.inputs[name].datatype) for name, value in example.items())


def valid_case(spec: ModelSpec) -> Case:
    """A correct request in form (its values arbitrary): every input with batch 1 and variable dims as 1."""
    inputs = []
    for t in spec.inputs.values():
        dims = [d if d > 0 else 1 for d in t.dims]
        shape = [1, *dims] if spec.max_batch_size > 0 else dims
        inputs.append(tensor(t.name, np.full(shape, _plain(t.datatype), dtype=object), t.datatype))
    return Case(spec.name, "ok", tuple(inputs), "")


def _plain(datatype: str) -> Any:
    if datatype == "BOOL":
        return True
    if datatype == "BYTES":
        return "x"
    return 1 if datatype in INT_RANGE else 0.5


def mutations(
    spec: ModelSpec, base: tuple[Tensor, ...], rng: random.Random, kinds: tuple[str, ...] = KINDS
) -> Iterator[Case]:
    """One malformed variant of the correct request ``base`` for each of ``kinds`` that applies to the
    model, in that order."""
    for kind in kinds:
        made = _MUTATIONS[kind](spec, base, rng)
        if made is not None:
            yield Case(spec.name, kind, *made)


def cases(
    model: ModelSpec | mc.ModelConfig, example: Mapping[str, Any], count: int, seed: int = 0
) -> Iterator[Case]:
    """``count`` malformed variants of the correct request ``example`` for ``model``, each of :data:`KINDS`
    in turn (kinds that do not apply to the model are skipped), reproducible from ``seed``."""
    rng = random.Random(seed)
    spec = spec_of(model)
    base = example_tensors(spec, example)
    made = 0
    while made < count:
        for case in mutations(spec, base, rng):
            if made < count:
                made += 1
                yield case


def _missing(spec, base, rng):
    required = [t for t in base if not spec.inputs[t.name].optional]
    if not required:
        return None
    drop = rng.choice(required)
    return tuple(t for t in base if t is not drop), f"{drop.name} left out"


def _unknown(spec, base, rng):
    extra = tensor(rng.choice(["NOT_AN_INPUT", "text", "input ", ""]), [[1]], "INT32")
    return (*base, extra), f"unknown input {extra.name!r}"


def _duplicate(spec, base, rng):
    twice = rng.choice(base)
    return (*base, twice), f"{twice.name} twice"


def _dtype(spec, base, rng):
    target = rng.randrange(len(base))
    t = base[target]
    other = rng.choice([d for d in DATATYPES if d != t.datatype])
    count = int(np.prod(t.shape))
    values = [rng.choice([0, 1, 7]) for _ in range(count)]
    changed = tensor(t.name, np.array(values).reshape(t.shape), other)
    return _replace(base, target, changed), f"{t.name}: {t.datatype} sent as {other}"


def _rank(spec, base, rng):
    target = rng.randrange(len(base))
    t = base[target]
    shape = t.shape[:-1] if len(t.shape) > 1 and rng.random() < 0.5 else (*t.shape, 1)
    changed = Tensor(t.name, t.datatype, shape, _resized(t, shape, rng))
    return _replace(base, target, changed), f"{t.name}: shape {list(t.shape)} -> {list(shape)}"


def _dims(spec, base, rng):
    batched = spec.max_batch_size > 0
    fixed = [
        (i, k)
        for i, t in enumerate(base)
        for k, d in enumerate(spec.inputs[t.name].dims)
        if d > 0 and len(t.shape) == len(spec.inputs[t.name].dims) + batched
    ]
    if not fixed:
        return None
    target, k = rng.choice(fixed)
    t = base[target]
    shape = list(t.shape)
    shape[k + batched] = rng.choice([0, shape[k + batched] + 1, shape[k + batched] * 2])
    changed = Tensor(t.name, t.datatype, tuple(shape), _resized(t, tuple(shape), rng))
    return _replace(base, target, changed), f"{t.name}: shape {list(t.shape)} -> {shape}"


def _batch(spec, base, rng):
    if spec.max_batch_size <= 0:
        return None
    how = rng.choice(["zero", "over", "mismatch"])
    if how == "mismatch" and len(base) < 2:
        how = "over"
    size = {"zero": 0, "over": spec.max_batch_size + 1, "mismatch": 2}[how]
    targets = [rng.randrange(len(base))] if how == "mismatch" else range(len(base))
    out = list(base)
    for i in targets:
        t = base[i]
        shape = (size, *t.shape[1:])
        out[i] = Tensor(t.name, t.datatype, shape, _resized(t, shape, rng))
    return tuple(out), f"batch {how}: {size}"


def _size(spec, base, rng):
    target = rng.randrange(len(base))
    t = base[target]
    data = t.raw[:-1] if t.raw and rng.random() < 0.5 else t.raw + b"\x00\x01\x02\x03"
    return _replace(base, target, Tensor(t.name, t.datatype, t.shape, data)), f"{t.name}: {len(data)} bytes"


def _bytes_length(spec, base, rng):
    strings = [i for i, t in enumerate(base) if t.datatype == "BYTES" and t.raw]
    if not strings:
        return None
    target = rng.choice(strings)
    t = base[target]
    claimed = rng.choice([len(t.raw), 1 << 20, 0xFFFFFFFF])
    data = struct.pack("<I", claimed) + t.raw[4:]
    return _replace(base, target, Tensor(t.name, t.datatype, t.shape, data)), f"{t.name}: length {claimed}"


def _values(spec, base, rng):
    batched = spec.max_batch_size > 0
    target = rng.randrange(len(base))
    t = base[target]
    dims = list(spec.inputs[t.name].dims)
    shape = list(t.shape)
    for k, d in enumerate(dims):  # a variable dim: empty, the example's, or long
        if d == -1 and len(shape) == len(dims) + batched:
            shape[k + batched] = rng.choice([0, shape[k + batched], LONG])
    array = _hostile(t.datatype, tuple(shape), t, rng)
    return _replace(base, target, tensor(t.name, array, t.datatype)), f"{t.name}: hostile values {shape}"


def _hostile(dtype: str, shape: tuple[int, ...], example: Tensor, rng: random.Random) -> np.ndarray:
    count = int(np.prod(shape))
    if dtype == "BYTES":
        sample = bytes_items(example)
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


def bytes_items(t: Tensor) -> list[bytes]:
    """The complete items of a BYTES tensor's raw bytes (a cut last one left out)."""
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
        items = bytes_items(t) or [b""]
        return raw(np.array([items[i % len(items)] for i in range(count)], dtype=object), "BYTES")
    width = np.dtype(triton_to_np_dtype(t.datatype)).itemsize
    data = t.raw or bytes(width)
    return (data * (count * width // len(data) + 1))[: count * width]


def _replace(base: tuple[Tensor, ...], index: int, changed: Tensor) -> tuple[Tensor, ...]:
    return (*base[:index], changed, *base[index + 1 :])


def _huge_shape(spec, base, rng):
    target = rng.randrange(len(base))
    t = base[target]
    shape = (rng.choice(HUGE_DIMS), *t.shape[1:])
    return _replace(base, target, Tensor(t.name, t.datatype, shape, t.raw)), f"{t.name}: shape {list(shape)}"


def _huge_inner_dim(spec, base, rng):
    target = rng.randrange(len(base))
    t = base[target]
    shape = (*t.shape[:-1], rng.choice(HUGE_DIMS))
    return _replace(base, target, Tensor(t.name, t.datatype, shape, t.raw)), f"{t.name}: shape {list(shape)}"


def _negative_dim(spec, base, rng):
    target = rng.randrange(len(base))
    t = base[target]
    shape = list(t.shape)
    shape[rng.randrange(len(shape))] = -rng.randint(1, 9)
    changed = Tensor(t.name, t.datatype, tuple(shape), t.raw)
    return _replace(base, target, changed), f"{t.name}: shape {shape}"


def _unknown_datatype(spec, base, rng):
    target = rng.randrange(len(base))
    t = base[target]
    changed = Tensor(t.name, "FP128", t.shape, t.raw)
    return _replace(base, target, changed), f"{t.name}: datatype FP128"


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
    "huge shape": _huge_shape,
    "huge inner dim": _huge_inner_dim,
    "negative dim": _negative_dim,
    "unknown datatype": _unknown_datatype,
}
