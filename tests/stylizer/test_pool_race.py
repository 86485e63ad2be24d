"""The pool never charges a job for its own race with a worker's exit.

A job is charged an attempt when the pool reports it `worker_died`; these tests hand jobs
over the way the job dispatcher does (to the first idle worker) at the moments a worker is
on its way out, and check that no job is ever reported dead for a process that never
took it.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import signal
import time
from pathlib import Path

import pytest
from pool_testing import Events, PoolFactory, gone, request, wait_until

from stylizer.pool.messages import JobFailed, JobRequest, JobStarted
from stylizer.pool.supervisor import PoolBusy, WorkerPool

# Spawned workers import the test targets by module name, whichever way pytest found us.
pool_helpers = importlib.import_module(
    f"{__package__}.pool_helpers" if __package__ else "pool_helpers")

pytestmark = pytest.mark.timeout(120)

NOT_AN_IMAGE = b"not an image"  # refused at once by whichever worker reads it


async def hand_over(pool: WorkerPool, req: JobRequest, within: float = 60.0) -> None:
    """What the job dispatcher does: submit as soon as the pool says a worker is idle,
    and try again later when the submission is refused (the job goes back uncharged)."""
    deadline = time.monotonic() + within
    while True:
        assert time.monotonic() < deadline, "no worker took the job in time"
        if pool.idle > 0:
            try:
                await pool.submit(req)
                return
            except PoolBusy:
                pass
        await asyncio.sleep(0.01)


def block_until_dead(pid: int, within: float = 10.0) -> None:
    """Waits, without letting the event loop run (so the pool cannot notice the exit
    meanwhile), until every thread of `pid` has ended and with them its open files: the
    process is reaped (by a forkserver) or a zombie with no thread left. (Its first thread
    turns zombie while the others may still hold the files.)"""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            threads = os.listdir(f"/proc/{pid}/task")
        except OSError:
            return
        if state == "Z" and threads == [str(pid)]:
            return
        time.sleep(0.01)
    raise AssertionError(f"process {pid} is still running")


async def test_a_worker_that_is_leaving_is_never_handed_a_job(
        pool_factory: PoolFactory) -> None:
    pool = await pool_factory(workers=1, worker_target=pool_helpers.troubled_worker)
    events = Events(pool)
    old_pid = pool.worker_pids()[0]
    await pool.submit(request("bug-linger-1"))
    failed = (await events.until_end("bug-linger-1"))[-1]
    assert isinstance(failed, JobFailed)
    assert (failed.code, failed.retryable) == ("internal", True)

    # The worker reported its job and stays a moment before it exits to be replaced
    # (pool_helpers.LINGER_S): a job handed to it then would never be read.
    await hand_over(pool, request("next", content=NOT_AN_IMAGE))
    got = await events.until_end("next")
    assert not any(isinstance(e, JobFailed) and e.code == "worker_died" for e in got), got
    assert isinstance(got[0], JobStarted)
    assert got[0].pid != old_pid  # the replacement took it
    assert isinstance(got[-1], JobFailed)
    assert got[-1].code == "corrupt_image"


async def test_a_hand_over_that_fails_is_refused_not_charged(
        pool_factory: PoolFactory) -> None:
    pool = await pool_factory(workers=1)
    events = Events(pool)
    pid = pool.worker_pids()[0]
    os.kill(pid, signal.SIGKILL)
    block_until_dead(pid)
    assert pool.idle == 1  # the pool has not seen the exit yet: the worker looks idle

    with pytest.raises(PoolBusy):  # the dispatcher puts the job back, attempts unchanged
        await pool.submit(request("unlucky", content=NOT_AN_IMAGE))
    assert not await pool.cancel("unlucky")  # the pool holds no such job

    await hand_over(pool, request("unlucky", content=NOT_AN_IMAGE))
    got = await events.until_end("unlucky")  # no worker_died before the second hand-over
    assert isinstance(got[0], JobStarted)
    assert got[0].pid != pid
    assert isinstance(got[-1], JobFailed)
    assert got[-1].code == "corrupt_image"


async def test_a_worker_that_said_it_was_leaving_but_stays_is_replaced(
        pool_factory: PoolFactory) -> None:
    pool = await pool_factory(workers=1, worker_target=pool_helpers.troubled_worker)
    events = Events(pool)
    old_pid = pool.worker_pids()[0]
    await pool.submit(request("bug-stuck-1"))
    failed = (await events.until_end("bug-stuck-1"))[-1]
    assert isinstance(failed, JobFailed)
    assert (pool.idle, pool.capacity) == (0, 0)  # it takes no more jobs
    await wait_until(lambda: gone(old_pid), within=20)
    await wait_until(lambda: pool.idle == 1, within=60)
    assert pool.worker_pids()[0] != old_pid
