"""OpenAI's Files and Batch API on ``/v1``: Starlette routes the OpenAI app mounts (``create_app(routes=)``).

Files: ``POST /v1/files`` (multipart: ``file``, ``purpose`` "batch"), ``GET /v1/files``, ``GET
/v1/files/{id}``, ``GET /v1/files/{id}/content``, ``DELETE /v1/files/{id}``. Batches: ``POST /v1/batches``
(``input_file_id``, ``endpoint``, ``completion_window`` "24h", ``metadata``), ``GET /v1/batches`` (``after``,
``limit``), ``GET /v1/batches/{id}``, ``POST /v1/batches/{id}/cancel``.

Everything belongs to the key that made it: the front door names the caller's key in ``x-tritonfleet-key``
(it never passes a client's own), and another key's file or batch is a 404. Limits: the input file's size,
batches in flight (429), lines a batch (at validating); the key's own where it has them. Refusals are
:mod:`tritonfleet.errors`' kinds, which the OpenAI app answers in OpenAI's shape.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tritonfleet.batch.config import WINDOWS
from tritonfleet.batch.lines import is_endpoint
from tritonfleet.errors import ClientError, Conflict, NotFound, RateLimited, TooLarge

if TYPE_CHECKING:
    from tritonfleet.batch.service import BatchService

OWNER_HEADER = "x-tritonfleet-key"
ANONYMOUS = "-"
IN_FLIGHT_RETRY_S = 60.0  # a key at its batches-in-flight limit: when to ask again (batches take minutes)


def owner(request: Request) -> str:
    return request.headers.get(OWNER_HEADER) or ANONYMOUS


def routes(service: BatchService) -> list[Route]:
    api = _Routes(service)
    return [
        Route("/v1/files", api.upload, methods=["POST"]),
        Route("/v1/files", api.list_files, methods=["GET"]),
        Route("/v1/files/{file_id}", api.get_file, methods=["GET"]),
        Route("/v1/files/{file_id}", api.delete_file, methods=["DELETE"]),
        Route("/v1/files/{file_id}/content", api.content, methods=["GET"]),
        Route("/v1/batches", api.create, methods=["POST"]),
        Route("/v1/batches", api.list_batches, methods=["GET"]),
        Route("/v1/batches/{batch_id}", api.get_batch, methods=["GET"]),
        Route("/v1/batches/{batch_id}/cancel", api.cancel, methods=["POST"]),
    ]


def _not_found(what: str, ident: str, param: str | None = None) -> NotFound:
    return NotFound(f"No such {what}: {ident}", param=param, code=f"{what}_not_found")


class InFlightLimit(RateLimited):
    """A key with as many batches in flight as it may have (``batch_limit``)."""

    def __init__(self, limit: int) -> None:
        message = f"this key has {limit} batches in flight, its limit: wait for one to end"
        super().__init__(message, IN_FLIGHT_RETRY_S, reason="batch_limit")
        self.code = "batch_limit"


class _Routes:
    def __init__(self, service: BatchService) -> None:
        self.service = service
        self.store = service.store

    # --- files -----------------------------------------------------------------------------------------

    async def upload(self, request: Request) -> Response:
        key = owner(request)
        limit = self.service.file_limit(key)
        try:
            form = await request.form(max_files=1, max_fields=8)
        except Exception as exc:  # not a multipart form, or a broken one
            raise ClientError(
                f"the request must be a multipart form with 'file' and 'purpose': {exc}"
            ) from None
        try:
            upload, purpose = form.get("file"), form.get("purpose")
            if purpose != "batch":
                raise ClientError(f"purpose {purpose!r} is not supported here: use 'batch'", param="purpose")
            if upload is None or isinstance(upload, str):
                raise ClientError("the form has no 'file'", param="file")
            content = await upload.read(limit + 1)
            if len(content) > limit:
                raise TooLarge(
                    f"the file is over the limit of {limit} bytes", param="file", code="file_too_large"
                )
            filename = upload.filename or "upload.jsonl"
        finally:
            await form.close()
        return JSONResponse(self.store.add_file(key, "batch", filename, content))

    async def list_files(self, request: Request) -> Response:
        purpose = request.query_params.get("purpose")
        data = self.store.files(owner(request), purpose)
        return JSONResponse({"object": "list", "data": data, "has_more": False})

    async def get_file(self, request: Request) -> Response:
        file_id = request.path_params["file_id"]
        found = self.store.file(file_id, owner(request))
        if found is None:
            raise _not_found("file", file_id)
        return JSONResponse(found)

    async def content(self, request: Request) -> Response:
        file_id = request.path_params["file_id"]
        data = self.store.content(file_id, owner(request))
        if data is None:
            raise _not_found("file", file_id)
        return Response(data, media_type="application/jsonl")

    async def delete_file(self, request: Request) -> Response:
        file_id = request.path_params["file_id"]
        if not self.store.delete_file(file_id, owner(request)):
            raise _not_found("file", file_id)
        return JSONResponse({"id": file_id, "object": "file", "deleted": True})

    # --- batches ---------------------------------------------------------------------------------------

    async def create(self, request: Request) -> Response:
        key = owner(request)
        body = await _json(request)
        input_file_id = body.get("input_file_id")
        endpoint = body.get("endpoint")
        window = body.get("completion_window")
        metadata = body.get("metadata")
        if not isinstance(input_file_id, str):
            raise ClientError("input_file_id is required", param="input_file_id")
        if not isinstance(endpoint, str) or not is_endpoint(endpoint):
            raise ClientError(
                f"endpoint {endpoint!r}: use /v1/chat/completions, /v1/completions, /v1/embeddings or "
                "/v2/models/<model>/infer",
                param="endpoint",
            )
        if window not in WINDOWS:
            raise ClientError(
                f"completion_window {window!r}: only '24h' is supported", param="completion_window"
            )
        if metadata is not None and not _metadata_ok(metadata):
            raise ClientError(
                "metadata is at most 16 string keys (64 chars) and values (512 chars)", param="metadata"
            )
        found = self.store.file(input_file_id, key)
        if found is None:
            raise _not_found("file", input_file_id, "input_file_id")
        if found["purpose"] != "batch":
            raise ClientError(f"{input_file_id} is not a file of purpose 'batch'", param="input_file_id")
        limit = self.service.in_flight_limit(key)
        if self.store.in_flight(key) >= limit:
            raise InFlightLimit(limit)
        batch_id = self.store.add_batch(
            key, endpoint, input_file_id, window, self.service.config.window(window), metadata
        )
        self.service.created(batch_id)
        return JSONResponse(self.store.batch(batch_id))

    async def list_batches(self, request: Request) -> Response:
        try:
            limit = int(request.query_params.get("limit", "20"))
        except ValueError:
            raise ClientError("limit must be a number", param="limit") from None
        if not 1 <= limit <= 100:
            raise ClientError("limit must be between 1 and 100", param="limit")
        data, more = self.store.batches(owner(request), request.query_params.get("after"), limit)
        return JSONResponse(
            {
                "object": "list",
                "data": data,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
                "has_more": more,
            }
        )

    async def get_batch(self, request: Request) -> Response:
        batch_id = request.path_params["batch_id"]
        found = self.store.batch(batch_id, owner(request))
        if found is None:
            raise _not_found("batch", batch_id)
        return JSONResponse(found)

    async def cancel(self, request: Request) -> Response:
        batch_id = request.path_params["batch_id"]
        found = self.store.batch(batch_id, owner(request))
        if found is None:
            raise _not_found("batch", batch_id)
        if not self.store.cancel(batch_id) and found["status"] != "cancelling":
            raise Conflict(
                f"a batch that is {found['status']} cannot be cancelled", code="batch_not_cancellable"
            )
        return JSONResponse(self.store.batch(batch_id))


def _metadata_ok(metadata: Any) -> bool:
    return (
        isinstance(metadata, dict)
        and len(metadata) <= 16
        and all(isinstance(k, str) and len(k) <= 64 for k in metadata)
        and all(isinstance(v, str) and len(v) <= 512 for v in metadata.values())
    )


async def _json(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ClientError(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ClientError("the request body must be a JSON object")
    return body
