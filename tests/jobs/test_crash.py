"""The pipeline with real worker processes: crashes, hangs, cancels, a killed service,
and many writers at once. CPU only, tiny images."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jobs_workers
import pytest
from jobs_helpers import Recorder, ServiceFactory, png, until
from jobs_postgres import sqlite_only
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.jobs import db
from bot.jobs.access import Caller
from bot.jobs.db import create_engine_and_sessionmaker
from bot.jobs.events import JobFailed, JobProgress, JobQueued, JobStarted, JobSucceeded
from bot.jobs.executor import LocalPoolExecutor, OfflineExecutor
from bot.jobs.service import JobService
from bot.jobs.states import JobStatus
from bot.jobs.storage import BlobStorage, sha256_hex
from bot.settings import Settings

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

STYLE = png(99)
HERE = Path(__file__).parent
# A few seconds of real painting at 48 px on a 2-core CPU.
REAL = {"steps": 15, "scales": 1, "optimizer": "adam"}
# Long enough that the worker is still painting when it is killed, however soon after
# its first progress the kill comes on a busy machine (15 steps could finish first).
LONGER = {**REAL, "steps": 200}


def _pool(settings: Settings, *, target: Any = None, **overrides: Any) -> LocalPoolExecutor:
    return LocalPoolExecutor.from_settings(settings, preview_interval_s=0.2,
                                           worker_target=target, **overrides)


# The worker pool's own cases: their rows go through the same queries that
# test_dispatch.py checks on each database, so they run on SQLite alone.
@sqlite_only
async def test_a_killed_worker_is_replaced_and_the_job_succeeds_once(
        make_service: ServiceFactory, settings: Settings, storage: BlobStorage) -> None:
    executor = _pool(settings)  # the real worker and the real engine
    service = make_service(executor, clock=_now)
    rec = Recorder()
    service.subscribe(rec)
    await service.start()
    view = await service.submit(user_id="u", user_name="u", content=png(1), style_image=STYLE,
                                params=LONGER)
    await rec.wait_for(lambda: rec.of(JobProgress, view.id), within=60)
    (pid,) = executor.pool.worker_pids().values()
    os.kill(pid, signal.SIGKILL)

    done = await service.wait(view.id, timeout_s=90)
    assert done.status is JobStatus.succeeded
    assert done.attempts == 2  # the run killed, and the one that painted it
    await rec.wait_for(lambda: rec.of(JobSucceeded, view.id))
    retry = [e for e in rec.of(JobQueued, view.id) if e.job.attempts == 1]
    assert len(retry) == 1
    (result,) = rec.of(JobSucceeded, view.id)  # exactly one result
    assert done.output_hash == sha256_hex(result.png)
    assert storage.get(done.output_hash)
    assert len(rec.of(JobStarted, view.id)) == 2
    assert list(executor.pool.worker_pids().values()) != [pid]  # replaced


async def test_a_job_that_always_kills_its_worker_dies_while_others_succeed(
        make_service: ServiceFactory, settings: Settings) -> None:
    settings = settings.replace(workers=2, max_attempts=3)
    service = make_service(_pool(settings, target=jobs_workers.quick_worker),
                           settings_=settings)
    rec = Recorder()
    service.subscribe(rec)
    await service.start()
    poison = await service.submit(user_id="a", user_name="a", style_image=STYLE,
                                  content=png(1, corner=jobs_workers.CRASH))
    fine = await service.submit(user_id="b", user_name="b", style_image=STYLE,
                                content=png(2), params={"steps": 100})
    dead = await service.wait(poison.id, timeout_s=60)
    assert dead.status is JobStatus.dead
    assert dead.attempts == 3
    assert dead.error_code == "worker_died"
    done = await service.wait(fine.id, timeout_s=60)
    assert done.status is JobStatus.succeeded
    assert done.attempts == 1
    await rec.wait_for(lambda: rec.of(JobFailed, poison.id))
    assert len(rec.of(JobStarted, poison.id)) == 3


@sqlite_only
async def test_a_hung_job_is_killed_at_its_time_limit(make_service: ServiceFactory,
                                                      settings: Settings) -> None:
    settings = settings.replace(job_timeout_s=1.5)
    service = make_service(_pool(settings, target=jobs_workers.quick_worker),
                           settings_=settings)
    await service.start()
    hung = await service.submit(user_id="a", user_name="a", style_image=STYLE,
                                content=png(1, corner=jobs_workers.HANG))
    started = time.monotonic()
    failed = await service.wait(hung.id, timeout_s=30)
    assert failed.status is JobStatus.failed
    assert failed.error_code == "timeout"
    assert 1.5 <= time.monotonic() - started < 15
    # The hung worker was replaced: the next job runs.
    after = await service.submit(user_id="b", user_name="b", style_image=STYLE, content=png(2),
                                 params={"steps": 10})
    assert (await service.wait(after.id, timeout_s=30)).status is JobStatus.succeeded


async def test_cancel_a_running_job(make_service: ServiceFactory, settings: Settings) -> None:
    executor = _pool(settings, target=jobs_workers.quick_worker)
    service = make_service(executor)
    rec = Recorder()
    service.subscribe(rec)
    await service.start()
    view = await service.submit(user_id="a", user_name="a", style_image=STYLE, content=png(1),
                                params={"steps": 3000})  # a minute, unless cancelled
    await rec.wait_for(lambda: rec.of(JobProgress, view.id), within=30)
    started = time.monotonic()
    cancelled = await service.cancel(view.id, caller=Caller("a"))
    assert cancelled.status is JobStatus.cancelled
    assert time.monotonic() - started < 5
    assert executor.idle == 1  # the worker is free again, not replaced
    nxt = await service.submit(user_id="a", user_name="a", style_image=STYLE, content=png(2),
                               params={"steps": 10})
    assert (await service.wait(nxt.id, timeout_s=30)).status is JobStatus.succeeded


async def test_many_submitters_and_two_workers_never_see_a_locked_database(
        make_service: ServiceFactory, settings: Settings,
        caplog: pytest.LogCaptureFixture) -> None:
    settings = settings.replace(workers=2, max_jobs_per_user=3)
    runner = make_service(_pool(settings, target=jobs_workers.quick_worker),
                          settings_=settings, clock=_now)
    await runner.start()
    caplog.set_level(logging.WARNING)

    async def submitter(n: int) -> list[str]:
        # Each submitter has its own engine and connections, like another process.
        engine, sm = create_engine_and_sessionmaker(settings.database_url)
        service = JobService(sessionmaker=sm, storage=BlobStorage(settings.blobs_dir),
                             executor=OfflineExecutor(), settings=settings, presets_dir=None)
        try:
            ids = []
            for i in range(2):
                view = await service.submit(user_id=f"user{n}", user_name=f"user{n}",
                                            content=png(n * 10 + i), style_image=STYLE,
                                            params={"steps": 5})
                ids.append(view.id)
                await service.queue_position(view.id)
                await service.list_for_user(f"user{n}")
            return ids
        finally:
            await engine.dispose()

    batches = await asyncio.gather(*(submitter(n) for n in range(8)))
    ids = [job_id for batch in batches for job_id in batch]
    assert len(set(ids)) == 16
    for job_id in ids:
        assert (await runner.wait(job_id, timeout_s=60)).status is JobStatus.succeeded
    assert "locked" not in caplog.text.lower()
    assert "Traceback" not in caplog.text


async def test_the_whole_service_killed_mid_job_loses_nothing(
        settings: Settings, sessionmaker: async_sessionmaker[AsyncSession],
        make_service: ServiceFactory, storage: BlobStorage) -> None:
    front = make_service(OfflineExecutor())
    view = await front.submit(user_id="u", user_name="u", content=png(1), style_image=STYLE,
                              params={"steps": 300})  # about 6 s with the quick engine

    first = _start_service(settings)
    try:
        async def running_with_progress() -> bool:
            row = await _row(sessionmaker, view.id)
            return row.status == "running" and row.step > 0
        await until(running_with_progress, within=60, interval=0.1)
    finally:
        # The service and its workers, all at once (they share a process group).
        os.killpg(first.pid, signal.SIGKILL)
        await asyncio.to_thread(first.wait, 10)
    row = await _row(sessionmaker, view.id)
    assert row.status == "running"
    assert row.attempts == 1

    second = _start_service(settings)
    try:
        code = await asyncio.to_thread(second.wait, 60)
        assert code == 0, (settings.data_dir / "service.log").read_text()
    finally:
        if second.poll() is None:
            os.killpg(second.pid, signal.SIGKILL)
            second.wait()
    done = await front.get(view.id)
    assert done.status is JobStatus.succeeded
    assert done.attempts == 2
    assert done.output_hash is not None
    assert storage.exists(done.output_hash)
    async with sessionmaker() as session:
        assert await db.count_jobs(session) == 1
    assert [v.id for v in await front.undelivered()] == [view.id]
    assert await front.mark_delivered(view.id) is True
    assert await front.mark_delivered(view.id) is False  # never delivered twice


def _start_service(settings: Settings) -> subprocess.Popen[bytes]:
    log = open(settings.data_dir / "service.log", "ab")  # noqa: SIM115 - the child holds it
    with log:
        return subprocess.Popen(
            [sys.executable, str(HERE / "jobs_service_main.py"), str(settings.data_dir),
             settings.database_url],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})


async def _row(sm: async_sessionmaker[AsyncSession], job_id: str) -> db.Job:
    async with sm() as session:
        job = await db.get_job(session, job_id=job_id)
        assert job is not None
        return job


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)
