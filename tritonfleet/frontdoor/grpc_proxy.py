"""The front door's gRPC server: Triton's ``inference.GRPCInferenceService`` in front of its gRPC port.

Every request is decoded (``ModelInferRequest``; each message of a ``ModelStreamInfer`` stream) and checked
by the same rules as HTTP (:mod:`tritonfleet.frontdoor.validation`), then forwarded as the bytes that came
(no re-encoding). Streams stay streams: a refused message gets an error response on the stream, which goes
on; a client's cancellation cancels the upstream call. Admin methods need an admin key; shared-memory
registration never passes. Error messages are cleaned of internal names.
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

from tritonfleet.frontdoor.access import ANONYMOUS, AccessControl, Refused
from tritonfleet.frontdoor.validation import (
    SHM_PARAMETERS,
    ClientError,
    Output,
    Tensor,
    bad,
    check_infer,
    clean_message,
    model_loading,
    stub_dead,
)

SERVICE = "inference.GRPCInferenceService"
CONTENTS = {
    "BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
    "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents",
    "UINT32": "uint_contents", "UINT64": "uint64_contents", "FP32": "fp32_contents",
    "FP64": "fp64_contents", "BYTES": "bytes_contents",
}  # fmt: skip
STATUS = {
    400: grpc.StatusCode.INVALID_ARGUMENT, 401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED, 404: grpc.StatusCode.NOT_FOUND,
    405: grpc.StatusCode.UNIMPLEMENTED, 413: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED, 503: grpc.StatusCode.UNAVAILABLE,
}  # fmt: skip
PUBLIC = {"ServerMetadata"}
MODEL_METHODS = {"ModelReady": pb.ModelReadyRequest, "ModelMetadata": pb.ModelMetadataRequest,
                 "ModelConfig": pb.ModelConfigRequest}  # fmt: skip
ADMIN = {"RepositoryIndex", "RepositoryModelLoad", "RepositoryModelUnload",
         "TraceSetting", "LogSettings"}  # fmt: skip


def decode_infer(request: pb.ModelInferRequest) -> tuple[list[Tensor], list[Output]]:
    """The request's inputs and outputs as the validator sees them."""
    if request.parameters and SHM_PARAMETERS & set(request.parameters):
        raise bad("shared memory is not available through the front door", "shared_memory")
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise bad(f"{len(raw)} raw_input_contents for {len(request.inputs)} inputs")
    inputs = []
    for i, t in enumerate(request.inputs):
        if SHM_PARAMETERS & set(t.parameters):
            raise bad("shared memory is not available through the front door", "shared_memory")
        tensor = Tensor(t.name, t.datatype, list(t.shape))
        given = [f.name for f, v in t.contents.ListFields()]
        if raw:
            if given:
                raise bad(f"input {t.name!r} has both contents and raw_input_contents")
            tensor.raw = raw[i]
        elif given:
            field = CONTENTS.get(t.datatype)
            if given != [field]:
                raise bad(f"input {t.name!r} ({t.datatype}) carries {given}, expected {field or 'raw data'}")
            tensor.count = len(getattr(t.contents, field))
        inputs.append(tensor)
    outputs = []
    for o in request.outputs:
        if SHM_PARAMETERS & set(o.parameters):
            raise bad("shared memory is not available through the front door", "shared_memory")
        count = o.parameters["class_count"].int64_param if "class_count" in o.parameters else 0
        outputs.append(Output(o.name, count))
    return inputs, outputs


class GrpcFrontDoor:
    """A grpc.aio server whose generic handler checks and forwards every method."""

    def __init__(
        self, access: AccessControl, upstream: str, hidden: tuple[str, ...] = (), max_message: int = 0
    ):
        self.access = access
        self.upstream = upstream
        self.hidden = hidden
        self.max_message = max_message or access.catalog.limits.max_body_bytes + (1 << 20)
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
        fn = self._calls.get(method)
        if fn is None:
            assert self.channel is not None
            path = f"/{SERVICE}/{method}"
            fn = self.channel.stream_stream(path) if stream else self.channel.unary_unary(path)
            self._calls[method] = fn
        return fn

    # --- the checks ---

    def authorize(self, context: grpc.aio.ServicerContext, admin: bool = False) -> str:
        auth = None
        for name, value in context.invocation_metadata() or ():
            if name == "authorization":
                auth = value
        key = self.access.authorize(auth, admin=admin)
        self.access.check_up()
        return key.name if key else ANONYMOUS

    def check_infer(self, raw: bytes) -> tuple[pb.ModelInferRequest, str]:
        try:
            request = pb.ModelInferRequest.FromString(raw)
        except Exception:
            raise bad("the request is not a valid ModelInferRequest", "malformed") from None
        spec = self.access.catalog.model(request.model_name, request.model_version)
        inputs, outputs = decode_infer(request)
        check_infer(spec, inputs, outputs, self.access.catalog.limits)
        return request, spec.name

    def count(self, method: str, model: str, key: str, code: grpc.StatusCode, started: float) -> None:
        metrics = self.access.metrics
        metrics.requests.labels("grpc", method, model, key, code.name).inc()
        metrics.latency.labels("grpc", method).observe(time.perf_counter() - started)

    def clean(self, details: str | None) -> str:
        return clean_message(details or "", self.hidden)


async def _abort(context: grpc.aio.ServicerContext, door: GrpcFrontDoor, exc: ClientError) -> None:
    door.access.reject(exc.reason)
    retry = getattr(exc, "retry_after", None)
    if retry:
        context.set_trailing_metadata((("retry-after", retry),))
    await context.abort(STATUS.get(exc.status, grpc.StatusCode.INVALID_ARGUMENT), exc.message)


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
            key = door.authorize(context)
            _, model = door.check_infer(raw)
            answer = await door.call("ModelInfer")(raw)
        except ClientError as exc:
            door.count(
                "ModelInfer", model, key, STATUS.get(exc.status, grpc.StatusCode.INVALID_ARGUMENT), started
            )
            await _abort(context, door, exc)
        except grpc.aio.AioRpcError as exc:
            await self._upstream_error(context, exc, "ModelInfer", model, key, started)
        else:
            door.count("ModelInfer", model, key, grpc.StatusCode.OK, started)
            return answer
        raise AssertionError("unreachable")

    async def _upstream_error(
        self, context: Any, exc: grpc.aio.AioRpcError, method: str, model: str, key: str, started: float
    ) -> None:
        door = self.door
        code, details = exc.code(), exc.details() or ""
        if stub_dead(details):
            door.access.model_fault(model)
            code, details = grpc.StatusCode.UNAVAILABLE, f"{model} is restarting; retry"
            context.set_trailing_metadata((("retry-after", "5"),))
        elif model_loading(details):
            code, details = grpc.StatusCode.UNAVAILABLE, f"{model} is loading; retry"
            context.set_trailing_metadata((("retry-after", "2"),))
        elif code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED) and not door.access.state.up:
            code, details = grpc.StatusCode.UNAVAILABLE, "the server is not available; retry"
            context.set_trailing_metadata((("retry-after", "2"),))
        door.count(method, model, key, code, started)
        await context.abort(code, door.clean(details))

    async def other(self, method: str, raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        door, started, key, model = self.door, time.perf_counter(), ANONYMOUS, "-"
        try:
            if method in ("ServerLive", "ServerReady"):
                return self._health(method)
            if "SharedMemory" in method:
                raise Refused(403, "shared memory is not available through the front door", "shared_memory")
            if method in MODEL_METHODS:
                key = door.authorize(context)
                request = MODEL_METHODS[method].FromString(raw)
                model = door.access.catalog.readable(request.name, request.version)
            elif method == "ModelStatistics":
                # The served models' statistics are open to their callers (perf_analyzer reads them); the
                # whole list is cut to those models.
                key = door.authorize(context)
                request = pb.ModelStatisticsRequest.FromString(raw)
                if request.name:
                    model = door.access.catalog.readable(request.name, request.version)
                else:
                    answer = pb.ModelStatisticsResponse.FromString(await door.call(method)(raw))
                    served = door.access.catalog.models.keys() | door.access.catalog.steps
                    kept = [m for m in answer.model_stats if m.name in served]
                    del answer.model_stats[:]
                    answer.model_stats.extend(kept)
                    door.count(method, model, key, grpc.StatusCode.OK, started)
                    return answer.SerializeToString()
            elif method in ADMIN:
                key = door.authorize(context, admin=True)
                self._check_admin(method, raw)
            elif method in PUBLIC:
                key = door.authorize(context)
            else:
                raise ClientError(405, f"{method} is not served", "no_route")
            answer = await door.call(method)(raw)
            door.count(method, model, key, grpc.StatusCode.OK, started)
            return answer
        except ClientError as exc:
            door.count(method, model, key, STATUS.get(exc.status, grpc.StatusCode.INVALID_ARGUMENT), started)
            await _abort(context, door, exc)
        except grpc.aio.AioRpcError as exc:
            await self._upstream_error(context, exc, method, model, key, started)
        except Exception:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"the request is not a valid {method}")
        raise AssertionError("unreachable")

    def _health(self, method: str) -> bytes:
        state = self.door.access.state
        if method == "ServerLive":
            return pb.ServerLiveResponse(live=True).SerializeToString()
        return pb.ServerReadyResponse(ready=state.up and state.ready).SerializeToString()

    @staticmethod
    def _check_admin(method: str, raw: bytes) -> None:
        if method == "RepositoryModelLoad":
            request = pb.RepositoryModelLoadRequest.FromString(raw)
            if any(k.startswith("file:") for k in request.parameters):
                raise bad("model files cannot be uploaded through the front door")
        elif method == "TraceSetting":
            if "trace_file" in pb.TraceSettingRequest.FromString(raw).settings:
                raise bad("trace and log files cannot be set through the front door")
        elif method == "LogSettings" and "log_file" in pb.LogSettingsRequest.FromString(raw).settings:
            raise bad("trace and log files cannot be set through the front door")

    async def stream(
        self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        """ModelStreamInfer: each message checked, a refused one answered on the stream; cancels go up."""
        door, started, key = self.door, time.perf_counter(), ANONYMOUS
        try:
            key = door.authorize(context)
        except ClientError as exc:
            door.count("ModelStreamInfer", "-", key, STATUS[exc.status], started)
            await _abort(context, door, exc)
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
                    except ClientError as exc:
                        door.access.reject(exc.reason)
                        door.count(
                            "ModelStreamInfer",
                            "-",
                            key,
                            STATUS.get(exc.status, grpc.StatusCode.INVALID_ARGUMENT),
                            started,
                        )
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
        if stub_dead(message):
            self.door.access.model_fault(response.infer_response.model_name)
            message = "the model is restarting; retry"
        elif model_loading(message):
            message = "the model is loading; retry"
        response.error_message = self.door.clean(message)
        return response.SerializeToString()


def _request_id(raw: bytes) -> str:
    with contextlib.suppress(Exception):
        return pb.ModelInferRequest.FromString(raw).id
    return ""
