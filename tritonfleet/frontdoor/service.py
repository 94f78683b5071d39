"""The front door as one object: the public HTTP, gRPC, OpenAI and metrics ports before a Triton on 127.0.0.1.

HTTP, ``/v1`` and metrics run on one uvloop event loop (a thread of its own), gRPC on the C++ transport's
threads (:mod:`~tritonfleet.frontdoor.grpc_native`; where it is not built, on a grpc.aio loop); they share
the :class:`~tritonfleet.frontdoor.access.AccessControl` (keys, limits, metrics, server state).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from tritonfleet.frontdoor import grpc_native
from tritonfleet.frontdoor.access import AccessControl
from tritonfleet.frontdoor.grpc_native import NativeGrpcFrontDoor
from tritonfleet.frontdoor.grpc_proxy import GrpcFrontDoor
from tritonfleet.frontdoor.http import HttpFrontDoor, MetricsRouter, Pool, Router


def is_local(host: str) -> bool:
    """True for addresses only this machine reaches (loopback)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Ports:
    """A set of ports: the ones the front door serves, or its upstreams' (Triton's and the OpenAI app's,
    on 127.0.0.1)."""

    http: int
    grpc: int
    metrics: int
    openai: int | None = None


GRPC_TRANSPORTS = ("auto", "native", "aio")


def grpc_transport(wanted: str = "auto") -> str:
    """The gRPC transport to serve with: ``native`` (C++) when built, else ``aio``; ``wanted`` may insist
    on either (``native`` where it is not built: :class:`~.grpc_native.NativeUnavailable`)."""
    if wanted not in GRPC_TRANSPORTS:
        raise ValueError(f"gRPC transport {wanted!r}: one of {', '.join(GRPC_TRANSPORTS)}")
    if wanted == "aio":
        return "aio"
    why = grpc_native.available()
    if why is None:
        return "native"
    if wanted == "native":
        raise grpc_native.NativeUnavailable(why)
    return "aio"


class FrontDoor:
    """Serves the public ports; ``start`` binds them (errors surface at once) and returns.
    ``transport``: the gRPC transport (:func:`grpc_transport`)."""

    def __init__(
        self,
        access: AccessControl,
        host: str,
        ports: Ports,
        upstreams: Ports,
        internal: tuple[str, ...] = (),
        transport: str = "auto",
    ):
        self.transport = grpc_transport(transport)
        self.access = access
        self.host = host
        self.ports = ports
        self.upstreams = upstreams
        self.internal = internal  # strings never shown to clients (the repository's path)
        self.http: HttpFrontDoor | None = None
        self.grpc: GrpcFrontDoor | None = None
        self.native: NativeGrpcFrontDoor | None = None
        self._loops: list[asyncio.AbstractEventLoop] = []
        self._threads: list[threading.Thread] = []
        self.bound: Ports | None = None

    def start(self) -> Ports:
        pools = {
            "triton": Pool("127.0.0.1", self.upstreams.http),
            "metrics": Pool("127.0.0.1", self.upstreams.metrics, max_idle=4),
        }
        if self.upstreams.openai:
            pools["openai"] = Pool("127.0.0.1", self.upstreams.openai)
        openai = self.upstreams.openai is not None
        self.http = HttpFrontDoor(self.access, pools, Router(self.access, openai=openai), self.internal)
        metrics = HttpFrontDoor(self.access, pools, MetricsRouter(self.access), self.internal)
        openai_door = HttpFrontDoor(
            self.access, pools, Router(self.access, openai=openai, only_openai=True), self.internal
        )
        socks = {"http": _bind(self.host, self.ports.http), "metrics": _bind(self.host, self.ports.metrics)}
        if self.ports.openai is not None:
            socks["openai"] = _bind(self.host, self.ports.openai)

        async def serve_http() -> None:
            assert self.http is not None
            await self.http.listen(self.host, 0, socks["http"])
            await metrics.listen(self.host, 0, socks["metrics"])
            if "openai" in socks:
                await openai_door.listen(self.host, 0, socks["openai"])

        self._run_loop(serve_http, uvloop=True, name="frontdoor-http")
        self._closers = [self.http.close, metrics.close, openai_door.close]
        upstream, address = f"127.0.0.1:{self.upstreams.grpc}", f"{_grpc_host(self.host)}:{self.ports.grpc}"
        if self.transport == "native":
            self.native = NativeGrpcFrontDoor(self.access, upstream, self.internal)
            bound_grpc = self.native.start(address)
        else:
            bound_grpc = self._start_aio(upstream, address)
        if not bound_grpc:
            raise OSError(f"cannot listen on {self.host}:{self.ports.grpc} (gRPC)")
        self.bound = Ports(
            socks["http"].getsockname()[1],
            bound_grpc,
            socks["metrics"].getsockname()[1],
            socks["openai"].getsockname()[1] if "openai" in socks else None,
        )
        return self.bound

    def _start_aio(self, upstream: str, address: str) -> int:
        self.grpc = GrpcFrontDoor(self.access, upstream, self.internal)
        grpc_port: Future[int] = Future()

        async def serve_grpc() -> None:
            assert self.grpc is not None
            try:
                grpc_port.set_result(await self.grpc.start(address))
            except BaseException as exc:
                grpc_port.set_exception(exc)
                raise

        self._run_loop(serve_grpc, uvloop=False, name="frontdoor-grpc")
        return grpc_port.result(timeout=30)

    def _run_loop(self, main: Callable[[], Any], *, uvloop: bool, name: str) -> None:
        if uvloop:
            import uvloop as uv

            loop: asyncio.AbstractEventLoop = uv.new_event_loop()
        else:
            loop = asyncio.new_event_loop()
        started: Future[None] = Future()

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(main())
                started.set_result(None)
            except BaseException as exc:
                started.set_exception(exc)
                return
            loop.run_forever()

        thread = threading.Thread(target=run, name=name, daemon=True)
        thread.start()
        started.result(timeout=30)
        self._loops.append(loop)
        self._threads.append(thread)

    def stop(self) -> None:
        if self.native is not None:
            self.native.stop()
            self.native = None
        if not self._loops:
            return
        http_loop = self._loops[0]
        for close in self._closers:
            with _suppress():
                asyncio.run_coroutine_threadsafe(close(), http_loop).result(timeout=5)
        if self.grpc is not None and len(self._loops) > 1:
            with _suppress():
                asyncio.run_coroutine_threadsafe(self.grpc.stop(), self._loops[1]).result(timeout=5)
        for loop in self._loops:
            loop.call_soon_threadsafe(loop.stop)
        for thread in self._threads:
            thread.join(timeout=5)
        self._loops.clear()
        self._threads.clear()


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def _grpc_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class _suppress:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return True
