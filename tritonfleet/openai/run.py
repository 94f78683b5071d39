"""One request's path through Triton: its rows (``n`` per prompt) batched into requests to the pipeline,
streamed or answered once, stop strings and finish reasons applied as the answers come, and stopped when
nobody waits for them any more."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import numpy as np

from tritonfleet.errors import Cancelled, Error, Fault
from tritonfleet.openai import generation as gen
from tritonfleet.openai.triton import Triton, check, triton_error
from tritonfleet.pipelines import OpenAIModel
from tritonfleet.pipelines.llm import interface as llm

STOP_TRIES_S = 30  # how long a dropped request's rows are stopped again and again until they end


class Run:
    """One request's rows in flight: ``n`` per prompt, each its own sequence.

    The rows go to the pipeline as batched requests (TensorRT-LLM's way: each row of a request is a
    sequence of its own) of at most ``max_batch`` rows, ``<id>-<b>`` their request ids, which their stop
    requests name. Streamed, each response is one row's, tagged with ``batch_index``; not streamed,
    ``tensorrt_llm_bls`` answers once with the rows in order."""

    def __init__(
        self,
        triton: Triton,
        model: OpenAIModel,
        rows: list[gen.Row],
        stream_model: bool,
        n: int,
        max_batch: int,
    ) -> None:
        self.triton = triton
        self.model = model
        self.rows = rows
        self.streamed = stream_model
        self.logprobs = llm.RETURN_LOG_PROBS.name in rows[0].values
        self.id = uuid.uuid4().hex
        self.created = int(time.time())
        stops = (
            [w.decode() for w in rows[0].values[llm.STOP_WORDS.name].reshape(-1)]
            if llm.STOP_WORDS.name in rows[0].values
            else []
        )
        self.choices = [gen.Choice(i, r.max_tokens, gen.StopScanner(stops)) for i, r in enumerate(rows)]
        self.extra_outputs: dict[str, Any] = {}
        self.n = n  # rows per prompt (consecutive)
        size = max(max_batch, 1)
        self.batches = [list(range(i, min(i + size, len(rows)))) for i in range(0, len(rows), size)]

    def request_id(self, batch: int) -> str:
        return f"{self.id}-{batch}"

    def values(self, batch: int) -> dict[str, np.ndarray]:
        """The inputs of one batched request: its rows' [1, k] values stacked into [rows, k]."""
        rows = [self.rows[i].values for i in self.batches[batch]]
        return {name: np.concatenate([r[name] for r in rows]) for name in rows[0]}

    @property
    def tokens(self) -> int:
        return self.usage()["total_tokens"]

    def usage(self) -> dict[str, int]:
        """OpenAI's usage: a prompt counted once however many choices it has."""
        per_prompt: dict[int, int] = {}
        for choice in self.choices:
            group = choice.index // self.n
            per_prompt[group] = max(per_prompt.get(group, 0), choice.prompt_tokens)
        prompt = sum(per_prompt.values())
        completion = sum(c.completion_tokens for c in self.choices)
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    def _extras(self, result: Any) -> None:
        for name in self.model.extra_outputs:
            value = result.as_numpy(name)
            if value is not None and name not in self.extra_outputs:
                items = value.reshape(-1)
                self.extra_outputs[name] = [v.decode() if isinstance(v, bytes) else v.item() for v in items]

    async def collect(self) -> None:
        """Every row to its end, then its choice finished."""
        if self.streamed:
            async for _ in self.events():
                pass
            return
        results = await asyncio.gather(
            *(
                self.triton.infer(self.model.unary_model, self.values(b), request_id=self.request_id(b))
                for b in range(len(self.batches))
            )
        )
        for batch, result in zip(self.batches, results, strict=True):
            texts = result.as_numpy(llm.TEXT_OUTPUT.name)
            check(texts is not None and texts.shape[0] == len(batch), "the pipeline answered other rows")
            for j, index in enumerate(batch):
                self.choices[index].add(RowOf(result, j), self.logprobs)
                self.choices[index].finish()
            self._extras(result)

    def stop(self) -> None:
        for b in range(len(self.batches)):
            self.triton.stop_later(self.request_id(b))

    async def events(self) -> AsyncIterator[tuple[int, str, bool]]:
        """``(choice, new text, finished)`` as the streams answer, rows interleaved; leaving early stops
        the requests still running."""
        queue: asyncio.Queue[tuple[int, Any, BaseException | None]] = asyncio.Queue()
        model = self.model.stream_model or ""

        async def pump(b: int) -> None:
            try:
                async for result in self.triton.stream(model, self.values(b), self.request_id(b)):
                    await queue.put((b, result, None))
                await queue.put((b, None, None))
            except Error as exc:
                await queue.put((b, None, exc))
            except Exception as exc:  # the connection to Triton failed
                await queue.put((b, None, triton_error(exc, model)))

        tasks = [asyncio.ensure_future(pump(b)) for b in range(len(self.batches))]
        running = len(tasks)
        try:
            while running:
                b, result, error = await queue.get()
                if error is not None:
                    raise error
                batch = self.batches[b]
                if result is None:  # this request's final response: its rows are done
                    running -= 1
                    for index in batch:
                        if not self.choices[index].done:
                            yield index, self.choices[index].finish(), True
                    continue
                tag = result.as_numpy(llm.BATCH_INDEX.name)
                if tag is None and len(batch) > 1:
                    raise Fault(f"{model} sent a response of a batch without batch_index")
                index = batch[int(tag.reshape(-1)[0]) if tag is not None else 0]
                choice = self.choices[index]
                if choice.done or result.as_numpy(llm.TEXT_OUTPUT.name) is None:
                    continue  # the empty final response; or a stop string ended the row: the rest is not its
                self._extras(result)
                text = choice.add(result, self.logprobs)
                if choice.stopped:
                    yield index, text + choice.finish(), True
                    if all(self.choices[i].done for i in batch):  # cancelling the stream stops its rows
                        tasks[b].cancel()
                        running -= 1
                elif text:
                    yield index, text, False
        finally:
            for task in tasks:
                task.cancel()


class RowOf:
    """Row ``j`` of a batched response, read like a response of its own."""

    def __init__(self, result: Any, j: int) -> None:
        self.result, self.j = result, j

    def as_numpy(self, name: str) -> np.ndarray | None:
        value = self.result.as_numpy(name)
        return None if value is None else value[self.j : self.j + 1]


async def collect(run: Run, disconnected: Awaitable[None]) -> None:
    """Run every row of ``run`` to its end; if ``disconnected`` ends first (the client went away), stop the
    rows and raise :class:`~tritonfleet.errors.Cancelled`."""
    work = asyncio.ensure_future(run.collect())
    gone = asyncio.ensure_future(disconnected)
    try:
        await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
        deadline = time.monotonic() + STOP_TRIES_S
        while not work.done() and time.monotonic() < deadline:
            # The client is gone: stop its rows, again until they end (a stop sent before a sequence
            # started finds nothing to stop).
            run.stop()
            await asyncio.wait({work}, timeout=0.5)
        if gone.done():
            raise Cancelled("the client disconnected")
        work.result()
    finally:
        gone.cancel()
        work.cancel()


async def first_event(
    events: AsyncIterator[tuple[int, str, bool]], disconnected: Awaitable[None]
) -> tuple[int, str, bool]:
    """The first event of a stream's ``events`` (:meth:`Run.events`); if ``disconnected`` ends first (the
    client went away during the prefill), close ``events``, which stops the rows, and raise
    :class:`~tritonfleet.errors.Cancelled`."""
    waiting = asyncio.ensure_future(anext(events))
    gone = asyncio.ensure_future(disconnected)
    try:
        await asyncio.wait({waiting, gone}, return_when=asyncio.FIRST_COMPLETED)
        if not waiting.done():
            raise Cancelled("the client disconnected")
        return waiting.result()
    finally:
        gone.cancel()
        if not waiting.done():  # cancelling its step ends the generator, whose cleanup stops the streams
            waiting.cancel()
            await asyncio.wait({waiting})
