"""The fuzz cases over HTTP: :func:`http_body` encodes a case's inputs as a KServe v2 JSON body (values in
``data``) or with Triton's binary tensor extension; :func:`http_cases` streams the front door's mistakes (the
config-derived kinds and those only HTTP can make: bad JSON, wrong value types, lying binary headers, wrong
paths and methods, ...)."""

from __future__ import annotations

import json
import math
import random
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from tritonclient.utils import triton_to_np_dtype

from tritonfleet.frontdoor.validation import ModelSpec
from tritonfleet.tools.fuzz import FRONT_DOOR_KINDS, INTERNAL, Tensor, bytes_items, mutations, valid_case

JSON = {"Content-Type": "application/json"}


@dataclass
class HttpCase:
    family: str
    method: str
    path: str
    body: bytes
    headers: dict[str, str]


def json_values(t: Tensor) -> list[Any] | None:
    """``t``'s elements as JSON values (flat, row-major), or None where its bytes are not whole values of its
    datatype (or not text, or not finite)."""
    if t.datatype == "BYTES":
        items = bytes_items(t)
        if b"".join(struct.pack("<I", len(i)) + i for i in items) != t.raw:  # a cut item or a lying length
            return None
        try:
            return [i.decode() for i in items]
        except UnicodeDecodeError:
            return None
    numpy = triton_to_np_dtype(t.datatype)
    if numpy is None or t.datatype == "BF16" or len(t.raw) % np.dtype(numpy).itemsize:
        return None
    values = np.frombuffer(t.raw, np.dtype(numpy).newbyteorder("<")).tolist()
    return values if all(math.isfinite(v) for v in values) else None


def http_body(inputs: tuple[Tensor, ...], binary: bool = False) -> tuple[bytes, dict[str, str]]:
    """An infer body of ``inputs`` and its headers: each input's values in JSON, or its bytes after the JSON
    header (``binary``, or where its bytes are not JSON values)."""
    header, data = [], []
    for t in inputs:
        item: dict[str, Any] = {"name": t.name, "shape": list(t.shape), "datatype": t.datatype}
        values = None if binary else json_values(t)
        if values is None:
            item["parameters"] = {"binary_data_size": len(t.raw)}
            data.append(t.raw)
        else:
            item["data"] = values
        header.append(item)
    head = json.dumps({"inputs": header}).encode()
    if not data:
        return head, dict(JSON)
    return head + b"".join(data), {**JSON, "Inference-Header-Content-Length": str(len(head))}


def _post(path: str, body: object, **headers: str) -> tuple[str, bytes, dict[str, str]]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return path, data, {**JSON, **headers}


def http_cases(specs: list[ModelSpec], rng: random.Random) -> Iterator[HttpCase]:
    """An endless stream of malformed HTTP requests for the front door, every family in turn, values drawn
    from ``rng``."""
    while True:
        spec = rng.choice(specs)
        path = f"/v2/models/{spec.name}/infer"
        valid = valid_case(spec)
        for case in mutations(spec, valid.inputs, rng, FRONT_DOOR_KINDS):
            yield HttpCase(case.kind, "POST", path, *http_body(case.inputs, binary=rng.random() < 0.5))
        good = json.loads(http_body(valid.inputs)[0])
        t = rng.randrange(len(good["inputs"]))
        name = good["inputs"][t]["name"]

        def mutate(fn: Callable[[dict], object], good: dict = good, t: int = t) -> dict:
            request = json.loads(json.dumps(good))
            fn(request["inputs"][t])
            return request

        families = {
            "no data": mutate(lambda x: x.pop("data")),
            "wrong value type": mutate(
                lambda x: x.update(data=[rng.choice([None, {}, [{}]])] * len(x["data"]))
            ),
            "shape not ints": mutate(lambda x: x.update(shape=[1.5, "2"])),
            "shared memory": mutate(
                lambda x: x.update(parameters={"shared_memory_region": "r", "shared_memory_byte_size": 4})
            ),
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
