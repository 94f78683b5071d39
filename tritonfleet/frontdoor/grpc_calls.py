"""What the front door does with each gRPC call, whatever carries it: one set of rules for the gRPC
transports (:mod:`~tritonfleet.frontdoor.grpc_native`, C++; :mod:`~tritonfleet.frontdoor.grpc_proxy`,
grpc.aio).

A transport hands over a call's method, bytes and ``authorization`` metadata and gets back what to do:
answer it (health probes), refuse it (a :class:`Refusal`: status code, message, ``retry-after``) or
forward the bytes that came (no re-encoding) and report the upstream's answer. Every request is decoded
(``ModelInferRequest``; each message of a ``ModelStreamInfer`` stream) and checked by the same rules as
HTTP (:mod:`tritonfleet.frontdoor.validation`); who may call which method is the table of
:mod:`tritonfleet.frontdoor.policy`. A refused stream message is answered on the stream, which goes on.
Error messages are cleaned of internal names, Triton's answers read by :func:`tritonfleet.errors.from_triton`,
and every call counted in the metrics.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

from tritonclient.grpc import service_pb2 as pb

from tritonfleet.errors import ClientError, Error, NotAllowed, NotLoaded, StubDied, from_triton
from tritonfleet.frontdoor.access import ANONYMOUS, AccessControl, key_of, upstream_down
from tritonfleet.frontdoor.metrics import status_class
from tritonfleet.frontdoor.policy import Call, Who, grpc_operation, refuse_file_writes
from tritonfleet.frontdoor.validation import (
    SHM_PARAMETERS,
    Output,
    Tensor,
    check_infer,
    clean_message,
    shared_memory_parameters,
)

SERVICE = "inference.GRPCInferenceService"
STREAM = "ModelStreamInfer"
INFER = f"/{SERVICE}/ModelInfer"
INFER_CALL = Call("infer")
ERROR_FIELD = b"\n"  # the tag of ModelStreamInferResponse.error_message (field 1, length-delimited)
NOT_FOUND = "Method not found!"  # what gRPC answers a method of another service (UNIMPLEMENTED)
CONTENTS = {
    "BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
    "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents",
    "UINT32": "uint_contents", "UINT64": "uint64_contents", "FP32": "fp32_contents",
    "FP64": "fp64_contents", "BYTES": "bytes_contents",
}  # fmt: skip
# The requests of the methods that read something of one model (its ``name`` and ``version``).
MODEL_REQUESTS = {
    "ModelReady": pb.ModelReadyRequest,
    "ModelMetadata": pb.ModelMetadataRequest,
    "ModelConfig": pb.ModelConfigRequest,
    "ModelStatistics": pb.ModelStatisticsRequest,
}
ADMIN_REQUESTS = {
    "RepositoryModelLoad": (pb.RepositoryModelLoadRequest, "parameters"),
    "TraceSetting": (pb.TraceSettingRequest, "settings"),
    "LogSettings": (pb.LogSettingsRequest, "settings"),
}


def decode_infer(request: pb.ModelInferRequest) -> tuple[list[Tensor], list[Output]]:
    """The request's inputs and outputs as the validator sees them."""
    if request.parameters and SHM_PARAMETERS & set(request.parameters):
        raise shared_memory_parameters()
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise ClientError(f"{len(raw)} raw_input_contents for {len(request.inputs)} inputs")
    inputs = []
    for i, t in enumerate(request.inputs):
        if t.parameters and SHM_PARAMETERS & set(t.parameters):
            raise shared_memory_parameters()
        tensor = Tensor(t.name, t.datatype, list(t.shape))
        given = [f.name for f, v in t.contents.ListFields()] if t.HasField("contents") else []
        if raw:
            if given:
                raise ClientError(f"input {t.name!r} has both contents and raw_input_contents")
            tensor.raw = raw[i]
        elif given:
            field_ = CONTENTS.get(t.datatype)
            if given != [field_]:
                raise ClientError(
                    f"input {t.name!r} ({t.datatype}) carries {given}, expected {field_ or 'raw data'}"
                )
            tensor.count = len(getattr(t.contents, field_))
        inputs.append(tensor)
    outputs = []
    for o in request.outputs:
        if o.parameters and SHM_PARAMETERS & set(o.parameters):
            raise shared_memory_parameters()
        count = o.parameters["class_count"].int64_param if "class_count" in o.parameters else 0
        outputs.append(Output(o.name, count))
    return inputs, outputs


@dataclass(frozen=True)
class Refusal:
    """How a call ends when it does not end well: a gRPC status code's name, the message the client sees,
    and ``retry-after`` trailing metadata where the caller should retry."""

    code: str
    message: str
    retry_after: str = ""

    @classmethod
    def of(cls, error: Error) -> Refusal:
        return cls(error.grpc_code, error.message, getattr(error, "retry_after", None) or "")


@dataclass
class Pending:
    """A unary call forwarded upstream: what its answer is counted under. ``cut_stats``: the answer is
    every model's statistics, to be cut to the served ones."""

    method: str
    model: str
    key: str
    started: float
    cut_stats: bool = False


@dataclass
class StreamState:
    """One ``ModelStreamInfer`` stream: its caller's key and the models its messages named."""

    key: str
    started: float
    models: list[str] = field(default_factory=list)

    @property
    def model(self) -> str:
        return self.models[-1] if self.models else "-"


class GrpcCalls:
    """The gRPC rules over one :class:`~tritonfleet.frontdoor.access.AccessControl` (thread-safe)."""

    def __init__(self, access: AccessControl, internal: tuple[str, ...] = ()) -> None:
        self.access = access
        self.internal = internal  # strings never shown to clients (the repository's path)
        # Each label set's (requests, duration) children, looked up once: the native transport counts
        # thousands of calls a second.
        self._series: dict[tuple[str, str, str, str], tuple[Any, Any]] = {}

    # --- unary calls ---

    def unary(self, path: str, raw: bytes, authorization: str | None) -> bytes | Pending | Refusal:
        """A unary call's first step: the answer (health probes), a :class:`Pending` to forward the bytes
        that came, or a :class:`Refusal` (counted)."""
        started = time.monotonic()
        model, key = "-", ANONYMOUS
        if path == INFER:  # the one that counts
            try:
                key = self.access.admit(INFER_CALL, authorization)
                return Pending("ModelInfer", self.check_infer(raw), key, started)
            except Error as exc:
                self.refused(exc, "ModelInfer", model, key, started)
                return Refusal.of(exc)
        service, _, method = path.lstrip("/").partition("/")
        if service != SERVICE:
            return Refusal("UNIMPLEMENTED", NOT_FOUND)
        try:
            operation = grpc_operation(method)
            if operation == "health":
                return self._health(method)
            if operation is None:
                raise NotAllowed(f"{method} is not served", reason="no_route")
            key = self.access.admit(Call(operation), authorization)
            if method in MODEL_REQUESTS:
                request = MODEL_REQUESTS[method].FromString(raw)
                if method == "ModelStatistics" and not request.name:
                    return Pending(method, model, key, started, cut_stats=True)
                self.access.public.named(Call(operation, request.name, request.version))
                model = request.name
            elif method in ADMIN_REQUESTS and Call(operation).rule.who is Who.ADMIN:
                kind, field_ = ADMIN_REQUESTS[method]
                refuse_file_writes(**{field_: getattr(kind.FromString(raw), field_)})
            return Pending(method, model, key, started)
        except Error as exc:
            self.refused(exc, method, model, key, started)
            return Refusal.of(exc)
        except Exception:
            return Refusal("INVALID_ARGUMENT", f"the request is not a valid {method}")

    def answered(
        self, call: Pending, code: str, details: str, answer: bytes | None
    ) -> bytes | Refusal | None:
        """The upstream's answer to ``call``: None to pass it on as it came, other bytes (every model's
        statistics cut to the served ones), or how the call ends (an error, cleaned)."""
        if code != "OK":
            return self.upstream_error(code, details, call.method, call.model, call.key, call.started)
        if call.cut_stats and answer is not None:
            answer = self._served_stats(answer)
        self.count(call.method, call.model, call.key, "OK", call.started)
        return answer if call.cut_stats else None

    def check_infer(self, raw: bytes | memoryview) -> str:
        """The model a ``ModelInferRequest`` names, if it passes every check."""
        try:
            request = pb.ModelInferRequest.FromString(raw)
        except Exception:
            raise ClientError("the request is not a valid ModelInferRequest", reason="malformed") from None
        spec = self.access.public.named(Call("infer", request.model_name, request.model_version))
        assert spec is not None  # inference names a public model
        inputs, outputs = decode_infer(request)
        check_infer(spec, inputs, outputs, self.access.public.limits)
        return spec.name

    def upstream_error(
        self, code: str, details: str, method: str, model: str, key: str, started: float
    ) -> Refusal:
        """Triton's error, cleaned; a model that is not loaded now, or Triton down, is UNAVAILABLE with
        retry-after."""
        error: Error | None = from_triton(details, code, model)
        if isinstance(error, StubDied):
            self.access.report_dead_stub(model)
        if not isinstance(error, NotLoaded):
            down = code in ("UNAVAILABLE", "CANCELLED") and not self.access.state.up
            error = upstream_down() if down else None
        if error is not None:
            self.count(method, model, key_of(error, key), error.grpc_code, started)
            return Refusal.of(error)
        self.count(method, model, key, code, started)
        return Refusal(code, self.clean(details))

    def _served_stats(self, raw: bytes) -> bytes:
        """Every model's statistics (perf_analyzer reads them at the end of a run) cut to the served ones."""
        answer = pb.ModelStatisticsResponse.FromString(raw)
        served = self.access.public.served
        kept = [m for m in answer.model_stats if m.name in served]
        del answer.model_stats[:]
        answer.model_stats.extend(kept)
        return answer.SerializeToString()

    def _health(self, method: str) -> bytes:
        state = self.access.state
        if method == "ServerLive":
            return pb.ServerLiveResponse(live=True).SerializeToString()
        return pb.ServerReadyResponse(ready=state.up and state.ready).SerializeToString()

    # --- streams (ModelStreamInfer) ---

    def stream_open(self, authorization: str | None) -> StreamState | Refusal:
        started = time.monotonic()
        try:
            return StreamState(self.access.admit(INFER_CALL, authorization), started)
        except Error as exc:
            self.refused(exc, STREAM, "-", ANONYMOUS, started)
            return Refusal.of(exc)

    def stream_message(self, stream: StreamState, raw: bytes) -> bytes | None:
        """None to forward a client's message, or the error response the client gets instead."""
        try:
            stream.models.append(self.check_infer(raw))
            return None
        except Error as exc:
            self.refused(exc, STREAM, "-", stream.key, stream.started)
            response = pb.ModelStreamInferResponse(
                error_message=exc.message, infer_response=pb.ModelInferResponse(id=_request_id(raw))
            )
            return response.SerializeToString()

    def stream_answer(self, raw: bytes) -> bytes:
        """An upstream's message as the client gets it: error messages cleaned."""
        if raw[:1] != ERROR_FIELD and b"error" not in raw and b"healthy" not in raw:
            return raw  # no error_message (serialized first, as field 1, where there is one)
        response = pb.ModelStreamInferResponse.FromString(raw)
        if not response.error_message:
            return raw
        message = response.error_message
        error = from_triton(message)
        if isinstance(error, StubDied):
            self.access.report_dead_stub(response.infer_response.model_name)
        if isinstance(error, NotLoaded):
            message = error.message
        response.error_message = self.clean(message)
        return response.SerializeToString()

    def stream_closed(self, stream: StreamState, code: str, details: str) -> Refusal | None:
        """How the client's stream ends when the upstream's ended with ``code``: None for a normal end
        (an upstream cancelled ends normally too)."""
        if code in ("OK", "CANCELLED"):
            self.count(STREAM, stream.model, stream.key, "OK", stream.started)
            return None
        return self.upstream_error(code, details, STREAM, stream.model, stream.key, stream.started)

    # --- metrics, messages ---

    def count(
        self, method: str, model: str, key: str, code: str, started: float, ended: float | None = None
    ) -> None:
        """Count one call (``ended``: when its answer came, if not now; :func:`time.monotonic`)."""
        labels = (method, model, key, code)
        series = self._series.get(labels)
        if series is None:
            metrics = self.access.metrics
            series = self._series[labels] = (
                metrics.requests.labels("grpc", *labels, status_class(code)),
                metrics.duration.labels("grpc", method, model),
            )
        series[0].inc()
        series[1].observe((time.monotonic() if ended is None else ended) - started)

    def finished(self, calls: list[tuple[Pending, float]]) -> None:
        """Count unary calls whose upstream answered OK (each with when it did), passed on as they came."""
        for call, ended in calls:
            self.count(call.method, call.model, call.key, "OK", call.started, ended)

    def refused(self, error: Error, method: str, model: str, key: str, started: float) -> None:
        """Count a call the front door refused."""
        self.access.count_rejection(error.reason)
        self.count(method, model, key_of(error, key), error.grpc_code, started)

    def clean(self, details: str | None) -> str:
        return clean_message(details or "", self.internal)


def _request_id(raw: bytes) -> str:
    with contextlib.suppress(Exception):
        return pb.ModelInferRequest.FromString(raw).id
    return ""
