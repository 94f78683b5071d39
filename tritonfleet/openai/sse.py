"""Server-Sent Events for ``/v1`` streams: OpenAI's chunks (``chat.completion.chunk``, ``text_completion``)
of one :class:`~tritonfleet.openai.run.Run`, ended by ``data: [DONE]``, over a response that stops as soon
as the client disconnects."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import StreamingResponse

from tritonfleet.errors import Error
from tritonfleet.openai import generation as gen
from tritonfleet.openai.errors import openai_error
from tritonfleet.openai.run import Run

HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class SSEResponse(StreamingResponse):
    """Server-Sent Events that stop as soon as the client disconnects (whatever the ASGI server's spec
    version): the disconnect cancels the body's iteration, whose cleanup stops the generation."""

    media_type = "text/event-stream"

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async with anyio.create_task_group() as group:

            async def stream() -> None:
                with contextlib.suppress(OSError):  # the client went away while we wrote
                    await self.stream_response(send)
                group.cancel_scope.cancel()

            group.start_soon(stream)
            await self.listen_for_disconnect(receive)
            group.cancel_scope.cancel()


async def disconnected(request: Request) -> None:
    """Returns when the client disconnects (its body has been read: only the disconnect is left)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


def frame(data: dict[str, Any] | str) -> bytes:
    """One SSE event: ``data: <JSON or text>`` and a blank line."""
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"data: {text}\n\n".encode()


async def chunks(
    run: Run,
    events: AsyncGenerator[tuple[int, str, bool], None],
    first: tuple[int, str, bool],
    kind: str,
    include_usage: bool,
    echo: bool,
    done: Callable[[], Awaitable[None]],
) -> AsyncIterator[bytes]:
    """The SSE events of ``run``, whose ``events`` gave ``first`` already: a role (chat) or the echoed
    prompt (completions), a chunk per piece of text, one per finished choice, the usage when asked, and
    ``[DONE]``; a fault after the first response is an error event. ``done()`` runs at the end, also when
    the client's disconnect cancelled the stream."""
    prefix = "chatcmpl" if kind == "chat" else "cmpl"

    def chunk(choices: list[dict[str, Any]], **extra: Any) -> bytes:
        data = {
            "id": f"{prefix}-{run.id}",
            "object": "chat.completion.chunk" if kind == "chat" else "text_completion",
            "created": run.created,
            "model": run.model.id,
            "choices": choices,
            **extra,
        }
        if kind == "chat":
            data["system_fingerprint"] = None
        if include_usage and "usage" not in data:
            data["usage"] = None
        return frame(data)

    def delta(index: int, text: str | None, finish: str | None = None, logprobs: Any = None) -> dict:
        if kind == "chat":
            body: dict[str, Any] = {"index": index, "delta": {} if text is None else {"content": text}}
            body["logprobs"] = {"content": logprobs} if logprobs is not None else None
        else:
            body = {"index": index, "text": text or ""}
            body["logprobs"] = logprobs
        body["finish_reason"] = finish
        return body

    sent: dict[int, int] = {}  # logprob entries given out per choice
    try:
        if kind == "chat":
            yield chunk([{"index": c.index, "delta": {"role": "assistant", "content": ""},
                          "logprobs": None, "finish_reason": None} for c in run.choices])  # fmt: skip
        elif echo:
            yield chunk([delta(c.index, run.rows[c.index].prompt) for c in run.choices])
        event: tuple[int, str, bool] | None = first
        while event is not None:
            index, text, finished = event
            choice = run.choices[index]
            entries = None
            if run.logprobs:
                entries = choice.logprob_entries(complete=finished)[sent.get(index, 0) :]
                sent[index] = sent.get(index, 0) + len(entries)
                entries = (
                    gen.chat_logprobs(entries)["content"]
                    if kind == "chat"
                    else gen.completion_logprobs(entries)
                )
            if text or entries:
                yield chunk([delta(index, text, None, entries)])
            if finished:
                extra = run.extra_outputs if all(c.done for c in run.choices) else {}
                yield chunk([delta(index, None, choice.finish_reason)], **extra)
            event = await anext(events, None)
        if include_usage:
            yield chunk([], usage=run.usage())
        yield frame("[DONE]")
    except Error as exc:  # a fault after the first response: say it in the stream
        yield frame(openai_error(exc)[1])
        yield frame("[DONE]")
    finally:  # also when the client's disconnect cancelled this: shielded, so that it finishes
        with anyio.CancelScope(shield=True):
            await events.aclose()
            await done()
