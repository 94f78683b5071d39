"""A batch's input file read into lines, and the output lines a batch writes (OpenAI's formats).

Input: JSONL, one request a line: ``{"custom_id", "method": "POST", "url", "body"}``. ``url`` is one of the
batch endpoints (``/v1/chat/completions``, ``/v1/completions``, ``/v1/embeddings``) or a KServe v2 inference
route of a public model (``/v2/models/<model>/infer``, a JSON infer request as ``body``).

What is wrong with one line fails that line only (its result goes to the error file with a code and a
message): not JSON, no ``custom_id``, an unknown endpoint or model. What is wrong with the file fails the
batch at ``validating`` with OpenAI's ``errors`` (each ``{code, message, param, line}``): not UTF-8 JSONL,
no line at all, lines for another endpoint or another model than the others, a ``custom_id`` twice, more
lines than the limit.

Output: ``{"id", "custom_id", "response": {"status_code", "request_id", "body"}, "error"}``; ``error`` is set
(and ``response`` null) for lines that never got an HTTP answer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from tritonfleet.batch.store import Line, Result, new_id

OPENAI_ENDPOINTS = {"/v1/chat/completions": "chat", "/v1/completions": "chat", "/v1/embeddings": "embedding"}
V2_ROUTE = re.compile(r"^/v2/models/([A-Za-z0-9_.\-]{1,128})/infer$")


def is_endpoint(url: str) -> bool:
    return url in OPENAI_ENDPOINTS or bool(V2_ROUTE.match(url))


def output_line(custom_id: str | None, status: int | None, body: Any, error: dict | None = None) -> str:
    """One line of the output or error file."""
    response = None
    if status is not None:
        response = {"status_code": status, "request_id": new_id("req_"), "body": body}
    return json.dumps(
        {"id": new_id("batch_req_"), "custom_id": custom_id, "response": response, "error": error},
        ensure_ascii=False,
        separators=(",", ":"),
    )


def line_error(batch_id: str, idx: int, custom_id: str | None, code: str, message: str) -> Result:
    return Result(
        batch_id,
        idx,
        custom_id,
        False,
        output_line(custom_id, None, None, {"code": code, "message": message}),
    )


@dataclass
class Parsed:
    """A file read into the lines to run, the lines failed already, or the errors that fail the batch."""

    lines: list[Line] = field(default_factory=list)
    failed: list[Result] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)


def file_error(code: str, message: str, line: int | None = None, param: str | None = None) -> dict[str, Any]:
    return {"code": code, "message": message, "param": param, "line": line}


def parse(
    batch_id: str,
    content: bytes,
    endpoint: str,
    openai_models: Mapping[str, str],
    v2_models: Collection[str],
    max_lines: int,
) -> Parsed:
    """Read ``content`` for a batch on ``endpoint``. ``openai_models``: the /v1 model ids and their kinds;
    ``v2_models``: the public Triton models."""
    out = Parsed()
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as exc:
        out.errors.append(file_error("invalid_file_format", f"the file is not UTF-8 text: {exc}"))
        return out
    raw = [(n, s) for n, s in enumerate(text.splitlines(), 1) if s.strip()]
    if not raw:
        out.errors.append(file_error("empty_file", "the file has no request lines"))
        return out
    if len(raw) > max_lines:
        out.errors.append(
            file_error(
                "too_many_requests", f"the file has {len(raw)} requests, over the limit of {max_lines}"
            )
        )
        return out
    seen: dict[str, int] = {}
    models: dict[str, int] = {}
    parsed_any = False
    for idx, (number, source) in enumerate(raw):
        try:
            request = json.loads(source)
        except json.JSONDecodeError as exc:
            out.failed.append(
                line_error(batch_id, idx, None, "invalid_json", f"line {number} is not JSON: {exc}")
            )
            continue
        if not isinstance(request, dict):
            out.failed.append(
                line_error(batch_id, idx, None, "invalid_json", f"line {number} is not an object")
            )
            continue
        parsed_any = True
        custom_id = request.get("custom_id")
        if not isinstance(custom_id, str) or not custom_id:
            out.failed.append(
                line_error(batch_id, idx, None, "invalid_request", f"line {number} has no custom_id string")
            )
            continue
        if custom_id in seen:
            out.errors.append(
                file_error(
                    "duplicate_custom_id",
                    f"custom_id {custom_id!r} is on lines {seen[custom_id]} and {number}",
                    number,
                    "custom_id",
                )
            )
            continue
        seen[custom_id] = number
        url, body = request.get("url"), request.get("body")
        method = request.get("method", "POST")
        problem = None
        if method != "POST":
            problem = ("invalid_request", f"method {method!r}: batch requests are POST")
        elif not isinstance(url, str) or not is_endpoint(url):
            problem = ("invalid_url", f"unknown endpoint {url!r}: use {endpoint}")
        elif url != endpoint:
            out.errors.append(
                file_error(
                    "mismatched_endpoint",
                    f"line {number} is for {url}, the batch for {endpoint}",
                    number,
                    "url",
                )
            )
            continue
        elif not isinstance(body, dict):
            problem = ("invalid_request", f"line {number}: body must be a JSON object")
        else:
            model = _model(url, body)
            known = (
                model in v2_models
                if V2_ROUTE.match(url)
                else openai_models.get(model) == OPENAI_ENDPOINTS[url]
            )
            if not known:
                problem = ("model_not_found", f"the model {model!r} does not exist on {url}")
            else:
                models.setdefault(str(model), number)
        if problem:
            out.failed.append(line_error(batch_id, idx, custom_id, *problem))
            continue
        out.lines.append(Line(batch_id, idx, custom_id, url, json.dumps(body, separators=(",", ":"))))
    if len(models) > 1:
        first, second = sorted(models.items(), key=lambda kv: kv[1])[:2]
        out.errors.append(
            file_error(
                "mismatched_model",
                f"line {second[1]} is for the model {second[0]!r}, line {first[1]} for "
                f"{first[0]!r}: a batch is for one model",
                second[1],
                "body.model",
            )
        )
    if not parsed_any:
        out.errors.append(
            file_error("invalid_file_format", "no line of the file is a JSON object: not JSONL")
        )
    return out


def _model(url: str, body: dict[str, Any]) -> Any:
    match = V2_ROUTE.match(url)
    return match.group(1) if match else body.get("model")
