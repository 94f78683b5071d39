"""The API's one connection to Triton: tritonclient's asyncio gRPC client.

One response comes from a unary ``ModelInfer``; a stream from ``ModelStreamInfer`` (one gRPC stream per
request, the decoupled ensemble's way). Inputs are cast to the data types the served config declares
(read once per model, :mod:`tritonfleet.clients.call`), and optional inputs the served model lacks are
dropped, so one request builder serves both targets. A generation that nobody reads any more (a client that
disconnected) is ended with TensorRT-LLM's stop request, as :class:`~tritonfleet.clients.FleetClient` does.
Triton's errors come out as :mod:`tritonfleet.errors`' kinds (:func:`triton_error`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

import grpc
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as aio
from tritonclient.utils import InferenceServerException

from tritonfleet.clients import llm
from tritonfleet.clients.call import Call, config_datatypes, infer_inputs
from tritonfleet.errors import ClientError, Error, Fault, from_triton
from tritonfleet.openai.errors import ContextExceeded
from tritonfleet.spec import PRIORITY_PARAMETER

CONTEXT_MESSAGE = "exceeds the context"  # how the pipeline words a prompt too long for the engine


def triton_error(exc: BaseException, model: str) -> Error:
    """tritonclient's ``InferenceServerException`` (or a gRPC error) from calling ``model``, as the error
    family (:func:`tritonfleet.errors.from_triton`); a prompt the engine finds too long is
    :class:`~tritonfleet.openai.errors.ContextExceeded`."""
    if isinstance(exc, grpc.aio.AioRpcError):
        code, message = exc.code().name, exc.details() or str(exc)
    else:
        status = getattr(exc, "status", None)
        status = status() if callable(status) else status
        message = getattr(exc, "message", None)
        message = message() if callable(message) else (message or str(exc))
        code = str(status or "")
    error = from_triton(message, code, model)
    if type(error) is ClientError and CONTEXT_MESSAGE in message:
        return ContextExceeded(message)
    return error


class Triton:
    """tritonclient.grpc.aio with the served configs cached (``config``, ``datatypes``).

    ``priority``: Triton's priority level of every request (0: the model's default; batch jobs send a lower
    one, :data:`tritonfleet.spec.BATCH_PRIORITY`), also sent as the request parameter ``priority_level``,
    which reaches Python models (Triton's priority does not) through ensembles and BLS."""

    def __init__(self, url: str, priority: int = 0) -> None:
        self.url = url
        self.priority = priority
        self.parameters = {PRIORITY_PARAMETER: priority} if priority else None
        self._client: aio.InferenceServerClient | None = None
        self._configs: dict[str, dict[str, Any]] = {}
        self._stops: set[asyncio.Task[None]] = set()  # stop requests in flight (kept till done)

    @property
    def client(self) -> aio.InferenceServerClient:
        """Made on first use, inside the serving event loop (a gRPC channel belongs to one loop)."""
        if self._client is None:
            self._client = aio.InferenceServerClient(self.url)
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def config(self, model: str) -> dict[str, Any]:
        """The served config of ``model`` as JSON; 503 while the model is not loaded."""
        if model not in self._configs:
            try:
                config = await self.client.get_model_config(model, as_json=True)
            except InferenceServerException as exc:
                raise triton_error(exc, model) from None
            self._configs[model] = config.get("config", config)
        return self._configs[model]

    async def datatypes(self, model: str) -> dict[str, str]:
        return config_datatypes(await self.config(model))

    async def ready_models(self) -> set[str]:
        """The models Triton reports READY (its repository index)."""
        try:
            index = await self.client.get_model_repository_index(as_json=True)
        except InferenceServerException:
            return set()
        return {m["name"] for m in index.get("models", []) if m.get("state") == "READY"}

    async def inputs(self, model: str, values: Mapping[str, Any]) -> list[grpcclient.InferInput]:
        """InferInputs for the values the served model takes (optional inputs it lacks are dropped)."""
        types = await self.datatypes(model)
        call = Call(model, {k: v for k, v in values.items() if k in types}, lambda r: r)
        return infer_inputs(grpcclient, call, types)

    async def infer(self, model: str, values: Mapping[str, Any], request_id: str = "") -> Any:
        """One response (``InferResult``); Triton's errors as the error family's."""
        inputs = await self.inputs(model, values)
        try:
            return await self.client.infer(
                model, inputs, request_id=request_id, priority=self.priority, parameters=self.parameters
            )
        except InferenceServerException as exc:
            raise triton_error(exc, model) from None

    async def stream(self, model: str, values: Mapping[str, Any], request_id: str) -> AsyncIterator[Any]:
        """The responses of one streamed request, to its final one (which may carry no tensors).

        Leaving early (the generator closed, or cancelled with its task) sends the stop request for
        ``request_id``."""
        inputs = await self.inputs(model, values)
        request = {
            "model_name": model,
            "inputs": inputs,
            "request_id": request_id,
            "enable_empty_final_response": True,
            "priority": self.priority,
            "parameters": self.parameters,
        }
        ended = False
        responses = self.client.stream_infer(_one(request))
        try:
            async for result, error in responses:
                if error is not None:
                    ended = True
                    raise triton_error(error, model)
                ended = result.get_response().parameters["triton_final_response"].bool_param
                yield result
                if ended:
                    return
        finally:
            if not ended:
                responses.cancel()
                self.stop_later(request_id)

    def stop_later(self, request_id: str) -> None:
        """The stop request, sent from a task of its own: a cancelled request (client gone) cannot await."""
        task = asyncio.get_running_loop().create_task(self.stop(request_id))
        self._stops.add(task)
        task.add_done_callback(self._stops.discard)

    async def stop(self, request_id: str, wait: float = 10) -> None:
        """TensorRT-LLM's stop request for ``request_id`` (best effort: the request may have ended)."""
        with contextlib.suppress(Exception):
            inputs = await self.inputs(llm.STOP_MODEL, llm.stop_values())
            request = {"model_name": llm.STOP_MODEL, "inputs": inputs, "request_id": request_id}
            async for _ in self.client.stream_infer(_one(request), stream_timeout=wait):
                break


async def _one(request: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    yield request


def check(condition: bool, message: str) -> None:
    """A real fault of the server (500): what a pipeline answered is not what its interface says."""
    if not condition:
        raise Fault(message)
