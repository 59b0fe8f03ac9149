"""How many requests a server takes on at once: uvicorn has no limit of its own.

Two bounds, both counted on the event loop (so no locks):

* **admission**: at most ``max_concurrency + queue_size`` restoration requests are in the server
  at once (waiting or running). A request counts only once its body is complete, so a client that
  stalls mid-upload holds no place; while the places are full, one more is answered 503 at once,
  before its body is read, so a burst costs neither memory nor disk.
* **uploads**: at most ``max_uploads`` bodies are received at once (each bounded in size and, by
  the reader, in time), which bounds the disk the request folders take.
* **slots**: at most ``max_concurrency`` restorations run at once, on a thread pool of that size.
  A request waits up to ``queue_timeout`` seconds for a slot, then gets 503. A slot is given back
  when its thread finishes, not when the request gives up: a restoration that ran over its time
  still holds the CPU/GPU, and the bound is about that.
"""
from __future__ import annotations

import asyncio
import contextlib
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import AsyncIterator, Callable, TypeVar

T = TypeVar("T")


class Busy(Exception):
    """The server cannot take this request now; ``retry_after`` is a hint in whole seconds."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass
class LimiterStats:
    admitted: int = 0
    running: int = 0
    peak_admitted: int = 0
    peak_running: int = 0
    finished: int = 0
    rejected: int = 0
    timed_out: int = 0
    uploading: int = 0
    peak_uploading: int = 0


class JobLimiter:
    def __init__(self, max_concurrency: int, queue_size: int, queue_timeout: float, job_timeout: float,
                 thread_name: str = "facerestore-restore", max_uploads: int | None = None) -> None:
        self.max_concurrency = int(max_concurrency)
        self.max_uploads = int(max_uploads) if max_uploads is not None else None
        self.queue_size = int(queue_size)
        self.queue_timeout = float(queue_timeout)
        self.job_timeout = float(job_timeout)
        self.stats = LimiterStats()
        self._free = self.max_concurrency
        self._waiters: list[asyncio.Future[None]] = []
        self._executor = ThreadPoolExecutor(max_workers=self.max_concurrency, thread_name_prefix=thread_name)
        self._job_seconds = 2.0  # running estimate for Retry-After

    # ------------------------------------------------------------------ hints

    def retry_after(self) -> int:
        ahead = self.stats.admitted + 1
        return int(min(120, max(1, math.ceil(self._job_seconds * ahead / self.max_concurrency))))

    # ------------------------------------------------------------------ admission

    def check_room(self) -> None:
        """Raise :class:`Busy` if :meth:`admit` would now (before a body is read: a cheap no)."""
        stats = self.stats
        if stats.admitted >= self.max_concurrency + self.queue_size:
            stats.rejected += 1
            raise Busy(f"the server is busy ({stats.admitted} requests in progress or waiting); "
                       "try again shortly", self.retry_after())

    @contextlib.asynccontextmanager
    async def receiving(self) -> AsyncIterator[None]:
        """Hold one of the ``max_uploads`` places while a body is read (:class:`Busy` if none)."""
        stats = self.stats
        if self.max_uploads is not None and stats.uploading >= self.max_uploads:
            stats.rejected += 1
            raise Busy(f"the server is busy ({stats.uploading} uploads in progress); try again shortly",
                       self.retry_after())
        stats.uploading += 1
        stats.peak_uploading = max(stats.peak_uploading, stats.uploading)
        try:
            yield
        finally:
            stats.uploading -= 1

    @contextlib.asynccontextmanager
    async def admit(self) -> AsyncIterator[None]:
        """Hold one of the ``max_concurrency + queue_size`` places (:class:`Busy` if none)."""
        self.check_room()
        stats = self.stats
        stats.admitted += 1
        stats.peak_admitted = max(stats.peak_admitted, stats.admitted)
        try:
            yield
        finally:
            stats.admitted -= 1

    # ------------------------------------------------------------------ running

    async def _acquire(self) -> None:
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter), self.queue_timeout)
        except asyncio.TimeoutError:
            if waiter.done() and not waiter.cancelled():
                return  # the slot arrived just as the wait ran out: take it
            waiter.cancel()
            self._waiters.remove(waiter)
            self.stats.timed_out += 1
            raise Busy(f"waited {self.queue_timeout:g} s for a free slot; try again later", self.retry_after()) from None
        except BaseException:  # the request was cancelled (client gone): pass on a slot it was given
            if waiter.done() and not waiter.cancelled():
                self._release()
            elif waiter in self._waiters:
                waiter.cancel()
                self._waiters.remove(waiter)
            raise

    def _release(self) -> None:
        while self._waiters:
            waiter = self._waiters.pop(0)
            if not waiter.done():
                waiter.set_result(None)  # the slot goes straight to the next in line
                return
        self._free += 1

    async def run(self, func: Callable[[], T], finally_: Callable[[], None] | None = None) -> T:
        """Run ``func`` in the pool once a slot is free; raise :class:`Busy` if none frees up in
        time or ``func`` runs over ``job_timeout`` (it then finishes in the background).
        ``finally_`` is called exactly once, when ``func`` has finished or will never run (so a
        request's files outlive a restoration that is still reading them)."""
        try:
            await self._acquire()
        except BaseException:
            if finally_ is not None:
                finally_()
            raise
        stats = self.stats
        stats.running += 1
        stats.peak_running = max(stats.peak_running, stats.running)
        start = time.perf_counter()
        future = asyncio.get_running_loop().run_in_executor(self._executor, func)

        def done(_: asyncio.Future) -> None:
            stats.running -= 1
            stats.finished += 1
            self._job_seconds = 0.7 * self._job_seconds + 0.3 * (time.perf_counter() - start)
            self._release()
            if finally_ is not None:
                finally_()

        future.add_done_callback(done)
        try:
            return await asyncio.wait_for(asyncio.shield(future), self.job_timeout)
        except asyncio.TimeoutError:
            stats.timed_out += 1
            raise Busy(f"the restoration took longer than {self.job_timeout:g} s; try a smaller image "
                       "or upscale, or try again later", self.retry_after()) from None

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
