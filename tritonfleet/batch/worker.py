"""The two halves of running batches: the :class:`Driver` moves batches through their statuses, the
:class:`Worker` claims lines and runs them.

Statuses (OpenAI's): ``validating`` -> ``in_progress`` -> ``finalizing`` -> ``completed``; ``failed`` (the
file, at validating); ``expired`` (the window passed: ``finalizing`` with the results so far, the rest
answered ``batch_expired``); ``cancelling`` -> ``cancelled`` (no line claimed from the cancel on, running
lines get ``cancel_grace_s`` to finish, the rest answered ``batch_cancelled``). Every step is a guarded
transition in the store, so any number of drivers (``fleet serve``, each Celery worker) may run at once.

A worker keeps ``concurrency`` lines in flight from chunks it claims under a lease (renewed while they run),
writes results in small groups (each result and its line's done mark in one transaction), and gives lines
back when the server is restarting (:class:`~tritonfleet.batch.executor.Retry`). Lines of a batch that was
cancelled or expired meanwhile are not started.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import socket
import time
from collections.abc import Callable, Collection, Mapping

from tritonfleet.batch import lines as batch_lines
from tritonfleet.batch.config import BatchConfig
from tritonfleet.batch.executor import Executor, Retry
from tritonfleet.batch.store import Line, Result, Store, new_id
from tritonfleet.frontdoor.policy import PublicModels
from tritonfleet.pipelines import OpenAIModel

log = logging.getLogger("tritonfleet.batch")
UNANSWERED = {
    "expired": ("batch_expired", "This request could not be executed before the completion window expired."),
    "cancelled": ("batch_cancelled", "This request was not executed because the batch was cancelled."),
    "completed": ("server_error", "This request was not executed."),
}


class Driver:
    """Moves every batch of ``store`` on: validates new ones, ends finished, expired and cancelled ones.

    ``models()``: the /v1 model ids with their kinds and the public Triton models, as served now.
    ``limits(owner)``: that key's line limit (0: the config's)."""

    def __init__(
        self,
        store: Store,
        config: BatchConfig,
        models: Callable[[], tuple[Mapping[str, str], Collection[str]]],
        limits: Callable[[str], int] = lambda owner: 0,
    ) -> None:
        self.store = store
        self.config = config
        self.models = models
        self.limits = limits

    def tick(self) -> None:
        store = self.store
        store.sweep()
        store.release_dead(socket.gethostname(), _alive)
        for batch_id in store.with_status("validating"):
            self.validate(batch_id)
        for batch_id in store.with_status("in_progress"):
            raw = store.raw_batch(batch_id)
            if store.clock() >= raw["expires_at"]:
                store.to_finalizing(batch_id, "expired")
                continue
            states = store.line_states(batch_id)
            if not states.get("pending") and not states.get("leased"):
                store.to_finalizing(batch_id, "completed")
        for batch_id in store.with_status("cancelling"):
            raw = store.raw_batch(batch_id)
            waited = store.clock() - (raw["cancelling_at"] or 0)
            if not store.line_states(batch_id).get("leased") or waited >= self.config.cancel_grace_s:
                store.finalize(batch_id, _unanswered)
        for batch_id in store.with_status("finalizing"):
            store.finalize(batch_id, _unanswered)

    def validate(self, batch_id: str) -> None:
        raw = self.store.raw_batch(batch_id)
        content = self.store.content(raw["input_file_id"], None)
        if content is None:
            error = batch_lines.file_error("file_not_found", f"the input file {raw['input_file_id']} is gone")
            self.store.fail(batch_id, [error])
            return
        openai_models, v2_models = self.models()
        max_lines = self.limits(raw["owner"]) or self.config.max_lines
        parsed = batch_lines.parse(batch_id, content, raw["endpoint"], openai_models, v2_models, max_lines)
        if parsed.errors:
            self.store.fail(batch_id, parsed.errors)
        else:
            self.store.start(batch_id, parsed.lines, parsed.failed)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _unanswered(line: Line, final: str) -> str:
    code, message = UNANSWERED[final]
    return batch_lines.output_line(line.custom_id, None, None, {"code": code, "message": message})


class Worker:
    """Claims and runs lines with ``executor`` until told to stop (:meth:`serve`) or out of work
    (:meth:`drain`). ``on_results(results)`` is told what was written (metrics)."""

    def __init__(
        self,
        store: Store,
        executor: Executor,
        config: BatchConfig,
        *,
        name: str | None = None,
        on_results: Callable[[list[Result]], None] | None = None,
    ) -> None:
        self.store = store
        self.executor = executor
        self.config = config
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{new_id('')[:8]}"
        self.on_results = on_results
        self._status: dict[str, tuple[float, str]] = {}

    async def drain(self, budget_s: float | None = None, stop: asyncio.Event | None = None) -> int:
        """Run lines until none is pending (or ``budget_s`` has passed, or ``stop`` is set): how many were
        answered. Lines still queued here when it returns go back to the store."""
        started = time.monotonic()
        queue: list[Line] = []
        running: set[asyncio.Task[None]] = set()
        held: dict[tuple[str, int], Line] = {}  # every line leased to this worker and not yet written
        written: list[Result] = []
        answered = 0
        last_renew = time.monotonic()

        def over() -> bool:
            late = budget_s is not None and time.monotonic() - started >= budget_s
            return late or (stop is not None and stop.is_set())

        async def one(line: Line) -> None:
            try:
                if not await self._live(line.batch_id):
                    return  # cancelled or expired: the driver answers it
                result = await self.executor.run(line)
            except Retry as exc:
                log.info(
                    "batch: %s line %d: server not available (%s): again later", line.batch_id, line.idx, exc
                )
                await asyncio.sleep(1.0)
                await asyncio.to_thread(self.store.release, self.name, [line])
                held.pop((line.batch_id, line.idx), None)
                return
            except Exception as exc:  # a fault of ours: again, up to max_attempts, then failed
                log.exception("batch: %s line %d failed", line.batch_id, line.idx)
                if line.attempts < self.config.max_attempts:
                    await asyncio.to_thread(self.store.release, self.name, [line])
                    held.pop((line.batch_id, line.idx), None)
                    return
                body = {"error": {"message": f"internal error: {type(exc).__name__}", "code": "server_error"}}
                result = Result(
                    line.batch_id,
                    line.idx,
                    line.custom_id,
                    False,
                    batch_lines.output_line(line.custom_id, 500, body),
                )
            written.append(dataclasses.replace(result, worker=self.name))

        async def flush() -> None:
            nonlocal answered
            if not written:
                return
            group = written[:]
            del written[:]
            await asyncio.to_thread(self.store.complete, group)
            for r in group:
                held.pop((r.batch_id, r.idx), None)
            answered += len(group)
            if self.on_results is not None:
                self.on_results(group)

        try:
            while True:
                if not over() and len(queue) + len(running) < 2 * self.config.concurrency:
                    claimed = await asyncio.to_thread(
                        self.store.claim, self.name, self.config.chunk, self.config.lease_s
                    )
                    queue += claimed
                    held.update({(x.batch_id, x.idx): x for x in claimed})
                    if not claimed and not running and not queue:
                        break
                if over() and not running:
                    break
                while queue and len(running) < self.config.concurrency and not over():
                    task = asyncio.ensure_future(one(queue.pop(0)))
                    running.add(task)
                    task.add_done_callback(running.discard)
                if running:
                    await asyncio.wait(running, timeout=0.05, return_when=asyncio.FIRST_COMPLETED)
                elif over():
                    break
                await flush()
                if time.monotonic() - last_renew > self.config.lease_s / 3 and held:
                    await asyncio.to_thread(
                        self.store.renew, self.name, list(held.values()), self.config.lease_s
                    )
                    last_renew = time.monotonic()
        finally:
            for task in running:
                task.cancel()
            with contextlib.suppress(Exception):
                await asyncio.gather(*running, return_exceptions=True)
            await flush()
            if held:
                await asyncio.to_thread(self.store.release, self.name, list(held.values()))
        return answered

    async def serve(self, stop: asyncio.Event, idle_s: float = 0.2) -> None:
        """Run lines as they come until ``stop`` is set."""
        while not stop.is_set():
            try:
                done = await self.drain(stop=stop)
            except Exception:  # the store is unreachable a moment: keep serving
                log.exception("batch worker")
                done = 0
            if not done:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), idle_s)

    async def _live(self, batch_id: str) -> bool:
        """Whether ``batch_id`` still runs (checked at most every 0.5 s)."""
        now = time.monotonic()
        seen = self._status.get(batch_id)
        if seen is None or now - seen[0] > 0.5:
            raw = await asyncio.to_thread(self.store.raw_batch, batch_id)
            live = raw.get("status") == "in_progress" and self.store.clock() < raw.get("expires_at", 0)
            seen = self._status[batch_id] = (now, "live" if live else "stopped")
        return seen[1] == "live"


def served_models(
    public_models: PublicModels, openai_models: Mapping[str, OpenAIModel]
) -> tuple[dict[str, str], set[str]]:
    """The /v1 models whose Triton models are public and loaded (by kind), and the public models."""
    public = set(public_models.models)
    usable = {
        model_id: model.kind
        for model_id, model in openai_models.items()
        if {m for m in (model.unary_model, model.stream_model) if m} <= public
    }
    return usable, public
