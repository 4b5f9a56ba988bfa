"""Micro-batching for the server: concurrent requests gathered into one model call, in a bounded
queue.

One worker thread gathers whatever arrives within a short window (up to `max_batch` texts) into
one `predict` call, so the event loop never runs the model. At most `max_queue` texts wait; past
that, `submit` raises `Unavailable` with a retry delay estimated from the measured throughput,
so a flood gets quick refusals instead of an ever longer queue.
"""

from __future__ import annotations

import asyncio
import math
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import numpy as np


class Unavailable(Exception):
    """The batcher takes no more requests for now (the server answers 503 with Retry-After)."""

    def __init__(self, message: str, retry_after_s: int):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class MicroBatcher:
    """Gathers concurrent requests into batches for one worker thread running `predict`."""

    _STOP = object()

    def __init__(
        self,
        predict: Callable[[list[str]], np.ndarray],
        max_batch: int,
        wait_ms: float,
        max_queue: int | None = None,
    ):
        self.predict = predict
        self.max_batch = max_batch
        self.wait_s = wait_ms / 1000
        self.max_queue = max_queue
        self.stats = {"batches": 0, "requests": 0, "texts": 0, "largest_batch": 0, "refused": 0}
        self._queue: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._waiting = 0  # texts submitted whose batch has not started
        self._busy_s = 0.0  # time spent in `predict`, for the retry estimate
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="mlabel-batcher", daemon=True)
        self._thread.start()

    def submit(self, texts: list[str]) -> Future:
        """A future for the (len(texts), labels) probabilities; `Unavailable` when full."""
        future: Future = Future()
        with self._lock:
            self._check_room(len(texts))
            self._waiting += len(texts)
            self._queue.put((texts, future))
        return future

    async def predict_async(self, texts: list[str]) -> np.ndarray:
        return await asyncio.wrap_future(self.submit(texts))

    def close(self) -> None:
        """Refuse new requests, finish the queued ones, then stop the worker."""
        with self._lock:
            self._closed = True
            self._queue.put(self._STOP)
        self._thread.join(timeout=60)

    def retry_after_s(self) -> int:
        """Seconds until the waiting texts are likely done, at the throughput measured so far."""
        if not self.stats["texts"] or self._busy_s <= 0:
            return 1
        rate = self.stats["texts"] / self._busy_s
        return min(60, max(1, math.ceil(self._waiting / rate)))

    @property
    def waiting(self) -> int:
        """Texts queued or gathered for a batch, not yet given to the model."""
        return self._waiting

    def _check_room(self, count: int) -> None:
        if self._closed:
            raise Unavailable("the server is shutting down", 5)
        if self.max_queue is not None and self._waiting + count > self.max_queue:
            self.stats["refused"] += 1
            raise Unavailable(
                f"the server is busy: {self._waiting:,} texts are waiting "
                f"(the limit is {self.max_queue:,}); retry later",
                self.retry_after_s(),
            )

    def _run(self) -> None:
        job = None
        while job is not self._STOP:
            first = job if job is not None else self._queue.get()
            if first is self._STOP:
                return
            batch, job = self._gather(first)
            self._run_batch(batch)

    def _gather(self, first: tuple) -> tuple[list[tuple], Any]:
        """The first job plus those arriving within the wait window, up to max_batch texts.

        Returns the batch and a job held over for the next one (or None).
        """
        batch, size = [first], len(first[0])
        deadline = time.monotonic() + self.wait_s
        while size < self.max_batch:
            remaining = deadline - time.monotonic()
            try:
                job = (
                    self._queue.get(timeout=remaining)
                    if remaining > 0
                    else self._queue.get_nowait()
                )
            except queue.Empty:
                break
            if job is self._STOP or size + len(job[0]) > self.max_batch:
                return batch, job
            batch.append(job)
            size += len(job[0])
        return batch, None

    def _run_batch(self, batch: list[tuple]) -> None:
        with self._lock:
            self._waiting -= sum(len(texts) for texts, _ in batch)
        # A future cancelled by a client that went away is dropped before the model runs.
        batch = [(texts, f) for texts, f in batch if f.set_running_or_notify_cancel()]
        if not batch:
            return
        texts = [t for job_texts, _ in batch for t in job_texts]
        try:
            probs = self._timed_predict(texts)
        except Exception as exc:  # the worker stays up; only the request at fault fails
            if len(batch) > 1:
                for job in batch:
                    self._run_alone(job)
            else:
                batch[0][1].set_exception(exc)
            return
        self._count(len(batch), len(texts))
        start = 0
        for job_texts, future in batch:
            future.set_result(probs[start : start + len(job_texts)])
            start += len(job_texts)

    def _run_alone(self, job: tuple) -> None:
        texts, future = job
        try:
            future.set_result(self._timed_predict(texts))
        except Exception as exc:
            future.set_exception(exc)
            return
        self._count(1, len(texts))

    def _timed_predict(self, texts: list[str]) -> np.ndarray:
        start = time.perf_counter()
        try:
            return self.predict(texts)
        finally:
            self._busy_s += time.perf_counter() - start

    def _count(self, requests: int, texts: int) -> None:
        self.stats["batches"] += 1
        self.stats["requests"] += requests
        self.stats["texts"] += texts
        self.stats["largest_batch"] = max(self.stats["largest_batch"], texts)
