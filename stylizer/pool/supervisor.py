"""`WorkerPool`: N warm worker processes, each holding VGG19, supervised from asyncio.

The supervisor never imports torch, so the bot process never initialises CUDA. Workers
are forked from a `forkserver` that has imported torch, torchvision and the engine once
(and never touched CUDA): a second worker, or the replacement of a dead one, skips the
import that dominates start-up. Where there is no forkserver, workers are spawned. Each
worker has its own pipes (a worker killed mid-write can only garble its own channel,
never a shared queue's lock) and shared integers through which a job of its batch is
cancelled.

State lives on the event loop; a reader thread (`PipeReader`) only moves messages and
exit notices onto it. A worker that dies is replaced at once and its job reported as
`JobFailed("worker_died", retryable=True)`; a job past `job_timeout_s` has its worker
killed and replaced and is reported as `JobFailed("timeout")`. A worker that leaves after
an unexpected error says so before its last events and is never handed another job; a
hand-over that fails (the worker died unseen) is refused with `PoolBusy`, so that the
caller puts the jobs back rather than counting a run that never began.

Workers log nothing themselves: their records come up their pipes (`WorkerLog`) and are
logged here, through whatever handlers this process's entry point configured.

Long because it is one state machine over its worker processes (start, hand-over,
deadlines, deaths, replacement, shutdown), and every transition reads and changes the
same table of workers and their jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import multiprocessing
import os
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.context import ForkServerContext, SpawnContext
from multiprocessing.process import BaseProcess
from typing import Any

from stylizer.config import EngineConfig
from stylizer.pool.messages import (
    JobCancelled,
    JobFailed,
    JobProgress,
    JobRequest,
    JobStarted,
    JobSucceeded,
    PoolEvent,
    WorkerLeaving,
    WorkerLog,
    WorkerReady,
    WorkerStartFailed,
)
from stylizer.pool.reader import PipeReader
from stylizer.pool.spec import MAX_BATCH, SharedInts, WorkerSpec
from stylizer.pool.worker import EXIT_RECYCLE, worker_main

log = logging.getLogger(__name__)

WorkerTarget = Callable[[WorkerSpec], None]

TICK_S = 0.25  # how often the watchdog looks at deadlines
KILL_GRACE_S = 1.0  # from SIGTERM to SIGKILL
# How long close() waits for a process that was asked to exit, and the watchdog for one
# that said it was leaving.
EXIT_WAIT_S = 5.0
MAX_RESPAWN_DELAY_S = 60.0
# What the forkserver imports once, before it forks any worker: the seconds of a worker's
# start-up that are the same in every worker. stylizer.engine imports torchvision already
# (for VGG19's layers); it is named so that it stays preloaded if that ever changes.
FORKSERVER_PRELOAD = ["torch", "torchvision", "stylizer.engine"]
# The batch limit when none is configured: on a GPU one large batch runs many jobs in
# little more time than one; a CPU is busy with one job already, so batching would only
# delay the first result.
AUTO_BATCH_GPU = 16


class PoolBusy(RuntimeError):
    """No idle worker: call `submit` only while `idle > 0`."""


class PoolClosed(PoolBusy):
    """The pool is not running (not started yet, or closing)."""


class PoolStartError(RuntimeError):
    """A worker could not start; `code` and `message` say why (e.g. missing weights)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class _Job:
    job_id: str
    seq: int
    slot: int  # position in its batch: its cell in the worker's cancel array


@dataclass(eq=False)
class _Worker:
    """One worker process; its replacement is a new `_Worker` under the same worker_id."""

    worker_id: int
    process: BaseProcess
    pid: int
    inbox: Connection
    cancel: SharedInts
    started_at: float
    ready: bool = False
    jobs: dict[str, _Job] = field(default_factory=dict)  # the batch it is painting
    deadline: float = 0.0  # for the whole batch
    # Being stopped on purpose (timeout, close): its messages and its exit mean nothing.
    retired: bool = False
    # Exits after its batch's last events (WorkerLeaving): takes no more jobs.
    leaving: bool = False
    leaving_since: float = 0.0
    start_failure: WorkerStartFailed | None = None
    sending: bool = False  # a batch is being written to its inbox
    exited: asyncio.Event = field(default_factory=asyncio.Event)
    exit_code: int | None = None


class WorkerPool:
    """A supervised pool of worker processes; see the module docstring."""

    def __init__(self, *, engine: EngineConfig | None = None, workers: int = 1,
                 job_timeout_s: float = 600.0, preview_interval_s: float = 4.0,
                 worker_target: WorkerTarget | None = None, start_timeout_s: float = 300.0,
                 max_batch: int | None = None, warm_up: bool = True,
                 start_method: str | None = None) -> None:
        """`engine`: every worker's engine settings (None: `EngineConfig()`'s defaults).
        `max_batch`: the most compatible jobs one worker paints at once (None: 16 on a GPU,
        1 on a CPU). `job_timeout_s` is per job: a batch of n gets n times as long, an animation
        its `JobRequest.work` times as long."""
        if workers < 1:
            raise ValueError("a pool needs at least one worker")
        if max_batch is not None and not 1 <= max_batch <= MAX_BATCH:
            raise ValueError(f"max_batch must be between 1 and {MAX_BATCH}")
        self._max_batch = max_batch
        self._warm_up = warm_up
        self._on_gpu = False  # a worker has reported a CUDA device (sticky across restarts)
        self._n = workers
        self._engine = engine if engine is not None else EngineConfig()
        self._job_timeout_s = job_timeout_s
        self._preview_interval_s = preview_interval_s
        self._target: WorkerTarget = worker_target or worker_main
        self._start_timeout_s = start_timeout_s
        self._ctx = _worker_context(start_method)
        self._cpu_threads = threads_per_worker(workers)
        self._state = "new"  # -> running -> closing -> closed
        self._slots: dict[int, _Worker] = {}
        self._all: set[_Worker] = set()  # every process not yet reaped
        self._jobs: dict[str, _Worker] = {}
        self._seq = itertools.count(1)
        self._respawn_delay: dict[int, float] = {}
        self._events: asyncio.Queue[PoolEvent | None] = asyncio.Queue()
        self._changed = asyncio.Event()
        self._reader: PipeReader[_Worker] | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._close_task: asyncio.Future[list[str]] | None = None
        self._close_deadline = math.inf  # time.monotonic() when running jobs are killed
        self._start_error: PoolStartError | None = None
        self._consuming = False

    # -- the executor interface ------------------------------------------------------------

    @property
    def capacity(self) -> int:
        """Live workers that have loaded their model."""
        return sum(1 for w in self._slots.values()
                   if w.ready and not w.retired and not w.leaving)

    @property
    def max_batch(self) -> int:
        """The most jobs `submit_batch` takes at once."""
        if self._max_batch is not None:
            return self._max_batch
        return AUTO_BATCH_GPU if self._on_gpu else 1

    @property
    def idle(self) -> int:
        """Workers that would take a job now."""
        if self._state != "running":
            return 0
        return sum(1 for w in self._slots.values() if self._is_idle(w))

    def worker_pids(self) -> dict[int, int]:
        """worker_id -> pid of each live worker process (for status pages and tests)."""
        return {i: w.pid for i, w in self._slots.items() if not w.retired}

    async def start(self) -> None:
        """Spawns the workers and returns once every one has loaded its model.

        Raises `PoolStartError` (and stops whatever started) if a worker cannot start.
        """
        if self._state != "new":
            raise RuntimeError("a pool starts once")
        loop = asyncio.get_running_loop()
        self._reader = PipeReader(loop, self._on_message, self._on_exit)
        self._reader.start()
        self._state = "starting"
        try:
            for worker_id in range(self._n):
                self._spawn(worker_id)
            await self._wait_ready()
        except BaseException:
            await self.close(0.0)
            raise
        self._state = "running"
        self._watchdog = loop.create_task(self._watch(), name="stylizer-pool-watchdog")
        if self._engine.device == "auto" and not self._on_gpu:
            # An operator who expected a GPU (a container started without one, a driver
            # mismatch) learns it here, not from users waiting minutes for a painting.
            log.warning("worker pool ready: %d on the CPU, as no CUDA device was found; "
                        "each painting takes minutes instead of seconds", self._n)
        else:
            log.info("worker pool ready: %d on %s", self._n,
                     "the GPU" if self._on_gpu else self._engine.device)

    async def submit(self, req: JobRequest) -> None:
        """Hands `req` to an idle worker; its events follow on `events()`."""
        await self.submit_batch([req])

    async def submit_batch(self, reqs: Sequence[JobRequest]) -> None:
        """Hands up to `max_batch` jobs to one idle worker, which paints those of the same
        size and parameters together; each job's events follow on `events()`."""
        if self._state != "running":
            raise PoolClosed("The painter is not taking jobs right now.")
        if not reqs or len(reqs) > max(self.max_batch, 1):
            raise ValueError(f"a batch holds 1 to {self.max_batch} jobs, not {len(reqs)}")
        ids = [r.job_id for r in reqs]
        if len(set(ids)) != len(ids) or any(i in self._jobs for i in ids):
            raise ValueError(f"jobs {', '.join(ids)}: one is already running or repeated")
        w = next((w for w in self._slots.values() if self._is_idle(w)), None)
        if w is None:
            raise PoolBusy("Every painter is busy.")
        batch = []
        for slot, req in enumerate(reqs):
            job = _Job(req.job_id, next(self._seq), slot)
            w.jobs[req.job_id] = job
            self._jobs[req.job_id] = w
            batch.append((job.seq, req))
        w.deadline = time.monotonic() + self._job_timeout_s * sum(r.work for r in reqs)
        w.sending = True
        try:
            # A pipe write blocks until the worker has read big images; keep it off the loop.
            await asyncio.to_thread(w.inbox.send, batch)
        except (OSError, ValueError) as exc:
            # The worker died before it could read them (its exit may not have been seen
            # yet): no run began, so the jobs go back to the caller rather than being
            # reported as worker_died, which would charge each an attempt.
            for job_id in ids:
                if w.jobs.pop(job_id, None) is not None:
                    self._jobs.pop(job_id, None)
            log.warning("could not hand jobs %s to worker %d (%s); giving them back",
                        ", ".join(ids), w.worker_id, exc)
            raise PoolBusy("The painter stopped before it could take the job.") from exc
        finally:
            w.sending = False
            if w.exited.is_set():
                w.inbox.close()
        if w.exited.is_set():
            # It exited after the jobs were written, perhaps after reading them: a run may
            # have begun (a job that kills its worker must run out of attempts).
            self._report_died(w)

    async def cancel(self, job_id: str) -> bool:
        """Asks the job's worker to stop; it reports `JobCancelled` within one step.
        False if the pool holds no such job (not submitted, or already finished)."""
        w = self._jobs.get(job_id)
        job = w.jobs.get(job_id) if w is not None else None
        if w is None or job is None:
            return False
        w.cancel[job.slot] = job.seq
        return True

    async def events(self) -> AsyncIterator[PoolEvent]:
        """Every job event, in order, until the pool has closed. One consumer only."""
        if self._consuming:
            raise RuntimeError("events() has one consumer")
        self._consuming = True
        try:
            while (event := await self._events.get()) is not None:
                yield event
            self._events.put_nowait(None)  # the end stays the end for a later call
        finally:
            self._consuming = False

    async def close(self, grace_s: float = 30.0) -> list[str]:
        """Stops taking jobs, lets running ones finish for up to `grace_s`, then kills the
        rest; returns the ids of the jobs killed (no event is sent for them). Every worker
        process is reaped before it returns. Safe to call again, or from a signal handler's
        task: later calls wait for the first one and return the same ids; a later call
        with less grace cuts the first one's short (a second Ctrl-C)."""
        self._close_deadline = min(self._close_deadline, time.monotonic() + grace_s)
        if self._close_task is None:
            self._close_task = asyncio.ensure_future(self._shutdown())
        else:
            # A close waiting out its grace re-reads the deadline. Only then: on a first
            # close, waking a start() that is waiting for its workers could let it see
            # them ready before the shutdown has begun, and say it started.
            self._changed.set()
        # Shielded: a caller cancelled while waiting must not leave processes behind.
        return await asyncio.shield(self._close_task)

    # -- processes -------------------------------------------------------------------------

    def _is_idle(self, w: _Worker) -> bool:
        return w.ready and not w.retired and not w.leaving and not w.jobs

    def _spawn(self, worker_id: int) -> None:
        assert self._reader is not None
        inbox_r, inbox_w = self._ctx.Pipe(duplex=False)
        outbox_r, outbox_w = self._ctx.Pipe(duplex=False)
        cancel: SharedInts = self._ctx.RawArray("q", MAX_BATCH)
        spec = WorkerSpec(worker_id=worker_id, engine=self._engine,
                          preview_interval_s=self._preview_interval_s,
                          log_level=logging.getLogger().getEffectiveLevel(),
                          cpu_threads=self._cpu_threads, inbox=inbox_r, outbox=outbox_w,
                          cancel=cancel, warm_up=self._warm_up)
        process = self._ctx.Process(target=self._target, args=(spec,), daemon=True,
                                    name=f"stylizer-worker-{worker_id}")
        process.start()
        # Only the worker keeps these ends, so each side sees EOF when the other goes.
        inbox_r.close()
        outbox_w.close()
        w = _Worker(worker_id, process, process.pid or 0, inbox_w, cancel, time.monotonic())
        self._slots[worker_id] = w
        self._all.add(w)
        self._reader.watch(w, outbox_r, process.sentinel)
        log.debug("worker %d started (pid %d)", worker_id, w.pid)

    async def _wait_ready(self) -> None:
        deadline = time.monotonic() + self._start_timeout_s
        while True:
            if self._start_error is not None:
                raise self._start_error
            if self._state != "starting":  # close() was called meanwhile
                raise PoolClosed("The pool was closed while it was starting.")
            if all(w.ready for w in self._slots.values()):
                return
            left = deadline - time.monotonic()
            if left <= 0:
                raise PoolStartError("timeout", "The painting workers took too long to start.")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)

    def _retire(self, w: _Worker) -> None:
        """Stops `w` for good: SIGTERM, then SIGKILL if it is still there after a moment."""
        w.retired = True
        for job_id in w.jobs:
            self._jobs.pop(job_id, None)
        w.jobs.clear()
        task = asyncio.get_running_loop().create_task(self._kill(w))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _kill(self, w: _Worker) -> None:
        if w.exited.is_set():
            return
        w.process.terminate()
        try:
            await asyncio.wait_for(w.exited.wait(), KILL_GRACE_S)
        except TimeoutError:
            log.warning("worker %d (pid %d) ignored SIGTERM; killing it", w.worker_id, w.pid)
            if not w.exited.is_set():
                w.process.kill()

    def _schedule_respawn(self, worker_id: int, was_ready: bool) -> None:
        # A worker that dies before it is ready (weights gone, driver broken) would die
        # again at once: back off instead of spinning.
        delay = 0.0
        if not was_ready:
            delay = min(self._respawn_delay.get(worker_id, 0.5) * 2, MAX_RESPAWN_DELAY_S)
            self._respawn_delay[worker_id] = delay

        def respawn() -> None:
            if self._state != "running" or worker_id in self._slots:
                return
            try:
                self._spawn(worker_id)
            except Exception:  # e.g. out of file descriptors: try again later
                log.exception("could not start worker %d", worker_id)
                self._schedule_respawn(worker_id, was_ready=False)

        loop = asyncio.get_running_loop()
        if delay:
            log.warning("worker %d failed to start; trying again in %.0f s", worker_id, delay)
            loop.call_later(delay, respawn)
        else:
            loop.call_soon(respawn)

    # -- callbacks from the reader thread (on the loop) ------------------------------------

    def _emit(self, event: PoolEvent) -> None:
        self._events.put_nowait(event)

    def _on_message(self, w: _Worker, msg: Any) -> None:
        if isinstance(msg, WorkerLog):
            _log_record(msg)  # even from a retired worker: it says what went wrong
            return
        if w.retired:
            return
        if isinstance(msg, WorkerLeaving):
            w.leaving, w.leaving_since = True, time.monotonic()
            log.debug("worker %d (pid %d) takes no more jobs", w.worker_id, w.pid)
        elif isinstance(msg, WorkerReady):
            w.ready = True
            self._on_gpu = self._on_gpu or msg.device.startswith("cuda")
            self._respawn_delay.pop(w.worker_id, None)
            log.info("worker %d ready (pid %d, %s)", w.worker_id, msg.pid, msg.device)
        elif isinstance(msg, WorkerStartFailed):
            w.start_failure = msg
            log.error("worker %d cannot start: %s", w.worker_id, msg.message)
            if self._state == "starting" and self._start_error is None:
                self._start_error = PoolStartError(msg.code, msg.message)
        elif isinstance(msg, JobStarted | JobProgress):
            if msg.job_id in w.jobs:
                self._emit(msg)
        elif isinstance(msg, JobSucceeded | JobFailed | JobCancelled):
            if w.jobs.pop(msg.job_id, None) is not None:
                self._jobs.pop(msg.job_id, None)
                self._emit(msg)
                if self._state == "closing" and not w.jobs:
                    self._ask_to_exit(w)
        else:
            log.warning("worker %d sent something unexpected: %r", w.worker_id, type(msg))
        self._changed.set()

    def _on_exit(self, w: _Worker) -> None:
        w.process.join(timeout=1.0)  # it has exited: this reaps it at once
        code = w.exit_code = w.process.exitcode
        w.exited.set()
        if not w.sending:
            w.inbox.close()
        self._all.discard(w)
        if code is not None:
            w.process.close()
        if self._slots.get(w.worker_id) is w:
            del self._slots[w.worker_id]
        if w.jobs and not w.retired and not w.sending:  # submit_batch settles a hand-over
            self._report_died(w)
        elif code == EXIT_RECYCLE:
            log.info("worker %d (pid %d) left after an unexpected error; replacing it",
                     w.worker_id, w.pid)
        elif not w.retired and self._state == "running":
            log.warning("worker %d (pid %d) exited with code %s", w.worker_id, w.pid, code)
        if self._state == "starting" and self._start_error is None:
            self._start_error = PoolStartError("internal", f"Worker {w.worker_id} exited while "
                                               f"starting (exit code {code}).")
        if self._state == "running":
            self._schedule_respawn(w.worker_id, w.ready)
        self._changed.set()

    def _report_died(self, w: _Worker) -> None:
        """Reports the jobs of a worker that has exited as `worker_died` (retryable)."""
        lost, w.jobs = list(w.jobs), {}
        if not lost or w.retired:
            return
        log.error("worker %d (pid %d) died with exit code %s during job(s) %s",
                  w.worker_id, w.pid, w.exit_code, ", ".join(lost))
        for job_id in lost:
            self._jobs.pop(job_id, None)
            self._emit(JobFailed(job_id, "worker_died", "The painter stopped unexpectedly.",
                                 retryable=True))

    # -- the watchdog ----------------------------------------------------------------------

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            now = time.monotonic()
            for w in list(self._slots.values()):
                if w.retired:
                    continue
                if w.jobs and now > w.deadline:
                    job_ids = list(w.jobs)
                    log.error("job(s) %s ran past %.0f s each; killing worker %d (pid %d)",
                              ", ".join(job_ids), self._job_timeout_s, w.worker_id, w.pid)
                    self._retire(w)
                    for job_id in job_ids:
                        self._emit(JobFailed(job_id, "timeout", _timeout_message(
                            self._job_timeout_s), retryable=False))
                elif w.leaving and not w.jobs and now - w.leaving_since > EXIT_WAIT_S:
                    # It would never be replaced: a leaving worker takes no jobs.
                    log.warning("worker %d (pid %d) said it was leaving but is still here; "
                                "replacing it", w.worker_id, w.pid)
                    self._retire(w)
                elif not w.ready and now - w.started_at > self._start_timeout_s:
                    log.error("worker %d (pid %d) did not get ready in %.0f s; replacing it",
                              w.worker_id, w.pid, self._start_timeout_s)
                    self._retire(w)

    # -- shutting down ---------------------------------------------------------------------

    def _ask_to_exit(self, w: _Worker) -> None:
        try:
            w.inbox.send(None)
        except (OSError, ValueError):  # already gone; its exit is on the way
            pass

    async def _shutdown(self) -> list[str]:
        if self._state in ("new", "closed"):
            self._state = "closed"
            self._events.put_nowait(None)
            return []
        self._state = "closing"
        for w in list(self._slots.values()):
            if w.retired:
                continue
            if not w.ready:
                self._retire(w)
            elif not w.jobs:
                self._ask_to_exit(w)
        while self._jobs and (left := self._close_deadline - time.monotonic()) > 0:
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)
        killed = list(self._jobs)
        if killed:
            log.warning("stopping %d job(s) still running: %s", len(killed), ", ".join(killed))
        for w in list(self._slots.values()):
            if w.jobs:
                self._retire(w)
        await self._reap_all()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=KILL_GRACE_S)
        if self._watchdog is not None:
            self._watchdog.cancel()
        if self._reader is not None:
            self._reader.stop()
            await asyncio.to_thread(self._reader.join)
        self._state = "closed"
        self._events.put_nowait(None)
        log.info("worker pool closed")
        return killed

    async def _reap_all(self) -> None:
        pending = list(self._all)
        if not pending:
            return
        waits = [asyncio.ensure_future(w.exited.wait()) for w in pending]
        _, late = await asyncio.wait(waits, timeout=EXIT_WAIT_S)
        if late:
            for w in pending:
                if not w.exited.is_set() and not w.retired:
                    log.warning("worker %d (pid %d) did not exit; killing it", w.worker_id,
                                w.pid)
                    self._retire(w)
            await asyncio.wait(late, timeout=EXIT_WAIT_S + KILL_GRACE_S)
        for fut in waits:
            fut.cancel()
        for w in list(self._all):  # a process that even SIGKILL did not end (stuck in D state)
            log.error("worker %d (pid %d) is still running after SIGKILL", w.worker_id, w.pid)


def _log_record(msg: WorkerLog) -> None:
    """Logs a worker's record here, as if this process had written it (the logger's level
    and the handlers' formats, destinations and filters apply)."""
    record = msg.to_record()
    logger = logging.getLogger(record.name)
    if logger.isEnabledFor(record.levelno):
        logger.handle(record)


def _worker_context(start_method: str | None) -> ForkServerContext | SpawnContext:
    """The multiprocessing context that workers start from: "forkserver", or "spawn"; None
    picks the forkserver where the platform has one. A forkserver context preloads
    FORKSERVER_PRELOAD (the forkserver is one per process and reads it when it starts), so
    a second worker, or a dead one's replacement, starts with torch already imported.
    `ValueError` for any other method: never fork a process that may have threads or a
    CUDA context."""
    if start_method is None:
        methods = multiprocessing.get_all_start_methods()
        start_method = "forkserver" if "forkserver" in methods else "spawn"
    if start_method == "forkserver":
        forkserver = multiprocessing.get_context("forkserver")
        forkserver.set_forkserver_preload(FORKSERVER_PRELOAD)
        return forkserver
    if start_method == "spawn":
        return multiprocessing.get_context("spawn")
    raise ValueError("workers start by forkserver or spawn: never fork a process that may "
                     "have threads or a CUDA context")


def threads_per_worker(workers: int) -> int:
    """Torch's intra-op threads in each of `workers` processes on the CPU: the usable CPUs
    shared out, unless OMP_NUM_THREADS says how many (the OpenMP convention; for several
    pools on one machine, which cannot see each other: two `stylebot worker`s each taking
    every CPU put twice as many spinning threads as cores, and together paint a third as
    many jobs as one alone: benchmarks/queue_throughput.py)."""
    given = os.environ.get("OMP_NUM_THREADS", "").strip()
    if given.isdigit() and int(given) > 0:
        return int(given)
    return max(1, _usable_cpus() // workers)


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))  # what a container or taskset allows
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _timeout_message(limit_s: float) -> str:
    if limit_s >= 120:
        return f"The painting took longer than {limit_s / 60:.0f} minutes and was stopped."
    return f"The painting took longer than {limit_s:g} seconds and was stopped."
