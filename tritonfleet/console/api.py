"""The console's API, mounted in the ``/v1`` app behind the front door (so behind its keys and limits):

- ``GET /console/api/pipelines``: a playground per served pipeline (its declaration's, or the generic form)
  and the chat models.
- ``GET /console/api/passage/ID/PATH%23N``: the text of a chat model's numbered source (``PATH#N``).
- ``GET /console/api/fleet[/T]``: every model's status (``fleet status``'s numbers, throughput, p50/p99)
  and the chart points after ``T`` (seconds since the epoch; default: all 15 minutes).
- ``POST /chat/stream``: :mod:`tritonfleet.console.stream`.

Parameters are in the path: the front door passes no query strings on. Errors are the error family's
kinds, answered in the ``/v1`` app's shape.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from tritonfleet import pipelines, status
from tritonfleet.console import stream
from tritonfleet.console.sampler import Sampler
from tritonfleet.errors import ClientError, NotFound, Unavailable
from tritonfleet.frontdoor.policy import CHAT_STREAM, CONSOLE_API, PublicModels
from tritonfleet.pipelines import Playground

CHUNKS_FILE = "chunks.json"  # a passages folder's chunks: [{path, number, heading, text}, ...]
STATUS_TTL_S = 2.0  # one status reading serves every tab polling within this
GENERIC = Playground("form")  # the page of a pipeline that declares none: a form of its models' inputs


def playground_of(pipeline: pipelines.Pipeline) -> Playground:
    """The pipeline's declared playground, else the generic form."""
    return pipeline.playground or GENERIC


class Console:
    """The console's server side for one fleet: its repository, the public models loaded (the front door's
    :class:`PublicModels`), where Triton's HTTP API listens (statistics, no key: 127.0.0.1), and
    ``scrape()``, the metrics text (Triton's and the front door's) that the sampler reads."""

    def __init__(
        self,
        repository: Path,
        public: PublicModels,
        status_url: str,
        scrape: Callable[[], str],
    ) -> None:
        self.repository = Path(repository)
        self.public = list(public.models)
        self.streaming = {name for name, spec in public.models.items() if spec.decoupled}
        self.status_url = status_url
        aliases = {m.id: m.stream_model or m.unary_model for m in pipelines.openai_models().values()}
        self.sampler = Sampler(scrape, aliases=aliases)
        self._status: tuple[float, dict[str, Any]] | None = None
        self._chunks: dict[Path, tuple[int, dict[str, dict[str, Any]]]] = {}

    def start(self) -> Console:
        self.sampler.start()
        return self

    def stop(self) -> None:
        self.sampler.stop()

    def routes(self) -> list[BaseRoute]:
        """The routes the ``/v1`` app serves for the console."""
        return [
            Route(f"{CONSOLE_API}pipelines", self.pipelines, methods=["GET"]),
            Route(f"{CONSOLE_API}passage/{{model}}/{{source:path}}", self.passage, methods=["GET"]),
            Route(f"{CONSOLE_API}fleet", self.fleet, methods=["GET"]),
            Route(f"{CONSOLE_API}fleet/{{since}}", self.fleet, methods=["GET"]),
            Route(CHAT_STREAM, self.chat_stream, methods=["POST"]),
        ]

    # --- what is served ---------------------------------------------------------------------------

    def served(self) -> list[pipelines.Pipeline]:
        """The pipelines whose public models are loaded (all of them, or some: their playground's tabs)."""
        return [p for p in pipelines.registry().values() if set(p.public) & set(self.public)]

    def chat_models(self) -> list[dict[str, Any]]:
        """The chat models of the served pipelines, the default (``/chat/stream``'s) first."""
        out = []
        for pipeline in self.served():
            passages = "passages" in playground_of(pipeline).params
            for model in pipeline.openai:
                if model.kind == "chat" and model.stream_model in self.public:
                    out.append(
                        {"id": model.id, "pipeline": pipeline.name, "passages": passages,
                         "sources": list(model.extra_outputs)}
                    )  # fmt: skip
        return out

    def default_chat_model(self) -> str | None:
        """The first chat model of the served pipelines, in registry order."""
        models = self.chat_models()
        return models[0]["id"] if models else None

    async def pipelines(self, request: Request) -> Response:
        playgrounds = []
        for pipeline in self.served():
            playground = playground_of(pipeline)
            if playground.kind == "chat":
                continue
            models = [m for m in (playground.models or pipeline.public) if m in self.public]
            playgrounds.append(
                {
                    "pipeline": pipeline.name,
                    "summary": pipeline.summary,
                    "kind": playground.kind,
                    "models": models,
                    "streaming": [m for m in models if m in self.streaming],  # generate_stream, not infer
                    "params": dict(playground.params),
                }
            )
        return JSONResponse({"playgrounds": playgrounds, "chat": self.chat_models()})

    # --- passages ---------------------------------------------------------------------------------

    def _passages_folder(self, model_id: str) -> Path | None:
        """The version folder that holds the chunks behind ``model_id``'s sources (its playground names the
        model folder), the highest version."""
        for pipeline in self.served():
            if any(m.id == model_id for m in pipeline.openai):
                folder = playground_of(pipeline).params.get("passages")
                if not folder:
                    return None
                versions = [p for p in (self.repository / folder).glob("[0-9]*") if p.name.isdigit()]
                return max(versions, key=lambda p: int(p.name)) if versions else None
        return None

    def chunks(self, folder: Path) -> dict[str, dict[str, Any]]:
        """``path#number`` -> the chunk (path, number, heading, text), read again when the file changed."""
        path = folder / CHUNKS_FILE
        stamp = path.stat().st_mtime_ns
        cached = self._chunks.get(path)
        if cached is None or cached[0] != stamp:
            chunks = json.loads(path.read_text())
            by_source = {
                f"{c['path']}#{c['number']}": {k: c.get(k) for k in ("path", "number", "heading", "text")}
                for c in chunks
            }
            cached = (stamp, by_source)
            self._chunks[path] = cached
        return cached[1]

    async def passage(self, request: Request) -> Response:
        model, source = request.path_params["model"], request.path_params["source"]
        folder = self._passages_folder(model)
        if folder is None:
            raise NotFound(f"{model!r} has no passages to show")
        try:
            found = self.chunks(folder).get(source)
        except (OSError, ValueError):
            raise Unavailable(f"the passages of {model} cannot be read now") from None
        if found is None:
            raise NotFound(f"no passage {source!r}")
        return JSONResponse({"source": source, **found})

    # --- the fleet --------------------------------------------------------------------------------

    def fleet_status(self) -> dict[str, Any]:
        """``fleet status`` of the served models with throughput and p50/p99, cached for ``STATUS_TTL_S``."""
        now = time.monotonic()
        if self._status is not None and now - self._status[0] < STATUS_TTL_S:
            return self._status[1]
        fleet = status.collect(self.status_url)
        live = self.sampler.models()
        models = []
        for m in fleet.models:
            row = asdict(m)
            row["avg_batch"] = m.avg_batch
            row.update({"throughput": 0.0, "p50": None, "p99": None, **live.get(m.name, {})})
            row["public"] = m.name in self.public
            models.append(row)
        found = {
            "models": models,
            "server_pss_mb": fleet.server_pss_mb,
            "total_pss_mb": fleet.total_pss_mb,
        }
        self._status = (now, found)
        return found

    async def fleet(self, request: Request) -> Response:
        try:
            since = float(request.path_params.get("since", "0"))
        except ValueError:
            raise ClientError("since must be a number (seconds since the epoch)", param="since") from None
        try:
            found = await anyio.to_thread.run_sync(self.fleet_status)
        except Exception as exc:  # Triton restarting: the page says so and polls on
            raise Unavailable(f"no status from the server: {type(exc).__name__}", 2) from None
        return JSONResponse(
            {**found, "series": self.sampler.series(since), "interval_s": self.sampler.interval}
        )

    # --- /chat/stream -----------------------------------------------------------------------------

    async def chat_stream(self, request: Request) -> Response:
        return await stream.chat_stream(request, self.default_chat_model())
