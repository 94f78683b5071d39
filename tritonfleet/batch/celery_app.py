"""Celery workers for batch inference past one machine: ``fleet worker --broker URL --store URL``.

The store (PostgreSQL) is the truth; the broker (Redis or RabbitMQ) only wakes workers. A task carries no
lines: ``wake`` claims chunks from the store and runs them for at most ``TASK_BUDGET_S`` seconds, then, if
lines still wait or are leased, wakes the queue again. Tasks are short (well under a minute), acknowledged
after they ran (``task_acks_late``), given back when their worker dies (``task_reject_on_worker_lost``),
one at a time per worker (prefetch 1): Celery's early ack loses a task with its worker, Redis redelivers an
unacknowledged task still running after ``visibility_timeout``, RabbitMQ closes a channel whose task stays
unacknowledged past ``consumer_timeout``; none of these can lose or repeat an answer here, since a line's
lease and its result live in the store (a redelivered task just claims again).

Celery is the ``batch`` extra's: it is imported when an app is made, so that the serving image and the CLI
load this module without it.
"""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tritonclient.grpc as grpcclient

from tritonfleet import pipelines
from tritonfleet.batch.config import BatchConfig
from tritonfleet.batch.executor import Executor
from tritonfleet.batch.store import Store
from tritonfleet.batch.worker import Driver, Worker, served_models
from tritonfleet.frontdoor.keys import KeyStore
from tritonfleet.frontdoor.policy import PublicModels

if TYPE_CHECKING:
    from celery import Celery

TASK = "tritonfleet.batch.wake"
QUEUE = "tritonfleet-batch"
TASK_BUDGET_S = 20.0
WAKE_FANOUT = 4
_state: dict[str, Any] = {}


def make_app(broker: str) -> Celery:
    from celery import Celery  # the batch extra

    app = Celery("tritonfleet.batch", broker=broker)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=QUEUE,
        broker_transport_options={"visibility_timeout": 300},  # Redis: 10x a task's budget
        broker_connection_retry_on_startup=True,
        task_ignore_result=True,
        worker_hijack_root_logger=False,
    )
    app.task(name=TASK, bind=True)(_wake)
    return app


def wake_all(app: Celery, count: int = WAKE_FANOUT) -> None:
    for _ in range(count):
        app.send_task(TASK, queue=QUEUE)


def _wake(task: Any) -> int:
    """Run lines from the store for up to ``TASK_BUDGET_S``; wake the queue again while work is left."""
    store, driver, config = _context()
    driver.tick()

    async def run() -> int:
        triton, repository = (
            os.environ["TRITONFLEET_BATCH_TRITON"],
            os.environ["TRITONFLEET_BATCH_REPOSITORY"],
        )
        executor = Executor(triton, Path(repository), _state["public"])
        try:
            name = f"{os.environ.get('TRITONFLEET_BATCH_WORKER') or socket.gethostname()}:{os.getpid()}"
            return await Worker(store, executor, config, name=name).drain(budget_s=TASK_BUDGET_S)
        finally:
            await executor.close()

    answered = asyncio.run(run())
    driver.tick()
    states = store.totals()
    if states.get("pending") or states.get("leased"):
        task.app.send_task(TASK, queue=QUEUE, countdown=0 if states.get("pending") else 1)
    return answered


def _context() -> tuple[Store, Driver, BatchConfig]:
    """This worker process's store, driver and config (made at its first task)."""
    if "store" not in _state:
        config = BatchConfig.from_env()
        repository = Path(os.environ["TRITONFLEET_BATCH_REPOSITORY"])
        loaded = [m.strip() for m in os.environ["TRITONFLEET_BATCH_MODELS"].split(",") if m.strip()]
        public = PublicModels.from_repository(repository, loaded)
        store = Store(config.store)
        keys = KeyStore()
        driver = Driver(
            store,
            config,
            lambda: served_models(public, pipelines.openai_models()),
            lambda owner: int(getattr(keys.by_name(owner), "batch_lines", 0) or 0),
        )
        _state.update(store=store, driver=driver, config=config, public=public)
    return _state["store"], _state["driver"], _state["config"]


def run_worker(broker: str, store: str, triton: str, repository: Path, name: str | None = None) -> None:
    """``fleet worker``: a Celery worker (one task at a time; lines in flight within it) on ``broker``,
    running lines from ``store`` against the Triton at ``triton`` (gRPC ``host:port``)."""
    os.environ["TRITONFLEET_BATCH_STORE"] = store
    os.environ["TRITONFLEET_BATCH_TRITON"] = triton
    os.environ["TRITONFLEET_BATCH_REPOSITORY"] = str(Path(repository).resolve())
    if "TRITONFLEET_BATCH_MODELS" not in os.environ:
        os.environ["TRITONFLEET_BATCH_MODELS"] = ",".join(_ready_models(triton))
    app = make_app(broker)
    argv = ["worker", "--pool=solo", "--concurrency=1", "-Q", QUEUE, "--loglevel=INFO", "--without-gossip",
            "--without-mingle", "--without-heartbeat"]  # fmt: skip
    if name:
        os.environ["TRITONFLEET_BATCH_WORKER"] = name  # its lines' results name it
        argv.append(f"--hostname={name}@%h")
    app.worker_main(argv)


def _ready_models(triton: str) -> list[str]:
    client = grpcclient.InferenceServerClient(triton)
    try:
        index = client.get_model_repository_index(as_json=True)
    finally:
        client.close()
    return [m["name"] for m in index.get("models", []) if m.get("state") == "READY"]
