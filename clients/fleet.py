"""Typed clients for the fleet's pipelines over tritonclient: HTTP or gRPC, sync or asyncio.

Any Triton client works against the fleet; these add one helper per pipeline on top::

    with FleetClient("localhost:8001", protocol="grpc") as fleet:
        fleet.classify_image("cat.jpg", top_k=5)  # [Classification(label="tabby", score=0.61, ...), ...]
        fleet.generate("Name three primary colors.", max_tokens=24)  # "The primary colors are:\n\nRed (R)..."
        for piece in fleet.stream("Write a haiku about the sea.", max_tokens=48):
            print(piece, end="", flush=True)
"""

from __future__ import annotations

import contextlib
import queue
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from types import ModuleType
from typing import Any, Literal

from tritonfleet.clients import image_classifier, llm
from tritonfleet.clients.image_classifier import Classification, ImageSource

Protocol = Literal["http", "grpc"]
DEFAULT_URLS = {"http": "localhost:8000", "grpc": "localhost:8001"}


def _api(protocol: Protocol) -> ModuleType:
    if protocol == "http":
        import tritonclient.http as api
    elif protocol == "grpc":
        import tritonclient.grpc as api
    else:
        raise ValueError(f"protocol must be 'http' or 'grpc', not {protocol!r}")
    return api


class FleetClient:
    """Blocking client."""

    def __init__(self, url: str | None = None, protocol: Protocol = "http", **kwargs: Any) -> None:
        self.protocol = protocol
        self.api = _api(protocol)
        self.url = url or DEFAULT_URLS[protocol]
        self.triton = self.api.InferenceServerClient(self.url, **kwargs)

    def is_ready(self) -> bool:
        return bool(self.triton.is_server_ready())

    def classify_images(self, images: list[ImageSource], top_k: int = 5) -> list[list[Classification]]:
        """Top-k classes for each image, sent as one batch."""
        inputs, outputs = image_classifier.build_request(self.api, images, top_k)
        result = self.triton.infer(image_classifier.MODEL, inputs, outputs=outputs)
        return image_classifier.parse_response(result)

    def classify_image(self, image: ImageSource, top_k: int = 5) -> list[Classification]:
        """Top-k ImageNet classes of one encoded image (path or bytes), best first."""
        return self.classify_images([image], top_k)[0]

    def generate(
        self,
        prompt: str,
        max_tokens: int = 64,
        *,
        chat: bool = True,
        stop_words: list[str] | None = None,
        **sampling: Any,
    ) -> str:
        """One response from the LLM (``tensorrt_llm_bls``). ``chat`` wraps ``prompt`` in the chat template;
        ``sampling``: temperature, top_k, top_p, seed, min_tokens, ... (see ``llm.PARAMETERS``)."""
        values = llm.request_values(
            prompt, max_tokens, stream=False, chat=chat, stop_words=stop_words, **sampling
        )
        result = self.triton.infer(llm.UNARY_MODEL, llm.build_inputs(self.api, values))
        return llm.text_of(result)

    def stream(
        self,
        prompt: str,
        max_tokens: int = 64,
        *,
        chat: bool = True,
        stop_words: list[str] | None = None,
        timeout: float = 300,
        **sampling: Any,
    ) -> Iterator[str]:
        """The LLM's text as it is generated (``ensemble``): gRPC stream or HTTP Server-Sent Events.

        Leaving the loop early (``break``, an exception, closing the generator) stops the generation."""
        values = llm.request_values(
            prompt, max_tokens, stream=True, chat=chat, stop_words=stop_words, **sampling
        )
        request_id = uuid.uuid4().hex
        if self.protocol == "http":
            yield from llm.sse_stream(self.url, values, timeout, request_id)
            return
        responses: queue.Queue[tuple[Any, Any]] = queue.Queue()
        self.triton.start_stream(callback=lambda result, error: responses.put((result, error)))
        ended = False
        try:
            self.triton.async_stream_infer(
                llm.STREAM_MODEL,
                llm.build_inputs(self.api, values),
                request_id=request_id,
                enable_empty_final_response=True,
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
        stop = llm.build_inputs(self.api, llm.stop_values())
        deadline = time.monotonic() + wait
        with contextlib.suppress(Exception):  # the stream may be broken already: nothing left to stop then
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


class AsyncFleetClient:
    """asyncio client (tritonclient's ``http.aio`` / ``grpc.aio``)."""

    def __init__(self, url: str | None = None, protocol: Protocol = "http", **kwargs: Any) -> None:
        self.protocol = protocol
        self.api = _api(protocol)
        if protocol == "http":
            import tritonclient.http.aio as aio
        else:
            import tritonclient.grpc.aio as aio
        self.triton = aio.InferenceServerClient(url or DEFAULT_URLS[protocol], **kwargs)

    async def classify_images(self, images: list[ImageSource], top_k: int = 5) -> list[list[Classification]]:
        inputs, outputs = image_classifier.build_request(self.api, images, top_k)
        result = await self.triton.infer(image_classifier.MODEL, inputs, outputs=outputs)
        return image_classifier.parse_response(result)

    async def classify_image(self, image: ImageSource, top_k: int = 5) -> list[Classification]:
        return (await self.classify_images([image], top_k))[0]

    async def generate(self, prompt: str, max_tokens: int = 64, *, chat: bool = True, **sampling: Any) -> str:
        values = llm.request_values(prompt, max_tokens, stream=False, chat=chat, stop_words=None, **sampling)
        result = await self.triton.infer(llm.UNARY_MODEL, llm.build_inputs(self.api, values))
        return llm.text_of(result)

    async def stream(
        self, prompt: str, max_tokens: int = 64, *, chat: bool = True, **sampling: Any
    ) -> AsyncIterator[str]:
        """gRPC only (tritonclient's asyncio HTTP client has no streaming). Leaving early stops the
        generation when the generator is closed (``contextlib.aclosing``, or when it is collected)."""
        if self.protocol != "grpc":
            raise ValueError("AsyncFleetClient.stream needs protocol='grpc'")
        values = llm.request_values(prompt, max_tokens, stream=True, chat=chat, stop_words=None, **sampling)
        request_id = uuid.uuid4().hex
        ended = False
        try:
            async for result, error in self.triton.stream_infer(
                _one(llm.STREAM_MODEL, llm.build_inputs(self.api, values), request_id)
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
        stop = _one(llm.STOP_MODEL, llm.build_inputs(self.api, llm.stop_values()), request_id)
        with contextlib.suppress(Exception):
            async for _ in self.triton.stream_infer(stop, stream_timeout=wait):
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
