"""``BatchPredictor``: many concurrent small requests, one onnxruntime call per batch.

Each model has a queue and a worker task. A worker takes the first waiting request, then gathers
more until ``max_batch_size`` rows or ``max_delay_ms`` have passed, runs the batch once in an
executor thread (onnxruntime releases the GIL, so the event loop keeps serving), and hands every
caller exactly its own rows. Rows are validated in the caller before they join a batch, so one
caller's bad input fails only that caller; if a whole batch still fails, its requests are retried
one by one so that only the guilty one sees the error.

    async with BatchPredictor(Store.open("models/onnx"), max_batch_size=256) as bp:
        labels = await bp.predict("reversal_rf", rows)
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from alphapulse_onnx.serving import Outputs
from alphapulse_onnx.store import Model, Store

_LATENCY_WINDOW = 100_000  # per-model request latencies kept for the percentiles


@dataclass
class _Request:
    prepared: Any
    rows: int
    proba: bool
    future: asyncio.Future[np.ndarray]
    started: float


@dataclass
class _ModelStats:
    requests: int = 0
    rows: int = 0
    batches: int = 0
    errors: int = 0
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=_LATENCY_WINDOW))

    def to_json(self) -> dict[str, float]:
        latencies = np.fromiter(self.latencies_ms, dtype=np.float64)
        return {
            "requests": self.requests,
            "rows": self.rows,
            "batches": self.batches,
            "errors": self.errors,
            "mean_batch_size": round(self.rows / self.batches, 3) if self.batches else 0.0,
            "latency_p50_ms": round(float(np.percentile(latencies, 50)), 4)
            if len(latencies)
            else 0.0,
            "latency_p99_ms": round(float(np.percentile(latencies, 99)), 4)
            if len(latencies)
            else 0.0,
        }


_STOP = object()


class _Waiting:
    """Whether waiting for more requests has been paying off lately (per model)."""

    PROBE_EVERY = 16  # batches between retries once waiting stopped paying off

    def __init__(self) -> None:
        self.useful = 1.0  # moving average of "the wait brought more requests"
        self.skipped = 0

    def worth_waiting(self) -> bool:
        if self.useful >= 0.1:
            return True
        self.skipped += 1
        if self.skipped >= self.PROBE_EVERY:
            self.skipped = 0
            return True
        return False

    def record(self, *, brought_more: bool) -> None:
        self.useful = 0.8 * self.useful + 0.2 * float(brought_more)


class BatchPredictor:
    """An async micro-batcher over a ``Store`` (``async with`` it, or ``start()``/``stop()``)."""

    def __init__(
        self,
        store: Store,
        *,
        max_batch_size: int = 256,
        max_delay_ms: float = 2.0,
        executor: Executor | None = None,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        if max_delay_ms < 0:
            raise ValueError("max_delay_ms must not be negative")
        self.store = store
        self.max_batch_size = max_batch_size
        self.max_delay_s = max_delay_ms / 1000.0
        self.executor = executor if executor is not None else store.executor
        self._queues: dict[str, asyncio.Queue[Any]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._stats: dict[str, _ModelStats] = {}
        self._running = False
        self._stopped = False

    async def __aenter__(self) -> BatchPredictor:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        if self._stopped:
            raise RuntimeError("this BatchPredictor was stopped; make a new one")
        self._running = True

    async def stop(self) -> None:
        """Stop taking requests, finish every pending one, then end the workers. A caller whose
        model was still loading when this ran is answered on its own: none is left waiting."""
        self._running = False
        self._stopped = True
        for queue in self._queues.values():
            queue.put_nowait(_STOP)
        if self._workers:
            await asyncio.gather(*self._workers.values(), return_exceptions=True)
        self._workers.clear()

    def stats(self) -> dict[str, dict[str, float]]:
        """Per model: requests, rows, batches, errors, mean_batch_size, latency_p50_ms, _p99_ms."""
        return {name: stats.to_json() for name, stats in self._stats.items()}

    async def predict(self, name: str, rows: Any) -> np.ndarray:
        """Labels or values for ``rows``, computed in a shared batch."""
        return await self._submit(name, rows, proba=False)

    async def predict_proba(self, name: str, rows: Any) -> np.ndarray:
        """Class probabilities for ``rows``, computed in a shared batch."""
        return await self._submit(name, rows, proba=True)

    # ------------------------------------------------------------------------

    async def _submit(self, name: str, rows: Any, *, proba: bool) -> np.ndarray:
        if self._stopped:
            raise RuntimeError("this BatchPredictor is stopped")
        if not self._running:
            await self.start()
        started = time.perf_counter()
        model = self.store[name]
        if not model.loaded:  # first use: loading a session or model blocks, so not here
            await asyncio.get_running_loop().run_in_executor(self.executor, model.load)
        if proba:
            model.require_proba()
        prepared = model.prepare(rows)  # raises for this caller only
        count = model.rows(prepared)
        stats = self._stats.setdefault(model.name, _ModelStats())
        if count == 0:
            stats.requests += 1
            outputs = model.run_prepared(prepared, proba=proba)
            return _pick(outputs, proba)
        worker = self._workers.get(model.name)
        if self._stopped and (worker is None or worker.done()):
            # stop() ran while this request was loading its model: serve it on its own
            loop = asyncio.get_running_loop()
            outputs = await loop.run_in_executor(
                self.executor, lambda: model.run_prepared(prepared, proba=proba)
            )
            return _pick(outputs, proba)
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        self._queue(model).put_nowait(_Request(prepared, count, proba, future, started))
        return await future

    def _queue(self, model: Model) -> asyncio.Queue[Any]:
        queue = self._queues.get(model.name)
        if queue is None:
            queue = asyncio.Queue()
            self._queues[model.name] = queue
            self._workers[model.name] = asyncio.get_running_loop().create_task(
                self._worker(model, queue), name=f"apo-batch-{model.name}"
            )
        return queue

    async def _gather(
        self, queue: asyncio.Queue[Any], first: _Request, carry: list[_Request], state: _Waiting
    ) -> tuple[list[_Request], bool]:
        """Requests for one batch, starting with ``first``; the bool says a stop was seen.

        Everything already queued joins at once (after one turn of the event loop, so callers
        that are ready right now get in). Then the batch waits up to ``max_delay_ms`` for more,
        but only while waiting has been bringing more: with one caller, or callers that are all
        in this batch already, waiting only adds latency, so it stops (and is retried now and
        then, in case the traffic changed).
        """
        loop = asyncio.get_running_loop()
        batch, rows = [first], first.rows
        deadline = loop.time() + self.max_delay_s
        yielded = False
        waited = arrived = 0
        while rows < self.max_batch_size:
            try:
                item = queue.get_nowait()
            except asyncio.QueueEmpty:
                if not yielded:  # let callers that are ready right now join
                    yielded = True
                    await asyncio.sleep(0)
                    continue
                remaining = deadline - loop.time()
                if remaining <= 0 or not state.worth_waiting():
                    break
                waited = 1
                try:
                    item = await asyncio.wait_for(queue.get(), remaining)
                except asyncio.TimeoutError:
                    break
                arrived += 1
            if item is _STOP:
                return batch, True
            if rows + item.rows > self.max_batch_size:
                carry.append(item)  # it starts the next batch
                break
            batch.append(item)
            rows += item.rows
        if waited:
            state.record(brought_more=arrived > 0)
        return batch, False

    async def _worker(self, model: Model, queue: asyncio.Queue[Any]) -> None:
        carry: list[_Request] = []
        state = _Waiting()
        stopping = False
        while True:
            if carry:
                first = carry.pop(0)
            elif stopping:
                # A caller that saw this worker alive may have queued after the drain: take it.
                # Nothing is awaited between this check and returning, so a later caller sees
                # the worker done and is served on its own (``_submit``); none is left waiting.
                _drain(queue, carry)
                if not carry:
                    return
                continue
            else:
                got = await queue.get()
                if got is _STOP:
                    stopping = True
                    _drain(queue, carry)  # whatever is still queued behind the stop marker
                    continue
                first = got
            if stopping:
                batch = [first]
                while carry and sum(r.rows for r in batch) + carry[0].rows <= self.max_batch_size:
                    batch.append(carry.pop(0))
            else:
                batch, stopping = await self._gather(queue, first, carry, state)
                if stopping:
                    _drain(queue, carry)
            try:
                await self._run(model, batch)
            except Exception as exc:  # a bug here must not leave callers waiting forever
                for request in batch:
                    _settle(request.future, exc=exc)

    async def _run(self, model: Model, batch: list[_Request]) -> None:
        loop = asyncio.get_running_loop()
        stats = self._stats.setdefault(model.name, _ModelStats())
        want_proba = any(r.proba for r in batch)
        try:
            merged = model.concat([r.prepared for r in batch])
            outputs = await loop.run_in_executor(
                self.executor, lambda: model.run_prepared(merged, proba=want_proba)
            )
        except Exception as exc:
            if len(batch) > 1:  # find the guilty request: run each alone
                for request in batch:
                    await self._run(model, [request])
                return
            stats.errors += 1
            _settle(batch[0].future, exc=exc)
            return
        stats.batches += 1
        now = time.perf_counter()
        start = 0
        for request in batch:
            stop = start + request.rows
            result = _pick(outputs, request.proba)[start:stop]
            start = stop
            stats.requests += 1
            stats.rows += request.rows
            stats.latencies_ms.append((now - request.started) * 1000.0)
            _settle(request.future, result=result)


def _drain(queue: asyncio.Queue[Any], carry: list[_Request]) -> None:
    """Move every queued request (not stop markers) to ``carry``, without awaiting."""
    while not queue.empty():
        leftover = queue.get_nowait()
        if leftover is not _STOP:
            carry.append(leftover)


def _pick(outputs: Outputs, proba: bool) -> np.ndarray:
    value = outputs.probabilities if proba else outputs.predictions
    assert value is not None
    return value


def _settle(
    future: asyncio.Future[np.ndarray],
    *,
    result: np.ndarray | None = None,
    exc: BaseException | None = None,
) -> None:
    if future.done():  # the caller was cancelled
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        assert result is not None
        future.set_result(result)


__all__ = ["BatchPredictor"]
