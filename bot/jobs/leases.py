"""Leases and recovery: who runs a job, until when, and what happens when they vanish.

`Leases` is one runner's side of it, all in SQL: claiming batches, the fenced writes to
the jobs it holds, renewals, and recovering other runners' orphans. The dispatcher
(`bot.jobs.dispatch`) decides when; this module decides what is written.

A claimed job records its `runner` ("host:pid:nonce", `new_runner_id`) and
`lease_expires_at`; the runner's heartbeat renews the lease while it lives. Any process
sharing the database, painting or not, treats a running job as orphaned, and puts it back
in the queue (or buries it as `dead` after `max_attempts` runs), when its
lease has expired, or at once when its runner was a process on this host that no longer
exists. Recovery therefore never takes a job from a live process, and after a crash on
one machine the job is back in the queue as soon as any process looks.

A runner that lost its lease (it stalled, or its clock ran behind) may still be painting;
its writes are fenced on its runner id (`bot.jobs.db.fenced_update`), so they change
nothing, and the job's new run is the one that counts. Leases are compared with each
process's own clock: machines sharing a database should keep their clocks in step (NTP),
well within the lease (60 s by default).
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
from collections.abc import Callable, Iterable, Set
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.jobs import db, notify, queue
from bot.jobs.records import JobRecord, dead_message
from bot.jobs.states import JobStatus

log = logging.getLogger(__name__)

LOST_CODE = "worker_died"


def new_runner_id() -> str:
    """"host:pid:nonce": unique per process and per service object, and telling recovery
    on this host whether its process still exists."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def runner_is_gone(runner: str | None) -> bool:
    """True when `runner` names a process on this host that no longer exists."""
    parts = (runner or "").rsplit(":", 2)
    if len(parts) != 3:
        return False
    host, pid_text, _nonce = parts
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False  # this process: a stale row from an earlier service object
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # exists, owned by someone else
    return False


def retry_or_bury(job: db.Job, *, now: datetime, code: str, max_attempts: int) -> JobRecord:
    """Moves on a running row whose run ended abnormally (the run was counted in `attempts`
    when it was claimed): cancelled if that was asked for, `dead` once `max_attempts` runs
    have ended so, else back in the queue, held by nobody."""
    attempts = job.attempts
    if job.cancel_requested:
        db.set_status(job, JobStatus.cancelled, finished_at=now, lease_expires_at=None)
    elif attempts >= max_attempts:
        db.set_status(job, JobStatus.dead, attempts=attempts, finished_at=now,
                      lease_expires_at=None, error_code=code,
                      error_message=dead_message(attempts, code))
    else:
        db.set_status(job, JobStatus.queued, lease_expires_at=None, step=0, runner=None)
    return JobRecord.from_row(job)


async def recover(session: AsyncSession, *, now: datetime, runner: str, held: Set[str],
                  max_attempts: int) -> list[JobRecord]:
    """Recovers orphaned running jobs (see the module docstring) in the caller's
    transaction, notifying listeners at its commit; returns them as they are now.

    `runner` and `held` are the caller's: the jobs it is running are never touched, and
    its own rows it no longer holds (an event it could not record) wait for their lease.
    """
    records: list[JobRecord] = []
    host = socket.gethostname()
    for job in await db.recovery_candidates(session, now=now, host=host):
        if job.id in held:
            continue
        lease = job.lease_expires_at
        expired = lease is None or lease <= now
        if not expired and (job.runner == runner or not runner_is_gone(job.runner)):
            continue
        why = (f"was silent past its lease (until {lease})" if expired
               else "is a process on this machine that no longer exists")
        log.warning("job %s: its runner %s %s; recovering it", job.id, job.runner, why)
        records.append(retry_or_bury(job, now=now, code=LOST_CODE, max_attempts=max_attempts))
    await notify_records(session, records)
    return records


async def claim_delivery(session: AsyncSession, *, job_id: str, claimant: str, now: datetime,
                         for_s: float) -> bool | None:
    """Claims the delivery of a finished job's result for `claimant` for `for_s` seconds
    (`db.claim_delivery`), taking it over from a claimant whose process on this host is
    gone; None when there is no such job."""
    job = await db.get_job(session, job_id=job_id)
    if job is None:
        return None
    gone = job.delivery_claimed_by if runner_is_gone(job.delivery_claimed_by) else None
    return await db.claim_delivery(session, job_id=job_id, claimant=claimant, now=now,
                                   until=now + timedelta(seconds=for_s), take_from=gone)


async def notify_records(session: AsyncSession, records: Iterable[JobRecord]) -> None:
    """Tells listeners about these jobs at commit; those now queued, on both channels."""
    records = list(records)
    await notify.send(session, changed=[(r.id, r.version) for r in records],
                      queued=[(r.id, r.version) for r in records
                              if r.status is JobStatus.queued])


class Leases:
    """One runner's writes to the job table, each in its own transaction: claims, the
    fenced writes to the jobs it holds (they return None once another process has taken
    the job back), renewals, and recovery. Holds its runner id and, on PostgreSQL, the
    connection its claims and finishes run on (`db.HeldConnection`; `close` it)."""

    def __init__(self, *, sessionmaker: async_sessionmaker[AsyncSession],
                 clock: Callable[[], datetime], lease_s: float, max_attempts: int) -> None:
        self._sm = sessionmaker
        engine = sessionmaker.kw.get("bind")
        if not isinstance(engine, AsyncEngine):
            raise TypeError("Leases needs a sessionmaker bound to an AsyncEngine")
        self._statements = db.HeldConnection(engine)
        self._clock = clock
        self.lease = timedelta(seconds=lease_s)
        self._max_attempts = max_attempts
        self.runner = new_runner_id()

    async def claim(self, *, max_batch: int, only_ids: Set[str] | None,
                    held: set[str]) -> list[JobRecord]:
        """Claims the next batch (`queue.claim_batch`, which also notifies); its ids join
        `held` as soon as they are claimed, so that recovery in this process never takes
        them for orphans."""
        now = self._clock()
        claimed: set[str] = set()
        try:
            async with self._statements() as conn:
                rows = await queue.claim_batch(conn, runner=self.runner, now=now,
                                               lease_until=now + self.lease,
                                               max_batch=max_batch, only_ids=only_ids)
                claimed = {row.id for row in rows}
                held |= claimed
        except BaseException:
            # Nothing was claimed on SQLite (no commit). On PostgreSQL a head whose riders'
            # claim failed stays claimed; left out of `held`, it is recovered once its
            # lease runs out, as a job of a runner that went silent.
            held -= claimed
            raise
        return [JobRecord.from_row(row) for row in rows]

    async def close(self) -> None:
        """Gives back the connection the claims and finishes are held on (the next claim
        opens it again); call it before the engine is disposed."""
        await self._statements.close()

    async def progress(self, job_id: str, *, preview: bytes | None = None,
                       **fields: Any) -> JobRecord | None:
        """Records progress and renews the lease; None if the job is no longer ours."""
        async with self._sm.begin() as session:
            job = await db.fenced_update(
                session, job_id=job_id, runner=self.runner,
                values={**fields, "lease_expires_at": self._clock() + self.lease})
            if job is None:
                return None
            if preview:
                await db.save_preview(session, job_id=job_id, step=job.step, jpeg=preview)
            record = JobRecord.from_row(job)
            await notify_records(session, [record])
        return record

    async def finish(self, job_id: str, status: JobStatus, **fields: Any) -> JobRecord | None:
        """Records how the run ended (succeeded, failed, cancelled) in one statement
        (`db.finish_running`, which also notifies); None if the job is no longer ours."""
        async with self._statements() as conn:
            row = await db.finish_running(conn, job_id=job_id, runner=self.runner,
                                          status=status, finished_at=self._clock(), **fields)
        return None if row is None else JobRecord.from_row(row)

    async def end_abnormally(self, job_id: str, code: str) -> JobRecord | None:
        """The worker died under the job: `retry_or_bury`; None if it is no longer ours."""
        async with self._sm.begin() as session:
            held = await db.held_jobs(session, job_ids=[job_id], runner=self.runner)
            if not held:
                return None
            record = retry_or_bury(held[0], now=self._clock(), code=code,
                                   max_attempts=self._max_attempts)
            await notify_records(session, [record])
        return record

    async def put_back(self, job_ids: Iterable[str]) -> list[JobRecord]:
        """Puts jobs this runner holds back in the queue, their run not counted (attempts
        back to what they were before the claim; cancelled instead where that was asked
        for); returns them as they are now."""
        now = self._clock()
        records: list[JobRecord] = []
        async with self._sm.begin() as session:
            for job in await db.held_jobs(session, job_ids=job_ids, runner=self.runner):
                if job.cancel_requested:
                    db.set_status(job, JobStatus.cancelled, finished_at=now,
                                  lease_expires_at=None)
                else:
                    db.set_status(job, JobStatus.queued, lease_expires_at=None, step=0,
                                  runner=None, attempts=max(0, job.attempts - 1))
                records.append(JobRecord.from_row(job))
            await notify_records(session, records)
        return records

    async def heartbeat(self, job_ids: Iterable[str], *, renew: bool
                        ) -> tuple[set[str], list[str]]:
        """Renews the leases on these jobs (with `renew`); returns those another process
        has taken back, and those whose cancelling was asked for."""
        ids = sorted(job_ids)
        lost: set[str] = set()
        async with self._sm.begin() as session:
            if renew and ids:
                kept = await db.renew_leases(session, job_ids=ids, runner=self.runner,
                                             until=self._clock() + self.lease)
                if len(kept) < len(ids):
                    # Not renewed: finished here meanwhile, or taken back elsewhere.
                    rows = await session.execute(select(db.Job.id, db.Job.runner).where(
                        db.Job.id.in_(set(ids) - kept)))
                    lost = {job_id for job_id, runner in rows if runner != self.runner}
            to_cancel = await db.cancel_requested_ids(session, job_ids=ids)
        return lost, to_cancel

    async def recover(self, held: Set[str]) -> list[JobRecord]:
        """`recover`, in a transaction of its own."""
        async with self._sm.begin() as session:
            return await recover(session, now=self._clock(), runner=self.runner, held=held,
                                 max_attempts=self._max_attempts)
