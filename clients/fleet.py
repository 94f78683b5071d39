"""Typed clients for the fleet's pipelines over tritonclient: HTTP or gRPC, sync or asyncio.

Any Triton client works against the fleet; these add the helpers of the pipelines' client modules (each
``clients/<pipeline>.py`` lists its ``HELPERS``: one per pipeline task, e.g. ``classify_image``,
``generate``) and LLM streaming::

    with FleetClient("localhost:8001", protocol="grpc") as fleet:
        fleet.classify_image("cat.jpg", top_k=5)  # [Classification(label="tabby", score=0.61, ...), ...]
        fleet.generate("Name three primary colors.", max_tokens=24)  # "The primary colors are: ..."
        for piece in fleet.stream("Write a haiku about the sea.", max_tokens=48):
            print(piece, end="", flush=True)

A helper builds a :class:`~tritonfleet.clients.call.Call` (or a ``ConfiguredCall``, which builds it from the
model's config on the server: feature names, say); the client sends it, casting each input to the data type
the model's config declares (read from the server once per model), and parses the answer.
``api_key`` (default ``$TRITONFLEET_API_KEY``) is sent as ``Authorization: Bearer KEY`` with every request.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
import pkgutil
import queue
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from types import ModuleType
from typing import Any, Literal

from tritonfleet import defaults
from tritonfleet.clients import llm
from tritonfleet.clients.call import (
    Call,
    ConfiguredCall,
    config_datatypes,
    infer_inputs,
    model_config,
    requested_outputs,
)

Protocol = Literal["http", "grpc"]
DEFAULT_URLS = {"http": defaults.HTTP_URL, "grpc": defaults.GRPC_URL}


def _api(protocol: Protocol) -> ModuleType:
    if protocol == "http":
        import tritonclient.http as api
    elif protocol == "grpc":
        import tritonclient.grpc as api
    else:
        raise ValueError(f"protocol must be 'http' or 'grpc', not {protocol!r}")
    return api


@functools.cache
def helpers() -> dict[str, Callable[..., Call | ConfiguredCall]]:
    """Every client helper by name: the ``HELPERS`` of each module of this package
    (``clients/<pipeline>.py``). Two modules offering one name is an error."""
    found: dict[str, Callable[..., Call | ConfiguredCall]] = {}
    package = sys.modules[__package__]  # tritonfleet.clients, imported by now
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__package__}.{info.name}")
        for helper in getattr(module, "HELPERS", ()):
            if found.setdefault(helper.__name__, helper) is not helper:
                raise ValueError(f"two client modules offer a helper named {helper.__name__!r}")
    return found


def _helper(name: str) -> Callable[..., Call | ConfiguredCall]:
    if name.startswith("_") or name not in helpers():
        raise AttributeError(name)
    return helpers()[name]


def _auth(api_key: str | None) -> dict[str, str] | None:
    key = api_key if api_key is not None else os.environ.get("TRITONFLEET_API_KEY")
    return {"authorization": f"Bearer {key}"} if key else None


class _Client:
    """What the blocking and the asyncio client share: protocol, address, key, the pipelines' helpers."""

    def __init__(
        self,
        url: str | None = None,
        protocol: Protocol = "http",
        *,
        api_key: str | None = None,
        **kwargs: Any,
    ) -> None:
        """``kwargs`` go to tritonclient's ``InferenceServerClient``."""
        self.protocol = protocol
        self.api = _api(protocol)
        self.url = url or DEFAULT_URLS[protocol]
        self.headers = _auth(api_key)
        self._configs: dict[str, dict[str, Any]] = {}
        self.triton = self._connect(**kwargs)

    def _connect(self, **kwargs: Any) -> Any:
        raise NotImplementedError

    def __dir__(self) -> list[str]:
        return sorted({*super().__dir__(), *helpers()})

    def _request(self, model: str, values: dict[str, Any], datatypes: dict[str, str]) -> list[Any]:
        return infer_inputs(self.api, Call(model, values, lambda r: r), datatypes)


class FleetClient(_Client):
    """Blocking client. Every helper a pipeline declares is a method: ``fleet.classify_image(path)``."""

    def _connect(self, **kwargs: Any) -> Any:
        return self.api.InferenceServerClient(self.url, **kwargs)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        helper = _helper(name)

        @functools.wraps(helper)
        def run(*args: Any, **kwargs: Any) -> Any:
            return self.call(helper(*args, **kwargs))

        return run

    def call(self, call: Call | ConfiguredCall) -> Any:
        """Send one helper's request and parse its answer."""
        if isinstance(call, ConfiguredCall):
            call = call.make(self.model_config(call.model))
        inputs = infer_inputs(self.api, call, self.datatypes(call.model))
        result = self.triton.infer(
            call.model, inputs, outputs=requested_outputs(self.api, call), headers=self.headers
        )
        return call.parse(result)

    def datatypes(self, model: str) -> dict[str, str]:
        """The model's input data types, from its config on the server."""
        return config_datatypes(self.model_config(model))

    def model_config(self, model: str) -> dict[str, Any]:
        """The model's config on the server as JSON (asked once)."""
        if model not in self._configs:
            kwargs = {"as_json": True} if self.protocol == "grpc" else {}
            self._configs[model] = model_config(
                self.triton.get_model_config(model, headers=self.headers, **kwargs)
            )
        return self._configs[model]

    def is_ready(self) -> bool:
        return bool(self.triton.is_server_ready(headers=self.headers))

    def stream(
        self,
        prompt: str,
        max_tokens: int = 64,
        *,
        chat: bool = True,
        stop_words: list[str] | None = None,
        timeout: float = 300,
        model: str = llm.STREAM_MODEL,
        **sampling: Any,
    ) -> Iterator[str]:
        """The LLM's text as it is generated (``ensemble``, or any model with its interface such as ``rag``):
        gRPC stream or HTTP Server-Sent Events.

        Leaving the loop early (``break``, an exception, closing the generator) stops the generation."""
        values = llm.request_values(
            prompt, max_tokens, stream=True, chat=chat, stop_words=stop_words, **sampling
        )
        request_id = uuid.uuid4().hex
        if self.protocol == "http":
            yield from llm.sse_stream(self.url, values, timeout, request_id, model, self.headers)
            return
        inputs = self._request(model, values, self.datatypes(model))
        responses: queue.Queue[tuple[Any, Any]] = queue.Queue()
        self.triton.start_stream(
            callback=lambda result, error: responses.put((result, error)), headers=self.headers
        )
        ended = False
        try:
            self.triton.async_stream_infer(
                model, inputs, request_id=request_id, enable_empty_final_response=True
            )
            while not ended:
                piece, ended = llm.stream_piece(*responses.get(timeout=timeout))
                if piece:
                    yield piece
        finally:
            if not ended:
                self._stop(request_id, responses)
            self.triton.stop_stream(cancel_requests=True)

    def _stop(self, request_id: str, responses: queue.Queue[tuple[Any, Any]], wait: float = 10) -> None:
        """Stop a stream left early, on the same gRPC stream, and wait for the stop's (empty) response or an
        error (the stream's responses carry no error once it runs, so that is the stop's: say a server
        without the stop input)."""
        deadline = time.monotonic() + wait
        with contextlib.suppress(Exception):  # the stream may be broken already: nothing left to stop then
            stop = self._request(llm.STOP_MODEL, llm.stop_values(), self.datatypes(llm.STOP_MODEL))
            self.triton.async_stream_infer(llm.STOP_MODEL, stop, request_id=request_id)
            while True:
                result, error = responses.get(timeout=max(deadline - time.monotonic(), 0))
                if error is not None or result.get_response().model_name == llm.STOP_MODEL:
                    return

    def close(self) -> None:
        self.triton.close()

    def __enter__(self) -> FleetClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncFleetClient(_Client):
    """asyncio client (tritonclient's ``http.aio`` / ``grpc.aio``): ``await fleet.classify_image(path)``."""

    def _connect(self, **kwargs: Any) -> Any:
        if self.protocol == "http":
            import tritonclient.http.aio as aio
        else:
            import tritonclient.grpc.aio as aio
        return aio.InferenceServerClient(self.url, **kwargs)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        helper = _helper(name)

        @functools.wraps(helper)
        async def run(*args: Any, **kwargs: Any) -> Any:
            return await self.call(helper(*args, **kwargs))

        return run

    async def call(self, call: Call | ConfiguredCall) -> Any:
        if isinstance(call, ConfiguredCall):
            call = call.make(await self.model_config(call.model))
        inputs = infer_inputs(self.api, call, await self.datatypes(call.model))
        result = await self.triton.infer(
            call.model, inputs, outputs=requested_outputs(self.api, call), headers=self.headers
        )
        return call.parse(result)

    async def datatypes(self, model: str) -> dict[str, str]:
        return config_datatypes(await self.model_config(model))

    async def model_config(self, model: str) -> dict[str, Any]:
        if model not in self._configs:
            kwargs = {"as_json": True} if self.protocol == "grpc" else {}
            response = await self.triton.get_model_config(model, headers=self.headers, **kwargs)
            self._configs[model] = model_config(response)
        return self._configs[model]

    async def stream(
        self,
        prompt: str,
        max_tokens: int = 64,
        *,
        chat: bool = True,
        stop_words: list[str] | None = None,
        model: str = llm.STREAM_MODEL,
        **sampling: Any,
    ) -> AsyncIterator[str]:
        """gRPC only (tritonclient's asyncio HTTP client has no streaming). Leaving early stops the
        generation when the generator is closed (``contextlib.aclosing``, or when it is collected)."""
        if self.protocol != "grpc":
            raise ValueError("AsyncFleetClient.stream needs protocol='grpc'")
        values = llm.request_values(
            prompt, max_tokens, stream=True, chat=chat, stop_words=stop_words, **sampling
        )
        inputs = self._request(model, values, await self.datatypes(model))
        request_id = uuid.uuid4().hex
        ended = False
        try:
            async for result, error in self.triton.stream_infer(
                _one(model, inputs, request_id), headers=self.headers
            ):
                piece, ended = llm.stream_piece(result, error)
                if piece:
                    yield piece
                if ended:
                    return
        finally:
            if not ended:
                await self._stop(request_id)

    async def _stop(self, request_id: str, wait: float = 10) -> None:
        """Stop a stream left early (a stream of its own) and wait for the stop's response."""
        with contextlib.suppress(Exception):
            types = await self.datatypes(llm.STOP_MODEL)
            stop = _one(llm.STOP_MODEL, self._request(llm.STOP_MODEL, llm.stop_values(), types), request_id)
            async for _ in self.triton.stream_infer(stop, stream_timeout=wait, headers=self.headers):
                break

    async def close(self) -> None:
        await self.triton.close()

    async def __aenter__(self) -> AsyncFleetClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def _one(model: str, inputs: list[Any], request_id: str) -> AsyncIterator[dict[str, Any]]:
    """A request iterator of one request (tritonclient.grpc.aio's ``stream_infer``)."""
    yield {
        "model_name": model,
        "inputs": inputs,
        "request_id": request_id,
        "enable_empty_final_response": True,
    }
