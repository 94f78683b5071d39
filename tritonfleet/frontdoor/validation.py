"""Request validation of the front door: every rule checked before Triton sees a request.

Both protocols decode a request into :class:`Tensor` headers (name, datatype, shape, what data came with it)
and :func:`check_infer` applies the same rules to either, to a model the policy lets the call name
(:mod:`tritonfleet.frontdoor.policy`): each input's name, datatype and shape agree with the model's config
(rank, fixed dims, 1 <= batch <= max_batch_size, no negative dims); the element count equals the data given
(JSON values, typed gRPC contents) or the binary size declared (raw bytes; BYTES length prefixes walked); a
byte limit per request; the outputs asked for are the model's, each once. The facts come from the model's
config (the repository's, as Triton loads it), never restated here.

Errors are :class:`~tritonfleet.errors.ClientError` (413: :class:`~tritonfleet.errors.TooLarge`), with a
message that names the tensor and what was wrong.
"""

from __future__ import annotations

import json
import math
import re
import struct
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tritonclient.grpc import model_config_pb2 as mc

from tritonfleet.errors import ClientError, TooLarge

# Bytes per element of each Triton datatype (BYTES: variable, 4-byte length prefix + bytes each).
ELEMENT_SIZE = {
    "BOOL": 1, "UINT8": 1, "INT8": 1, "UINT16": 2, "INT16": 2, "FP16": 2, "BF16": 2,
    "UINT32": 4, "INT32": 4, "FP32": 4, "UINT64": 8, "INT64": 8, "FP64": 8, "BYTES": 0,
}  # fmt: skip
INT_RANGE = {
    "UINT8": (0, 2**8 - 1), "INT8": (-(2**7), 2**7 - 1), "UINT16": (0, 2**16 - 1),
    "INT16": (-(2**15), 2**15 - 1), "UINT32": (0, 2**32 - 1), "INT32": (-(2**31), 2**31 - 1),
    "UINT64": (0, 2**64 - 1), "INT64": (-(2**63), 2**63 - 1),
}  # fmt: skip
FLOATS = {"FP16", "BF16", "FP32", "FP64"}
SHM_PARAMETERS = {"shared_memory_region", "shared_memory_offset", "shared_memory_byte_size"}
MAX_ID_CHARS = 256


def shared_memory_parameters() -> ClientError:
    """The refusal of a request that names a shared-memory region (the front door passes no region)."""
    return ClientError("shared memory is not available through the front door", reason="shared_memory")


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str
    dims: tuple[int, ...]
    optional: bool = False


@dataclass(frozen=True)
class ModelSpec:
    """What the front door knows of a public model, from its config."""

    name: str
    max_batch_size: int
    inputs: Mapping[str, TensorSpec]
    outputs: Mapping[str, TensorSpec]
    decoupled: bool
    versions: frozenset[str]

    @classmethod
    def from_config(cls, config: mc.ModelConfig, model_dir: Path | None = None) -> ModelSpec:
        def spec(t: Any) -> TensorSpec:
            name = mc.DataType.Name(t.data_type).removeprefix("TYPE_")
            datatype = "BYTES" if name == "STRING" else name
            return TensorSpec(
                t.name, datatype, tuple(int(d) for d in t.dims), bool(getattr(t, "optional", False))
            )

        return cls(
            name=config.name,
            max_batch_size=int(config.max_batch_size),
            inputs={t.name: spec(t) for t in config.input},
            outputs={t.name: spec(t) for t in config.output},
            decoupled=bool(config.model_transaction_policy.decoupled),
            versions=frozenset(served_versions(config, model_dir)),
        )


def served_versions(config: mc.ModelConfig, model_dir: Path | None) -> list[str]:
    """The version folders Triton serves under the config's version policy (default: the latest one)."""
    found = sorted(int(p.name) for p in model_dir.iterdir() if p.name.isdigit()) if model_dir else []
    policy = config.version_policy
    kind = policy.WhichOneof("policy_choice")
    if kind == "all":
        chosen = found
    elif kind == "specific":
        chosen = [v for v in found if v in set(policy.specific.versions)]
    else:
        chosen = found[-(policy.latest.num_versions or 1) :]
    return [str(v) for v in chosen]


@dataclass(frozen=True)
class Limits:
    """Size limits of one request (the front door's ``--max-body-mb`` sets both byte limits)."""

    max_body_bytes: int = 64 << 20
    max_tensor_bytes: int = 64 << 20  # all inputs of one request together, as Triton will hold them


@dataclass
class Tensor:
    """One input as a request declares it. ``count``: elements given as values (JSON ``data``, typed gRPC
    contents); ``raw``: the bytes given instead (binary extension, ``raw_input_contents``)."""

    name: str
    datatype: str
    shape: list[int]
    count: int | None = None
    raw: bytes | memoryview | None = None


@dataclass
class Output:
    name: str
    class_count: int = 0


def check_infer(spec: ModelSpec, inputs: list[Tensor], outputs: list[Output], limits: Limits) -> None:
    """Raise :class:`ClientError` unless the request fits the model (the rules in the module docstring)."""
    if not inputs:
        raise ClientError(f"{spec.name}: the request has no inputs")
    seen: set[str] = set()
    total = 0
    batch: int | None = None
    for t in inputs:
        where = f"{spec.name}: input {t.name!r}"
        if t.name in seen:
            raise ClientError(f"{where} is given twice")
        seen.add(t.name)
        ts = spec.inputs.get(t.name)
        if ts is None:
            raise ClientError(f"{spec.name} has no input {t.name!r}; its inputs are {sorted(spec.inputs)}")
        if t.datatype != ts.datatype:
            raise ClientError(f"{where} has datatype {ts.datatype}, not {t.datatype!r}")
        check_shape(where, t.shape, ts.dims, spec.max_batch_size)
        if spec.max_batch_size > 0:
            if batch is not None and t.shape[0] != batch:
                raise ClientError(f"{where} has batch size {t.shape[0]}, the other inputs {batch}")
            batch = t.shape[0]
        count = math.prod(t.shape)
        size = ELEMENT_SIZE[ts.datatype]
        total += count * (size or 4)
        if total > limits.max_tensor_bytes:
            raise TooLarge(f"{where}: the inputs exceed {limits.max_tensor_bytes} bytes")
        if t.raw is not None:
            check_raw(where, t.datatype, count, t.raw)
            total += len(t.raw) if not size else 0
        elif t.count is None:
            raise ClientError(f"{where} carries no data")
        elif t.count != count:
            raise ClientError(f"{where} has shape {t.shape} ({count} elements) but {t.count} values")
    missing = [n for n, ts in spec.inputs.items() if not ts.optional and n not in seen]
    if missing:
        raise ClientError(f"{spec.name}: missing required input(s) {missing}")
    check_outputs(spec, outputs)


def check_shape(where: str, shape: list[int], dims: tuple[int, ...], max_batch_size: int) -> None:
    expect = ("batch", *dims) if max_batch_size > 0 else dims
    if len(shape) != len(expect):
        raise ClientError(f"{where} has shape {shape}: expected {len(expect)} dims {_show(expect)}")
    if any(d < 0 for d in shape):
        raise ClientError(f"{where} has a negative dimension in shape {shape}")
    if max_batch_size > 0 and not 1 <= shape[0] <= max_batch_size:
        raise ClientError(f"{where} has batch size {shape[0]}: it must be 1 to {max_batch_size}")
    fixed = shape[1:] if max_batch_size > 0 else shape
    for got, want in zip(fixed, dims, strict=True):
        if want != -1 and got != want:
            raise ClientError(f"{where} has shape {shape}: expected {_show(expect)}")


def _show(dims: Iterable[Any]) -> str:
    return "[" + ", ".join("any" if d == -1 else str(d) for d in dims) + "]"


def check_raw(where: str, datatype: str, count: int, raw: bytes | memoryview) -> None:
    """The binary data of one input holds exactly ``count`` elements (BYTES: walk the length prefixes)."""
    size = ELEMENT_SIZE[datatype]
    if size:
        if len(raw) != count * size:
            raise ClientError(
                f"{where}: {count} {datatype} elements are {count * size} bytes, {len(raw)} given"
            )
        return
    offset, n = 0, 0
    while offset < len(raw):
        if n == count or offset + 4 > len(raw):
            raise ClientError(f"{where}: the BYTES data holds more than its {count} elements or a cut length")
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4 + length
        n += 1
    if offset != len(raw) or n != count:
        raise ClientError(f"{where}: the BYTES data holds {n} complete elements, the shape says {count}")


def check_outputs(spec: ModelSpec, outputs: list[Output]) -> None:
    names = [o.name for o in outputs]
    if len(names) != len(set(names)):
        raise ClientError(f"{spec.name}: an output is asked for twice")
    for o in outputs:
        os_ = spec.outputs.get(o.name)
        if os_ is None:
            raise ClientError(f"{spec.name} has no output {o.name!r}; its outputs are {sorted(spec.outputs)}")
        elements = math.prod(d for d in os_.dims if d > 0)
        if o.class_count < 0 or o.class_count > max(elements, 1):
            raise ClientError(f"{spec.name}: class_count of {o.name!r} must be 0 to {elements}")


# --- HTTP/JSON (KServe v2 and Triton's binary tensor extension) ---


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json(data: bytes | memoryview, what: str = "the request") -> Any:
    try:
        return json.loads(bytes(data), parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise ClientError(f"{what} is not valid JSON: {str(exc)[:200]}", reason="malformed_json") from None


def _int(value: Any) -> bool:
    return type(value) is int


def json_infer(body: bytes, header_length: int | None) -> tuple[dict[str, Any], list[Tensor], list[Output]]:
    """Decode an HTTP infer body: the JSON header (the whole body, or its first ``header_length`` bytes
    with the binary extension) and the binary inputs after it, in the order the header lists them."""
    if header_length is None:
        header, binary = body, b""
    else:
        if header_length < 0 or header_length > len(body):
            raise ClientError(
                f"Inference-Header-Content-Length {header_length} does not fit a {len(body)}-byte body"
            )
        view = memoryview(body)
        header, binary = view[:header_length], view[header_length:]
    request = parse_json(header)
    if not isinstance(request, dict):
        raise ClientError("the request must be a JSON object")
    for key, value in request.items():
        if key == "id":
            if not isinstance(value, str) or len(value) > MAX_ID_CHARS:
                raise ClientError(f"'id' must be a string of at most {MAX_ID_CHARS} characters")
        elif key == "parameters":
            _request_parameters(value)
        elif key not in ("inputs", "outputs"):
            raise ClientError(f"unknown field {key!r} in the request")
    raw_inputs = request.get("inputs")
    if not isinstance(raw_inputs, list):
        raise ClientError("'inputs' must be a list of tensors")
    inputs: list[Tensor] = []
    offset = 0
    for i, item in enumerate(raw_inputs):
        tensor, size = _json_tensor(i, item)
        if size is not None:
            if offset + size > len(binary):
                raise ClientError(f"input {tensor.name!r} declares {size} binary bytes beyond the body's end")
            tensor.raw = binary[offset : offset + size]
            offset += size
        inputs.append(tensor)
    if offset != len(binary):
        raise ClientError(f"the body has {len(binary) - offset} bytes after the declared binary inputs")
    outputs = _json_outputs(request.get("outputs", []))
    return request, inputs, outputs


def _parameters(where: str, value: Any, allowed: Mapping[str, type | tuple[type, ...]]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ClientError(f"{where}: 'parameters' must be a JSON object")
    for key, v in value.items():
        if key in SHM_PARAMETERS:
            raise shared_memory_parameters()
        kind = allowed.get(key)
        if kind is None:
            raise ClientError(f"{where}: unknown parameter {key!r}")
        if not isinstance(v, kind) or (kind is int and isinstance(v, bool)):
            raise ClientError(f"{where}: parameter {key!r} has the wrong type")
    return value


REQUEST_PARAMETERS: dict[str, type | tuple[type, ...]] = {
    "binary_data_output": bool,
    "priority": int,
    "timeout": int,
    "sequence_id": (int, str),
    "sequence_start": bool,
    "sequence_end": bool,
}


def _request_parameters(value: Any) -> None:
    _parameters("the request", value, REQUEST_PARAMETERS)


def _json_tensor(i: int, item: Any) -> tuple[Tensor, int | None]:
    if not isinstance(item, dict):
        raise ClientError(f"input #{i} must be a JSON object")
    name, datatype, shape = item.get("name"), item.get("datatype"), item.get("shape")
    if not isinstance(name, str):
        raise ClientError(f"input #{i} needs a string 'name'")
    if not isinstance(datatype, str) or datatype not in ELEMENT_SIZE:
        raise ClientError(f"input {name!r}: 'datatype' must be one of {sorted(ELEMENT_SIZE)}")
    if not isinstance(shape, list) or not all(_int(d) for d in shape):
        raise ClientError(f"input {name!r}: 'shape' must be a list of integers")
    for key in item:
        if key not in ("name", "datatype", "shape", "data", "parameters"):
            raise ClientError(f"input {name!r}: unknown field {key!r}")
    params = _parameters(f"input {name!r}", item.get("parameters", {}), {"binary_data_size": int})
    size = params.get("binary_data_size")
    has_data = "data" in item
    if size is not None:
        if size < 0:
            raise ClientError(f"input {name!r}: binary_data_size must be >= 0")
        if has_data:
            raise ClientError(f"input {name!r} has both 'data' and binary_data_size")
        return Tensor(name, datatype, shape), size
    if not has_data:
        raise ClientError(f"input {name!r} has neither 'data' nor binary_data_size")
    return Tensor(name, datatype, shape, count=count_values(name, datatype, item["data"])), None


def count_values(name: str, datatype: str, data: Any) -> int:
    """The number of values in JSON ``data`` (nested lists, row-major) after checking each one's type."""
    ok = _value_check(datatype)
    count = 0
    for value in _flatten(name, data):
        if not ok(value):
            raise ClientError(f"input {name!r}: {json.dumps(value)[:40]} is not a valid {datatype} value")
        count += 1
    return count


def _flatten(name: str, data: Any) -> Iterator[Any]:
    if not isinstance(data, list):
        yield data
        return
    stack = [iter(data)]
    while stack:
        for value in stack[-1]:
            if isinstance(value, list):
                stack.append(iter(value))
                break
            yield value
        else:
            stack.pop()


def _value_check(datatype: str) -> Any:
    if datatype == "BOOL":
        return lambda v: type(v) is bool
    if datatype == "BYTES":
        return lambda v: type(v) is str
    if datatype in FLOATS:
        return lambda v: type(v) in (int, float)
    lo, hi = INT_RANGE[datatype]
    return lambda v: type(v) is int and lo <= v <= hi


def _json_outputs(value: Any) -> list[Output]:
    if not isinstance(value, list):
        raise ClientError("'outputs' must be a list")
    outputs = []
    for i, item in enumerate(value):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise ClientError(f"output #{i} must be an object with a string 'name'")
        for key in item:
            if key not in ("name", "parameters"):
                raise ClientError(f"output {item['name']!r}: unknown field {key!r}")
        params = _parameters(
            f"output {item['name']!r}",
            item.get("parameters", {}),
            {"binary_data": bool, "classification": int},
        )
        outputs.append(Output(item["name"], params.get("classification", 0)))
    return outputs


def check_generate(spec: ModelSpec, body: bytes, limits: Limits) -> None:
    """Triton's generate extension: a JSON object whose fields are inputs (scalars or flat lists) and
    optional ``id`` and ``parameters``."""
    request = parse_json(body)
    if not isinstance(request, dict):
        raise ClientError("the request must be a JSON object")
    total = 0
    for key, value in request.items():
        if key == "id":
            if not isinstance(value, str) or len(value) > MAX_ID_CHARS:
                raise ClientError(f"'id' must be a string of at most {MAX_ID_CHARS} characters")
            continue
        if key == "parameters":
            _request_parameters(value)
            continue
        ts = spec.inputs.get(key)
        if ts is None:
            raise ClientError(f"{spec.name} has no input {key!r}; its inputs are {sorted(spec.inputs)}")
        values = value if isinstance(value, list) else [value]
        ok = _value_check(ts.datatype)
        if not all(ok(v) for v in values):
            raise ClientError(f"{spec.name}: input {key!r} takes {ts.datatype} values")
        fixed = math.prod(d for d in ts.dims if d > 0)
        if -1 not in ts.dims and len(values) != fixed:
            raise ClientError(f"{spec.name}: input {key!r} takes {fixed} value(s), {len(values)} given")
        total += sum(len(v.encode()) + 4 if isinstance(v, str) else 8 for v in values)
        if total > limits.max_tensor_bytes:
            raise TooLarge(f"{spec.name}: the inputs exceed {limits.max_tensor_bytes} bytes")
    missing = [n for n, ts in spec.inputs.items() if not ts.optional and n not in request]
    if missing:
        raise ClientError(f"{spec.name}: missing required input(s) {missing}")


# --- Messages that reach a client ---

_SHM = re.compile(r"triton_\w*shm_region_[\w-]+|/dev/shm/\S+")
_PATH = re.compile(r"(?<![\w.])/(?:[\w.+-]+/)+[\w.+-]*")


def clean_message(message: str, internal: Iterable[str] = ()) -> str:
    """An upstream error message without internal names: shared-memory regions, file paths and the
    ``internal`` strings (the repository's path)."""
    message = _SHM.sub("<shared memory>", message)
    for text in internal:
        message = message.replace(text, "<internal>")
    return _PATH.sub("<path>", message)[:2000]
