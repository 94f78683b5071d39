"""Runs one batch line against the fleet, at batch priority, and makes its output line.

``/v1`` lines go through the OpenAI app itself, called in process over ASGI (no socket): the same
validation, chat template, sampling and answers as the interactive ``/v1``, with every Triton request at
:data:`~tritonfleet.spec.BATCH_PRIORITY`. KServe v2 lines (``/v2/models/<model>/infer``, a JSON infer
request) are checked by the front door's own rules (:mod:`tritonfleet.frontdoor.validation`) and sent over
gRPC at the same priority; the answer is the KServe v2 JSON response. BYTES inputs are JSON strings, or
base64 where the input says ``"parameters": {"content_type": "base64"}`` (images: MLServer's convention).

An answer (any HTTP status but 503) is the line's result; a server that is not available (503, a broken
connection: :class:`~tritonfleet.errors.Unavailable`) raises :class:`Retry`, and the worker gives the line
back to the queue.
"""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as aio
from tritonclient.utils import InferenceServerException, triton_to_np_dtype

from tritonfleet.batch.lines import V2_ROUTE, output_line
from tritonfleet.batch.store import Line, Result
from tritonfleet.errors import ClientError, Error, Unavailable
from tritonfleet.frontdoor.policy import PublicModels
from tritonfleet.frontdoor.validation import check_infer, json_infer
from tritonfleet.openai.app import create_app
from tritonfleet.openai.triton import triton_error
from tritonfleet.spec import BATCH_PRIORITY, PRIORITY_PARAMETER


class Retry(Exception):
    """The line could not be run now (the server is restarting): run it again later."""


class Executor:
    """Runs lines on the Triton at ``grpc_url`` (gRPC) serving ``repository``; ``public``: the public
    models' specs (the front door's), for KServe v2 lines."""

    def __init__(
        self, grpc_url: str, repository: Path, public: PublicModels, priority: int = BATCH_PRIORITY
    ) -> None:
        self.grpc_url = grpc_url
        self.public = public
        self.priority = priority
        self.app = create_app(grpc_url, repository, priority=priority)
        self._client: aio.InferenceServerClient | None = None

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def run(self, line: Line) -> Result:
        if V2_ROUTE.match(line.url):
            status, body = await self._v2(line)
        else:
            status, body = await asgi_post(self.app, line.url, line.body.encode())
        if status == 503:
            raise Retry(str(body)[:200])
        usage = body.get("usage") if isinstance(body, dict) else None
        tokens = int(usage.get("total_tokens", 0)) if isinstance(usage, dict) else 0
        return Result(
            line.batch_id,
            line.idx,
            line.custom_id,
            status == 200,
            output_line(line.custom_id, status, body),
            tokens,
        )

    # --- KServe v2 lines -------------------------------------------------------------------------------

    @property
    def client(self) -> aio.InferenceServerClient:
        if self._client is None:
            self._client = aio.InferenceServerClient(self.grpc_url)
        return self._client

    async def _v2(self, line: Line) -> tuple[int, Any]:
        match = V2_ROUTE.match(line.url)
        assert match is not None
        model = match.group(1)
        try:
            spec = self.public.model(model)
            body, encoded = _base64_inputs(line.body)
            request, inputs, outputs = json_infer(body, None)
            check_infer(spec, inputs, outputs, self.public.limits)
            tensors, wanted = _grpc_request(request, encoded)
            result = await self.client.infer(
                model,
                tensors,
                outputs=wanted or None,
                request_id=str(request.get("id", "")),
                priority=self.priority,
                parameters={PRIORITY_PARAMETER: self.priority},
            )
        except (InferenceServerException, grpc.aio.AioRpcError) as exc:
            error = triton_error(exc, model)
            if isinstance(error, Unavailable):
                raise Retry(error.message) from None
            return error.status, {"error": error.message}
        except Error as exc:  # the front door's rules: the client's mistake
            return exc.status, {"error": exc.message}
        return 200, _json_response(result)


def _base64_inputs(body: str) -> tuple[bytes, set[int]]:
    """The body without the inputs' ``content_type`` parameters (the front door's rules know no such
    parameter), and which inputs were base64."""
    try:
        request = json.loads(body)
        encoded = set()
        for i, item in enumerate(request.get("inputs") or []):
            params = item.get("parameters") if isinstance(item, dict) else None
            if isinstance(params, dict) and "content_type" in params:
                if params.pop("content_type") == "base64":
                    encoded.add(i)
                if not params:
                    del item["parameters"]
    except (ValueError, AttributeError, TypeError):
        return body.encode(), set()  # json_infer says what is wrong with it
    return json.dumps(request).encode(), encoded


def _grpc_request(request: dict[str, Any], encoded: set[int]) -> tuple[list[Any], list[Any]]:
    """A checked KServe v2 JSON request as tritonclient's inputs and requested outputs; ``encoded``: the
    inputs whose BYTES elements are base64."""
    tensors = []
    for i, item in enumerate(request["inputs"]):
        datatype, shape, data = item["datatype"], [int(d) for d in item["shape"]], item.get("data")
        base64_bytes = i in encoded
        if datatype == "BYTES":
            values = [_bytes(v, base64_bytes) for v in _flat(data)]
            array = np.array(values, dtype=np.object_).reshape(shape)
        else:
            array = np.array(list(_flat(data)), dtype=triton_to_np_dtype(datatype)).reshape(shape)
        tensor = grpcclient.InferInput(item["name"], shape, datatype)
        tensor.set_data_from_numpy(array)
        tensors.append(tensor)
    wanted = []
    for out in request.get("outputs") or []:
        classes = int((out.get("parameters") or {}).get("classification", 0))
        wanted.append(grpcclient.InferRequestedOutput(out["name"], class_count=classes))
    return tensors, wanted


def _bytes(value: Any, is_base64: bool) -> bytes:
    if not isinstance(value, str):
        raise ClientError("BYTES data must be strings")
    if not is_base64:
        return value.encode()
    try:
        return base64.b64decode(value, validate=True)
    except ValueError:
        raise ClientError("a base64 BYTES element is not valid base64") from None


def _flat(data: Any) -> Any:
    if isinstance(data, list):
        for item in data:
            yield from _flat(item)
    else:
        yield data


def _json_response(result: Any) -> dict[str, Any]:
    """tritonclient's result as the KServe v2 JSON response (BYTES as text, or base64 when not UTF-8)."""
    response = result.get_response(as_json=True)
    outputs = []
    for out in response.get("outputs", []):
        array = result.as_numpy(out["name"])
        entry: dict[str, Any] = {"name": out["name"], "datatype": out["datatype"], "shape": list(array.shape)}
        if out["datatype"] == "BYTES":
            values = [bytes(v) for v in array.reshape(-1)]
            try:
                entry["data"] = [v.decode() for v in values]
            except UnicodeDecodeError:
                entry["data"] = [base64.b64encode(v).decode() for v in values]
                entry["parameters"] = {"content_type": "base64"}
        else:
            entry["data"] = array.reshape(-1).tolist()
        outputs.append(entry)
    return {
        "model_name": response.get("model_name"),
        "model_version": response.get("model_version"),
        "id": response.get("id", ""),
        "outputs": outputs,
    }


async def asgi_post(app: Any, path: str, body: bytes) -> tuple[int, Any]:
    """POST ``body`` (JSON) to the ASGI ``app`` in process: its status and JSON answer."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 0),
        "server": ("127.0.0.1", 0),
    }
    sent = False
    done = asyncio.Event()
    status = 500
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await done.wait()  # the app listens for a disconnect while it works: none until the answer is out
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                done.set()

    try:
        await app(scope, receive, send)
    finally:
        done.set()
    raw = b"".join(chunks)
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, {"error": raw.decode("utf-8", "replace")}
