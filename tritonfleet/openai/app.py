"""The ASGI app: OpenAI's ``/v1`` over the fleet's Triton pipelines (Starlette; see docs/openai.md).

No authentication and no limits live here: the front door puts them in front. ``on_usage(request, tokens)``
is how it learns each request's tokens (prompt + completion, the pipeline's own counts): called once for
every chat, completions and embeddings request that reached a pipeline, whether or not the client asked for
usage, when the request ends (a dropped stream counts the tokens generated until it stopped). It may be a
plain function or a coroutine function; ``request`` is Starlette's ``Request`` (its headers, ``scope``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import inspect
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import numpy as np
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tritonfleet.openai import generation as gen
from tritonfleet.openai.catalog import Catalog
from tritonfleet.openai.errors import APIError, bad_request, from_triton
from tritonfleet.openai.schemas import ChatRequest, CompletionRequest, EmbeddingRequest, parse
from tritonfleet.openai.triton import Triton, check
from tritonfleet.pipelines import OpenAIModel
from tritonfleet.pipelines.llm import interface as llm
from tritonfleet.pipelines.text_embedding import interface as embedding

log = logging.getLogger("tritonfleet.openai")
OnUsage = Callable[[Request, int], Awaitable[None] | None]
EMBEDDING_INPUT, EMBEDDING_OUTPUT, EMBEDDING_TOKENS = (
    embedding.TEXT.name,
    embedding.EMBEDDING.name,
    embedding.NUM_TOKENS.name,
)
STOP_TRIES_S = 30  # how long a dropped request's rows are stopped again and again until they end


def create_app(
    grpc_url: str,
    repository: Path,
    *,
    on_usage: OnUsage | None = None,
    default_max_tokens: int | None = None,
    models: dict[str, OpenAIModel] | None = None,
) -> Starlette:
    """The ``/v1`` app over the Triton server at ``grpc_url`` (gRPC, e.g. ``localhost:8001``) serving
    ``repository``.

    ``default_max_tokens``: a completion's budget when the request gives none (capped by the context left
    and the engine's limit; None: all that is left). ``models``: the OpenAI models by id (default: every
    pipeline's declarations).
    """
    api = _API(grpc_url, Path(repository), on_usage, default_max_tokens, models)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await api.triton.close()

    routes = [
        Route("/v1/models", api.list_models, methods=["GET"]),
        Route("/v1/models/{model_id:path}", api.get_model, methods=["GET"]),
        Route("/v1/chat/completions", api.chat, methods=["POST"]),
        Route("/v1/completions", api.completions, methods=["POST"]),
        Route("/v1/embeddings", api.embeddings, methods=["POST"]),
        Route("/health", api.health, methods=["GET"]),
    ]
    handlers = {APIError: _api_error, HTTPException: _http_error, Exception: _fault}
    return Starlette(routes=routes, exception_handlers=handlers, lifespan=lifespan)  # type: ignore[arg-type]


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, APIError)
    return JSONResponse(exc.body(), status_code=exc.status)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return JSONResponse(APIError(exc.status_code, str(exc.detail)).body(), status_code=exc.status_code)


async def _fault(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s", request.url.path)
    return JSONResponse(APIError(500, f"internal error: {type(exc).__name__}").body(), status_code=500)


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


def sse(data: dict[str, Any] | str) -> bytes:
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"data: {text}\n\n".encode()


class _API:
    def __init__(
        self,
        grpc_url: str,
        repository: Path,
        on_usage: OnUsage | None,
        default_max_tokens: int | None,
        models: dict[str, OpenAIModel] | None,
    ) -> None:
        self.triton = Triton(grpc_url)
        self.catalog = Catalog(repository, self.triton, models)
        self.on_usage = on_usage
        self.default_max_tokens = default_max_tokens
        self.started = int(time.time())

    # --- models ---------------------------------------------------------------------------------------

    def _card(self, model: OpenAIModel) -> dict[str, Any]:
        return {"id": model.id, "object": "model", "created": self.started, "owned_by": model.owned_by}

    async def list_models(self, request: Request) -> Response:
        models = await self.catalog.listed()
        return JSONResponse({"object": "list", "data": [self._card(m) for m in models]})

    async def get_model(self, request: Request) -> Response:
        model_id = request.path_params["model_id"]
        model = self.catalog.models.get(model_id)
        if model is None:
            raise APIError(
                404, f"The model '{model_id}' does not exist", param="model", code="model_not_found"
            )
        if model not in await self.catalog.listed():
            raise APIError(503, f"{model_id} is not ready", code="model_not_ready")
        return JSONResponse(self._card(model))

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    # --- usage ----------------------------------------------------------------------------------------

    async def _usage(self, request: Request, tokens: int) -> None:
        if self.on_usage is None:
            return
        try:
            result = self.on_usage(request, tokens)
            if inspect.isawaitable(result):
                await result
        except Exception:  # the front door's bookkeeping must not fail the answer
            log.exception("on_usage failed")

    # --- chat and completions -------------------------------------------------------------------------

    async def chat(self, request: Request) -> Response:
        body = parse(ChatRequest, await _json(request))
        model = self.catalog.get(body.model, "chat")
        served = await self.catalog.served(model)
        tokenizing = self.catalog.tokenizing(model)
        prompt = gen.chat_prompt(model, tokenizing, body)
        gen.check_prompt(prompt, "messages")
        counted = tokenizing.count(prompt) if tokenizing and model.prompt == "chat_template" else None
        param = "max_completion_tokens" if body.max_completion_tokens else "max_tokens"
        max_tokens = gen.budget(counted, body.limit, served, self.default_max_tokens, param)
        guided = gen.guide(body.response_format, served)
        stream_model = body.stream or body.logprobs or served.unary_decoupled
        rows = gen.rows(
            model, body, prompt, max_tokens, stream=stream_model, logprobs=body.logprobs, guided=guided
        )
        run = _Run(self.triton, model, rows, stream_model, body.n, served.max_batch)
        if body.stream:
            return await self._stream(request, run, "chat", body.include_usage)
        await self._collect(request, run)
        choices = [
            {
                "index": c.index,
                "message": {"role": "assistant", "content": c.text},
                "logprobs": _chat_logprobs(c.logprob_entries()) if body.logprobs else None,
                "finish_reason": c.finish_reason,
            }
            for c in run.choices
        ]
        return JSONResponse(
            {
                "id": f"chatcmpl-{run.id}",
                "object": "chat.completion",
                "created": run.created,
                "model": model.id,
                "choices": choices,
                "usage": run.usage(),
                "system_fingerprint": None,
                **run.extra_outputs,
            }
        )

    async def completions(self, request: Request) -> Response:
        body = parse(CompletionRequest, await _json(request))
        model = self.catalog.get(body.model, "chat")
        served = await self.catalog.served(model)
        tokenizing = self.catalog.tokenizing(model)
        logprobs = body.logprobs is not None
        stream_model = body.stream or logprobs or served.unary_decoupled
        rows: list[gen.Row] = []
        for i, prompt in enumerate(body.prompts):
            gen.check_prompt(prompt, f"prompt.{i}" if isinstance(body.prompt, list) else "prompt")
            counted = tokenizing.count(prompt) if tokenizing else None
            max_tokens = gen.budget(counted, body.limit, served, self.default_max_tokens, "max_tokens")
            rows += gen.rows(
                model, body, prompt, max_tokens, stream=stream_model, logprobs=logprobs, guided=None
            )
        run = _Run(self.triton, model, rows, stream_model, body.n, served.max_batch)
        echo = body.echo
        if body.stream:
            return await self._stream(request, run, "completion", body.include_usage, echo=echo)
        await self._collect(request, run)
        choices = [
            {
                "index": c.index,
                "text": (run.rows[c.index].prompt if echo else "") + c.text,
                "logprobs": _completion_logprobs(c.logprob_entries()) if logprobs else None,
                "finish_reason": c.finish_reason,
            }
            for c in run.choices
        ]
        return JSONResponse(
            {
                "id": f"cmpl-{run.id}",
                "object": "text_completion",
                "created": run.created,
                "model": model.id,
                "choices": choices,
                "usage": run.usage(),
                **run.extra_outputs,
            }
        )

    async def _collect(self, request: Request, run: _Run) -> None:
        """Run every row to its end; a client that disconnects meanwhile stops them."""
        work = asyncio.ensure_future(run.collect())
        gone = asyncio.ensure_future(_disconnected(request))
        try:
            await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
            deadline = time.monotonic() + STOP_TRIES_S
            while not work.done() and time.monotonic() < deadline:
                # The client is gone: stop its rows, again until they end (a stop sent before a sequence
                # started finds nothing to stop).
                run.stop()
                await asyncio.wait({work}, timeout=0.5)
            if gone.done():
                raise APIError(499, "the client disconnected")
            work.result()
        finally:
            gone.cancel()
            work.cancel()
            await self._usage(request, run.tokens)

    async def _stream(
        self, request: Request, run: _Run, kind: str, include_usage: bool, echo: bool = False
    ) -> Response:
        """Start the rows and wait for their first response (so that an error is this request's status),
        then stream SSE chunks: OpenAI's ``chat.completion.chunk`` or ``text_completion``."""
        events = run.events()
        try:
            first = await anext(events)
        except BaseException:
            await events.aclose()
            await self._usage(request, run.tokens)
            raise
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
            return sse(data)

        def delta(index: int, text: str | None, finish: str | None = None, logprobs: Any = None) -> dict:
            if kind == "chat":
                body: dict[str, Any] = {"index": index, "delta": {} if text is None else {"content": text}}
                body["logprobs"] = {"content": logprobs} if logprobs is not None else None
            else:
                body = {"index": index, "text": text or ""}
                body["logprobs"] = logprobs
            body["finish_reason"] = finish
            return body

        async def body() -> AsyncIterator[bytes]:
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
                            _chat_logprobs(entries)["content"]
                            if kind == "chat"
                            else _completion_logprobs(entries)
                        )
                    if text or entries:
                        yield chunk([delta(index, text, None, entries)])
                    if finished:
                        extra = run.extra_outputs if all(c.done for c in run.choices) else {}
                        yield chunk([delta(index, None, choice.finish_reason)], **extra)
                    event = await anext(events, None)
                if include_usage:
                    yield chunk([], usage=run.usage())
                yield sse("[DONE]")
            except APIError as exc:  # a fault after the first response: say it in the stream
                yield sse(exc.body())
                yield sse("[DONE]")
            finally:  # also when the client's disconnect cancelled this: shielded, so that it finishes
                with anyio.CancelScope(shield=True):
                    await events.aclose()
                    await self._usage(request, run.tokens)

        return SSEResponse(body(), headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    # --- embeddings -----------------------------------------------------------------------------------

    async def embeddings(self, request: Request) -> Response:
        body = parse(EmbeddingRequest, await _json(request))
        model = self.catalog.get(body.model, "embedding")
        config = await self.triton.config(model.unary_model)
        outputs = {t["name"]: t for t in config.get("output", [])}
        check(EMBEDDING_OUTPUT in outputs, f"{model.unary_model} has no {EMBEDDING_OUTPUT} output")
        width = int(outputs[EMBEDDING_OUTPUT]["dims"][-1])
        if body.dimensions is not None and body.dimensions != width:
            raise bad_request(
                f"dimensions is not supported: this model's embeddings have {width} dimensions", "dimensions"
            )
        texts = body.texts
        batch = max(int(config.get("max_batch_size", 0)), 1)
        tokens = 0
        try:
            parts = await asyncio.gather(
                *(
                    self.triton.infer(
                        model.unary_model,
                        {
                            EMBEDDING_INPUT: np.array(
                                [[t.encode()] for t in texts[i : i + batch]], dtype=np.object_
                            )
                        },
                    )
                    for i in range(0, len(texts), batch)
                )
            )
            vectors = np.concatenate([p.as_numpy(EMBEDDING_OUTPUT).reshape(-1, width) for p in parts])
            counts = [p.as_numpy(EMBEDDING_TOKENS) for p in parts]
            tokens = int(sum(int(c.sum()) for c in counts if c is not None))
        finally:
            await self._usage(request, tokens)
        check(
            len(vectors) == len(texts),
            f"{model.unary_model} returned {len(vectors)} embeddings for {len(texts)}",
        )
        data = [
            {"object": "embedding", "index": i, "embedding": _encode(v, body.encoding_format)}
            for i, v in enumerate(vectors)
        ]
        return JSONResponse(
            {
                "object": "list",
                "data": data,
                "model": model.id,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )


class _Run:
    """One request's rows in flight: ``n`` per prompt, each its own sequence.

    The rows go to the pipeline as batched requests (TensorRT-LLM's way: each row of a request is a
    sequence of its own) of at most ``max_batch`` rows, ``<id>-<b>`` their request ids, which their stop
    requests name. Streamed, each response is one row's, tagged with ``batch_index``; not streamed,
    ``tensorrt_llm_bls`` answers once with the rows in order."""

    def __init__(
        self,
        triton: Triton,
        model: OpenAIModel,
        rows: list[gen.Row],
        stream_model: bool,
        n: int,
        max_batch: int,
    ) -> None:
        self.triton = triton
        self.model = model
        self.rows = rows
        self.streamed = stream_model
        self.logprobs = llm.RETURN_LOG_PROBS.name in rows[0].values
        self.id = uuid.uuid4().hex
        self.created = int(time.time())
        stops = (
            [w.decode() for w in rows[0].values[llm.STOP_WORDS.name].reshape(-1)]
            if llm.STOP_WORDS.name in rows[0].values
            else []
        )
        self.choices = [gen.Choice(i, r.max_tokens, gen.StopScanner(stops)) for i, r in enumerate(rows)]
        self.extra_outputs: dict[str, Any] = {}
        self.n = n  # rows per prompt (consecutive)
        size = max(max_batch, 1)
        self.batches = [list(range(i, min(i + size, len(rows)))) for i in range(0, len(rows), size)]

    def request_id(self, batch: int) -> str:
        return f"{self.id}-{batch}"

    def values(self, batch: int) -> dict[str, np.ndarray]:
        """The inputs of one batched request: its rows' [1, k] values stacked into [rows, k]."""
        rows = [self.rows[i].values for i in self.batches[batch]]
        return {name: np.concatenate([r[name] for r in rows]) for name in rows[0]}

    @property
    def tokens(self) -> int:
        return self.usage()["total_tokens"]

    def usage(self) -> dict[str, int]:
        """OpenAI's usage: a prompt counted once however many choices it has."""
        per_prompt: dict[int, int] = {}
        for choice in self.choices:
            group = choice.index // self.n
            per_prompt[group] = max(per_prompt.get(group, 0), choice.prompt_tokens)
        prompt = sum(per_prompt.values())
        completion = sum(c.completion_tokens for c in self.choices)
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    def _extras(self, result: Any) -> None:
        for name in self.model.extra_outputs:
            value = result.as_numpy(name)
            if value is not None and name not in self.extra_outputs:
                items = value.reshape(-1)
                self.extra_outputs[name] = [v.decode() if isinstance(v, bytes) else v.item() for v in items]

    async def collect(self) -> None:
        """Every row to its end, then its choice finished."""
        if self.streamed:
            async for _ in self.events():
                pass
            return
        results = await asyncio.gather(
            *(
                self.triton.infer(self.model.unary_model, self.values(b), request_id=self.request_id(b))
                for b in range(len(self.batches))
            )
        )
        for batch, result in zip(self.batches, results, strict=True):
            texts = result.as_numpy(llm.TEXT_OUTPUT.name)
            check(texts is not None and texts.shape[0] == len(batch), "the pipeline answered other rows")
            for j, index in enumerate(batch):
                self.choices[index].add(_RowOf(result, j), self.logprobs)
                self.choices[index].finish()
            self._extras(result)

    def stop(self) -> None:
        for b in range(len(self.batches)):
            self.triton.stop_later(self.request_id(b))

    async def events(self) -> AsyncIterator[tuple[int, str, bool]]:
        """``(choice, new text, finished)`` as the streams answer, rows interleaved; leaving early stops
        the requests still running."""
        queue: asyncio.Queue[tuple[int, Any, BaseException | None]] = asyncio.Queue()
        model = self.model.stream_model or ""

        async def pump(b: int) -> None:
            try:
                async for result in self.triton.stream(model, self.values(b), self.request_id(b)):
                    await queue.put((b, result, None))
                await queue.put((b, None, None))
            except APIError as exc:
                await queue.put((b, None, exc))
            except Exception as exc:  # the connection to Triton failed
                await queue.put((b, None, from_triton(exc, model)))

        tasks = [asyncio.ensure_future(pump(b)) for b in range(len(self.batches))]
        running = len(tasks)
        try:
            while running:
                b, result, error = await queue.get()
                if error is not None:
                    raise error
                batch = self.batches[b]
                if result is None:  # this request's final response: its rows are done
                    running -= 1
                    for index in batch:
                        if not self.choices[index].done:
                            yield index, self.choices[index].finish(), True
                    continue
                tag = result.as_numpy(llm.BATCH_INDEX.name)
                if tag is None and len(batch) > 1:
                    raise APIError(500, f"{model} sent a response of a batch without batch_index")
                index = batch[int(tag.reshape(-1)[0]) if tag is not None else 0]
                choice = self.choices[index]
                if choice.done or result.as_numpy(llm.TEXT_OUTPUT.name) is None:
                    continue  # the empty final response; or a stop string ended the row: the rest is not its
                self._extras(result)
                text = choice.add(result, self.logprobs)
                if choice.stopped:
                    yield index, text + choice.finish(), True
                    if all(self.choices[i].done for i in batch):  # cancelling the stream stops its rows
                        tasks[b].cancel()
                        running -= 1
                elif text:
                    yield index, text, False
        finally:
            for task in tasks:
                task.cancel()


class _RowOf:
    """Row ``j`` of a batched response, read like a response of its own."""

    def __init__(self, result: Any, j: int) -> None:
        self.result, self.j = result, j

    def as_numpy(self, name: str) -> np.ndarray | None:
        value = self.result.as_numpy(name)
        return None if value is None else value[self.j : self.j + 1]


async def _json(request: Request) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise bad_request(f"the request body is not valid JSON: {exc}") from None


async def _disconnected(request: Request) -> None:
    """Returns when the client disconnects (the body has been read: only the disconnect is left)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


def _encode(vector: np.ndarray, encoding: str) -> Any:
    if encoding == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode()
    return vector.astype(np.float32).tolist()


def _chat_logprobs(entries: list[tuple[str, float]]) -> dict[str, Any]:
    """Chat's logprobs: one entry per streamed piece (a token, or the tokens of one UTF-8 character)."""
    return {
        "content": [
            {"token": t, "logprob": v, "bytes": list(t.encode()), "top_logprobs": []} for t, v in entries
        ]
    }


def _completion_logprobs(entries: list[tuple[str, float]]) -> dict[str, Any]:
    offsets, at = [], 0
    for t, _ in entries:
        offsets.append(at)
        at += len(t)
    return {
        "tokens": [t for t, _ in entries],
        "token_logprobs": [v for _, v in entries],
        "top_logprobs": None,
        "text_offset": offsets,
    }
