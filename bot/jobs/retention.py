"""People's pictures are theirs: deleted on request, kept only as long as needed, and
never left behind in the store.

A job's pictures are its photo (`input_hash`), its style image when the user sent one
(`style == "custom"`), its painting (`output_hash`) and its latest preview. Forgetting a
job (`forget_jobs`: its owner asked, or its pictures expired) clears, in one transaction,
those hashes and the row's personal field (the user's display name; ids stay, for the
history) and records why (`pictures_gone`: "deleted" or "expired"); the job stays in
/history as a line without pictures. Then each blob that no job needs any more is
removed from the store. The store is content-addressed, so the same photo sent twice,
or a preset painting, is one blob that several jobs need: it goes with the last of them.

A crash between the commit and the removal leaves blobs no job needs; so does a job
whose insert failed after its blobs were stored. `collect_garbage` finds and removes
them: every blob that no job refers to and that nobody has stored (or stored again) for
`GRACE`, so a blob written for a job about to be inserted is left alone. A queued or
running job's pictures are never removed: its row refers to them, and the service
cancels a user's active jobs before forgetting them.

`expire` applies the operator's retention settings (`STYLEBOT_RETENTION_DAYS`,
`STYLEBOT_HISTORY_DAYS`); `Housekeeping` runs it and the collector every hour in the bot
and in each `stylebot worker`, and `stylebot gc` once.

Between the check that no job needs a blob and its removal, a new job may store the same
bytes and commit: `JobService.submit` therefore stores its blobs again after its commit,
which puts back one removed meanwhile (at worst a worker that claimed the job in that
instant finds its photo missing, and the job fails saying so).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.jobs import db
from bot.jobs.access import Action, Caller
from bot.jobs.errors import UserError
from bot.jobs.records import utcnow
from bot.jobs.states import ACTIVE, FINAL, JobStatus
from bot.jobs.storage import BlobStorage, BlobStore
from bot.settings import Settings

if TYPE_CHECKING:
    from bot.jobs.service import JobService

log = logging.getLogger(__name__)

DELETED, EXPIRED = "deleted", "expired"
GRACE = timedelta(hours=1)  # a blob stored (or stored again) this recently stays
BATCH = 500                 # jobs forgotten per transaction


@dataclass
class Removed:
    """What a clean-up did: jobs whose pictures went, blobs removed from the store, job
    rows deleted (history past `STYLEBOT_HISTORY_DAYS`), and jobs left as they were
    because they are still queued or running."""
    jobs: int = 0
    blobs: int = 0
    rows: int = 0
    active: int = 0

    def __iadd__(self, other: Removed) -> Removed:
        self.jobs += other.jobs
        self.blobs += other.blobs
        self.rows += other.rows
        self.active += other.active
        return self

    def __bool__(self) -> bool:
        return bool(self.jobs or self.blobs or self.rows)


def pictures_of(job: db.Job) -> set[str]:
    """The hashes of the job's own pictures (a preset's painting is not the user's)."""
    hashes = {job.input_hash, job.output_hash}
    if job.style == "custom":
        hashes.add(job.style_hash)
    return {h for h in hashes if h}


async def forget_jobs(sessionmaker: async_sessionmaker[AsyncSession], storage: BlobStore,
                      *, job_ids: Iterable[str], why: str) -> Removed:
    """Forgets the pictures of these jobs (see the module docstring) and removes the
    blobs no job needs any more. Active (queued or running) jobs and jobs already
    forgotten are left as they are: cancel them first."""
    ids = list(job_ids)
    hashes: set[str] = set()
    forgotten = active = 0
    async with sessionmaker.begin() as session:
        for job in await db.get_jobs(session, job_ids=ids):  # locked until the commit
            if job.status in {s.value for s in ACTIVE}:
                active += 1
                continue
            if job.pictures_gone is not None:
                continue
            hashes |= pictures_of(job)
            job.input_hash = None
            job.output_hash = None
            if job.style == "custom":
                job.style_hash = None
            job.user_name = ""
            job.pictures_gone = why
            job.version = (job.version or 0) + 1
            forgotten += 1
        await session.execute(delete(db.JobPreview).where(db.JobPreview.job_id.in_(ids)))
    removed = Removed(jobs=forgotten, active=active)
    removed.blobs = await _remove_unneeded(sessionmaker, storage, hashes)
    return removed


async def _remove_unneeded(sessionmaker: async_sessionmaker[AsyncSession],
                           storage: BlobStore, digests: Collection[str]) -> int:
    """Removes those of `digests` that no job refers to; returns how many were removed."""
    if not digests:
        return 0
    async with sessionmaker() as session:
        needed = await db.referenced_hashes(session, digests=digests)
    removed = 0
    for digest in set(digests) - needed:
        removed += await storage.delete_async(digest)
    return removed


async def expire(sessionmaker: async_sessionmaker[AsyncSession], storage: BlobStore, *,
                 now: datetime, retention_days: float, history_days: float) -> Removed:
    """Forgets the pictures of jobs that ended more than `retention_days` ago, and deletes
    the rows of those that ended more than `history_days` ago (0: never, either)."""
    removed = Removed()
    if retention_days > 0:
        cutoff = now - timedelta(days=retention_days)
        while ids := await _ended_before(sessionmaker, cutoff, with_pictures=True):
            removed += await forget_jobs(sessionmaker, storage, job_ids=ids, why=EXPIRED)
    if history_days > 0:
        cutoff = now - timedelta(days=history_days)
        while ids := await _ended_before(sessionmaker, cutoff, with_pictures=None):
            removed += await forget_jobs(sessionmaker, storage, job_ids=ids, why=EXPIRED)
            async with sessionmaker.begin() as session:
                # A child made from one of them ("Again") keeps its own pictures.
                await session.execute(update(db.Job).where(db.Job.parent_id.in_(ids))
                                      .values(parent_id=None))
                result = await session.execute(delete(db.Job).where(db.Job.id.in_(ids)))
            removed.rows += int(result.rowcount)  # type: ignore[attr-defined]
    return removed


async def _ended_before(sessionmaker: async_sessionmaker[AsyncSession], cutoff: datetime,
                        *, with_pictures: bool | None) -> list[str]:
    """Up to `BATCH` ids of jobs that ended before `cutoff`; only those whose pictures are
    still kept if `with_pictures`."""
    stmt = select(db.Job.id).where(db.Job.status.in_([s.value for s in FINAL]),
                                   db.Job.finished_at < cutoff)
    if with_pictures:
        stmt = stmt.where(db.Job.pictures_gone.is_(None))
    async with sessionmaker() as session:
        return list((await session.scalars(stmt.order_by(db.Job.finished_at)
                                           .limit(BATCH))).all())


async def collect_garbage(sessionmaker: async_sessionmaker[AsyncSession], storage: BlobStore,
                          *, now: datetime, grace: timedelta = GRACE) -> int:
    """Removes the blobs no job refers to that nobody has stored for `grace` (and the
    temporary files of writes a crash cut short); returns how many blobs."""
    if isinstance(storage, BlobStorage):
        await asyncio.to_thread(storage.remove_stale_temp_files, older_than=now - grace)
    old = [b.digest for b in await storage.list_async() if b.used_at < now - grace]
    removed = 0
    for start in range(0, len(old), BATCH):
        removed += await _remove_unneeded(sessionmaker, storage, old[start:start + BATCH])
    return removed


class Privacy:
    """What a user may ask: forget one of their jobs' pictures, or all of them. Their
    queued and running jobs are cancelled first (a running one is given the service's
    cancel wait to stop); one that has not stopped by then keeps its pictures, and
    `Removed.active` says how many did."""

    def __init__(self, service: JobService, sessionmaker: async_sessionmaker[AsyncSession],
                 storage: BlobStore) -> None:
        self._service = service
        self._sm = sessionmaker
        self._storage = storage

    async def forget_job(self, job_id: str, *, caller: Caller) -> Removed:
        """Raises `JobNotFound` (also for a job the caller may not delete: the same words,
        see `bot.jobs.access`)."""
        job = await self._service.authorize(job_id, caller=caller, action=Action.delete)
        return await self._forget([job.id], [job.id] if job.status.is_active else [], caller)

    async def forget_user(self, *, caller: Caller) -> Removed:
        """Every job of the caller's."""
        async with self._sm() as session:
            rows = await db.jobs_of_user(session, user_id=caller.user_id)
        active = [job_id for job_id, status in rows if JobStatus(status).is_active]
        return await self._forget([job_id for job_id, _ in rows], active, caller)

    async def _forget(self, job_ids: list[str], active: list[str], caller: Caller) -> Removed:
        for job_id in active:
            with contextlib.suppress(UserError):  # it ended meanwhile
                await self._service.cancel(job_id, caller=caller)
        removed = Removed()
        for start in range(0, len(job_ids), BATCH):  # a transaction per batch
            removed += await forget_jobs(self._sm, self._storage,
                                         job_ids=job_ids[start:start + BATCH], why=DELETED)
        log.info("forgot the pictures of %d job(s) of user %s (%d blob(s) removed, %d still "
                 "running)", removed.jobs, caller.user_id, removed.blobs, removed.active)
        return removed


class Housekeeping:
    """`expire` and `collect_garbage` every `interval_s` (the first `first_s` after
    start), in the background. Several processes sharing a database may each run it:
    every step is safe to repeat, and two at once remove each blob once."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], storage: BlobStore, *,
                 retention_days: float, history_days: float, interval_s: float = 3600.0,
                 first_s: float = 60.0, clock: Callable[[], datetime] = utcnow) -> None:
        self._sm = sessionmaker
        self._storage = storage
        self.retention_days = retention_days
        self.history_days = history_days
        self.interval_s = interval_s
        self.first_s = first_s
        self._clock = clock
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(cls, sessionmaker: async_sessionmaker[AsyncSession],
                      storage: BlobStore, settings: Settings) -> Housekeeping:
        """With the operator's STYLEBOT_RETENTION_DAYS and STYLEBOT_HISTORY_DAYS."""
        return cls(sessionmaker, storage, retention_days=settings.retention_days,
                   history_days=settings.history_days)

    async def run_once(self) -> Removed:
        now = self._clock()
        removed = await expire(self._sm, self._storage, now=now,
                               retention_days=self.retention_days,
                               history_days=self.history_days)
        removed.blobs += await collect_garbage(self._sm, self._storage, now=now)
        if removed:
            log.info("housekeeping: pictures of %d job(s) expired, %d blob(s) removed, "
                     "%d old job(s) deleted", removed.jobs, removed.blobs, removed.rows)
        return removed

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="housekeeping")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        await asyncio.sleep(self.first_s)
        while True:
            try:
                await self.run_once()
            except Exception:
                log.exception("housekeeping failed; trying again in %.0f s", self.interval_s)
            await asyncio.sleep(self.interval_s)
