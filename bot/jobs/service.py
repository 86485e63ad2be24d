"""`JobService`: accepts, schedules, tracks and hands back painting jobs.

No Discord and no torch here. The service validates requests with the stylizer's own
checks, enforces the limits from the settings, keeps every job in the database (the
source of truth) and its images in content-addressed storage, runs jobs through an
`Executor`, and tells its subscribers what happened (`JobEvent`s). See `dispatch` for
the scheduling loop, `leases` for leases and crash recovery, `queue` for the fair order.

Several services, in several processes and machines, may share one database; one with
`watch` also reports the jobs others paint, one with no workers submits and watches only.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.jobs import access, db, leases, notify, queue
from bot.jobs.access import Action, Caller, Origin
from bot.jobs.dispatch import Dispatcher
from bot.jobs.errors import JobNotFound, PicturesGone, UserError
from bot.jobs.events import Fanout, JobCancelled, JobEvent, JobQueued, Listener
from bot.jobs.executor import Executor
from bot.jobs.ids import normalize_job_id
from bot.jobs.intake import Intake
from bot.jobs.records import JobRecord, utcnow
from bot.jobs.states import ACTIVE, JobStatus
from bot.jobs.storage import BlobStore
from bot.jobs.watch import JobWatcher
from bot.settings import Settings

log = logging.getLogger(__name__)

DELIVERY_CLAIM_S = 120.0  # how long a claimed delivery is left to its claimant


class JobService:
    """See the module docstring. `own_jobs_only`: run (and watch) only the jobs submitted
    through this service (the CLI beside a bot). `watch`: report the jobs other processes
    paint. `listener`: wake-ups from other processes (by default on the engine's database)."""

    def __init__(self, *, sessionmaker: async_sessionmaker[AsyncSession], storage: BlobStore,
                 executor: Executor, settings: Settings, presets_dir: Path | None,
                 clock: Callable[[], datetime] = utcnow, lease_s: float = 60.0,
                 poll_interval_s: float = 2.0, default_job_s: float = 60.0,
                 cancel_wait_s: float = 10.0, own_jobs_only: bool = False,
                 watch: bool = False, listener: notify.Listener | None = None) -> None:
        self._sm = sessionmaker
        self._storage = storage
        self._executor = executor
        self._settings = settings
        self._presets_dir = presets_dir
        self._clock = clock
        self._default_job_s = default_job_s
        self._cancel_wait_s = cancel_wait_s
        self._poll_s = poll_interval_s
        self._fanout = Fanout()
        self._intake = Intake(settings, presets_dir, storage)
        engine = sessionmaker.kw.get("bind")
        if listener is None and engine is not None:
            listener = notify.Listener(engine)
        self._listener = listener
        self._dispatch = Dispatcher(
            sessionmaker=sessionmaker, storage=storage, executor=executor, settings=settings,
            clock=clock, emit=self._emit, requeued=self._emit_queued, lease_s=lease_s,
            poll_interval_s=poll_interval_s, own_jobs_only=own_jobs_only, listener=listener)
        self._watcher = JobWatcher(
            sessionmaker=sessionmaker, storage=storage, runner=self._dispatch.runner,
            emit=self._emit, queued=self._emit_queued, finished=self._finished_elsewhere,
            poll_interval_s=poll_interval_s, listener=listener,
            only_ids=self._dispatch.own if own_jobs_only else None) if watch else None

    # -- life ------------------------------------------------------------------------------

    def subscribe(self, listener: Listener) -> None:
        self._fanout.subscribe(listener)

    async def start(self) -> None:
        """Listens for other processes' changes (PostgreSQL), recovers orphaned jobs,
        starts the executor, then the dispatch loop and the watcher."""
        if self._listener is not None:
            await self._listener.start()
        await self._dispatch.start()
        if self._watcher is not None:
            await self._watcher.start()

    async def stop(self, grace_s: float = 30) -> None:
        """Stops taking jobs, lets running ones finish for up to `grace_s`, and puts the
        rest back in the queue (attempts unchanged); then lets listeners catch up."""
        try:
            await self._dispatch.stop(grace_s)
        finally:
            if self._watcher is not None:
                await self._watcher.stop()
            if self._listener is not None:
                await self._listener.stop()
        await self._fanout.close(5.0)

    @property
    def runner_id(self) -> str:
        """This service's runner id ("host:pid:nonce"), in the rows of the jobs it runs."""
        return self._dispatch.runner

    async def _emit(self, event: JobEvent) -> None:
        self._fanout.put(event)

    def _finished_elsewhere(self, job_id: str) -> None:
        self._dispatch.own.discard(job_id)
        self._dispatch.notify_final(job_id)

    async def _emit_queued(self, record: JobRecord) -> None:
        position, eta = await self.position_and_eta(record.id)
        await self._emit(JobQueued(record.id, record, position or 1, eta))

    # -- submitting ------------------------------------------------------------------------

    async def submit(self, *, user_id: str, user_name: str, content: bytes,
                     style: str | None = None, style_image: bytes | None = None,
                     params: dict[str, Any] | None = None, source: str = "cli",
                     origin: Origin | None = None, private: bool = False,
                     parent_id: str | None = None,
                     arrived_at: datetime | None = None,
                     on_committed: Callable[[str], None] | None = None) -> JobRecord:
        """Validates and queues a job (see the contract in the module docstring).

        `origin`: where it was asked (None: the CLI). `arrived_at`, when the request
        arrived (before its download), is its created_at and its place in its round.

        `on_committed(job_id)` is called the moment the job is in the database, before
        anything else runs on the loop (the dispatcher may start it at the next await).

        Raises `InvalidRequest` for a bad image, style or parameter, `LimitExceeded`
        when this user or the whole queue is full, `JobNotFound` for a bad parent,
        `OutOfStorage` when the disk is (nearly) full.
        """
        request = await self._intake.check(content=content, style=style,
                                           style_image=style_image, params=params)
        style_name, style_bytes = request.style_name, request.style_bytes
        style_params = request.params
        # The blobs go first: a row never points at bytes that are not there. If the
        # insert fails, an unreferenced blob is left behind, which is harmless.
        input_hash, style_hash = await self._intake.store(content, style_bytes)
        now = self._clock()
        created_at = min(now, arrived_at) if arrived_at is not None else now
        async with self._sm.begin() as session:
            await queue.check_room(session, user_id=user_id,
                                   max_jobs_per_user=self._settings.max_jobs_per_user,
                                   max_queue=self._settings.max_queue)
            if parent_id is not None:
                parent_id = normalize_job_id(parent_id)
                if await db.get_job(session, job_id=parent_id) is None:
                    raise JobNotFound(parent_id)
            job = db.Job(
                id=await db.unused_job_id(session), user_id=user_id, user_name=user_name[:100],
                **dataclasses.asdict(origin or Origin()), source=source, style=style_name,
                style_hash=style_hash, input_hash=input_hash, params=style_params.to_dict(),
                status=JobStatus.queued.value, attempts=0, step=0, private=private,
                total_steps=style_params.steps, created_at=created_at,
                parent_id=parent_id, cancel_requested=False, delivered=False,
                turn=await db.next_turn(session, user_id=user_id),  # under check_room's lock
                batch_key=request.batch_key, frames=request.frames)
            await db.add_job(session, job=job)
            record = JobRecord.from_row(job)
            # Its place, read before the commit: from the commit on, another process may
            # start it, and this process's watcher must not report that before JobQueued.
            position, eta = await self._place(session, job)
            await notify.send(session, changed=[(record.id, record.version)],
                              queued=[(record.id, record.version)])
        # Nothing awaits from here to the event: nothing else runs on the loop meanwhile.
        if on_committed is not None:
            on_committed(record.id)
        log.info("job %s: queued for %s (%s, %s px)", record.id, user_id, style_name,
                 style_params.size)
        self._dispatch.own.add(record.id)
        if self._watcher is not None:
            self._watcher.track(record)
        await self._emit(JobQueued(record.id, record, position or 1, eta))
        # A blob shared with a job forgotten meanwhile may just have gone: store it again.
        with contextlib.suppress(UserError):  # the disk full: the job fails, told why
            await self._intake.store(content, style_bytes)
        self._dispatch.wake()
        return record

    # -- cancelling and waiting ------------------------------------------------------------

    async def cancel(self, job_id: str, *, caller: Caller) -> JobRecord:
        """Cancels a queued job at once, or stops a running one (waits up to a few seconds
        for it to stop; the record returned may still say running if it has not yet).

        Raises `JobNotFound` (no such job, or not one `caller` may cancel: see
        `bot.jobs.access`), or `UserError` with code "already_finished".
        """
        job_id = normalize_job_id(job_id)
        now = self._clock()
        async with self._sm.begin() as session:
            job = await self._allowed_row(session, job_id, caller, Action.cancel,
                                          for_update=True)
            status = JobStatus(job.status)
            if status.is_final:
                # How it ended is a detail of the job: only for those who may see it.
                how = f" ({status})" if access.allowed(caller, job, Action.see) else ""
                raise UserError(f"Job {job_id} has already finished{how}.",
                                code="already_finished")
            if status is JobStatus.queued:
                db.set_status(job, JobStatus.cancelled, finished_at=now, lease_expires_at=None)
                record: JobRecord | None = JobRecord.from_row(job)
            else:
                job.cancel_requested = True  # seen by whichever process runs it
                db.touch(job)
                record = None
            await notify.send(session, changed=[(job.id, job.version)])
        if record is not None:
            log.info("job %s: cancelled while queued", job_id)
            self._dispatch.own.discard(job_id)
            self._dispatch.notify_final(job_id)
            await self._emit(JobCancelled(record.id, record))
            return record
        log.info("job %s: cancelling while running", job_id)
        await self._dispatch.cancel_running(job_id)
        return await self.wait(job_id, timeout_s=self._cancel_wait_s)

    async def wait(self, job_id: str, *, timeout_s: float | None = None) -> JobRecord:
        """Returns once the job has finished (any final status), or after `timeout_s` with its
        latest state. Works for jobs run by another process too (it polls the row)."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout_s is None else loop.time() + timeout_s
        while True:
            event = self._dispatch.final_event(job_id)
            record = await self.get(job_id)
            if record.status.is_final:
                self._dispatch.notify_final(job_id)
                return record
            wait_s = self._poll_s if deadline is None else min(self._poll_s,
                                                                 deadline - loop.time())
            if wait_s <= 0:
                return record
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), wait_s)

    # -- reading ---------------------------------------------------------------------------

    async def authorize(self, job_id: str, *, caller: Caller, action: Action) -> JobRecord:
        """The job, if `caller` may do `action` with it (the rule: `bot.jobs.access`).

        Raises `JobNotFound` with the same words whether the job does not exist or the
        caller may not have it, so a refusal never tells that a job exists.
        """
        async with self._sm() as session:
            job = await self._allowed_row(session, normalize_job_id(job_id), caller, action)
            return JobRecord.from_row(job)

    @staticmethod
    async def _allowed_row(session: AsyncSession, job_id: str, caller: Caller, action: Action,
                           *, for_update: bool = False) -> db.Job:
        """The job's row if `caller` may do `action` with it; else `JobNotFound`, in the
        same words whether it does not exist or is not the caller's."""
        job = await db.get_job(session, job_id=job_id, for_update=for_update)
        if job is None or not access.allowed(caller, job, action):
            raise JobNotFound(job_id, of_caller=not caller.operator)
        return job

    async def get(self, job_id: str) -> JobRecord:
        """The job, for the bot's own bookkeeping: checks nobody's rights (commands go
        through `authorize`)."""
        job_id = normalize_job_id(job_id)
        async with self._sm() as session:
            job = await db.get_job(session, job_id=job_id)
            if job is None:
                raise JobNotFound(job_id)
            return JobRecord.from_row(job)

    async def list_for_user(self, user_id: str, *, limit: int = 10, offset: int = 0
                            ) -> list[JobRecord]:
        async with self._sm() as session:
            rows = await db.list_jobs(session, user_id=user_id, limit=limit, offset=offset)
            return [JobRecord.from_row(j) for j in rows]

    async def list_all(self, *, limit: int = 20, offset: int = 0) -> list[JobRecord]:
        async with self._sm() as session:
            rows = await db.list_jobs(session, limit=limit, offset=offset)
            return [JobRecord.from_row(j) for j in rows]

    async def count_for_user(self, user_id: str) -> int:
        async with self._sm() as session:
            return await db.count_jobs(session, user_id=user_id)

    async def queue_position(self, job_id: str) -> int | None:
        """1-based place in the fair order; None unless the job is queued."""
        return (await self.position_and_eta(job_id, want_eta=False))[0]

    async def position_and_eta(self, job_id: str, *, want_eta: bool = True,
                               on_the_way: Callable[[], int] | None = None
                               ) -> tuple[int | None, float | None]:
        """The job's 1-based place in the fair order (None unless queued) and rough seconds
        until it is done (`queue.position_and_eta`). Raises `JobNotFound`."""
        async with self._sm() as session:
            job = await db.get_job(session, job_id=normalize_job_id(job_id))
            if job is None:
                raise JobNotFound(job_id)
            return await self._place(session, job, want_eta=want_eta, on_the_way=on_the_way)

    async def _place(self, session: AsyncSession, job: db.Job, *, want_eta: bool = True,
                     on_the_way: Callable[[], int] | None = None
                     ) -> tuple[int | None, float | None]:
        return await queue.position_and_eta(
            session, job, now=self._clock(), max_batch=self._executor.max_batch,
            workers=self._executor.capacity or self._settings.workers,
            default_job_s=self._default_job_s, want_eta=want_eta, on_the_way=on_the_way)

    async def read_input(self, job_id: str) -> bytes:
        record = await self.get(job_id)
        if record.input_hash is None:
            raise PicturesGone(record.id, record.pictures_gone)
        return await self._storage.get_async(record.input_hash)

    async def read_output(self, job_id: str) -> bytes | None:
        record = await self.get(job_id)
        if record.output_hash is None:
            return None
        return await self._storage.get_async(record.output_hash)

    async def active_jobs(self) -> list[JobRecord]:
        """Queued and running jobs (to re-attach progress displays after a restart)."""
        async with self._sm() as session:
            rows = await db.jobs_with_status(session, statuses=ACTIVE)
            return [JobRecord.from_row(j) for j in rows]

    async def undelivered(self) -> list[JobRecord]:
        """Succeeded, failed or dead jobs whose result nobody has delivered yet."""
        async with self._sm() as session:
            return [JobRecord.from_row(j) for j in await db.undelivered(session)]

    async def stats(self, *, caller: Caller) -> dict[str, Any]:
        """Job counts of the caller's server (today's since midnight UTC) and the shared
        worker pool's state. Raises `NotAllowed` unless the caller administers the server
        they ask from (`bot.jobs.access.stats_scope`); the operator sees every server."""
        guild_id = None if caller.operator else access.stats_scope(caller)
        now = self._clock()
        midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
        async with self._sm() as session:
            counts = await db.count_by_status(session, guild_id=guild_id)
            today = await db.count_created_since(session, since=midnight, guild_id=guild_id)
            durations = [seconds for _, seconds, _ in await db.recent_runs(
                session, limit=10_000, since=midnight, guild_id=guild_id)]
        capacity, idle = self._executor.capacity, self._executor.idle
        return {
            "queue_depth": counts[JobStatus.queued], "running": counts[JobStatus.running],
            "workers": capacity, "busy": max(0, capacity - idle), "idle": idle,
            "batch_limit": self._executor.max_batch,
            "jobs_today": today,
            "avg_seconds_today": sum(durations) / len(durations) if durations else None,
        }

    # -- delivery bookkeeping --------------------------------------------------------------

    async def set_delivery(self, job_id: str, **fields: Any) -> None:
        """Records interaction_token, token_expires_at, application_id,
        progress_message_id, result_message_id or result_channel_id."""
        job_id = normalize_job_id(job_id)
        async with self._sm.begin() as session:
            if await db.set_delivery(session, job_id=job_id, fields=fields) == 0:
                raise JobNotFound(job_id)

    async def claim_delivery(self, job_id: str, *, for_s: float = DELIVERY_CLAIM_S) -> bool:
        """Claims the delivery of the job's result for this process for `for_s` seconds;
        False if it is delivered, or another live process has claimed it (the caller
        must not send it then). Of several processes asking at once exactly one gets
        True; a claim whose process has died on this host, or has expired, may be taken
        over. Raises `JobNotFound`."""
        job_id = normalize_job_id(job_id)
        async with self._sm.begin() as session:
            claimed = await leases.claim_delivery(session, job_id=job_id, now=self._clock(),
                                                  claimant=self.runner_id, for_s=for_s)
        if claimed is None:
            raise JobNotFound(job_id)
        return claimed

    async def release_delivery(self, job_id: str) -> None:
        """Gives up this process's claim on the job's delivery (it could not deliver)."""
        async with self._sm.begin() as session:
            await db.release_delivery(session, job_id=normalize_job_id(job_id),
                                      claimant=self.runner_id)

    async def mark_delivered(self, job_id: str, *, result_message_id: str | None = None,
                             result_channel_id: str | None = None) -> bool:
        """Marks the result delivered; False if it already was (the caller must not send
        it again). Atomic: of several concurrent callers exactly one gets True."""
        job_id = normalize_job_id(job_id)
        async with self._sm.begin() as session:
            return await db.mark_delivered(session, job_id=job_id, now=self._clock(),
                                           result_message_id=result_message_id,
                                           result_channel_id=result_channel_id)
