"""The front door's HTTP server: KServe v2 (JSON and the binary extension), Triton's generate extension, the
admin APIs behind an admin key, ``/v1`` (the OpenAI app) and the web console beside it, in front of
Triton's HTTP port on 127.0.0.1.

Raw asyncio protocols with httptools' parser, on uvloop: the measured fastest Python front door
(docs/frontdoor/design.md). A request is read whole (up to the body limit; chunked bodies are decoded
here), checked (route, key, rate, validation) and only then sent on, with a Content-Length, a normal
content type and none of the client's other headers, over a pool of keep-alive connections. Answers
with a Content-Length are passed back whole, streamed ones (Server-Sent Events) piece by piece; error
messages are cleaned of internal names on the way. A client that disconnects closes its upstream
connection, which cancels its request.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import httptools

from tritonfleet import pipelines
from tritonfleet.console import assets as console
from tritonfleet.errors import (
    ClientError,
    Error,
    NotAllowed,
    NotFound,
    NotLoaded,
    StubDied,
    TooLarge,
    UnsupportedMediaType,
    from_triton,
)
from tritonfleet.frontdoor.access import ANONYMOUS, AccessControl, key_of, upstream_down
from tritonfleet.frontdoor.policy import (
    HEALTH_PATHS,
    OPENAI_OPERATIONS,
    Call,
    Models,
    Who,
    http_operation,
    refuse_file_writes,
)
from tritonfleet.frontdoor.validation import (
    check_generate,
    check_infer,
    clean_message,
    json_infer,
    parse_json,
)

log = logging.getLogger("tritonfleet.frontdoor")
IDLE_TIMEOUT_S = 120.0
OPENAI_PEEK_BYTES = 1 << 20  # /v1 bodies up to this size are read for their model (the metrics' label)
STATUS_TEXT = {
    200: b"OK", 100: b"Continue", 304: b"Not Modified", 400: b"Bad Request", 401: b"Unauthorized",
    403: b"Forbidden", 404: b"Not Found", 405: b"Method Not Allowed", 409: b"Conflict",
    411: b"Length Required",
    413: b"Payload Too Large", 415: b"Unsupported Media Type", 429: b"Too Many Requests",
    500: b"Internal Server Error", 501: b"Not Implemented", 502: b"Bad Gateway", 503: b"Service Unavailable",
}  # fmt: skip


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    keep_alive: bool
    refused: Error | None = None  # found while reading (compressed body, too many headers)
    started: float = field(default_factory=time.perf_counter)
    query: str = ""  # passed on to /v1 only (the batch API's pagination)


@dataclass
class Forward:
    """Where and what to send upstream once a request passed every check."""

    upstream: str  # "triton" or "openai"
    path: str
    body: bytes
    headers: list[tuple[bytes, bytes]]
    route: str
    model: str
    key: str


class Reply(Exception):
    """An answer made by the front door itself."""

    def __init__(self, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        self.status, self.body, self.headers = status, body, headers or []


def error_body(message: str) -> bytes:
    return json.dumps({"error": message}).encode()


def error_answer(error: Error) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    """An error of the family as KServe's HTTP answer: its status, ``{"error": message}``, ``Retry-After``
    where it has one, ``WWW-Authenticate`` on a 401."""
    headers = []
    retry = getattr(error, "retry_after", None)
    if retry:
        headers.append((b"retry-after", retry.encode()))
    if error.status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    return error.status, error_body(error.message), headers


class Router:
    """Decides what happens to a request: a :class:`Forward`, or a :class:`Reply` raised. What may be called
    is :mod:`tritonfleet.frontdoor.policy`'s; this adds HTTP's own checks (paths, methods, bodies)."""

    def __init__(self, access: AccessControl, *, openai: bool = False, only_openai: bool = False) -> None:
        self.access = access
        self.openai = openai
        self.only_openai = only_openai
        self.openai_models = frozenset(pipelines.openai_models())

    def route(self, req: Request) -> Forward:
        path = req.path
        call = http_operation(path)
        if call is not None and call.operation == "health":
            raise self._health(path)
        if call is not None and call.operation in OPENAI_OPERATIONS:
            return self._openai(req, call)
        if self.only_openai:
            raise NotFound(f"no route {path}: this port serves /v1", reason="no_route")
        if call is not None and call.rule.upstream != "triton":
            return self._console(req, call)
        if "%" in path or "//" in path or "/../" in path:
            raise ClientError("the path may not hold escapes or empty parts", reason="bad_path")
        if call is None:
            raise NotFound(f"no route {path}", reason="no_route")
        rule = call.rule
        key = self.access.admit(call, req.headers.get("authorization"))
        spec = self.access.public.named(call, req.method)
        if rule.method is not None and req.method != rule.method:
            raise NotAllowed(f"{req.path} takes {rule.method}", reason="bad_method")
        if call.operation == "infer":
            self._check_infer(req, spec)
        elif call.operation in ("generate", "generate_stream"):
            check_generate(spec, req.body, self.access.public.limits)
        elif rule.who is Who.ADMIN:
            self._check_admin(req)
        model = call.model if rule.models is not Models.NONE else ""
        return self._forward(req, rule.route, model, key)

    def _health(self, path: str) -> Reply:
        state = self.access.state
        ok = path.endswith("live") or (state.up and state.ready)
        return Reply(200 if ok else 503, b"" if ok else error_body(f"not ready: {state.reason}"))

    def _check_infer(self, req: Request, spec: Any) -> None:
        header = req.headers.get("inference-header-content-length")
        length = None
        if header is not None:
            if not header.isdigit():
                raise ClientError("Inference-Header-Content-Length must be a number")
            length = int(header)
        _, inputs, outputs = json_infer(req.body, length)
        check_infer(spec, inputs, outputs, self.access.public.limits)

    @staticmethod
    def _check_admin(req: Request) -> None:
        """An admin request that sets something: a JSON object that writes no file on the server."""
        if req.method != "POST" or not req.body:
            return
        settings = parse_json(req.body)
        if not isinstance(settings, dict):
            raise ClientError("the request must be a JSON object")
        parameters = settings.get("parameters") or {}
        refuse_file_writes(parameters if isinstance(parameters, dict) else (), settings)

    def _openai(self, req: Request, call: Call) -> Forward:
        if not self.openai:
            raise NotFound("the OpenAI API is not served here", reason="no_route")
        tokens = call.rule.tokens and req.method == "POST"
        key = self.access.admit(call, req.headers.get("authorization"), tokens=tokens)
        if call.rule.method is not None and req.method != call.rule.method:
            raise NotAllowed(f"{req.path} takes {call.rule.method}", reason="bad_method")
        headers = [(b"x-tritonfleet-key", key.encode())]
        for name in ("content-type", "accept"):
            if name in req.headers:
                headers.append((name.encode(), req.headers[name].encode()))
        path = f"{req.path}?{req.query}" if req.query else req.path
        return Forward("openai", path, req.body, headers, call.rule.route, self._openai_model(req), key)

    def _console(self, req: Request, call: Call) -> Forward:
        """The web console (:mod:`tritonfleet.console`), served with ``/v1``: its page and files answered
        here, its API and ``/chat/stream`` by the ``/v1`` app."""
        if not self.openai:
            raise NotFound("the console is served with the OpenAI API (--openai-port)", reason="no_route")
        if call.rule.upstream == "door":
            raise Reply(*console.answer(req.method, req.path, req.headers))
        return self._openai(req, call)

    def _openai_model(self, req: Request) -> str:
        """The declared ``/v1`` model a request names, for the metrics' model label ("" when it names
        none of them, or its body is over ``OPENAI_PEEK_BYTES``: not parsed on the event loop)."""
        if req.method != "POST" or not req.body or len(req.body) > OPENAI_PEEK_BYTES:
            return ""
        try:
            model = json.loads(req.body).get("model")
        except (ValueError, AttributeError):
            return ""
        return model if model in self.openai_models else ""

    @staticmethod
    def _forward(req: Request, route: str, model: str, key: str) -> Forward:
        headers = []
        if req.method == "POST":
            binary = req.headers.get("inference-header-content-length")
            if binary is not None:
                headers.append((b"inference-header-content-length", binary.encode()))
                headers.append((b"content-type", b"application/octet-stream"))
            else:
                headers.append((b"content-type", b"application/json"))
        return Forward("triton", req.path, req.body, headers, route, model, key)


class MetricsRouter(Router):
    """The metrics port: ``/metrics`` (Triton's, then the front door's), no key; health probes."""

    def route(self, req: Request) -> Forward:
        if req.path in HEALTH_PATHS:
            raise self._health(req.path)
        if req.path != "/metrics":
            raise NotFound("this port serves /metrics", reason="no_route")
        if not self.access.state.up:
            raise Reply(200, self.access.metrics.text(), [(b"content-type", b"text/plain; version=0.0.4")])
        return Forward("metrics", "/metrics", b"", [], "metrics", "", ANONYMOUS)


class UpstreamConnection(asyncio.Protocol):
    """One keep-alive connection to an upstream HTTP server, answering one request at a time."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.client: ClientConnection | None = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.streaming = False
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.abort()

    def send(self, client: ClientConnection, method: str, fwd: Forward) -> None:
        self.client = client
        head = [f"{method} {fwd.path} HTTP/1.1\r\nhost: {self.pool.host}\r\n".encode()]
        for name, value in fwd.headers:
            head.append(name + b": " + value + b"\r\n")
        head.append(b"content-length: %d\r\n\r\n" % len(fwd.body))
        assert self.transport is not None
        self.transport.write(b"".join(head) + fwd.body if len(fwd.body) < 65536 else b"".join(head))
        if len(fwd.body) >= 65536:
            self.transport.write(fwd.body)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        names = {n for n, _ in self.headers}
        self.streaming = b"content-length" not in names
        if self.streaming and self.client is not None:
            self.client.stream_start(self.parser.get_status_code(), self.headers)

    def on_body(self, body: bytes) -> None:
        if self.streaming:
            if self.client is not None:
                self.client.stream_piece(body)
        else:
            self.body.append(body)

    def on_message_complete(self) -> None:
        client, self.client = self.client, None
        status, headers, body = self.parser.get_status_code(), self.headers, b"".join(self.body)
        streaming = self.streaming
        self.headers, self.body, self.streaming = [], [], False
        keep = self.parser.should_keep_alive()
        if keep:
            self.pool.release(self)
        else:
            self.abort()
        if client is not None:
            if streaming:
                client.stream_end()
            else:
                client.upstream_reply(status, headers, body)

    def abort(self) -> None:
        """Close this connection (a request cancelled by its client, a broken answer)."""
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.forget(self)
        client, self.client = self.client, None
        if client is not None:
            client.upstream_lost()


class Pool:
    """Idle keep-alive connections to one upstream."""

    def __init__(self, host: str, port: int, max_idle: int = 256) -> None:
        self.host, self.port, self.max_idle = host, port, max_idle
        self.idle: list[UpstreamConnection] = []

    async def get(self) -> UpstreamConnection:
        while self.idle:
            conn = self.idle.pop()
            if not conn.closed:
                return conn
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(lambda: UpstreamConnection(self), self.host, self.port)
        return conn

    def release(self, conn: UpstreamConnection) -> None:
        if len(self.idle) < self.max_idle and not conn.closed:
            self.idle.append(conn)
        else:
            conn.abort()

    def forget(self, conn: UpstreamConnection) -> None:
        if conn in self.idle:
            self.idle.remove(conn)

    def close(self) -> None:
        for conn in self.idle:
            conn.abort()
        self.idle.clear()


class ClientConnection(asyncio.Protocol):
    """One client connection: parses requests, answers them in order."""

    def __init__(self, server: HttpFrontDoor) -> None:
        self.server = server
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.queue: deque[Request] = deque()
        self.busy = False
        self.upstream: UpstreamConnection | None = None
        self.current: Request | None = None
        self.fwd: Forward | None = None
        self.last = time.monotonic()
        self.streaming = False
        self.sending: asyncio.Future[None] | None = None
        self._reset()

    def _reset(self) -> None:
        self.url = b""
        self.headers: dict[str, str] = {}
        self.body: list[bytes] = []
        self.size = 0
        self.refused: Error | None = None

    # --- reading requests ---

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.server.connections.add(self)

    def data_received(self, data: bytes) -> None:
        self.last = time.monotonic()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(ClientError("protocol upgrades are not supported", reason="bad_http"))
        except httptools.HttpParserCallbackError:
            raise
        except httptools.HttpParserError as exc:
            self._fail(ClientError(f"malformed HTTP request: {exc}", reason="bad_http"))

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(self.headers) >= 100:
            self.refused = self.refused or ClientError("too many headers", reason="bad_http")
            return
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        limit = self.server.access.public.limits.max_body_bytes
        length = self.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            self._fail(TooLarge(f"the body is over the limit of {limit} bytes"))
            return
        if self.headers.get("content-encoding", "identity").lower() != "identity":
            self.refused = UnsupportedMediaType("compressed request bodies are not accepted")
        if self.headers.get("expect", "").lower() == "100-continue" and self.transport is not None:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        limit = self.server.access.public.limits.max_body_bytes
        if self.size > limit:
            self._fail(TooLarge(f"the body is over the limit of {limit} bytes"))
            return
        self.body.append(body)

    def on_message_complete(self) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        path, _, query = self.url.decode("latin-1").partition("?")
        method = self.parser.get_method().decode("latin-1")
        keep = self.parser.should_keep_alive()
        req = Request(method, path, self.headers, b"".join(self.body), keep, self.refused, query=query)
        self._reset()
        self.queue.append(req)
        if not self.busy:
            self._next()

    def _fail(self, error: ClientError) -> None:
        """Answer and close: the connection cannot be read on (bad framing, a body over the limit)."""
        self.server.access.count_rejection(error.reason)
        self.server.count("http", "-", "-", ANONYMOUS, error.status)
        if self.transport is not None and not self.transport.is_closing():
            self._write(error.status, error_body(error.message), [], close=True)
            self.transport.close()

    # --- answering ---

    def _next(self) -> None:
        while self.queue and not self.busy:
            req = self.queue.popleft()
            self.current = req
            try:
                if req.refused is not None:
                    raise req.refused
                fwd = self.server.router.route(req)
            except Reply as r:
                self._answer(req, r.status, r.body, r.headers, "health", "", ANONYMOUS)
                continue
            except Error as exc:
                self._refuse(req, exc)
                continue
            except Exception:  # a bug here must cost one answer, not the connection
                log.exception("front door: routing %s %s failed", req.method, req.path)
                self._answer(req, 500, error_body("front door error"), [], "error", "", ANONYMOUS)
                continue
            self.busy = True
            self.fwd = fwd
            self.sending = asyncio.ensure_future(self._send(req, fwd))

    def _refuse(self, req: Request, error: Error) -> None:
        self.server.access.count_rejection(error.reason)
        status, body, headers = error_answer(error)
        self._answer(req, status, body, headers, "refused", "", key_of(error, ANONYMOUS))

    async def _send(self, req: Request, fwd: Forward) -> None:
        pool = self.server.pools.get(fwd.upstream)
        try:
            assert pool is not None
            conn = await pool.get()
        except (OSError, AssertionError):
            self.busy = False
            self._refuse(req, upstream_down())
            self._next()
            return
        if self.transport is None or self.transport.is_closing():
            pool.release(conn)
            return
        self.upstream = conn
        conn.send(self, req.method, fwd)

    def upstream_reply(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        req, fwd = self.current, self.fwd
        self.upstream = None
        self.busy = False
        assert req is not None and fwd is not None
        keep = [(n, v) for n, v in headers if n in (b"content-type", b"inference-header-content-length")]
        if fwd.upstream == "metrics":
            body += self.server.access.metrics.text()
        elif fwd.route == "stats" and not fwd.model and status == 200:
            body = self.server.served_stats(body)
        elif status >= 400:
            status, body, extra = self.server.clean_error(fwd, status, body, headers)
            keep = [(b"content-type", b"application/json"), *extra]
        self._answer(req, status, body, keep, fwd.route, fwd.model, fwd.key)
        self._next()

    def upstream_lost(self) -> None:
        """The upstream connection closed before its answer was complete."""
        req = self.current
        self.upstream = None
        if self.busy and req is not None and self.transport is not None and not self.transport.is_closing():
            if self.streaming:
                self.transport.close()
                return
            self.busy = False
            self._refuse(req, upstream_down())
            self._next()

    def stream_start(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        self.streaming = True
        keep = [(n, v) for n, v in headers if n in (b"content-type", b"cache-control")]
        req, fwd = self.current, self.fwd
        assert req is not None and fwd is not None and self.transport is not None
        self.server.count("http", fwd.route, fwd.model, fwd.key, status)
        head = [b"HTTP/1.1 %d %s\r\n" % (status, STATUS_TEXT.get(status, b"Unknown"))]
        head += [n + b": " + v + b"\r\n" for n, v in keep]
        head.append(b"transfer-encoding: chunked\r\n\r\n")
        self.transport.write(b"".join(head))

    def stream_piece(self, data: bytes) -> None:
        if self.transport is not None and data:
            if b"error" in data:
                data = clean_message(data.decode("utf-8", "replace"), self.server.internal).encode()
            self.transport.write(b"%x\r\n%s\r\n" % (len(data), data))

    def stream_end(self) -> None:
        self.streaming = False
        self.upstream = None
        self.busy = False
        req = self.current
        if req is not None and self.fwd is not None:  # a stream's duration: until its last byte
            self.server.observe(req, self.fwd.route, self.fwd.model)
        if self.transport is not None:
            self.transport.write(b"0\r\n\r\n")
            if req is not None and not req.keep_alive:
                self.transport.close()
                return
        self._next()

    def _answer(
        self,
        req: Request,
        status: int,
        body: bytes,
        headers: list[tuple[bytes, bytes]],
        route: str,
        model: str,
        key: str,
    ) -> None:
        if route != "health":
            self.server.observe(req, route, model)
            self.server.count("http", route, model, key, status)
        if not any(n == b"content-type" for n, _ in headers) and body:
            headers = [*headers, (b"content-type", b"application/json")]
        self._write(status, body, headers, close=not req.keep_alive)
        if not req.keep_alive and self.transport is not None:
            self.transport.close()

    def _write(self, status: int, body: bytes, headers: list[tuple[bytes, bytes]], close: bool) -> None:
        assert self.transport is not None
        head = [b"HTTP/1.1 %d %s\r\n" % (status, STATUS_TEXT.get(status, b"Unknown"))]
        head += [n + b": " + v + b"\r\n" for n, v in headers]
        if close:
            head.append(b"connection: close\r\n")
        head.append(b"content-length: %d\r\n\r\n" % len(body))
        self.transport.write(b"".join(head) + body)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.transport = None
        upstream, self.upstream = self.upstream, None
        if upstream is not None:  # the client left before its answer: cancel the request upstream
            upstream.client = None
            upstream.abort()


class HttpFrontDoor:
    """The HTTP front door: serves ``router``'s routes and forwards to the upstream pools."""

    def __init__(
        self, access: AccessControl, pools: dict[str, Pool], router: Router, internal: tuple[str, ...] = ()
    ):
        self.access = access
        self.pools = pools
        self.router = router
        self.internal = internal  # strings never shown to clients (the repository's path)
        self.connections: set[ClientConnection] = set()
        self.servers: list[asyncio.AbstractServer] = []
        self._sweeper: asyncio.Task[None] | None = None

    async def listen(self, host: str, port: int, sock: Any = None) -> None:
        loop = asyncio.get_running_loop()
        if sock is not None:
            server = await loop.create_server(lambda: ClientConnection(self), sock=sock, backlog=2048)
        else:
            server = await loop.create_server(lambda: ClientConnection(self), host, port, backlog=2048)
        self.servers.append(server)
        if self._sweeper is None:
            self._sweeper = asyncio.ensure_future(self._sweep())

    async def _sweep(self) -> None:
        """Close connections idle past the timeout (slow or abandoned clients hold no slot forever)."""
        while True:
            await asyncio.sleep(10)
            cutoff = time.monotonic() - IDLE_TIMEOUT_S
            for conn in list(self.connections):
                if conn.last < cutoff and not conn.busy and conn.transport is not None:
                    conn.transport.close()

    def observe(self, req: Request, route: str, model: str) -> None:
        self.access.metrics.observe("http", route, model, time.perf_counter() - req.started)

    def count(self, protocol: str, route: str, model: str, key: str, status: int) -> None:
        self.access.metrics.request(protocol, route, model, key, status)

    def served_stats(self, body: bytes) -> bytes:
        """Triton's statistics of every model, cut to the served ones (public models and their steps)."""
        stats = json.loads(body)
        served = self.access.public.served
        stats["model_stats"] = [m for m in stats.get("model_stats", []) if m.get("name") in served]
        return json.dumps(stats).encode()

    def clean_error(
        self, fwd: Forward, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        """An upstream error without internal names; a model that is not loaded now (its stub died, it is
        reloading) becomes 503 + Retry-After (the ``/v1`` app's 503s keep the Retry-After they carry)."""
        try:
            message = json.loads(body).get("error", "")
        except (ValueError, AttributeError):
            message = body.decode("utf-8", "replace")
        if fwd.upstream == "openai":
            retry = [(n, v) for n, v in headers or [] if n == b"retry-after"]
            return status, clean_message(body.decode("utf-8", "replace"), self.internal).encode(), retry
        error = from_triton(message, model=fwd.model)
        if isinstance(error, NotLoaded):
            if isinstance(error, StubDied):
                self.access.report_dead_stub(fwd.model)
            return error_answer(error)
        return status, error_body(clean_message(message, self.internal)), []

    async def close(self) -> None:
        for server in self.servers:
            server.close()
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.close()
        for pool in self.pools.values():
            pool.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
