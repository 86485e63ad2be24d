"""Shared helpers for the job tests: tiny images, a fake executor, an event recorder."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from PIL import Image

from bot.jobs.events import JobEvent
from bot.jobs.executor import ExecutorBusy, OfflineExecutor
from bot.jobs.service import JobService
from stylizer import images
from stylizer.pool.messages import JobCancelled, JobFailed, JobRequest, JobSucceeded, PoolEvent

TERMINAL = (JobSucceeded, JobFailed, JobCancelled)
ServiceFactory = Callable[..., JobService]


def png(seed: int = 0, width: int = 48, height: int = 48,
        corner: tuple[int, int, int] | None = None) -> bytes:
    """A small random PNG; `corner` paints the top-left 4x4 pixels (a marker for
    the test worker targets)."""
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, (height, width, 3)).astype(np.uint8)
    if corner is not None:
        arr[:4, :4] = corner
    return images.encode(Image.fromarray(arr, "RGB"), "PNG")


class TickingClock:
    """A clock that moves forward a millisecond at every reading (deterministic order)."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime.now(UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=1)
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class FakeExecutor:
    """An in-process executor that does what the test tells it (the `Executor` seam).

    `auto`: when set, called with each request, returns the events to report for it.
    """

    def __init__(self, workers: int = 1,
                 auto: Callable[[JobRequest], list[PoolEvent]] | None = None,
                 max_batch: int = 1) -> None:
        self.workers = workers
        self.auto = auto
        self.max_batch = max_batch
        self.batches: list[list[str]] = []  # job ids handed over together
        self.fail_next: Exception | None = None  # raised by the next submit_batch
        self.started = False
        self.closed = False
        self.submitted: list[JobRequest] = []
        self.running: dict[str, JobRequest] = {}
        self.cancel_calls: list[str] = []
        self.cancel_reports = True  # report JobCancelled when asked to cancel
        self.keep_on_close: list[str] = []
        self._events: asyncio.Queue[PoolEvent | None] = asyncio.Queue()

    async def start(self) -> None:
        self.started = True

    @property
    def capacity(self) -> int:
        return self.workers if self.started and not self.closed else 0

    @property
    def idle(self) -> int:
        busy = sum(1 for batch in self.batches if any(j in self.running for j in batch))
        return max(0, self.capacity - busy)

    async def submit_batch(self, reqs: Sequence[JobRequest]) -> None:
        if self.idle <= 0:
            raise ExecutorBusy("busy")
        if self.fail_next is not None:
            exc, self.fail_next = self.fail_next, None
            raise exc
        assert 1 <= len(reqs) <= self.max_batch
        self.batches.append([r.job_id for r in reqs])
        for req in reqs:
            self.running[req.job_id] = req
            self.submitted.append(req)
        for req in reqs:
            if self.auto is not None:
                for event in self.auto(req):
                    self.emit(event)

    async def cancel(self, job_id: str) -> bool:
        self.cancel_calls.append(job_id)
        if job_id not in self.running:
            return False
        if self.cancel_reports:
            self.emit(JobCancelled(job_id))
        return True

    def emit(self, event: PoolEvent) -> None:
        if isinstance(event, TERMINAL):
            self.running.pop(event.job_id, None)
        self._events.put_nowait(event)

    async def events(self) -> AsyncIterator[PoolEvent]:
        while (event := await self._events.get()) is not None:
            yield event

    async def close(self, grace_s: float = 30.0) -> list[str]:
        self.closed = True
        killed = list(self.running)
        self.running.clear()
        self._events.put_nowait(None)
        return killed


class Recorder:
    """Subscribes to a service and keeps every event; waits for conditions."""

    def __init__(self) -> None:
        self.events: list[JobEvent] = []
        self._changed = asyncio.Event()

    async def __call__(self, event: JobEvent) -> None:
        self.events.append(event)
        self._changed.set()

    def of(self, kind: type, job_id: str | None = None) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)
                and (job_id is None or _job_id(e) == job_id)]

    def kinds(self, job_id: str) -> list[str]:
        return [type(e).__name__ for e in self.events if _job_id(e) == job_id]

    async def wait_for(self, predicate: Callable[[], object], within: float = 10.0) -> None:
        deadline = time.monotonic() + within
        while not predicate():
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out; events so far: {self.events}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), min(left, 0.2))
            except TimeoutError:
                pass


def _job_id(event: JobEvent) -> str:
    return event.job_id


async def until(predicate: Callable[[], Any], within: float = 10.0,
                interval: float = 0.05) -> None:
    """Polls an async or plain predicate until it is true."""
    deadline = time.monotonic() + within
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval)


async def painter_and_watcher(make_service: ServiceFactory
                              ) -> tuple[FakeExecutor, JobService, Recorder]:
    """Two started services over one database, as two processes: one painting (its
    executor a `FakeExecutor`), one painting nothing that watches the jobs it submits;
    a `Recorder` hears the watcher. Returns (the painter's executor, the watcher, the
    recorder)."""
    fake = FakeExecutor()
    await make_service(fake).start()
    watcher = make_service(OfflineExecutor(), watch=True, own_jobs_only=True)
    rec = Recorder()
    watcher.subscribe(rec)
    await watcher.start()
    return fake, watcher, rec
