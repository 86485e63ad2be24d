"""Events for the jobs other processes paint, read from the database.

A process that does not paint a job (a bot with `STYLEBOT_WORKERS=0`, a `stylebot
stylize` waiting for a `stylebot worker`, or a bot beside workers on other machines)
still owes its listeners the job's events. `JobWatcher` re-reads the rows of the jobs it
watches and turns each change into the event the painting process would have sent:

    queued -> running                     JobStarted (and JobProgress if it has steps)
    running, step changed                 JobProgress, with the latest preview (and an
                                          animation's frames, from the row)
    running -> queued                     JobQueued (through the service: its position),
                                          also when it was taken again before a read
    -> succeeded | failed, dead | cancelled   JobSucceeded (with the painting) | JobFailed
                                              | JobCancelled

It re-reads when a notification names a job (PostgreSQL's LISTEN: `bot.jobs.notify`;
the payload's version lets it skip a change it has seen), and every `poll_interval_s`
in any case, when it re-reads every active job. Rows this process's own dispatcher is
running are skipped: the dispatcher reports those itself. A change that happens and is
overtaken between two reads is seen as its latest state only (progress is a sample).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Set
from dataclasses import dataclass, replace

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.jobs import db, notify
from bot.jobs.events import (
    JobCancelled,
    JobEvent,
    JobFailed,
    JobProgress,
    JobStarted,
    JobSucceeded,
)
from bot.jobs.records import JobRecord
from bot.jobs.states import JobStatus
from bot.jobs.storage import BlobNotFound, BlobStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Seen:
    status: JobStatus
    attempts: int
    step: int
    runner: str | None
    version: int

    @classmethod
    def of(cls, record: JobRecord) -> _Seen:
        return cls(record.status, record.attempts, record.step, record.runner, record.version)


class JobWatcher:
    """See the module docstring. `only_ids`, when given, is the live set of the jobs to
    watch (a command line watches its own); otherwise every job is watched."""

    def __init__(self, *, sessionmaker: async_sessionmaker[AsyncSession], storage: BlobStore,
                 runner: str, emit: Callable[[JobEvent], Awaitable[None]],
                 queued: Callable[[JobRecord], Awaitable[None]],
                 finished: Callable[[str], None], poll_interval_s: float,
                 only_ids: Set[str] | None = None,
                 listener: notify.Listener | None = None) -> None:
        self._sm = sessionmaker
        self._storage = storage
        self._runner = runner
        self._emit = emit
        self._queued = queued
        self._finished = finished
        self._poll_s = poll_interval_s
        self._only = only_ids
        self._listener = listener
        self._known: dict[str, _Seen] = {}
        self._pending: set[str] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        if listener is not None:
            listener.subscribe(notify.CHANGED, self._on_changed)

    def track(self, record: JobRecord) -> None:
        """Starts from what this process knows of a job (it has just submitted it)."""
        self._known.setdefault(record.id, _Seen.of(record))

    async def start(self) -> None:
        """Starts watching in a task of its own (until `stop`)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(),
                                                                name="jobs-watcher")

    async def stop(self) -> None:
        """Stops watching; events already sent stay sent."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def _on_changed(self, job_id: str, version: int) -> None:
        if self._only is not None and job_id not in self._only:
            return
        seen = self._known.get(job_id)
        if seen is None or version > seen.version:
            self._pending.add(job_id)
            self._wake.set()

    async def _loop(self) -> None:
        while True:
            full = False
            try:
                await asyncio.wait_for(self._wake.wait(), self._poll_s)
            except TimeoutError:
                full = True  # the poll: every job, whatever was or was not notified
            self._wake.clear()
            ids, self._pending = self._pending, set()
            try:
                if self._listener is not None:
                    await self._listener.ensure()
                await self.check(None if full else ids)
            except Exception:
                log.exception("watching jobs failed; trying again shortly")

    async def check(self, job_ids: Iterable[str] | None = None) -> None:
        """Re-reads these jobs (None: every active job and every job seen active) and
        sends the events their changes call for."""
        full = job_ids is None
        ids = set(self._known) if full else set(job_ids or ())
        if not ids and not full:
            return
        async with self._sm() as session:
            rows = await db.jobs_to_watch(session, job_ids=ids, active=full,
                                          only_ids=self._only)
            records = [(JobRecord.from_row(row), (row.frame, row.frames)) for row in rows]
        for record, frames in records:
            await self._changed(record, frames)

    async def _changed(self, record: JobRecord, frames: tuple[int, int] = (0, 0)) -> None:
        """`frames`: the row's (frame, frames), an animation's progress."""
        before = self._known.get(record.id)
        if before is not None and record.version <= before.version:
            return
        self._known[record.id] = _Seen.of(record)
        if record.status.is_final:
            del self._known[record.id]
        ours = record.runner == self._runner and record.status is not JobStatus.queued
        if not ours:
            try:
                await self._tell(before, record, frames)
            except Exception:
                log.exception("could not report a change of job %s", record.id)
        if record.status.is_final:
            self._finished(record.id)

    async def _tell(self, before: _Seen | None, record: JobRecord,
                    frames: tuple[int, int]) -> None:
        status = record.status
        if status is JobStatus.queued:
            if before is not None and (before.status is JobStatus.running
                                       or record.attempts > before.attempts):
                await self._queued(record)
        elif status is JobStatus.running:
            new_run = (before is None or before.status is not JobStatus.running
                       or before.attempts != record.attempts or before.runner != record.runner)
            # A claim counts one attempt: more than that since the last read means a run
            # in between ended and the job went back to the queue.
            fresh = 0 if before is None or before.status is JobStatus.running else 1
            if before is not None and record.attempts > before.attempts + fresh:
                # Put back and taken again between two reads: still say it was put back.
                await self._queued(replace(record, status=JobStatus.queued, step=0,
                                           runner=None, attempts=record.attempts - 1))
            if new_run:
                await self._emit(JobStarted(record.id, record))
            if record.step > 0 and (new_run or before is None or record.step != before.step):
                await self._emit(JobProgress(record.id, record.step, record.total_steps,
                                             await self._preview(record), *frames))
        elif status is JobStatus.succeeded and record.pictures_gone:
            # Deleted before this process saw it end: its message says so (delivery).
            await self._emit(JobSucceeded(record.id, record, None))
        elif status is JobStatus.succeeded:
            try:
                png = await self._storage.get_async(record.output_hash or "")
            except (BlobNotFound, ValueError):
                log.exception("job %s succeeded but its painting cannot be read", record.id)
                return
            await self._emit(JobSucceeded(record.id, record, png))
        elif status is JobStatus.cancelled:
            await self._emit(JobCancelled(record.id, record))
        else:
            await self._emit(JobFailed(record.id, record))

    async def _preview(self, record: JobRecord) -> bytes | None:
        """The latest preview of this run (none from an earlier run: its step is ahead)."""
        async with self._sm() as session:
            preview = await db.get_preview(session, job_id=record.id)
        if preview is None or preview.step > record.step:
            return None
        return bytes(preview.jpeg)
