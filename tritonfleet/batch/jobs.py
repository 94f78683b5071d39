"""``fleet batch`` and ``fleet worker``: batch jobs on the files people have, through the fleet's ``/v1``.

``fleet batch run PIPELINE INPUT --output OUT`` turns INPUT into a batch file, submits it with the
``openai`` client (``--url``, ``TRITONFLEET_API_KEY``), shows a progress bar until it ends and writes OUT:
one JSON line per input item, in the input's order, with its id. INPUT is

- ``image_classifier``: a folder of images (KServe v2 lines, base64 ``IMAGE``; the top-5 labels);
- ``text_embedding``: a text file (a text a line) or JSONL (``{"id", "text"}``) (KServe v2 ``TEXT``);
- ``tabular`` (``--model``): a CSV or Parquet file whose columns are the model's feature names, from its
  config (Parquet needs pyarrow: the ``batch`` extra);
- pipelines with a chat model (``llm``, ``rag``): a text or JSONL file of prompts (``/v1/chat/completions``).

``fleet batch list|status ID|cancel ID|results ID`` look after batches; ``fleet worker`` runs a Celery worker
(:mod:`tritonfleet.batch.celery_app`, the ``batch`` extra).
"""

from __future__ import annotations

import argparse
import base64
import csv
import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tritonfleet import pipelines
from tritonfleet.batch.celery_app import run_worker
from tritonfleet.clients.tabular import FEATURE_NAMES, split_names
from tritonfleet.repository import Repository

if TYPE_CHECKING:
    from rich.console import Console

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif"}
TERMINAL = ("completed", "failed", "expired", "cancelled")


def add_arguments(b: argparse.ArgumentParser, console: Console) -> None:
    """``fleet batch``'s actions: ``run``, ``list``, ``status``, ``cancel``, ``results``."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default="http://localhost:9000/v1", help="the fleet's /v1 base URL")
    bsub = b.add_subparsers(required=True, metavar="ACTION")
    run = bsub.add_parser("run", parents=[common], help="run INPUT through PIPELINE as a batch, write OUT")
    run.add_argument("pipeline", choices=sorted(pipelines.registry()))
    run.add_argument("input", type=Path)
    run.add_argument("--output", type=Path, required=True, help="JSONL: one line per input item, in order")
    run.add_argument("--model", help="tabular: wine_sklearn or breast_cancer_xgboost")
    run.add_argument("--max-tokens", type=int, default=128, help="chat pipelines: tokens per answer")
    run.set_defaults(handler=lambda args: _run(args, console))
    ls = bsub.add_parser("list", parents=[common], help="this key's batches, newest first")
    ls.add_argument("--limit", type=int, default=20)
    ls.set_defaults(handler=lambda args: _list(args, console))
    for name, what in (("status", "a batch's status and counts"), ("cancel", "cancel a batch")):
        p = bsub.add_parser(name, parents=[common], help=what)
        p.add_argument("batch_id")
        p.set_defaults(handler=lambda args, name=name: _status(args, console, cancel=name == "cancel"))
    res = bsub.add_parser(
        "results", parents=[common], help="a batch's output and error lines, in its input's order"
    )
    res.add_argument("batch_id")
    res.add_argument("--output", type=Path, help="write JSONL here (default: print)")
    res.set_defaults(handler=lambda args: _results(args, console))


def add_worker_arguments(w: argparse.ArgumentParser) -> None:
    """``fleet worker``'s arguments."""
    w.add_argument("--broker", required=True, help="redis://... or amqp://...")
    w.add_argument("--store", required=True, help="postgresql://... (or sqlite:///PATH on one machine)")
    w.add_argument("--triton", default="localhost:8001", help="the Triton (or front door) gRPC address")
    w.add_argument("--name", help="the worker's name (default: host and process)")


def worker(args: argparse.Namespace) -> int:
    """``fleet worker`` (Celery: the ``batch`` extra)."""
    run_worker(args.broker, args.store, args.triton, args.repository, args.name)
    return 0


def _client(url: str) -> Any:
    from openai import OpenAI

    return OpenAI(base_url=url, api_key=os.environ.get("TRITONFLEET_API_KEY") or "none", max_retries=2)


# --- making lines ---------------------------------------------------------------------------------------


def make_lines(
    pipeline: str, source: Path, repository: Path, model: str | None = None, max_tokens: int = 128
):
    """The batch file's lines for ``source`` (see the module docstring) and the batch's endpoint."""
    pipe = pipelines.get(pipeline)
    chat = [m for m in pipe.openai if m.kind == "chat"]
    if pipeline == "image_classifier":
        files = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ValueError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {source}")
        url = "/v2/models/image_classifier/infer"
        rows = [
            (p.name, {"inputs": [{"name": "IMAGE", "datatype": "BYTES", "shape": [1, 1],
                                  "data": [base64.b64encode(p.read_bytes()).decode()],
                                  "parameters": {"content_type": "base64"}}],
                      "outputs": [{"name": "PROBABILITIES", "parameters": {"classification": 5}}]})
            for p in files
        ]  # fmt: skip
        return url, rows
    if pipeline == "tabular":
        model = model or pipe.public[0]
        features = _features(repository, model)
        url = f"/v2/models/{model}/infer"
        rows = []
        for i, record in enumerate(_table(source)):
            missing = [f for f in features if f not in record]
            if missing:
                raise ValueError(f"row {i + 1} of {source} lacks the feature(s) {missing} of {model}")
            values = [float(record[f]) for f in features]
            ident = str(record.get("id", i))
            tensor = {"name": "FEATURES", "datatype": "FP32", "shape": [1, len(values)], "data": values}
            rows.append((ident, {"inputs": [tensor]}))
        return url, rows
    items = _texts(source)
    if pipeline == "text_embedding":
        model_name = pipe.public[0]
        url = f"/v2/models/{model_name}/infer"
        return url, [
            (ident, {"inputs": [{"name": "TEXT", "datatype": "BYTES", "shape": [1, 1], "data": [text]}]})
            for ident, text in items
        ]
    if chat:
        return "/v1/chat/completions", [
            (ident, {"model": chat[0].id, "messages": [{"role": "user", "content": text}],
                     "max_tokens": max_tokens, "temperature": 0})
            for ident, text in items
        ]  # fmt: skip
    raise ValueError(f"fleet batch run has no input format for {pipeline}")


def _features(repository: Path, model: str) -> list[str]:
    config = Repository(repository).config(model)
    if FEATURE_NAMES not in config.parameters:
        raise ValueError(f"{model} is not a tabular model (its config names no features)")
    return list(split_names(config.parameters[FEATURE_NAMES].string_value))


def _table(source: Path) -> list[dict[str, Any]]:
    if source.suffix.lower() == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise ValueError("reading Parquet needs pyarrow: pip install -e .[batch]") from None
        return pq.read_table(source).to_pylist()
    with source.open(newline="") as f:
        return list(csv.DictReader(f))


def _texts(source: Path) -> list[tuple[str, str]]:
    """(id, text) from a text file (a text a line, ids 0, 1, ...) or JSONL ({"id", "text"} or "prompt")."""
    lines = [s for s in source.read_text().splitlines() if s.strip()]
    if source.suffix.lower() in (".jsonl", ".json"):
        out = []
        for i, s in enumerate(lines):
            item = json.loads(s)
            out.append((str(item.get("id", i)), str(item.get("text", item.get("prompt", "")))))
        return out
    return [(str(i), s) for i, s in enumerate(lines)]


# --- the commands ---------------------------------------------------------------------------------------


def _run(args: argparse.Namespace, console: Console) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    try:
        url, rows = make_lines(args.pipeline, args.input, args.repository, args.model, args.max_tokens)
    except (ValueError, OSError) as exc:
        console.print(f"[red]✗[/] {exc}")
        return 2
    ids = [ident for ident, _ in rows]
    if len(set(ids)) != len(ids):
        console.print("[red]✗[/] the input's ids are not unique")
        return 2
    content = "".join(
        json.dumps({"custom_id": ident, "method": "POST", "url": url, "body": body}) + "\n"
        for ident, body in rows
    ).encode()
    client = _client(args.url)
    file_id = client.files.create(file=(args.input.name + ".jsonl", content), purpose="batch").id
    batch = client.batches.create(input_file_id=file_id, endpoint=url, completion_window="24h",
                                  metadata={"pipeline": args.pipeline, "input": args.input.name})  # fmt: skip
    console.print(f"batch {batch.id}: {len(rows)} lines to {url}")
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task(batch.status, total=len(rows))
        while batch.status not in TERMINAL:
            time.sleep(0.5)
            batch = client.batches.retrieve(batch.id)
            counts = batch.request_counts
            done = (counts.completed + counts.failed) if counts else 0
            progress.update(task, completed=done, description=batch.status)
        progress.update(task, completed=len(rows), description=batch.status)
    if batch.status == "failed":
        for error in batch.errors.data if batch.errors else []:
            console.print(f"[red]✗[/] {error.code}: {error.message}")
        return 1
    lines = _merged(client, batch)
    order = {ident: i for i, ident in enumerate(ids)}
    lines.sort(key=lambda line: order.get(line.get("custom_id"), len(order)))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    with args.output.open("w") as out:
        for line in lines:
            out.write(json.dumps(_readable(line)) + "\n")
    counts = batch.request_counts
    console.print(
        f"[green]✓[/] {batch.status}: {counts.completed} answered, {counts.failed} failed -> {args.output}"
    )
    return 0 if batch.status == "completed" and not counts.failed else 1


def _merged(client: Any, batch: Any) -> list[dict[str, Any]]:
    lines = []
    for file_id in (batch.output_file_id, batch.error_file_id):
        if file_id:
            lines += [json.loads(s) for s in client.files.content(file_id).text.splitlines() if s.strip()]
    return lines


def _input_order(content: str) -> dict[str, int]:
    """Each ``custom_id`` of an input file and its line's place."""
    order: dict[str, int] = {}
    for line in content.splitlines():
        try:
            custom_id = json.loads(line).get("custom_id")
        except (ValueError, AttributeError):
            continue
        if isinstance(custom_id, str):
            order.setdefault(custom_id, len(order))
    return order


def _readable(line: dict[str, Any]) -> dict[str, Any]:
    """An output line as ``fleet batch run`` writes it: the id, the status, the answer in short."""
    response = line.get("response") or {}
    body = response.get("body") or {}
    out: dict[str, Any] = {"id": line.get("custom_id"), "status_code": response.get("status_code")}
    if line.get("error") or (response and response.get("status_code") != 200):
        out["error"] = line.get("error") or body.get("error")
        return out
    if "outputs" in body:
        out["outputs"] = {o["name"]: o["data"] for o in body["outputs"]}
    elif body.get("object") == "chat.completion":
        out["text"] = body["choices"][0]["message"]["content"]
    else:
        out["body"] = body
    return out


def _list(args: argparse.Namespace, console: Console) -> int:
    print(f"{'BATCH':32} {'STATUS':12} {'ENDPOINT':34} {'DONE':>6} {'FAILED':>6} {'TOTAL':>6}  CREATED")
    for b in _client(args.url).batches.list(limit=args.limit).data:
        c = b.request_counts
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(b.created_at))
        print(f"{b.id:32} {b.status:12} {b.endpoint:34} {c.completed:6} {c.failed:6} {c.total:6}  {created}")
    return 0


def _status(args: argparse.Namespace, console: Console, cancel: bool = False) -> int:
    client = _client(args.url)
    b = client.batches.cancel(args.batch_id) if cancel else client.batches.retrieve(args.batch_id)
    console.print_json(b.model_dump_json())
    return 0


def _results(args: argparse.Namespace, console: Console) -> int:
    client = _client(args.url)
    batch = client.batches.retrieve(args.batch_id)
    if batch.status not in TERMINAL:
        console.print(f"[yellow]{batch.id} is {batch.status}: no results yet[/]")
        return 1
    lines = _merged(client, batch)
    order = _input_order(client.files.content(batch.input_file_id).text)
    lines.sort(key=lambda line: order.get(line.get("custom_id"), len(order)))  # not JSON: last
    text = "".join(json.dumps(line) + "\n" for line in lines)
    if args.output:
        args.output.write_text(text)
        console.print(f"[green]✓[/] {args.output}")
    else:
        print(text, end="")
    return 0
