"""The front door's gRPC transport on grpc.aio: the pure-Python fallback of
:mod:`~tritonfleet.frontdoor.grpc_native` (which costs far less per call), with the same rules
(:class:`~tritonfleet.frontdoor.grpc_calls.GrpcCalls`).

A generic handler takes every method as bytes and forwards the bytes that came (no re-encoding). Streams
stay streams: a refused message gets an error response on the stream, which goes on; a client's
cancellation cancels the upstream call.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
from collections.abc import AsyncIterator
from typing import Any

import grpc

from tritonfleet.frontdoor.access import AccessControl
from tritonfleet.frontdoor.grpc_calls import SERVICE, STREAM, GrpcCalls, Pending, Refusal


class GrpcFrontDoor:
    """A grpc.aio server whose generic handler checks and forwards every method."""

    def __init__(
        self, access: AccessControl, upstream: str, internal: tuple[str, ...] = (), max_message: int = 0
    ):
        self.access = access
        self.calls = GrpcCalls(access, internal)
        self.upstream = upstream
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


class GrpcFrontDoorThread:
    """A grpc.aio front door on an event loop of its own thread: the fallback served beside the fleet's
    transport on the same :class:`~tritonfleet.frontdoor.access.AccessControl` (tests, benches)."""

    def __init__(self, access: AccessControl, upstream: str, internal: tuple[str, ...] = ()) -> None:
        self.door = GrpcFrontDoor(access, upstream, internal)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="frontdoor-grpc-aio", daemon=True)

    def start(self, address: str = "127.0.0.1:0") -> int:
        """Bind ``address``; the port (0: it could not)."""
        self.thread.start()
        return asyncio.run_coroutine_threadsafe(self.door.start(address), self.loop).result(30)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.door.stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


def authorization(context: grpc.aio.ServicerContext) -> str | None:
    """The call's ``authorization`` metadata (the last one)."""
    found = None
    for name, value in context.invocation_metadata() or ():
        if name == "authorization":
            found = value
    return found


async def _abort(context: grpc.aio.ServicerContext, refusal: Refusal) -> None:
    """End the call with ``refusal``: its status code and message, and ``retry-after`` trailing metadata
    where it has one."""
    if refusal.retry_after:
        context.set_trailing_metadata((("retry-after", refusal.retry_after),))
    await context.abort(grpc.StatusCode[refusal.code], refusal.message)


class _Handler(grpc.GenericRpcHandler):
    def __init__(self, door: GrpcFrontDoor) -> None:
        self.door = door

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        service, _, method = details.method.lstrip("/").partition("/")
        if service != SERVICE:
            return None
        if method == STREAM:
            return grpc.stream_stream_rpc_method_handler(self.stream)
        return grpc.unary_unary_rpc_method_handler(functools.partial(self.unary, details.method))

    async def unary(self, path: str, raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        calls = self.door.calls
        step = calls.unary(path, raw, authorization(context))
        if isinstance(step, bytes):
            return step
        if isinstance(step, Refusal):
            await _abort(context, step)
        assert isinstance(step, Pending)
        try:
            answer = await self.door.call(step.method)(raw)
        except grpc.aio.AioRpcError as exc:
            outcome = calls.answered(step, exc.code().name, exc.details() or "", None)
        else:
            outcome = calls.answered(step, "OK", "", answer)
            if outcome is None:
                return answer
        if isinstance(outcome, bytes):
            return outcome
        assert isinstance(outcome, Refusal)
        await _abort(context, outcome)
        raise AssertionError("unreachable")

    async def stream(
        self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        """ModelStreamInfer: each message checked, a refused one answered on the stream; cancels go up."""
        calls = self.door.calls
        state = calls.stream_open(authorization(context))
        if isinstance(state, Refusal):
            await _abort(context, state)
            return
        out: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue()
        metadata = [(n, v) for n, v in context.invocation_metadata() or () if n != "authorization"]
        call = self.door.call(STREAM, stream=True)(metadata=metadata or None)

        async def pump_in() -> None:
            try:
                async for raw in requests:
                    refused = calls.stream_message(state, raw)
                    if refused is not None:
                        await out.put(refused)
                    else:
                        await call.write(raw)
                await call.done_writing()
            except (asyncio.CancelledError, grpc.aio.AioRpcError):
                pass
            except Exception as exc:
                if not call.done():  # else the upstream ended (dead, refused): its status comes out
                    await out.put(exc)

        async def pump_out() -> None:
            try:
                async for raw in call:
                    await out.put(calls.stream_answer(raw))
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
                    refusal = calls.stream_closed(state, item.code().name, item.details() or "")
                    if refusal is None:
                        return
                    await _abort(context, refusal)
                if isinstance(item, BaseException):
                    await context.abort(grpc.StatusCode.INTERNAL, "front door error")
                yield item
            calls.stream_closed(state, "OK", "")
        finally:
            call.cancel()
            for task in tasks:
                task.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.gather(*tasks, return_exceptions=True)
