"""The front door's gRPC server: Triton's ``inference.GRPCInferenceService`` in front of its gRPC port.

Every request is decoded (``ModelInferRequest``; each message of a ``ModelStreamInfer`` stream) and checked
by the same rules as HTTP (:mod:`tritonfleet.frontdoor.validation`), then forwarded as the bytes that came
(no re-encoding). Streams stay streams: a refused message gets an error response on the stream, which goes
on; a client's cancellation cancels the upstream call. Who may call which method is the table of
:mod:`tritonfleet.frontdoor.policy`; the errors of :mod:`tritonfleet.errors` become their status codes
(:func:`_abort`). Error messages are cleaned of internal names.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
from tritonclient.grpc import service_pb2 as pb

from tritonfleet.errors import ClientError, Error, NotAllowed, NotLoaded, StubDied, from_triton
from tritonfleet.frontdoor.access import ANONYMOUS, AccessControl, key_of, upstream_down
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


def decode_infer(request: pb.ModelInferRequest) -> tuple[list[Tensor], list[Output]]:
    """The request's inputs and outputs as the validator sees them."""
    if request.parameters and SHM_PARAMETERS & set(request.parameters):
        raise shared_memory_parameters()
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise ClientError(f"{len(raw)} raw_input_contents for {len(request.inputs)} inputs")
    inputs = []
    for i, t in enumerate(request.inputs):
        if SHM_PARAMETERS & set(t.parameters):
            raise shared_memory_parameters()
        tensor = Tensor(t.name, t.datatype, list(t.shape))
        given = [f.name for f, v in t.contents.ListFields()]
        if raw:
            if given:
                raise ClientError(f"input {t.name!r} has both contents and raw_input_contents")
            tensor.raw = raw[i]
        elif given:
            field = CONTENTS.get(t.datatype)
            if given != [field]:
                raise ClientError(
                    f"input {t.name!r} ({t.datatype}) carries {given}, expected {field or 'raw data'}"
                )
            tensor.count = len(getattr(t.contents, field))
        inputs.append(tensor)
    outputs = []
    for o in request.outputs:
        if SHM_PARAMETERS & set(o.parameters):
            raise shared_memory_parameters()
        count = o.parameters["class_count"].int64_param if "class_count" in o.parameters else 0
        outputs.append(Output(o.name, count))
    return inputs, outputs


class GrpcFrontDoor:
    """A grpc.aio server whose generic handler checks and forwards every method."""

    def __init__(
        self, access: AccessControl, upstream: str, internal: tuple[str, ...] = (), max_message: int = 0
    ):
        self.access = access
        self.upstream = upstream
        self.internal = internal  # strings never shown to clients (the repository's path)
        self.max_message = max_message or access.public.limits.max_body_bytes + (1 << 20)
        self.server: grpc.aio.Server | None = None
        self.channel: grpc.aio.Channel | None = None
        self._calls: dict[str, Any] = {}

    async def start(self, address: str) -> int:
        options = [
            ("grpc.max_receive_message_length", self.max_message),
            ("grpc.max_send_message_length", -1),
        ]
        self.channel = grpc.aio.insecure_channel(
            self.upstream, options=[("grpc.max_receive_message_length", -1), *options[1:]]
        )
        self.server = grpc.aio.server(options=options)
        self.server.add_generic_rpc_handlers([_Handler(self)])
        port = self.server.add_insecure_port(address)
        await self.server.start()
        return port

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(grace=1)
        if self.channel is not None:
            await self.channel.close()

    def call(self, method: str, stream: bool = False) -> Any:
        """Triton's ``method`` on the upstream channel, taking and giving serialized messages."""
        fn = self._calls.get(method)
        if fn is None:
            assert self.channel is not None
            path = f"/{SERVICE}/{method}"
            fn = self.channel.stream_stream(path) if stream else self.channel.unary_unary(path)
            self._calls[method] = fn
        return fn

    # --- the checks ---

    def admit(self, context: grpc.aio.ServicerContext, call: Call) -> str:
        """The caller's key name if the policy lets it make ``call`` (the key from the metadata)."""
        auth = None
        for name, value in context.invocation_metadata() or ():
            if name == "authorization":
                auth = value
        return self.access.admit(call, auth)

    def check_infer(self, raw: bytes) -> tuple[pb.ModelInferRequest, str]:
        try:
            request = pb.ModelInferRequest.FromString(raw)
        except Exception:
            raise ClientError("the request is not a valid ModelInferRequest", reason="malformed") from None
        spec = self.access.public.named(Call("infer", request.model_name, request.model_version))
        assert spec is not None  # inference names a public model
        inputs, outputs = decode_infer(request)
        check_infer(spec, inputs, outputs, self.access.public.limits)
        return request, spec.name

    def count(self, method: str, model: str, key: str, code: grpc.StatusCode, started: float) -> None:
        self.access.metrics.request("grpc", method, model, key, code.name)
        self.access.metrics.observe("grpc", method, model, time.perf_counter() - started)

    def refused(self, error: Error, method: str, model: str, key: str, started: float) -> None:
        """Count a call the front door refused."""
        self.access.count_rejection(error.reason)
        self.count(method, model, key_of(error, key), status_code(error), started)

    def clean(self, details: str | None) -> str:
        return clean_message(details or "", self.internal)


def status_code(error: Error) -> grpc.StatusCode:
    return grpc.StatusCode[error.grpc_code]


async def _abort(context: grpc.aio.ServicerContext, error: Error) -> None:
    """End the call with ``error``: its status code and message, and ``retry-after`` trailing metadata
    where it has one."""
    retry = getattr(error, "retry_after", None)
    if retry:
        context.set_trailing_metadata((("retry-after", retry),))
    await context.abort(status_code(error), error.message)


class _Handler(grpc.GenericRpcHandler):
    def __init__(self, door: GrpcFrontDoor) -> None:
        self.door = door

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        service, _, method = details.method.lstrip("/").partition("/")
        if service != SERVICE:
            return None
        if method == "ModelStreamInfer":
            return grpc.stream_stream_rpc_method_handler(self.stream)
        if method == "ModelInfer":
            return grpc.unary_unary_rpc_method_handler(self.infer)
        return grpc.unary_unary_rpc_method_handler(functools.partial(self.other, method))

    async def infer(self, raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        door, started, model, key = self.door, time.perf_counter(), "-", ANONYMOUS
        try:
            key = door.admit(context, Call("infer"))
            _, model = door.check_infer(raw)
            answer = await door.call("ModelInfer")(raw)
        except Error as exc:
            door.refused(exc, "ModelInfer", model, key, started)
            await _abort(context, exc)
        except grpc.aio.AioRpcError as exc:
            await self._upstream_error(context, exc, "ModelInfer", model, key, started)
        else:
            door.count("ModelInfer", model, key, grpc.StatusCode.OK, started)
            return answer
        raise AssertionError("unreachable")

    async def _upstream_error(
        self, context: Any, exc: grpc.aio.AioRpcError, method: str, model: str, key: str, started: float
    ) -> None:
        """Triton's error, cleaned; a model that is not loaded now, or Triton down, is UNAVAILABLE with
        retry-after."""
        door = self.door
        code, details = exc.code(), exc.details() or ""
        error: Error | None = from_triton(details, code.name, model)
        if isinstance(error, StubDied):
            door.access.report_dead_stub(model)
        if not isinstance(error, NotLoaded):
            down = (
                code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED) and not door.access.state.up
            )
            error = upstream_down() if down else None
        if error is not None:
            door.count(method, model, key, status_code(error), started)
            await _abort(context, error)
        door.count(method, model, key, code, started)
        await context.abort(code, door.clean(details))

    async def other(self, method: str, raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        door, started, key, model = self.door, time.perf_counter(), ANONYMOUS, "-"
        try:
            operation = grpc_operation(method)
            if operation == "health":
                return self._health(method)
            if operation is None:
                raise NotAllowed(f"{method} is not served", reason="no_route")
            key = door.admit(context, Call(operation))
            if method in MODEL_REQUESTS:
                request = MODEL_REQUESTS[method].FromString(raw)
                if method == "ModelStatistics" and not request.name:
                    return await self._all_stats(raw, key, started)
                door.access.public.named(Call(operation, request.name, request.version))
                model = request.name
            elif Call(operation).rule.who is Who.ADMIN:
                self._check_admin(method, raw)
            answer = await door.call(method)(raw)
            door.count(method, model, key, grpc.StatusCode.OK, started)
            return answer
        except Error as exc:
            door.refused(exc, method, model, key, started)
            await _abort(context, exc)
        except grpc.aio.AioRpcError as exc:
            await self._upstream_error(context, exc, method, model, key, started)
        except Exception:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"the request is not a valid {method}")
        raise AssertionError("unreachable")

    async def _all_stats(self, raw: bytes, key: str, started: float) -> bytes:
        """Every model's statistics cut to the served ones (perf_analyzer reads them at the end of a run)."""
        door = self.door
        answer = pb.ModelStatisticsResponse.FromString(await door.call("ModelStatistics")(raw))
        served = door.access.public.served
        kept = [m for m in answer.model_stats if m.name in served]
        del answer.model_stats[:]
        answer.model_stats.extend(kept)
        door.count("ModelStatistics", "-", key, grpc.StatusCode.OK, started)
        return answer.SerializeToString()

    def _health(self, method: str) -> bytes:
        state = self.door.access.state
        if method == "ServerLive":
            return pb.ServerLiveResponse(live=True).SerializeToString()
        return pb.ServerReadyResponse(ready=state.up and state.ready).SerializeToString()

    @staticmethod
    def _check_admin(method: str, raw: bytes) -> None:
        if method == "RepositoryModelLoad":
            refuse_file_writes(parameters=pb.RepositoryModelLoadRequest.FromString(raw).parameters)
        elif method == "TraceSetting":
            refuse_file_writes(settings=pb.TraceSettingRequest.FromString(raw).settings)
        elif method == "LogSettings":
            refuse_file_writes(settings=pb.LogSettingsRequest.FromString(raw).settings)

    async def stream(
        self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        """ModelStreamInfer: each message checked, a refused one answered on the stream; cancels go up."""
        door, started, key = self.door, time.perf_counter(), ANONYMOUS
        try:
            key = door.admit(context, Call("infer"))
        except Error as exc:
            door.refused(exc, "ModelStreamInfer", "-", key, started)
            await _abort(context, exc)
        out: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue()
        metadata = [(n, v) for n, v in context.invocation_metadata() or () if n != "authorization"]
        call = door.call("ModelStreamInfer", stream=True)(metadata=metadata or None)
        models: list[str] = []

        async def pump_in() -> None:
            try:
                async for raw in requests:
                    try:
                        _, model = door.check_infer(raw)
                        models.append(model)
                    except Error as exc:
                        door.refused(exc, "ModelStreamInfer", "-", key, started)
                        rid = _request_id(raw)
                        response = pb.ModelStreamInferResponse(
                            error_message=exc.message, infer_response=pb.ModelInferResponse(id=rid)
                        )
                        await out.put(response.SerializeToString())
                        continue
                    await call.write(raw)
                await call.done_writing()
            except (asyncio.CancelledError, grpc.aio.AioRpcError):
                pass
            except Exception as exc:
                await out.put(exc)

        async def pump_out() -> None:
            try:
                async for raw in call:
                    if b"error" in raw or b"healthy" in raw:
                        raw = self._clean_stream(raw)
                    await out.put(raw)
                await out.put(None)
            except grpc.aio.AioRpcError as exc:
                await out.put(exc)

        tasks = [asyncio.ensure_future(pump_in()), asyncio.ensure_future(pump_out())]
        try:
            while True:
                item = await out.get()
                if item is None:
                    break
                if isinstance(item, grpc.aio.AioRpcError):
                    if item.code() == grpc.StatusCode.CANCELLED:
                        break
                    await self._upstream_error(
                        context, item, "ModelStreamInfer", models[-1] if models else "-", key, started
                    )
                if isinstance(item, BaseException):
                    await context.abort(grpc.StatusCode.INTERNAL, "front door error")
                yield item
            door.count("ModelStreamInfer", models[-1] if models else "-", key, grpc.StatusCode.OK, started)
        finally:
            call.cancel()
            for task in tasks:
                task.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.gather(*tasks, return_exceptions=True)

    def _clean_stream(self, raw: bytes) -> bytes:
        response = pb.ModelStreamInferResponse.FromString(raw)
        if not response.error_message:
            return raw
        message = response.error_message
        error = from_triton(message)
        if isinstance(error, StubDied):
            self.door.access.report_dead_stub(response.infer_response.model_name)
        if isinstance(error, NotLoaded):
            message = error.message
        response.error_message = self.door.clean(message)
        return response.SerializeToString()


def _request_id(raw: bytes) -> str:
    with contextlib.suppress(Exception):
        return pb.ModelInferRequest.FromString(raw).id
    return ""
