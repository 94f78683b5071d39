"""One request of a client helper, independent of protocol and of sync or asyncio."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from tritonclient.utils import triton_to_np_dtype


@dataclass(frozen=True)
class Call:
    """What a client helper asks of one model.

    ``inputs``: tensors by name, array-likes shaped ``[batch, ...]``; the client casts each to the data type
    the model's config declares, so helpers never restate data types. ``outputs``: the outputs to ask for,
    each with its ``class_count`` (Triton's classification extension; 0 for the tensor itself), or None for
    every output. ``parse`` turns the result (tritonclient's ``InferResult``) into the helper's answer.
    """

    model: str
    inputs: Mapping[str, Any]
    parse: Callable[[Any], Any]
    outputs: Mapping[str, int] | None = None


@dataclass(frozen=True)
class ConfiguredCall:
    """A helper's request that depends on the model's config on the server, where the interface is written
    (``parameters`` such as feature names, dims): the client reads the config of ``model`` (once per model,
    as JSON, see :func:`model_config`) and sends ``make(config)``."""

    model: str
    make: Callable[[Mapping[str, Any]], Call]


def model_config(response: Mapping[str, Any]) -> dict[str, Any]:
    """A model config as JSON from either protocol's ``get_model_config`` (gRPC's ``as_json=True`` wraps it in
    "config" and writes 64-bit integers such as dims as strings: ``int()`` them)."""
    return dict(response.get("config", response))


def config_datatypes(config: Mapping[str, Any]) -> dict[str, str]:
    """Input name -> Triton data type ("INT32", "BYTES", ...) of a model config as JSON (either protocol)."""
    config = model_config(config)
    return {t["name"]: _datatype(t.get("data_type", "TYPE_FP32")) for t in config.get("input", [])}


def _datatype(config_type: str) -> str:
    name = config_type.removeprefix("TYPE_")
    return "BYTES" if name == "STRING" else name


def infer_inputs(api: Any, call: Call, datatypes: Mapping[str, str]) -> list[Any]:
    """tritonclient ``InferInput`` objects for ``call`` (``api``: tritonclient.http or tritonclient.grpc)."""
    tensors = []
    for name, value in call.inputs.items():
        if name not in datatypes:
            raise ValueError(f"{call.model} has no input {name!r}; it has {sorted(datatypes)}")
        array = np.asarray(value, dtype=triton_to_np_dtype(datatypes[name]))
        tensor = api.InferInput(name, list(array.shape), datatypes[name])
        tensor.set_data_from_numpy(array)
        tensors.append(tensor)
    return tensors


def requested_outputs(api: Any, call: Call) -> list[Any] | None:
    if call.outputs is None:
        return None
    return [api.InferRequestedOutput(name, class_count=count) for name, count in call.outputs.items()]
