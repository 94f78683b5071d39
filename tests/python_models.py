"""Run a repository's model.py in the test process, against ``tests/fake_pb_utils.py``.

:func:`load` imports a model.py with the fake installed as ``triton_python_backend_utils`` and initializes
it with the ``args`` Triton gives: the model's config as JSON (the CPU config by default, printed as Triton
prints it: every field, int64 as numbers), ``model_repository`` (the model's folder), ``model_version``,
``model_name`` and the instance's name, kind and device. :meth:`PythonModel.request` builds a request as
Triton hands it to the model: it checks the inputs against the config as Triton's core does (names, data
types, shapes, batch size, the number of inputs), casts Python values to the config's data types and
applies the config's ``reshape``. :meth:`PythonModel.execute` runs ``execute`` on a list of requests (one
dynamic batch) and gives each request's :class:`Answer`: the returned response of a non-decoupled model,
what the response sender sent for a decoupled one, or, when ``execute`` raised, the stub's INTERNAL error
for every request. :func:`bls_router` answers BLS calls with other loaded models (or test callables)."""

from __future__ import annotations

import importlib.util
import itertools
import json
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from tests import fake_pb_utils as pb_utils
from tritonfleet.artifacts import REPOSITORY
from tritonfleet.repository import ModelConfig, Repository

ONNXRUNTIME_BACKEND = Path(__file__).resolve().parents[1] / "tritonfleet/backends/onnxruntime/model.py"
_INT64 = {FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_SINT64}
_loaded = itertools.count()


class InvalidRequest(ValueError):
    """A request Triton itself refuses before the model sees it (the message says why, as Triton's does)."""


def config_json(config: ModelConfig) -> dict[str, Any]:
    """A config as Triton gives it to a model (``args["model_config"]``): every field printed, int64 values as
    JSON numbers (protobuf's JSON writes them as strings; Triton converts them back)."""
    data = json_format.MessageToDict(
        config, including_default_value_fields=True, preserving_proto_field_name=True
    )
    _int64_as_numbers(config, data)
    return data


def _int64_as_numbers(message: Message, data: dict[str, Any]) -> None:
    for fd in message.DESCRIPTOR.fields:
        if fd.name not in data:
            continue
        value, printed = getattr(message, fd.name), data[fd.name]
        if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
            value_fd = fd.message_type.fields_by_name["value"]
            for key in printed:
                if value_fd.message_type is not None:
                    _int64_as_numbers(value[key], printed[key])
                elif value_fd.type in _INT64:
                    printed[key] = int(printed[key])
        elif fd.message_type is not None:
            for item, item_data in zip(value, printed, strict=True) if _repeated(fd) else [(value, printed)]:
                _int64_as_numbers(item, item_data)
        elif fd.type in _INT64:
            data[fd.name] = [int(v) for v in printed] if _repeated(fd) else int(printed)


def _repeated(fd: FieldDescriptor) -> bool:
    return fd.label == FieldDescriptor.LABEL_REPEATED


@contextmanager
def fake_installed() -> Iterator[None]:
    """``import triton_python_backend_utils`` gives the fake while the block runs."""
    previous = sys.modules.get("triton_python_backend_utils")
    sys.modules["triton_python_backend_utils"] = pb_utils  # type: ignore[assignment]
    try:
        yield
    finally:
        if previous is None:
            sys.modules.pop("triton_python_backend_utils", None)
        else:
            sys.modules["triton_python_backend_utils"] = previous


def load(
    name: str,
    *,
    target: str = "cpu",
    parameters: Mapping[str, str] | None = None,
    model_file: Path | None = None,
    repository: Path = REPOSITORY,
) -> PythonModel:
    """Import ``<repository>/<name>/1/model.py`` (or ``model_file``, e.g. :data:`ONNXRUNTIME_BACKEND`) and
    initialize it with ``name``'s config for ``target``; ``parameters`` override the config's."""
    config = Repository(repository).config(name, target)
    for key, value in (parameters or {}).items():
        config.parameters[key].string_value = value
    path = model_file or repository / name / "1" / "model.py"
    spec = importlib.util.spec_from_file_location(f"triton_model_{name}_{next(_loaded)}", path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    with fake_installed():
        spec.loader.exec_module(module)
    args = {
        "model_config": json.dumps(config_json(config)),
        "model_instance_kind": "CPU",
        "model_instance_name": f"{name}_0_0",
        "model_instance_device_id": "0",
        "model_repository": str(repository / name),
        "model_version": "1",
        "model_name": name,
    }
    instance = module.TritonPythonModel()
    if hasattr(instance, "initialize"):
        instance.initialize(args)
    return PythonModel(name, json.loads(args["model_config"]), instance)


@dataclass
class Answer:
    """Everything Triton got for one request: ``(response or None, flags)`` in order, the last one final."""

    model: str
    sender: pb_utils.InferenceResponseSender
    config: dict[str, Any]

    def wait(self, timeout: float = 60) -> Answer:
        self.sender.wait(timeout)
        return self

    @property
    def responses(self) -> list[pb_utils.InferenceResponse]:
        """The responses sent (a final flag sent alone is none)."""
        return [r for r, _ in self.sender.wait(60) if r is not None]

    @property
    def error(self) -> pb_utils.TritonError | None:
        """The first error among the responses, if any."""
        return next((r.error() for r in self.responses if r.has_error()), None)

    @property
    def stream(self) -> list[dict[str, np.ndarray]]:
        """The tensors of each response that carries any, by name; fails on an error."""
        assert self.error is None, self.error
        out = []
        for response in self.responses:
            if response.output_tensors():
                out.append({t.name(): t.as_numpy() for t in response.output_tensors()})
        for tensors in out:
            for name, array in tensors.items():
                declared = _output(self.config, name)["data_type"]
                assert array.dtype == pb_utils.triton_string_to_numpy(declared), (
                    self.model,
                    name,
                    array.dtype,
                )
        return out

    @property
    def outputs(self) -> dict[str, np.ndarray]:
        """The tensors of the one response of a non-decoupled model."""
        [tensors] = self.stream
        return tensors

    def as_bls(self) -> list[pb_utils.InferenceResponse]:
        """What a BLS caller's ``exec`` gets: each response, a final flag sent alone as an empty response, and
        every error as INTERNAL (python_backend r24.10's request_executor.cc keeps only the message)."""
        return [_bls_response(r) for r, _ in self.sender.wait(60)]


@dataclass
class PythonModel:
    """A model.py loaded with the fake (see the module docstring)."""

    name: str
    config: dict[str, Any]
    instance: Any
    decoupled: bool = field(init=False)

    def __post_init__(self) -> None:
        self.decoupled = bool(pb_utils.using_decoupled_model_transaction_policy(self.config))

    def request(
        self, inputs: Mapping[str, Any], *, request_id: str = "", outputs: set[str] | None = None
    ) -> pb_utils.InferenceRequest:
        """The request Triton hands the model for these inputs (arrays shaped as the client sends them, batch
        dim included; Python values are cast to the config's data types). Raises :class:`InvalidRequest`
        where Triton itself would refuse the request."""
        tensors = [pb_utils.Tensor(name, array) for name, array in self._checked(inputs).items()]
        requested = set(outputs) if outputs else {o["name"] for o in self.config["output"]}
        return pb_utils.InferenceRequest.incoming(self.name, tensors, requested, self.decoupled, request_id)

    def _checked(self, inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        declared = {i["name"]: i for i in self.config["input"]}
        batched = self.config["max_batch_size"] > 0
        out: dict[str, np.ndarray] = {}
        batch_sizes = set()
        for name, value in inputs.items():
            if name not in declared:
                raise InvalidRequest(f"unexpected inference input '{name}' for model '{self.name}'")
            spec = declared[name]
            dtype = pb_utils.triton_string_to_numpy(spec["data_type"])
            array = _as_array(value, dtype)
            if array.dtype != dtype:
                raise InvalidRequest(
                    f"inference input '{name}' data-type is '{array.dtype}', but model '{self.name}' expects "
                    f"'{spec['data_type']}'"
                )
            dims = [-1, *spec["dims"]] if batched else list(spec["dims"])
            if len(dims) != array.ndim or any(
                d not in (-1, s) for d, s in zip(dims, array.shape, strict=True)
            ):
                raise InvalidRequest(
                    f"unexpected shape for input '{name}' for model '{self.name}'. Expected {dims}, "
                    f"got {list(array.shape)}"
                )
            if batched:
                batch_sizes.add(array.shape[0])
                if not 0 < array.shape[0] <= self.config["max_batch_size"]:
                    raise InvalidRequest(
                        f"inference request batch-size must be <= {self.config['max_batch_size']} for "
                        f"'{self.name}'"
                    )
            if spec.get("reshape"):
                array = array.reshape([*array.shape[: int(batched)], *spec["reshape"]["shape"]])
            out[name] = array
        if len(batch_sizes) > 1:
            raise InvalidRequest(
                f"inputs of model '{self.name}' have different batch sizes {sorted(batch_sizes)}"
            )
        # Triton 24.10 counts inputs, it does not name them: a request short of a required input but with
        # as many optional ones passes on to the model.
        required = [n for n, spec in declared.items() if not spec["optional"]]
        if not len(required) <= len(inputs) <= len(declared):
            missing = [n for n in required if n not in inputs]
            raise InvalidRequest(
                f"expected {len(required)} to {len(declared)} inputs but got {len(inputs)} inputs for model "
                f"'{self.name}', missing required input(s) {missing}"
            )
        return out

    def execute(self, requests: list[pb_utils.InferenceRequest]) -> list[Answer]:
        """Run ``execute`` once on these requests (one dynamic batch); each request's answer."""
        answers = [Answer(self.name, r.get_response_sender(), self.config) for r in requests]
        try:
            returned = self.instance.execute(requests)
            if self.decoupled:
                if returned is not None:
                    raise pb_utils.TritonModelException(
                        f"Python model '{self.name}' is using the decoupled mode and the execute function "
                        "must return None."
                    )
            else:
                if not isinstance(returned, list) or len(returned) != len(requests):
                    raise pb_utils.TritonModelException(
                        f"Number of InferenceResponse objects do not match the number of InferenceRequest "
                        f"objects: {len(requests)} requests, returned {returned!r}"
                    )
                for answer, response in zip(answers, returned, strict=True):
                    if not isinstance(response, pb_utils.InferenceResponse):
                        raise pb_utils.TritonModelException(
                            f"Expected an 'InferenceResponse' object in the execute function return list, "
                            f"found type '{type(response).__name__}'."
                        )
                    answer.sender.send(response, flags=pb_utils.FINAL)
        except Exception as exc:  # the stub fails every request of the batch that is not answered yet
            message = f"Failed to process the request(s) for model '{self.name}_0_0', message: "
            error = pb_utils.TritonError(
                f"{message}{type(exc).__name__}: {exc}", pb_utils.TritonError.INTERNAL
            )
            for answer in answers:
                answer.sender.close(error)
        return answers

    def infer(self, inputs: Mapping[str, Any], **kwargs: Any) -> Answer:
        """One request on its own; a decoupled model's answer once it has sent its final response."""
        return self.execute([self.request(inputs, **kwargs)])[0].wait()

    def finalize(self) -> None:
        if hasattr(self.instance, "finalize"):
            self.instance.finalize()


def _as_array(value: Any, dtype: type) -> np.ndarray:
    """A client's value: arrays keep their data type (Triton checks it); Python values take the config's."""
    if isinstance(value, np.ndarray):
        return value
    if dtype is np.object_:
        return np.array(_encoded(value), dtype=np.object_)
    return np.array(value, dtype=dtype)


def _encoded(value: Any) -> Any:
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, list | tuple):
        return [_encoded(v) for v in value]
    return value


def _bls_response(response: pb_utils.InferenceResponse | None) -> pb_utils.InferenceResponse:
    if response is None:
        return pb_utils.InferenceResponse()
    if response.has_error():
        return pb_utils.InferenceResponse(error=pb_utils.TritonError(response.error().message()))
    return response


def _output(config: dict[str, Any], name: str) -> dict[str, Any]:
    return next(o for o in config["output"] if o["name"] == name)


def row(**values: Any) -> dict[str, Any]:
    """Inputs of batch 1: each value (a scalar or a list) becomes one row, ``[[v]]`` or ``[list]``."""
    return {name: [v if isinstance(v, list) else [v]] for name, v in values.items()}


Handler = Callable[[pb_utils.InferenceRequest, bool], list[pb_utils.InferenceResponse]]


def bls_router(models: Mapping[str, PythonModel | Handler]) -> Handler:
    """A :data:`fake_pb_utils.bls_handler` that sends each BLS request to the named loaded model (checked
    and reshaped as Triton would, its responses crossing back, errors as INTERNAL) or test callable; other
    names are errors."""

    def handle(request: pb_utils.InferenceRequest, decoupled: bool) -> list[pb_utils.InferenceResponse]:
        target = models.get(request.model_name)
        if target is None:
            error = pb_utils.TritonError(f"Request for unknown model: '{request.model_name}' is not found")
            return [pb_utils.InferenceResponse(error=error)]
        if not isinstance(target, PythonModel):
            return list(target(request, decoupled))
        inputs = {t.name(): pb_utils.crossed(t).as_numpy() for t in request.inputs()}
        try:
            incoming = target.request(
                inputs, request_id=request.request_id(), outputs=request.requested_output_names() or None
            )
        except InvalidRequest as exc:  # Triton refuses it; the caller gets the message as INTERNAL
            return [pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc)))]
        return target.execute([incoming])[0].as_bls()

    return handle


@contextmanager
def bls(models: Mapping[str, PythonModel | Handler]) -> Iterator[None]:
    """BLS calls go to ``models`` (:func:`bls_router`) while the block runs."""
    pb_utils.bls_handler = bls_router(models)
    try:
        yield
    finally:
        pb_utils.bls_handler = None
