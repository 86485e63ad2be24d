"""The events the job service emits to its subscribers, one class per moment of a job's
life. Every event carries `job_id`; all but `JobProgress` carry the job as it is now.

The names follow the worker pool's messages (`stylizer.pool.messages`), which the
dispatcher turns into these: a pool `JobStarted` becomes a service `JobStarted` carrying
the job's record instead of the worker's pid.
"""

from __future__ import annotations

import asyncio
import logging
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
    job_id: str
    step: int
    total: int
    preview_jpeg: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True)
class JobSucceeded:
    job_id: str
    job: JobRecord
    png: bytes = field(repr=False)


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
