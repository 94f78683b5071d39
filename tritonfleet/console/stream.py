"""``POST /chat/stream``: the SSE shape React chat examples read, over the default chat model.

``{"message": "..."}`` (optionally ``"model"``, ``"max_tokens"``, ``"temperature"``, ``"top_p"``,
``"seed"``) is answered by ``data: {"token": "..."}`` events and a final ``data: {"done": true}`` (a fault
after the first token: ``data: {"error": "..."}`` before it). It is ``/v1/chat/completions`` with
``stream: true``, called inside the same app, so the keys, limits, usage and cancellation are the same: a
client that disconnects stops its generation, also before the first token.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import Response

from tritonfleet.errors import Cancelled, ClientError, Fault, Unavailable
from tritonfleet.openai import sse

CHAT_PATH = "/v1/chat/completions"
PASSED = ("max_tokens", "temperature", "top_p", "seed")
KEY_HEADER = b"x-tritonfleet-key"  # the caller's key name, which the front door sets (usage, limits)


def request_body(raw: bytes, model: str) -> dict[str, Any]:
    """The chat completion request for a ``/chat/stream`` body; a :class:`ClientError` says what is wrong
    with it."""
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ClientError('the body must be JSON: {"message": "..."}') from None
    if not isinstance(body, dict):
        raise ClientError('the body must be a JSON object: {"message": "..."}')
    message = body.get("message")
    if not isinstance(message, str) or not message.strip():
        raise ClientError("message must be a non-empty string", param="message")
    chosen = body.get("model", model)
    if not isinstance(chosen, str):
        raise ClientError("model must be a string", param="model")
    out: dict[str, Any] = {
        "model": chosen,
        "messages": [{"role": "user", "content": message}],
        "stream": True,
    }
    out.update({k: body[k] for k in PASSED if k in body})
    return out


async def chat_stream(request: Request, model: str | None) -> Response:
    """Call the app's own chat completions with ``request``'s message; translate its chunks."""
    if model is None:
        raise Unavailable("no chat model is served", 5)
    data = json.dumps(request_body(await request.body(), model)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    headers += [(n, v) for n, v in request.scope["headers"] if n == KEY_HEADER]
    scope = {**request.scope, "path": CHAT_PATH, "raw_path": CHAT_PATH.encode(), "method": "POST"}
    scope["headers"], scope["query_string"] = headers, b""
    messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    gone = asyncio.Event()
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": data, "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        await messages.put(message)

    inner = asyncio.ensure_future(request.scope["app"](scope, receive, send))
    waiting = asyncio.ensure_future(messages.get())
    left = asyncio.ensure_future(sse.disconnected(request))
    try:
        await asyncio.wait({inner, waiting, left}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        left.cancel()
    if left.done() and not waiting.done():  # the client left before the first token: stop it now
        waiting.cancel()
        gone.set()
        with contextlib.suppress(Exception):
            await inner
        raise Cancelled("the client disconnected")
    if not waiting.done():
        waiting.cancel()
        inner.result()  # it ended without answering: its error is raised here
        raise Fault("the chat model did not answer")
    start = waiting.result()
    status = int(start.get("status", 500))
    if status != 200:  # the inner request's error, as it is (the /v1 app's shape and headers)
        raw = b""
        while True:
            message = await messages.get()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        await inner
        kept = [(n, v) for n, v in start.get("headers", []) if n in (b"content-type", b"retry-after")]
        return Response(raw, status_code=status, headers={n.decode(): v.decode() for n, v in kept})
    return sse.SSEResponse(_tokens(messages, inner, gone), headers=sse.HEADERS)


async def _tokens(
    messages: asyncio.Queue[dict[str, Any]], inner: asyncio.Future[None], gone: asyncio.Event
) -> AsyncIterator[bytes]:
    """``{"token"}`` events from the chat completion chunks, then ``{"done"}``; leaving early (the client
    disconnected) tells the inner request its client is gone, which stops its generation."""
    buffer = b""
    try:
        while True:
            message = await messages.get()
            buffer += message.get("body", b"")
            while b"\n\n" in buffer:
                frame, buffer = buffer.split(b"\n\n", 1)
                if not frame.startswith(b"data: "):
                    continue
                payload = frame[len(b"data: ") :]
                if payload == b"[DONE]":
                    yield sse.frame({"done": True})
                    return
                chunk = json.loads(payload)
                if "error" in chunk:
                    yield sse.frame({"error": chunk["error"].get("message", str(chunk["error"]))})
                    continue
                for choice in chunk.get("choices", []):
                    text = (choice.get("delta") or {}).get("content")
                    if text:
                        yield sse.frame({"token": text})
            if not message.get("more_body", False):
                yield sse.frame({"done": True})
                return
    finally:
        gone.set()
        with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
            await inner
