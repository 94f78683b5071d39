"""Typed clients for the fleet's pipelines over tritonclient: HTTP or gRPC, sync or asyncio.

Any Triton client works against the fleet; these add one helper per pipeline on top::

    with FleetClient("localhost:8001", protocol="grpc") as fleet:
        fleet.classify_image("cat.jpg", top_k=5)  # [Classification(label="tabby", score=0.61, ...), ...]
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, Literal

from tritonfleet.clients import image_classifier
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
        self.triton = self.api.InferenceServerClient(url or DEFAULT_URLS[protocol], **kwargs)

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

    async def close(self) -> None:
        await self.triton.close()

    async def __aenter__(self) -> AsyncFleetClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
