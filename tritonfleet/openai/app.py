"""The ASGI app: OpenAI's ``/v1`` routes over the fleet's Triton pipelines (Starlette; see docs/openai.md).

Each route parses its body (:mod:`~tritonfleet.openai.schemas`), finds the model
(:mod:`~tritonfleet.openai.catalog`), builds the pipeline's inputs (:mod:`~tritonfleet.openai.generation`),
runs them (:mod:`~tritonfleet.openai.run`) and answers with one JSON body or an SSE stream
(:mod:`~tritonfleet.openai.sse`); every error is answered in OpenAI's shape
(:func:`~tritonfleet.openai.errors.openai_error`).

No authentication and no limits live here: the front door puts them in front. ``on_usage(request, tokens)``
is how it learns each request's tokens (prompt + completion, the pipeline's own counts): called once for
every chat, completions and embeddings request that reached a pipeline, whether or not the client asked for
usage, when the request ends (a dropped stream counts the tokens generated until it stopped). It may be a
plain function or a coroutine function; ``request`` is Starlette's ``Request`` (its headers, ``scope``).
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from tritonfleet.errors import ClientError, Error, NotLoaded, Unavailable
from tritonfleet.openai import generation as gen
from tritonfleet.openai import sse
from tritonfleet.openai.catalog import OpenAIModels
from tritonfleet.openai.errors import openai_error
from tritonfleet.openai.run import Run, collect, first_event
from tritonfleet.openai.schemas import ChatRequest, CompletionRequest, EmbeddingRequest, parse
from tritonfleet.openai.triton import Triton, check
from tritonfleet.pipelines import OpenAIModel
from tritonfleet.pipelines.text_embedding import interface as embedding

log = logging.getLogger("tritonfleet.openai")
OnUsage = Callable[[Request, int], Awaitable[None] | None]
EMBEDDING_INPUT, EMBEDDING_OUTPUT, EMBEDDING_TOKENS = (
    embedding.TEXT.name,
    embedding.EMBEDDING.name,
    embedding.NUM_TOKENS.name,
)


def create_app(
    grpc_url: str,
    repository: Path,
    *,
    on_usage: OnUsage | None = None,
    default_max_tokens: int | None = None,
    models: dict[str, OpenAIModel] | None = None,
    priority: int = 0,
    routes: list[BaseRoute] | None = None,
) -> Starlette:
    """The ``/v1`` app over the Triton server at ``grpc_url`` (gRPC, e.g. ``localhost:8001``) serving
    ``repository``.

    ``default_max_tokens``: a completion's budget when the request gives none (capped by the context left
    and the engine's limit; None: all that is left). ``models``: the OpenAI models by id (default: every
    pipeline's declarations). ``priority``: Triton's priority level of every request (batch jobs).
    ``routes``: more routes served beside ``/v1`` (the batch API, :mod:`tritonfleet.batch.api`; the
    console's API).
    """
    api = _API(grpc_url, Path(repository), on_usage, default_max_tokens, models, priority)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await api.triton.close()

    served = [
        Route("/v1/models", api.list_models, methods=["GET"]),
        Route("/v1/models/{model_id:path}", api.get_model, methods=["GET"]),
        Route("/v1/chat/completions", api.chat, methods=["POST"]),
        Route("/v1/completions", api.completions, methods=["POST"]),
        Route("/v1/embeddings", api.embeddings, methods=["POST"]),
        Route("/health", api.health, methods=["GET"]),
        *(routes or []),
    ]
    handlers = {Error: _error, HTTPException: _error, Exception: _fault}
    return Starlette(routes=served, exception_handlers=handlers, lifespan=lifespan)  # type: ignore[arg-type]


async def _error(request: Request, exc: Exception) -> Response:
    status, body = openai_error(exc)
    headers = {"Retry-After": exc.retry_after} if isinstance(exc, Unavailable) else None
    return JSONResponse(body, status_code=status, headers=headers)


async def _fault(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s", request.url.path)
    return await _error(request, exc)


class _API:
    def __init__(
        self,
        grpc_url: str,
        repository: Path,
        on_usage: OnUsage | None,
        default_max_tokens: int | None,
        models: dict[str, OpenAIModel] | None,
        priority: int = 0,
    ) -> None:
        self.triton = Triton(grpc_url, priority)
        self.models = OpenAIModels(repository, self.triton, models)
        self.on_usage = on_usage
        self.default_max_tokens = default_max_tokens
        self.started = int(time.time())

    # --- models ---------------------------------------------------------------------------------------

    def _card(self, model: OpenAIModel) -> dict[str, Any]:
        return {"id": model.id, "object": "model", "created": self.started, "owned_by": model.owned_by}

    async def list_models(self, request: Request) -> Response:
        models = await self.models.listed()
        return JSONResponse({"object": "list", "data": [self._card(m) for m in models]})

    async def get_model(self, request: Request) -> Response:
        model_id = request.path_params["model_id"]
        model = self.models.declared_model(model_id)
        if model not in await self.models.listed():
            raise NotLoaded(f"{model_id} is not ready", code="model_not_ready")
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
        model = self.models.get(body.model, "chat")
        served = await self.models.served(model)
        tokenizing = self.models.tokenizing(model)
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
        run = Run(self.triton, model, rows, stream_model, body.n, served.max_batch)
        if body.stream:
            return await self._stream(request, run, "chat", body.include_usage)
        await self._collect(request, run)
        choices = [
            {
                "index": c.index,
                "message": {"role": "assistant", "content": c.text},
                "logprobs": gen.chat_logprobs(c.logprob_entries()) if body.logprobs else None,
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
        model = self.models.get(body.model, "chat")
        served = await self.models.served(model)
        tokenizing = self.models.tokenizing(model)
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
        run = Run(self.triton, model, rows, stream_model, body.n, served.max_batch)
        echo = body.echo
        if body.stream:
            return await self._stream(request, run, "completion", body.include_usage, echo=echo)
        await self._collect(request, run)
        choices = [
            {
                "index": c.index,
                "text": (run.rows[c.index].prompt if echo else "") + c.text,
                "logprobs": gen.completion_logprobs(c.logprob_entries()) if logprobs else None,
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

    async def _collect(self, request: Request, run: Run) -> None:
        """Run every row to its end; a client that disconnects meanwhile stops them."""
        try:
            await collect(run, sse.disconnected(request))
        finally:
            await self._usage(request, run.tokens)

    async def _stream(
        self, request: Request, run: Run, kind: str, include_usage: bool, echo: bool = False
    ) -> Response:
        """Start the rows and wait for their first response (so that an error is this request's status),
        then stream SSE chunks: OpenAI's ``chat.completion.chunk`` or ``text_completion``. A client that
        disconnects before the first response (during a long prompt's prefill) stops the rows then."""
        events = run.events()
        try:
            first = await first_event(events, sse.disconnected(request))
        except BaseException:
            await events.aclose()
            await self._usage(request, run.tokens)
            raise

        async def done() -> None:
            await self._usage(request, run.tokens)

        body = sse.chunks(run, events, first, kind, include_usage, echo, done)
        return sse.SSEResponse(body, headers=sse.HEADERS)

    # --- embeddings -----------------------------------------------------------------------------------

    async def embeddings(self, request: Request) -> Response:
        body = parse(EmbeddingRequest, await _json(request))
        model = self.models.get(body.model, "embedding")
        config = await self.triton.config(model.unary_model)
        outputs = {t["name"]: t for t in config.get("output", [])}
        check(EMBEDDING_OUTPUT in outputs, f"{model.unary_model} has no {EMBEDDING_OUTPUT} output")
        width = int(outputs[EMBEDDING_OUTPUT]["dims"][-1])
        if body.dimensions is not None and body.dimensions != width:
            raise ClientError(
                f"dimensions is not supported: this model's embeddings have {width} dimensions",
                param="dimensions",
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


async def _json(request: Request) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ClientError(f"the request body is not valid JSON: {exc}") from None


def _encode(vector: np.ndarray, encoding: str) -> Any:
    if encoding == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode()
    return vector.astype(np.float32).tolist()
