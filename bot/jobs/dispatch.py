"""The dispatch loop: queued rows -> the executor -> events -> rows and `JobEvent`s.

Three tasks share the work while the service runs:
- the scheduler claims the next batch in fair order (`bot.jobs.queue.claim_batch`)
  whenever the executor has a free worker; it is woken by submits and finished jobs in
  this process, on PostgreSQL by other processes' notifications (`bot.jobs.notify`), and
  every `poll_interval_s` in any case;
- the consumer turns executor events into row writes, each fenced on this process's
  runner id (`bot.jobs.db.fenced_update`), and into events for the layer above;
- the heartbeat renews this process's leases, stops the jobs whose lease another process
  has taken back, forwards cancel requests made by other processes, and recovers
  orphaned jobs (`bot.jobs.leases`).

They share one piece of state, the set of jobs this process is running (`running`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.jobs import events, leases, notify, scheduling
from bot.jobs.errors import OutOfStorage
from bot.jobs.events import JobEvent
from bot.jobs.executor import Executor, ExecutorBusy
from bot.jobs.records import JobRecord
from bot.jobs.states import JobStatus
from bot.jobs.storage import BlobNotFound, BlobStore
from bot.settings import Settings
from stylizer.pool import messages as pool

log = logging.getLogger(__name__)

LOST_CODE = leases.LOST_CODE
TASK_EXIT_S = 5.0  # how long stop() waits for the scheduler and heartbeat to end
UNSTORED_MESSAGE = "The bot ran out of storage while saving your painting. Please try again later."


class Dispatcher:
    def __init__(self, *, sessionmaker: async_sessionmaker[AsyncSession], storage: BlobStore,
                 executor: Executor, settings: Settings, clock: Callable[[], datetime],
                 emit: Callable[[JobEvent], Awaitable[None]],
                 requeued: Callable[[JobRecord], Awaitable[None]],
                 lease_s: float, poll_interval_s: float, own_jobs_only: bool,
                 listener: notify.Listener | None = None) -> None:
        self._storage = storage
        self._executor = executor
        self._settings = settings
        self._emit = emit
        self._requeued = requeued  # emits JobQueued with a fresh position
        self._poll_s = poll_interval_s
        self._own_only = own_jobs_only
        self._leases = leases.Leases(sessionmaker=sessionmaker, clock=clock, lease_s=lease_s,
                                     max_attempts=settings.max_attempts)
        self.runner = self._leases.runner
        self.own: set[str] = set()          # jobs submitted through this service
        self.running: set[str] = set()      # jobs this process handed to the executor
        self._cancel_sent: set[str] = set()
        self._final: dict[str, asyncio.Event] = {}
        self._wake = asyncio.Event()
        self._beat = asyncio.Event()        # the heartbeat's next round, now
        self._tasks: list[asyncio.Task[None]] = []
        self._consumer: asyncio.Task[None] | None = None
        self._stopping = False
        self._closed = asyncio.Event()  # the executor has closed: background tasks end
        self._last_renewal = 0.0
        if listener is not None:
            listener.subscribe(notify.QUEUED, self._on_queued)
            listener.subscribe(notify.CHANGED, self._on_changed)

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
            self._beat.set()
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
        await self._leases.close()

    def wake(self) -> None:
        self._wake.set()

    def _on_queued(self, job_id: str, version: int) -> None:
        if self.started and not self._stopping and self._executor.idle > 0:
            self.wake()

    def _on_changed(self, job_id: str, version: int) -> None:
        if job_id in self.running:  # perhaps a cancel request: look now
            self._beat.set()

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

    async def _lost(self, job_id: str, *, stop: bool) -> None:
        """Another process has taken the job back (this process's lease ran out): its run
        here no longer counts; with `stop`, the worker painting it is stopped."""
        log.warning("job %s is no longer held by this process (its lease ran out and "
                    "another process took it back); dropping its run here", job_id)
        was_running = job_id in self.running
        self._done(job_id)
        if stop and was_running:
            try:
                await self._executor.cancel(job_id)
            except Exception:
                log.exception("could not stop job %s, taken back by another process", job_id)

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

    async def _claim_batch(self) -> list[JobRecord]:
        """Claims the next batch in fair order for this process (`Leases.claim`)."""
        if self._own_only and not self.own:
            return []
        return await self._leases.claim(max_batch=self._executor.max_batch,
                                        only_ids=set(self.own) if self._own_only else None,
                                        held=self.running)

    async def _send(self, records: list[JobRecord]) -> bool:
        """Hands claimed jobs to the executor as one batch; False if it had no room."""
        reqs: list[pool.JobRequest] = []
        for record in records:
            try:
                content = await self._storage.get_async(record.input_hash or "")
                style = await self._storage.get_async(record.style_hash or "")
            except (BlobNotFound, ValueError):
                log.exception("job %s: its stored images are missing", record.id)
                await self._end(record.id, JobStatus.failed, error_code="internal",
                                error_message="The picture for this job was lost; please "
                                              "send it again.")
                continue
            reqs.append(pool.JobRequest(job_id=record.id, content=content, styles=(style,),
                                        style_keys=(record.style_hash or "",),
                                        params=dict(record.params), attempt=record.attempts,
                                        work=scheduling.work(record.frames)))
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
            record = await self._update(job_id, preview=event.preview_jpeg, step=event.step,
                                        total_steps=event.total, frame=event.frame,
                                        frames=event.frames)
            if record is not None:
                await self._emit(events.JobProgress(job_id, event.step, event.total,
                                                    event.preview_jpeg, event.frame,
                                                    event.frames))
        elif isinstance(event, pool.JobSucceeded):
            try:
                digest = await self._storage.put_async(event.png)
            except OSError as exc:
                await self._unstored(job_id, exc)
                return
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

    async def _update(self, job_id: str, *, preview: bytes | None = None,
                      **fields: Any) -> JobRecord | None:
        record = await self._leases.progress(job_id, preview=preview, **fields)
        if record is None:
            await self._lost(job_id, stop=True)
        return record

    async def _end(self, job_id: str, status: JobStatus, **fields: Any) -> JobRecord | None:
        record = await self._leases.finish(job_id, status, **fields)
        if record is None:
            await self._lost(job_id, stop=False)
            return None
        self._finalised(record)
        return record

    async def _unstored(self, job_id: str, exc: OSError) -> None:
        """The painting could not be stored (a full disk, most likely): the job fails with
        `OutOfStorage`'s code and nothing of it is kept (the store writes atomically)."""
        log.error("job %s: its painting could not be stored (%s); the job fails. Free some "
                  "space for the image store (see STYLEBOT_MIN_FREE_MB)", job_id, exc)
        record = await self._end(job_id, JobStatus.failed, error_code=OutOfStorage.code,
                                 error_message=UNSTORED_MESSAGE)
        if record is not None:
            await self._emit(events.JobFailed(record.id, record))

    async def _abnormal_end(self, job_id: str, code: str) -> None:
        """A worker died under the job: retry it, or give up at max_attempts."""
        # Forgotten before it goes back to the queue: from then on this process may claim
        # it again at once (a notification wakes the scheduler), and that run must stay.
        self.running.discard(job_id)
        self._cancel_sent.discard(job_id)
        record = await self._leases.end_abnormally(job_id, code)
        if record is None:
            await self._lost(job_id, stop=False)
            return
        await self._after_abnormal_end(record)

    async def _after_abnormal_end(self, record: JobRecord) -> None:
        """Reports a run that ended abnormally, this process's or one recovered from
        another runner. That run is not in `running` (this process's was forgotten before
        it was put back; a recovered one never was), but the job may be again by now: this
        process can claim it while the ended run is being reported, and that new run must
        stay there (else its lease would go unrenewed and its events ignored)."""
        if record.status is JobStatus.queued:
            self.wake()  # ours was forgotten before it was put back (`_abnormal_end`)
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
        records = await self._leases.put_back(job_ids)
        for job_id in job_ids:
            self._done(job_id)
        for record in records:
            if record.status is JobStatus.cancelled:
                self._finalised(record)
                await self._emit(events.JobCancelled(record.id, record))

    # -- heartbeat and recovery ------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        while True:  # until the executor has closed (see stop)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._beat.wait(), self._poll_s)
            self._beat.clear()
            if self._closed.is_set():
                return
            try:
                await self._heartbeat()
            except Exception:
                log.exception("heartbeat failed; trying again shortly")

    async def _heartbeat(self) -> None:
        loop = asyncio.get_running_loop()
        renew = loop.time() - self._last_renewal >= self._leases.lease.total_seconds() / 3
        lost, to_cancel = await self._leases.heartbeat(set(self.running), renew=renew)
        if renew:
            self._last_renewal = loop.time()
        for job_id in lost:
            await self._lost(job_id, stop=True)
        for job_id in to_cancel:
            await self.cancel_running(job_id)
        await self.recover()

    async def recover(self) -> int:
        """Recovers orphaned running jobs (`leases.recover`); returns how many."""
        records = await self._leases.recover(self.running)
        for record in records:
            await self._after_abnormal_end(record)
        return len(records)
