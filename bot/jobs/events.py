"""The events the job service emits to its subscribers, one class per moment of a job's
life. Every event carries `job_id`; all but `JobProgress` carry the job as it is now.

The names follow the worker pool's messages (`stylizer.pool.messages`), which the
dispatcher turns into these: a pool `JobStarted` becomes a service `JobStarted` carrying
the job's record instead of the worker's pid.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from bot.jobs.records import JobRecord

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobQueued:
    """Accepted (or put back after a worker died); `position` is 1-based."""

    job_id: str
    job: JobRecord
    position: int
    eta_s: float | None


@dataclass(frozen=True)
class JobStarted:
    job_id: str
    job: JobRecord


@dataclass(frozen=True)
class JobProgress:
    """`step` of `total` steps; an animation's count over all of its frames, of which
    `frame` are finished of `frames` (0 for a still)."""

    job_id: str
    step: int
    total: int
    preview_jpeg: bytes | None = field(default=None, repr=False)
    frame: int = 0
    frames: int = 0


@dataclass(frozen=True)
class JobSucceeded:
    job_id: str
    job: JobRecord
    png: bytes | None = field(repr=False)  # None: its pictures were deleted meanwhile


@dataclass(frozen=True)
class JobFailed:
    """`job.status` is failed or dead; `job.error_code` / `error_message` say why."""

    job_id: str
    job: JobRecord


@dataclass(frozen=True)
class JobCancelled:
    job_id: str
    job: JobRecord


JobEvent = JobQueued | JobStarted | JobProgress | JobSucceeded | JobFailed | JobCancelled
FINAL_EVENTS = (JobSucceeded, JobFailed, JobCancelled)
Listener = Callable[[JobEvent], Awaitable[None]]


class Subscriber:
    """One listener with its own queue, so a slow listener never holds up the others or
    the dispatch loop, and each listener sees events in order."""

    def __init__(self, listener: Listener) -> None:
        self.listener = listener
        self.queue: asyncio.Queue[JobEvent] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

    def put(self, event: JobEvent) -> None:
        self.queue.put_nowait(event)
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        while True:
            event = await self.queue.get()
            try:
                await self.listener(event)
            except Exception:
                log.exception("a job event listener failed on %s", type(event).__name__)
            finally:
                self.queue.task_done()

    async def close(self, timeout_s: float) -> None:
        try:
            await asyncio.wait_for(self.queue.join(), timeout_s)
        except TimeoutError:
            log.warning("a job event listener did not catch up; dropping %d event(s)",
                        self.queue.qsize())
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
            self.task = None


class Fanout:
    """A service's subscribers: each event goes to each of them, in order.

    The same change of a job may be reported twice in one process, by the process that
    made it and by its watcher reading the row (`bot.jobs.watch`): an event carrying a
    job is sent once per kind and row version (for the latest `memory` jobs)."""

    def __init__(self, memory: int = 10_000) -> None:
        self.subscribers: list[Subscriber] = []
        self._sent: OrderedDict[str, set[tuple[int, str]]] = OrderedDict()
        self._memory = memory

    def subscribe(self, listener: Listener) -> None:
        """Sends every later event to `listener` too, through a queue of its own."""
        self.subscribers.append(Subscriber(listener))

    def put(self, event: JobEvent) -> None:
        """Queues `event` for every subscriber, unless it was sent already (see above)."""
        job = getattr(event, "job", None)
        if isinstance(job, JobRecord):
            sent = self._sent.setdefault(event.job_id, set())
            key = (job.version, type(event).__name__)
            if key in sent:
                return
            sent.add(key)
            self._sent.move_to_end(event.job_id)
            while len(self._sent) > self._memory:
                self._sent.popitem(last=False)
        for sub in self.subscribers:
            sub.put(event)

    async def close(self, timeout_s: float) -> None:
        """Lets each subscriber catch up for up to `timeout_s` seconds, then stops it."""
        for sub in self.subscribers:
            await sub.close(timeout_s)
