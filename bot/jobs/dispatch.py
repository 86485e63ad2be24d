"""The dispatch loop: queued rows -> the executor -> events -> rows and `JobEvent`s.

Three tasks share the work while the service runs:
- the scheduler claims the next job in fair order whenever the executor has a free
  worker (woken by submits and finished jobs, and every `poll_interval_s` so that jobs
  queued by another process sharing the database are seen too);
- the consumer turns executor events into row updates and events for the layer above;
- the heartbeat renews this process's leases, forwards cancel requests made by other
  processes, and puts orphaned jobs back in the queue.

Leases and recovery. A claimed job records `runner` ("host:pid:nonce") and
`lease_expires_at`; the heartbeat renews the lease while this process lives. Any
service sharing the database treats a running job as orphaned, and puts it back in the
queue with attempts + 1 (or marks it `dead` at `settings.max_attempts`), when its lease
has expired, or at once when its runner was a process on this host that no longer
exists. Recovery therefore never steals a job from another live process (a bot and a
`stylebot stylize` may share one database), and after a crash on one machine the job is
back in the queue as soon as the service starts again.

Long because the three tasks share one piece of state, the set of jobs this process is
running (`running`, with their batch and lease), and each changes it; split apart they
would hand that set around. They come apart when leases and recovery must also run in a
process with no executor of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.jobs import db, events
from bot.jobs.events import JobEvent
from bot.jobs.executor import Executor, ExecutorBusy
from bot.jobs.records import JobRecord, dead_message
from bot.jobs.scheduling import QueuedJob, claims_until, fair_order, riders
from bot.jobs.states import JobStatus
from bot.jobs.storage import BlobNotFound, BlobStorage
from bot.settings import Settings
from stylizer.pool import messages as pool

log = logging.getLogger(__name__)

LOST_CODE = "worker_died"
TASK_EXIT_S = 5.0  # how long stop() waits for the scheduler and heartbeat to end


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


class Dispatcher:
    def __init__(self, *, sessionmaker: async_sessionmaker[AsyncSession], storage: BlobStorage,
                 executor: Executor, settings: Settings, clock: Callable[[], datetime],
                 emit: Callable[[JobEvent], Awaitable[None]],
                 requeued: Callable[[JobRecord], Awaitable[None]],
                 lease_s: float, poll_interval_s: float, own_jobs_only: bool) -> None:
        self._sm = sessionmaker
        self._storage = storage
        self._executor = executor
        self._settings = settings
        self._clock = clock
        self._emit = emit
        self._requeued = requeued  # emits JobQueued with a fresh position
        self._lease = timedelta(seconds=lease_s)
        self._poll_s = poll_interval_s
        self._own_only = own_jobs_only
        self.runner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.own: set[str] = set()          # jobs submitted through this service
        self.running: set[str] = set()      # jobs this process handed to the executor
        self._cancel_sent: set[str] = set()
        self._final: dict[str, asyncio.Event] = {}
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._consumer: asyncio.Task[None] | None = None
        self._stopping = False
        self._closed = asyncio.Event()  # the executor has closed: background tasks end
        self._last_renewal = 0.0

    # -- life ------------------------------------------------------------------------------

    @property
    def started(self) -> bool:
        return self._consumer is not None

    async def start(self) -> None:
        if self.started:
            return
        self._stopping = False
        self._closed.clear()
        recovered = await self.recover()
        if recovered:
            log.info("recovery: %d orphaned job(s) back in the queue or finished", recovered)
        await self._executor.start()
        loop = asyncio.get_running_loop()
        self._consumer = loop.create_task(self._consume(), name="jobs-consumer")
        self._tasks = [loop.create_task(self._schedule_loop(), name="jobs-scheduler"),
                       loop.create_task(self._heartbeat_loop(), name="jobs-heartbeat")]
        self.wake()

    async def stop(self, grace_s: float) -> None:
        if not self.started:
            return
        self._stopping = True  # the scheduler claims nothing more
        self.wake()
        try:
            # The heartbeat keeps renewing leases while running jobs get their grace.
            killed = await self._executor.close(grace_s)
        finally:
            # Asked to end between transactions: a task cancelled inside one could leave
            # the database locked for the writes that follow.
            self._closed.set()
            _, late = await asyncio.wait(self._tasks, timeout=TASK_EXIT_S)
            for task in late:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if killed:
            log.info("stopping: %d job(s) cut short go back to the queue", len(killed))
        assert self._consumer is not None
        try:
            # The executor's events end once it has closed; drain what is left.
            await asyncio.wait_for(asyncio.shield(self._consumer), 10.0)
        except TimeoutError:
            log.warning("executor events did not end after close; dropping the rest")
            self._consumer.cancel()
            await asyncio.gather(self._consumer, return_exceptions=True)
        self._consumer = None
        await self._requeue_ours(set(killed) | self.running)

    def wake(self) -> None:
        self._wake.set()

    def final_event(self, job_id: str) -> asyncio.Event:
        return self._final.setdefault(job_id, asyncio.Event())

    def _done(self, job_id: str) -> None:
        self.running.discard(job_id)
        self._cancel_sent.discard(job_id)
        self.wake()

    def notify_final(self, job_id: str) -> None:
        """Wakes whoever waits for `job_id` to finish."""
        event = self._final.pop(job_id, None)
        if event is not None:
            event.set()

    def _finalised(self, record: JobRecord) -> None:
        self._done(record.id)
        self.own.discard(record.id)
        self.notify_final(record.id)

    # -- cancelling ------------------------------------------------------------------------

    async def cancel_running(self, job_id: str) -> None:
        """Stops a running job of this process (the row is marked `cancel_requested`)."""
        if job_id in self.running and job_id not in self._cancel_sent:
            self._cancel_sent.add(job_id)
            if not await self._executor.cancel(job_id):
                # Claimed but not yet handed over: the heartbeat asks again shortly.
                self._cancel_sent.discard(job_id)

    # -- scheduling ------------------------------------------------------------------------

    async def _schedule_loop(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                while not self._stopping and self._executor.idle > 0:
                    records = await self._claim_batch()
                    if not records or not await self._send(records):
                        break
            except Exception:
                log.exception("scheduling failed; trying again shortly")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll_s)

    async def fair_queue(self, session: AsyncSession) -> list[str]:
        """Queued job ids in the order workers will take them."""
        return [j.id for j in await self._fair_jobs(session)]

    async def claims_until(self, session: AsyncSession, job_id: str) -> int:
        """Hand-overs to workers (jobs or batches) until `job_id`'s, its own included."""
        return claims_until(await self._fair_jobs(session), job_id, self._executor.max_batch)

    async def _fair_jobs(self, session: AsyncSession,
                         only_ids: set[str] | None = None) -> list[QueuedJob]:
        queued = await db.queued_jobs(session, only_ids=only_ids)
        last = await db.last_served(session, user_ids={j.user_id for j in queued})
        jobs = {j.id: QueuedJob(j.id, j.user_id, j.created_at, j.batch_key, j.attempts)
                for j in queued}
        return [jobs[i] for i in fair_order(list(jobs.values()), last)]

    async def _claim_batch(self) -> list[JobRecord]:
        """Claims the next job in fair order and, riding along with it, queued jobs that
        can be painted in the same batch (same batch key), in fair order too: they cost
        the worker little extra and leave the queue sooner."""
        if self._own_only and not self.own:
            return []
        async with self._sm.begin() as session:
            order = await self._fair_jobs(session, self.own if self._own_only else None)
            if not order:
                return []
            wanted = [order[0].id, *(j.id for j in riders(order[0], order[1:],
                                                          self._executor.max_batch))]
            chosen = await db.get_jobs(session, job_ids=wanted)
            chosen.sort(key=lambda job: wanted.index(job.id))
            now = self._clock()
            for job in chosen:
                db.set_status(job, JobStatus.running, started_at=now, finished_at=None,
                              runner=self.runner, lease_expires_at=now + self._lease, step=0,
                              total_steps=int(job.params.get("steps", 0)))
            ids = {job.id for job in chosen}
            # Ours before the commit: recovery must never take them for orphans.
            self.running |= ids
            try:
                await session.commit()
            except BaseException:
                self.running -= ids
                raise
            return [JobRecord.from_row(job) for job in chosen]

    async def _send(self, records: list[JobRecord]) -> bool:
        """Hands claimed jobs to the executor as one batch; False if it had no room."""
        reqs: list[pool.JobRequest] = []
        for record in records:
            try:
                content = await self._storage.get_async(record.input_hash)
                style = await self._storage.get_async(record.style_hash or "")
            except (BlobNotFound, ValueError):
                log.exception("job %s: its stored images are missing", record.id)
                await self._end(record.id, JobStatus.failed, error_code="internal",
                                error_message="The picture for this job was lost; please "
                                              "send it again.")
                continue
            reqs.append(pool.JobRequest(job_id=record.id, content=content, styles=(style,),
                                   style_keys=(record.style_hash or "",),
                                   params=dict(record.params), attempt=record.attempts + 1))
        if not reqs:
            return True
        ids = [r.job_id for r in reqs]
        try:
            await self._executor.submit_batch(reqs)
        except ExecutorBusy:
            log.debug("jobs %s: no free worker after all; back to the queue", ", ".join(ids))
            await self._requeue_ours(set(ids))
            return False
        except Exception:
            # Whatever went wrong, the claimed jobs must not stay "running" with nobody
            # painting them: back to the queue, attempts unchanged.
            log.exception("could not hand jobs %s to the executor; back to the queue",
                          ", ".join(ids))
            await self._requeue_ours(set(ids))
            return False
        for req in reqs:
            log.info("job %s: sent to a worker (attempt %d, batch of %d)", req.job_id,
                     req.attempt, len(reqs))
        return True

    # -- events from the executor ----------------------------------------------------------

    async def _consume(self) -> None:
        try:
            async for event in self._executor.events():
                try:
                    await self._on_event(event)
                except Exception:
                    log.exception("could not record %s for job %s", type(event).__name__,
                                  event.job_id)
                    if not isinstance(event, pool.JobStarted | pool.JobProgress):
                        # Stop renewing its lease: recovery will run it again.
                        self._done(event.job_id)
        except Exception:
            log.exception("the executor's event stream broke; no more job events")

    async def _on_event(self, event: pool.PoolEvent) -> None:
        job_id = event.job_id
        if job_id not in self.running:
            log.warning("ignoring %s for job %s, which this process is not running",
                        type(event).__name__, job_id)
            return
        if isinstance(event, pool.JobStarted):
            record = await self._update(job_id)
            if record is not None:
                await self._emit(events.JobStarted(record.id, record))
        elif isinstance(event, pool.JobProgress):
            record = await self._update(job_id, step=event.step, total_steps=event.total)
            if record is not None:
                await self._emit(events.JobProgress(job_id, event.step, event.total,
                                                    event.preview_jpeg))
        elif isinstance(event, pool.JobSucceeded):
            digest = await self._storage.put_async(event.png)
            record = await self._end(job_id, JobStatus.succeeded, output_hash=digest)
            if record is not None:
                await self._emit(events.JobSucceeded(record.id, record, event.png))
        elif isinstance(event, pool.JobFailed):
            if event.retryable:
                if self._stopping and event.code == LOST_CODE:
                    return  # cut short by stop(); it goes back to the queue there
                await self._abnormal_end(job_id, event.code)
            else:
                record = await self._end(job_id, JobStatus.failed, error_code=event.code,
                                       error_message=event.message)
                if record is not None:
                    await self._emit(events.JobFailed(record.id, record))
        elif isinstance(event, pool.JobCancelled):
            record = await self._end(job_id, JobStatus.cancelled)
            if record is not None:
                await self._emit(events.JobCancelled(record.id, record))

    async def _ours_for_update(self, session: AsyncSession, job_id: str) -> db.Job | None:
        job = await db.get_job(session, job_id=job_id, for_update=True)
        if job is None or job.status != JobStatus.running.value or job.runner != self.runner:
            # Our lease ran out and another process took the job back; its new run counts.
            log.warning("job %s is no longer held by this process; dropping its event", job_id)
            self._done(job_id)
            return None
        return job

    async def _update(self, job_id: str, **fields: object) -> JobRecord | None:
        now = self._clock()
        async with self._sm.begin() as session:
            job = await self._ours_for_update(session, job_id)
            if job is None:
                return None
            for name, value in fields.items():
                setattr(job, name, value)
            job.lease_expires_at = now + self._lease
            return JobRecord.from_row(job)

    async def _end(self, job_id: str, status: JobStatus, **fields: object) -> JobRecord | None:
        now = self._clock()
        async with self._sm.begin() as session:
            job = await self._ours_for_update(session, job_id)
            if job is None:
                return None
            if status is JobStatus.succeeded:
                fields.setdefault("step", job.total_steps)
            db.set_status(job, status, finished_at=now, lease_expires_at=None, **fields)
            record = JobRecord.from_row(job)
        self._finalised(record)
        return record

    async def _abnormal_end(self, job_id: str, code: str) -> None:
        """A worker died under the job: retry it, or give up at max_attempts."""
        now = self._clock()
        async with self._sm.begin() as session:
            job = await self._ours_for_update(session, job_id)
            if job is None:
                return
            record = self._retry_or_bury(job, now, code)
        await self._after_abnormal_end(record)

    def _retry_or_bury(self, job: db.Job, now: datetime, code: str) -> JobRecord:
        """Mutates a running row after its run ended abnormally (attempts + 1)."""
        attempts = job.attempts + 1
        if job.cancel_requested:
            db.set_status(job, JobStatus.cancelled, finished_at=now, lease_expires_at=None)
        elif attempts >= self._settings.max_attempts:
            db.set_status(job, JobStatus.dead, attempts=attempts, finished_at=now,
                          lease_expires_at=None, error_code=code,
                          error_message=dead_message(attempts, code))
        else:
            db.set_status(job, JobStatus.queued, attempts=attempts, lease_expires_at=None,
                          step=0)
        return JobRecord.from_row(job)

    async def _after_abnormal_end(self, record: JobRecord) -> None:
        if record.status is JobStatus.queued:
            self._done(record.id)
            log.warning("job %s: its run ended abnormally; back in the queue (attempt %d "
                        "of %d)", record.id, record.attempts + 1, self._settings.max_attempts)
            await self._requeued(record)
            return
        self._finalised(record)
        if record.status is JobStatus.cancelled:
            await self._emit(events.JobCancelled(record.id, record))
        else:
            log.error("job %s: dead after %d attempts", record.id, record.attempts)
            await self._emit(events.JobFailed(record.id, record))

    async def _requeue_ours(self, job_ids: set[str]) -> None:
        """Puts jobs this process was running back in the queue, attempts unchanged."""
        if not job_ids:
            return
        now = self._clock()
        cancelled: list[JobRecord] = []
        async with self._sm.begin() as session:
            for job in await db.get_jobs(session, job_ids=job_ids):
                if job.status != JobStatus.running.value or job.runner != self.runner:
                    continue
                if job.cancel_requested:
                    db.set_status(job, JobStatus.cancelled, finished_at=now,
                                  lease_expires_at=None)
                    cancelled.append(JobRecord.from_row(job))
                else:
                    db.set_status(job, JobStatus.queued, lease_expires_at=None, step=0)
        for job_id in job_ids:
            self._done(job_id)
        for record in cancelled:
            self._finalised(record)
            await self._emit(events.JobCancelled(record.id, record))

    # -- heartbeat and recovery ------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:  # until the executor has closed (see stop)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closed.wait(), self._poll_s)
            if self._closed.is_set():
                return
            try:
                ids = sorted(self.running)
                renew = loop.time() - self._last_renewal >= self._lease.total_seconds() / 3
                async with self._sm.begin() as session:
                    if renew and ids:
                        await db.renew_leases(session, job_ids=ids, runner=self.runner,
                                              until=self._clock() + self._lease)
                    to_cancel = await db.cancel_requested_ids(session, job_ids=ids)
                if renew:
                    self._last_renewal = loop.time()
                for job_id in to_cancel:
                    await self.cancel_running(job_id)
                await self.recover()
            except Exception:
                log.exception("heartbeat failed; trying again shortly")

    async def recover(self) -> int:
        """Puts orphaned running jobs back in the queue (or buries them); returns how many."""
        now = self._clock()
        records: list[JobRecord] = []
        async with self._sm.begin() as session:
            for job in await db.jobs_with_status(session, statuses=[JobStatus.running],
                                                 for_update=True):
                if job.id in self.running:
                    continue
                lease = job.lease_expires_at
                expired = lease is None or lease <= now
                # Our own rows we no longer hold (an event we could not record) wait for
                # their lease; another runner's, also for proof that its process is gone.
                if not expired and (job.runner == self.runner
                                    or not runner_is_gone(job.runner)):
                    continue
                log.warning("job %s: its runner %s is gone (lease until %s); recovering it",
                            job.id, job.runner, lease)
                records.append(self._retry_or_bury(job, now, LOST_CODE))
        for record in records:
            await self._after_abnormal_end(record)
        return len(records)
