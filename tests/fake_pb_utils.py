"""A small, faithful fake of ``triton_python_backend_utils``, so that model.py files run in a test process.

In the Python backend, ``triton_python_backend_utils`` is a pure-Python file shipped with the backend (the
data-type tables, ``get_input_tensor_by_name``, ``triton_string_to_numpy``, the flag constants, ...) into
which the stub injects its C++ classes. This module executes that very file, from the installed server, and
adds Python stand-ins for the classes that behave as python_backend r24.10's do where model code can tell:

- ``Tensor``: a name (not empty) and a numpy array of a Triton data type, made C-contiguous;
- ``TritonError`` (code INTERNAL unless given) and ``TritonModelException``;
- ``InferenceRequest``: ``inputs``, ``request_id``, ``requested_output_names`` (a set), ``is_cancelled``,
  ``get_response_sender``, and BLS ``exec(decoupled=...)``, answered by :data:`bls_handler`, a callable
  ``(request, decoupled) -> [InferenceResponse, ...]`` that a test sets (``tests/python_models.py`` routes
  calls to other models loaded with this fake);
- ``InferenceResponse`` and the response sender with the stub's checks: flags 0 or FINAL, a response needed
  with flags 0, nothing after FINAL, at most one response from a non-decoupled model; what is sent is pruned
  to the requested outputs, and BYTES tensors cross the process boundary serialized (``str`` items arrive as
  UTF-8 ``bytes``);
- ``MetricFamily`` and its metrics (values readable by tests), ``Logger`` (messages kept in :data:`LOG`).

The harness that loads a model.py with this module installed, builds requests from the model's config and
collects responses as Triton would is ``tests/python_models.py``.
"""

from __future__ import annotations

import importlib.util
import json
import threading
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from tritonfleet.server import pytriton_dir

_REAL = pytriton_dir() / "tritonserver" / "backends" / "python" / "triton_python_backend_utils.py"
_spec = importlib.util.spec_from_file_location("_triton_python_backend_utils_file", _REAL)
assert _spec is not None and _spec.loader is not None
real = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(real)  # the backend's own pure-Python part, exported as this module's
globals().update({k: v for k, v in vars(real).items() if not k.startswith("_")})

FINAL: int = real.TRITONSERVER_RESPONSE_COMPLETE_FINAL
LOG: list[tuple[str, str]] = []  # (level, message) of every Logger call

# BLS: what answers InferenceRequest.exec. None: no model may be called.
bls_handler: Callable[[InferenceRequest, bool], list[InferenceResponse]] | None = None


class TritonModelException(Exception):
    """The stub's exception for misuse of its API (and what model code may raise)."""


class TritonError:
    UNKNOWN, INTERNAL, NOT_FOUND, INVALID_ARG, UNAVAILABLE, UNSUPPORTED, ALREADY_EXISTS, CANCELLED = range(8)
    _NAMES = ("UNKNOWN", "INTERNAL", "NOT_FOUND", "INVALID_ARG", "UNAVAILABLE", "UNSUPPORTED",
              "ALREADY_EXISTS", "CANCELLED")  # fmt: skip

    def __init__(self, message: str, code: int = 1) -> None:
        if message is None or code is None:
            raise TypeError("TritonError(message, code): neither may be None")
        self._message, self._code = str(message), int(code)

    def message(self) -> str:
        return self._message

    def code(self) -> int:
        return self._code

    def __repr__(self) -> str:
        return f"TritonError({self._message!r}, {self._NAMES[self._code]})"


class Tensor:
    def __init__(self, name: str, array: Any) -> None:
        if not name:
            raise TritonModelException("Tensor name cannot be an empty string.")
        array = np.asarray(array)
        if real.numpy_to_triton_type(array.dtype) is None:
            raise TypeError(f"Tensor {name!r}: numpy dtype {array.dtype} is not a Triton data type")
        self._name, self._array = name, np.ascontiguousarray(array)

    def name(self) -> str:
        return self._name

    def as_numpy(self) -> np.ndarray:
        return self._array

    def shape(self) -> list[int]:
        return list(self._array.shape)

    def triton_dtype(self) -> int:
        return real.numpy_to_triton_type(self._array.dtype)

    def is_cpu(self) -> bool:
        return True

    def __repr__(self) -> str:
        return f"Tensor({self._name!r}, {self._array.dtype} {list(self._array.shape)})"


def crossed(tensor: Tensor) -> Tensor:
    """``tensor`` as the other side of the process boundary gets it: a copy, BYTES items serialized."""
    array = tensor.as_numpy()
    if array.dtype == np.object_ or array.dtype.type == np.bytes_:
        flat = (
            real.deserialize_bytes_tensor(real.serialize_byte_tensor(array)) if array.size else array.ravel()
        )
        return Tensor(tensor.name(), np.asarray(flat, dtype=np.object_).reshape(array.shape))
    return Tensor(tensor.name(), array.copy())


class InferenceResponse:
    def __init__(self, output_tensors: Iterable[Tensor] = (), error: TritonError | None = None) -> None:
        self._tensors = list(output_tensors)
        if not all(isinstance(t, Tensor) for t in self._tensors):
            raise TypeError("InferenceResponse: output_tensors must be Tensor objects")
        self._error = error

    def output_tensors(self) -> list[Tensor]:
        return self._tensors

    def has_error(self) -> bool:
        return self._error is not None

    def error(self) -> TritonError | None:
        return self._error


class InferenceResponseSender:
    """What ``request.get_response_sender()`` returns; ``sent`` holds ``(response or None, flags)``."""

    def __init__(self, decoupled: bool, requested: set[str], cancelled: Callable[[], bool]) -> None:
        self.decoupled = decoupled
        self.requested = requested
        self.sent: list[tuple[InferenceResponse | None, int]] = []
        self.closed = False
        self._cancelled = cancelled
        self._cv = threading.Condition()

    def send(self, response: InferenceResponse | None = None, flags: int = 0) -> None:
        if flags not in (0, FINAL):
            raise TritonModelException("Unable to send response. Unsupported flag provided.")
        if flags == 0 and response is None:
            raise TritonModelException(
                "Inference Response object must be provided when the response flags is set to zero."
            )
        with self._cv:
            if not self.decoupled and response is not None and self.sent:
                raise TritonModelException(
                    "Unable to send response. Non-decoupled model cannot send more than one response."
                )
            if self.closed:
                raise TritonModelException("Unable to send response. Response sender has been closed.")
            if response is not None:
                kept = [crossed(t) for t in response.output_tensors() if t.name() in self.requested]
                response = InferenceResponse(kept, response.error())
            self.closed = flags == FINAL
            self.sent.append((response, flags))
            self._cv.notify_all()

    def close(self, error: TritonError | None = None) -> None:
        """The backend's side: end the request (with ``error``) unless the model has ended it."""
        with self._cv:
            if not self.closed:
                self.sent.append((InferenceResponse(error=error) if error else None, FINAL))
                self.closed = True
                self._cv.notify_all()

    def wait(self, timeout: float) -> list[tuple[InferenceResponse | None, int]]:
        """Everything sent, once the final flag has been (TimeoutError if it is not within ``timeout``)."""
        with self._cv:
            if not self._cv.wait_for(lambda: self.closed, timeout):
                raise TimeoutError(f"no final response within {timeout} s; sent so far: {self.sent}")
            return list(self.sent)

    def is_cancelled(self) -> bool:
        return self._cancelled()


class InferenceRequest:
    """A request: built by the harness for the model under test, or by model code for a BLS call."""

    def __init__(
        self,
        request_id: str = "",
        correlation_id: int | str = 0,
        *,
        inputs: list[Tensor],
        requested_output_names: Iterable[str],
        model_name: str,
        model_version: int = -1,
        flags: int = 0,
        timeout: int = 0,
        preferred_memory: Any = None,
        trace: Any = None,
        parameters: dict | None = None,
    ) -> None:
        if not all(isinstance(t, Tensor) for t in inputs):
            raise TypeError("InferenceRequest: inputs must be Tensor objects")
        self._request_id, self._correlation_id = request_id, correlation_id
        self._inputs = list(inputs)
        self._requested = set(requested_output_names)
        self._model_name, self._model_version, self._flags = model_name, model_version, flags
        self._parameters = dict(parameters or {})  # values bool, int or str, as python_backend takes them
        self.cancelled = False  # a test sets it: the client cancelled
        self._sender: InferenceResponseSender | None = None

    @classmethod
    def incoming(
        cls, model_name: str, inputs: list[Tensor], requested: set[str], decoupled: bool, request_id: str = ""
    ) -> InferenceRequest:
        """A request as Triton hands it to a model (the harness's constructor)."""
        request = cls(request_id, inputs=inputs, requested_output_names=requested, model_name=model_name)
        request._sender = InferenceResponseSender(decoupled, requested, lambda: request.cancelled)
        return request

    def inputs(self) -> list[Tensor]:
        return self._inputs

    def request_id(self) -> str:
        return self._request_id

    def correlation_id(self) -> int | str:
        return self._correlation_id

    def flags(self) -> int:
        return self._flags

    def parameters(self) -> str:
        """The request's parameters as JSON, as python_backend gives them."""
        return json.dumps(self._parameters)

    def requested_output_names(self) -> set[str]:
        return self._requested

    def is_cancelled(self) -> bool:
        return self.cancelled

    def get_response_sender(self) -> InferenceResponseSender:
        if self._sender is None:
            raise TritonModelException(
                "Unable to send response. Response sender has no reference to the decoupled state of the "
                "model."
            )
        return self._sender

    @property
    def model_name(self) -> str:
        """The model a BLS request is for (the fake's router reads it)."""
        return self._model_name

    def exec(self, decoupled: bool = False) -> Any:
        """BLS: the callee's responses (an iterator of them when ``decoupled``), from :data:`bls_handler`."""
        if bls_handler is None:
            raise TritonModelException(f"no model answers BLS calls in this test ({self._model_name})")
        responses = list(bls_handler(self, decoupled))
        if decoupled:
            return iter(responses)
        if len(responses) != 1:
            raise TritonModelException(
                f"{self._model_name} sent {len(responses)} responses to a non-decoupled call"
            )
        return responses[0]


class Metric:
    def __init__(self, family: MetricFamily, labels: dict[str, str], buckets: list[float] | None) -> None:
        if family.kind == MetricFamily.HISTOGRAM and not buckets:
            raise TritonModelException("histogram metrics need buckets")
        self.family, self.labels, self.buckets = family, labels, buckets
        self._value = 0.0
        self.observations: list[float] = []

    def increment(self, value: float) -> None:
        if self.family.kind == MetricFamily.HISTOGRAM:
            raise TritonModelException("a histogram cannot be incremented")
        if self.family.kind == MetricFamily.COUNTER and value < 0:
            raise TritonModelException("a counter cannot be decremented")
        self._value += value

    def set(self, value: float) -> None:
        if self.family.kind != MetricFamily.GAUGE:
            raise TritonModelException("only a gauge can be set")
        self._value = value

    def observe(self, value: float) -> None:
        if self.family.kind != MetricFamily.HISTOGRAM:
            raise TritonModelException("only a histogram observes")
        self.observations.append(value)

    def value(self) -> float:
        return self._value


class MetricFamily:
    COUNTER, GAUGE, HISTOGRAM = 0, 1, 2

    def __init__(self, name: str, description: str, kind: int) -> None:
        self.name, self.description, self.kind = name, description, kind
        self.metrics: list[Metric] = []

    def Metric(self, labels: dict[str, str] | None = None, buckets: list[float] | None = None) -> Metric:
        self.metrics.append(Metric(self, dict(labels or {}), buckets))
        return self.metrics[-1]


class Logger:
    @staticmethod
    def log(message: str, level: str = "INFO") -> None:
        LOG.append((level, message))

    @staticmethod
    def log_info(message: str) -> None:
        LOG.append(("INFO", message))

    @staticmethod
    def log_warn(message: str) -> None:
        LOG.append(("WARNING", message))

    @staticmethod
    def log_error(message: str) -> None:
        LOG.append(("ERROR", message))

    @staticmethod
    def log_verbose(message: str) -> None:
        LOG.append(("VERBOSE", message))
