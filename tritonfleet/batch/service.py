"""Batch inference inside ``fleet serve``: the store, the API routes, the driver and in-process workers.

``fleet serve`` makes one :class:`BatchService` over its tritonserver and mounts :attr:`routes` in the
``/v1`` app. With no broker (the default) it runs the driver and a worker on an event loop of its own
thread, on the SQLite store in ``$TRITONFLEET_HOME``. With a broker (``--batch-broker``), the workers are
``fleet worker`` processes (Celery) and this process runs the driver and wakes them when lines wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from pathlib import Path
from typing import Any

from tritonfleet import pipelines
from tritonfleet.batch import api
from tritonfleet.batch.celery_app import make_app, wake_all
from tritonfleet.batch.config import BatchConfig
from tritonfleet.batch.executor import Executor
from tritonfleet.batch.metrics import BatchMetrics
from tritonfleet.batch.store import Result, Store
from tritonfleet.batch.worker import Driver, Worker, served_models
from tritonfleet.frontdoor.keys import KeyStore
from tritonfleet.frontdoor.policy import PublicModels

log = logging.getLogger("tritonfleet.batch")
TICK_S = 0.5


class BatchService:
    """Batches over the Triton at ``grpc_url`` serving ``repository``; ``public``: its public models (the
    front door's access control's); ``keys``: per-key batch limits; ``registry``: where the metrics go (the
    front door's, served on the metrics port); ``clock``: the store's (Unix seconds; tests move it past a
    window)."""

    def __init__(
        self,
        grpc_url: str,
        repository: Path,
        public: PublicModels,
        *,
        keys: KeyStore | None = None,
        config: BatchConfig | None = None,
        registry: Any = None,
        clock: Any = None,
    ) -> None:
        self.grpc_url = grpc_url
        self.repository = Path(repository)
        self.public = public
        self.keys = keys
        self.config = config or BatchConfig.from_env()
        self.store = Store(self.config.store, **({"clock": clock} if clock else {}))
        self.metrics = BatchMetrics(self.store, registry)
        self.driver = Driver(
            self.store,
            self.config,
            lambda: served_models(self.public, pipelines.openai_models()),
            lambda owner: self._key(owner, "batch_lines"),
        )
        self.routes = api.routes(self)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None
        self._wake = threading.Event()
        self._celery: Any = None

    # --- limits ------------------------------------------------------------------------------------------

    def _key(self, owner: str, field: str) -> int:
        key = self.keys.by_name(owner) if self.keys is not None else None
        return int(getattr(key, field, 0) or 0) if key is not None else 0

    def file_limit(self, owner: str) -> int:
        return (self._key(owner, "batch_file_mb") or self.config.max_file_mb) << 20

    def in_flight_limit(self, owner: str) -> int:
        return self._key(owner, "batches") or self.config.max_in_flight

    def created(self, batch_id: str) -> None:
        """A batch was made: validate it now rather than at the next tick."""
        self._wake.set()

    def written(self, results: list[Result]) -> None:
        owners: dict[str, list[Result]] = {}
        for r in results:
            owners.setdefault(r.batch_id, []).append(r)
        for batch_id, group in owners.items():
            self.metrics.written(group, self.store.raw_batch(batch_id).get("owner", "-"))

    # --- running -----------------------------------------------------------------------------------------

    def start(self) -> BatchService:
        started = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            self._stop = asyncio.Event()
            started.set()
            loop.run_until_complete(self._main())
            loop.close()

        self._thread = threading.Thread(target=run, name="batch", daemon=True)
        self._thread.start()
        started.wait(10)
        return self

    async def _main(self) -> None:
        assert self._stop is not None
        tasks = [asyncio.ensure_future(self._drive())]
        executor = None
        if self.config.broker:
            self._celery = make_app(self.config.broker)
        else:
            executor = Executor(self.grpc_url, self.repository, self.public)
            worker = Worker(self.store, executor, self.config, on_results=self.written)
            tasks.append(asyncio.ensure_future(worker.serve(self._stop)))
        try:
            await self._stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if executor is not None:
                await executor.close()

    async def _drive(self) -> None:
        assert self._stop is not None
        while not self._stop.is_set():
            try:
                await asyncio.to_thread(self.driver.tick)
                if self._celery is not None:
                    await asyncio.to_thread(self._wake_workers)
            except Exception:
                log.exception("batch driver")
            await asyncio.to_thread(self._wake.wait, TICK_S)
            self._wake.clear()

    def _wake_workers(self) -> None:
        """Lines wait and no worker holds any: wake the Celery workers (the store says what to do)."""
        states = self.store.totals()
        if states.get("pending") and not states.get("leased"):
            wake_all(self._celery)

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stop.set)
            self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=15)
            self._thread = None
        self.store.close()
