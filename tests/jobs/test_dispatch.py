"""The dispatch loop with a fake executor: events, retries, cancel, stop, recovery, delivery."""

from __future__ import annotations

import asyncio
import socket
import sys
from datetime import UTC, datetime, timedelta

import pytest
from jobs_helpers import FakeExecutor, Recorder, ServiceFactory, png, until
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.jobs import db, events
from bot.jobs.access import Caller, Context, Origin
from bot.jobs.errors import JobNotFound, UserError
from bot.jobs.executor import OfflineExecutor
from bot.jobs.states import JobStatus
from bot.jobs.storage import BlobStorage, sha256_hex
from bot.settings import Settings
from stylizer.pool.messages import JobCancelled, JobFailed, JobProgress, JobStarted, JobSucceeded

STYLE = png(99)
Sessions = async_sessionmaker[AsyncSession]


async def _submit(service, user: str = "u", seed: int = 1):  # type: ignore[no-untyped-def]
    return await service.submit(user_id=user, user_name=user, content=png(seed),
                                style_image=STYLE, params={"steps": 9})


async def _row(sm: async_sessionmaker[AsyncSession], job_id: str) -> db.Job:
    async with sm() as session:
        job = await db.get_job(session, job_id=job_id)
        assert job is not None
        return job


async def test_a_job_runs_and_its_result_is_stored(make_service: ServiceFactory,
                                                   storage: BlobStorage) -> None:
    fake = FakeExecutor()
    service = make_service(fake)
    rec = Recorder()
    service.subscribe(rec)
    await service.start()
    view = await _submit(service)
    await until(lambda: fake.submitted)
    req = fake.submitted[0]
    assert req.job_id == view.id
    assert req.attempt == 1
    assert req.content == png(1)
    assert req.styles == (STYLE,)
    assert req.style_keys == (sha256_hex(STYLE),)
    assert req.params == view.params
    running = await service.get(view.id)
    assert running.status is JobStatus.running
    assert running.started_at is not None

    fake.emit(JobStarted(view.id, 0, 123))
    fake.emit(JobProgress(view.id, 4, 9, 1.0, 2.0, b"jpeg"))
    await rec.wait_for(lambda: rec.of(events.JobProgress))
    assert (await service.get(view.id)).step == 4
    assert (await service.position_and_eta(view.id))[1] is not None
    result = png(7)
    fake.emit(JobSucceeded(view.id, result, {"steps": 9}))
    done = await service.wait(view.id, timeout_s=5)
    assert done.status is JobStatus.succeeded
    assert done.step == 9
    assert done.output_hash == sha256_hex(result)
    assert storage.get(done.output_hash) == result
    assert await service.read_output(view.id) == result
    await rec.wait_for(lambda: rec.of(events.JobSucceeded))
    assert rec.kinds(view.id) == ["JobQueued", "JobStarted", "JobProgress",
                                  "JobSucceeded"]
    progress = rec.of(events.JobProgress)[0]
    assert (progress.step, progress.total, progress.preview_jpeg) == (4, 9, b"jpeg")
    assert rec.of(events.JobSucceeded)[0].png == result
    assert rec.of(events.JobStarted)[0].job.status is JobStatus.running


async def test_a_worker_death_is_retried_then_the_job_is_dead(
        make_service: ServiceFactory) -> None:
    fake = FakeExecutor()
    service = make_service(fake)  # max_attempts = 3
    rec = Recorder()
    service.subscribe(rec)
    await service.start()
    view = await _submit(service)
    for attempt in (1, 2, 3):
        await until(lambda: len(fake.submitted) >= attempt)  # noqa: B023 - awaited at once
        assert fake.submitted[-1].attempt == attempt
        fake.emit(JobFailed(view.id, "worker_died", "The painter stopped.", retryable=True))
        if attempt < 3:
            await until(lambda: len(rec.of(events.JobQueued)) == attempt + 1)  # noqa: B023
            requeued = rec.of(events.JobQueued)[-1]
            assert requeued.job.status is JobStatus.queued
            assert requeued.job.attempts == attempt
    dead = await service.wait(view.id, timeout_s=5)
    assert dead.status is JobStatus.dead
    assert dead.attempts == 3
    assert dead.error_code == "worker_died"
    assert "3 times" in (dead.error_message or "")
    await rec.wait_for(lambda: rec.of(events.JobFailed))
    assert rec.of(events.JobFailed)[0].job.status is JobStatus.dead
    assert len(fake.submitted) == 3


async def test_a_job_taken_again_while_its_ended_run_is_reported_keeps_its_new_run(
        make_service: ServiceFactory) -> None:
    """The run that died is put back in the queue; this process may claim the job again
    before it has finished reporting that (at once on PostgreSQL, woken by the queue's
    notification). The new run must stay this process's: its events count."""
    fake = FakeExecutor()
    service = make_service(fake)
    await service.start()
    leases = service._dispatch._leases  # the seam: where the run ends in the database
    end_abnormally = leases.end_abnormally

    async def taken_again_meanwhile(job_id: str, code: str):  # type: ignore[no-untyped-def]
        record = await end_abnormally(job_id, code)
        await until(lambda: len(fake.submitted) == 2)  # claimed and handed over again
        return record

    leases.end_abnormally = taken_again_meanwhile  # type: ignore[method-assign]
    view = await _submit(service)
    await until(lambda: fake.submitted)
    fake.emit(JobFailed(view.id, "worker_died", "The painter stopped.", retryable=True))
    await until(lambda: len(fake.submitted) == 2)
    assert fake.submitted[-1].attempt == 2
    await asyncio.sleep(0.1)  # the ended run's report finishes
    assert view.id in service._dispatch.running
    fake.emit(JobSucceeded(view.id, png(7), {}))
    done = await service.wait(view.id, timeout_s=5)
    assert (done.status, done.attempts) == (JobStatus.succeeded, 2)


async def test_bad_input_fails_without_retry(make_service: ServiceFactory) -> None:
    fake = FakeExecutor()
    service = make_service(fake)
    await service.start()
    view = await _submit(service)
    await until(lambda: fake.submitted)
    fake.emit(JobFailed(view.id, "out_of_memory", "Try a smaller size.", retryable=False))
    failed = await service.wait(view.id, timeout_s=5)
    assert (failed.status, failed.error_code, failed.error_message, failed.attempts) == (
        JobStatus.failed, "out_of_memory", "Try a smaller size.", 1)
    assert len(fake.submitted) == 1
    assert [v.id for v in await service.undelivered()] == [view.id]


async def test_cancel_while_queued(make_service: ServiceFactory) -> None:
    service = make_service(FakeExecutor())
    rec = Recorder()
    service.subscribe(rec)
    view = await _submit(service, "owner")
    with pytest.raises(JobNotFound, match="No job of yours"):
        await service.cancel(view.id, caller=Caller("someone-else"))
    cancelled = await service.cancel(view.id, caller=Caller("owner"))
    assert cancelled.status is JobStatus.cancelled
    assert cancelled.finished_at is not None
    await rec.wait_for(lambda: rec.of(events.JobCancelled))
    with pytest.raises(UserError, match="already finished") as info:
        await service.cancel(view.id, caller=Caller("owner"))
    assert info.value.code == "already_finished"
    assert await service.undelivered() == []  # nothing to deliver for a cancelled job


async def test_cancel_while_running(make_service: ServiceFactory) -> None:
    fake = FakeExecutor()
    service = make_service(fake)
    rec = Recorder()
    service.subscribe(rec)
    await service.start()
    view = await service.submit(user_id="owner", user_name="owner", content=png(1),
                                style_image=STYLE, params={"steps": 9},
                                origin=Origin("g1", "c1", Context.guild, guild_install=True))
    await until(lambda: fake.submitted)
    fake.emit(JobStarted(view.id, 0, 1))
    admin = Caller("admin", guild_id="g1", guild_admin=True)  # of the job's own server
    cancelled = await service.cancel(view.id, caller=admin)
    assert fake.cancel_calls == [view.id]
    assert cancelled.status is JobStatus.cancelled
    await rec.wait_for(lambda: rec.of(events.JobCancelled))


async def test_cancel_from_another_process(make_service: ServiceFactory) -> None:
    """A CLI (no workers) cancels a job that the bot process is running."""
    fake = FakeExecutor()
    runner = make_service(fake)
    await runner.start()
    view = await _submit(runner, "owner")
    await until(lambda: fake.submitted)
    cli = make_service(OfflineExecutor(), cancel_wait_s=5)
    result = await cli.cancel(view.id, caller=Caller("owner"))
    assert fake.cancel_calls == [view.id]
    assert result.status is JobStatus.cancelled


async def test_a_worker_death_after_cancel_ends_cancelled(make_service: ServiceFactory) -> None:
    fake = FakeExecutor()
    fake.cancel_reports = False
    service = make_service(fake, cancel_wait_s=0.2)
    await service.start()
    view = await _submit(service)
    await until(lambda: fake.submitted)
    assert (await service.cancel(view.id, caller=Caller("u"))).status is JobStatus.running
    fake.emit(JobFailed(view.id, "worker_died", "gone", retryable=True))
    assert (await service.wait(view.id, timeout_s=5)).status is JobStatus.cancelled
    assert len(fake.submitted) == 1


async def test_graceful_stop_puts_running_jobs_back(
        make_service: ServiceFactory, sessionmaker: Sessions) -> None:
    fake = FakeExecutor(workers=2)
    service = make_service(fake)
    await service.start()
    a = await _submit(service, "a")
    b = await _submit(service, "b")
    await until(lambda: len(fake.submitted) == 2)
    await service.stop(grace_s=0.1)
    for job_id in (a.id, b.id):
        row = await _row(sessionmaker, job_id)
        assert (row.status, row.attempts, row.lease_expires_at) == ("queued", 0, None)
    # The next service runs them.
    fake2 = FakeExecutor(workers=2, auto=lambda r: [JobSucceeded(r.job_id, png(3), {})])
    again = make_service(fake2)
    await again.start()
    for job_id in (a.id, b.id):
        assert (await again.wait(job_id, timeout_s=5)).status is JobStatus.succeeded
    assert sorted(r.job_id for r in fake2.submitted) == sorted([a.id, b.id])


async def _insert_running(sm: async_sessionmaker[AsyncSession], *, runner: str,
                          lease: datetime, attempts: int = 1, job_id: str = "r2r2r2") -> None:
    """A row as a claim leaves it: `attempts` counts this run."""
    now = datetime.now(UTC)
    async with sm.begin() as session:
        await db.add_job(session, job=db.Job(
            id=job_id, user_id="u", user_name="u", source="cli", style="custom",
            style_hash=sha256_hex(STYLE), input_hash=sha256_hex(png(1)),
            params={"steps": 9, "size": 48}, status="running", attempts=attempts, runner=runner,
            lease_expires_at=lease, created_at=now - timedelta(minutes=5),
            started_at=now - timedelta(minutes=4), total_steps=9))


@pytest.mark.parametrize(("runner", "lease_s", "recovered"), [
    ("other-host:123:abc", -5, True),      # lease expired
    ("other-host:123:abc", 300, False),    # another live process holds it
    (None, 300, "dead-pid"),               # this host, process gone: at once
])
async def test_recovery_at_start(make_service: ServiceFactory, storage: BlobStorage,
                                 sessionmaker: async_sessionmaker[AsyncSession], runner: str | None,
                                 lease_s: int, recovered: bool | str) -> None:
    if recovered == "dead-pid":
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
        await proc.wait()  # exited and reaped: its pid names no process now
        runner = f"{socket.gethostname()}:{proc.pid}:abc"
    assert runner is not None
    storage.put(png(1))
    storage.put(STYLE)
    await _insert_running(sessionmaker, runner=runner,
                          lease=datetime.now(UTC) + timedelta(seconds=lease_s))
    fake = FakeExecutor(auto=lambda r: [JobSucceeded(r.job_id, png(3), {})])
    service = make_service(fake)
    await service.start()
    if recovered:
        done = await service.wait("r2r2r2", timeout_s=5)
        assert done.status is JobStatus.succeeded
        assert done.attempts == 2
        assert [r.attempt for r in fake.submitted] == [2]
    else:
        await asyncio.sleep(0.3)
        row = await _row(sessionmaker, "r2r2r2")
        assert (row.status, row.runner, row.attempts) == ("running", runner, 1)
        assert fake.submitted == []


async def test_recovery_buries_a_job_that_keeps_crashing(
        make_service: ServiceFactory, sessionmaker: Sessions) -> None:
    await _insert_running(sessionmaker, runner="h:1:x", attempts=3,
                          lease=datetime.now(UTC) - timedelta(seconds=1))
    service = make_service(FakeExecutor())
    rec = Recorder()
    service.subscribe(rec)
    await service.start()
    row = await _row(sessionmaker, "r2r2r2")
    assert (row.status, row.attempts, row.error_code) == ("dead", 3, "worker_died")
    await rec.wait_for(lambda: rec.of(events.JobFailed))
    assert [v.id for v in await service.undelivered()] == ["r2r2r2"]


async def test_leases_are_renewed_while_running(
        make_service: ServiceFactory, sessionmaker: Sessions) -> None:
    fake = FakeExecutor()
    service = make_service(fake, lease_s=0.3, clock=lambda: datetime.now(UTC))
    await service.start()
    view = await _submit(service)
    await until(lambda: fake.submitted)
    first = (await _row(sessionmaker, view.id)).lease_expires_at
    assert first is not None
    await asyncio.sleep(0.8)  # several lease lengths: still ours
    row = await _row(sessionmaker, view.id)
    assert row.status == "running"
    assert row.runner == service.runner_id
    assert row.lease_expires_at is not None
    assert row.lease_expires_at > first
    assert row.attempts == 1


async def test_events_for_a_job_taken_back_are_dropped(
        make_service: ServiceFactory, sessionmaker: Sessions) -> None:
    fake = FakeExecutor()
    service = make_service(fake)
    rec = Recorder()
    service.subscribe(rec)
    await service.start()
    view = await _submit(service)
    await until(lambda: fake.submitted)
    async with sessionmaker.begin() as session:  # as if another process had recovered it
        job = await db.get_job(session, job_id=view.id)
        assert job is not None
        job.runner = "elsewhere:1:x"
    fake.emit(JobSucceeded(view.id, png(4), {}))
    await asyncio.sleep(0.3)
    assert (await service.get(view.id)).status is JobStatus.running
    assert not rec.of(events.JobSucceeded)


async def test_mark_delivered_is_compare_and_set(make_service: ServiceFactory) -> None:
    fake = FakeExecutor(auto=lambda r: [JobSucceeded(r.job_id, png(3), {})])
    service = make_service(fake)
    await service.start()
    view = await _submit(service)
    await service.wait(view.id, timeout_s=5)
    await service.set_delivery(view.id, interaction_token="s3cr3t-t0k3n", application_id="app",
                               progress_message_id="55",
                               token_expires_at=datetime.now(UTC) + timedelta(minutes=15))
    with pytest.raises(TypeError):
        await service.set_delivery(view.id, status="succeeded")
    assert [v.id for v in await service.undelivered()] == [view.id]
    results = await asyncio.gather(*(service.mark_delivered(view.id, result_message_id=str(i))
                                     for i in range(8)))
    assert results.count(True) == 1
    got = await service.get(view.id)
    assert got.delivered
    assert got.result_message_id == str(results.index(True))
    assert got.interaction_token == "s3cr3t-t0k3n"
    assert "s3cr3t" not in repr(got)
    assert "interaction_token" not in got.to_dict()
    assert await service.undelivered() == []
    assert await service.mark_delivered(view.id) is False


async def test_own_jobs_only(make_service: ServiceFactory, settings: Settings) -> None:
    """A CLI beside a bot runs its own job and leaves the bot's queue alone."""
    bot_side = make_service(OfflineExecutor())
    theirs = await _submit(bot_side, "discord-user")
    fake = FakeExecutor(auto=lambda r: [JobSucceeded(r.job_id, png(3), {})])
    cli = make_service(fake, own_jobs_only=True,
                       settings_=settings.replace(max_jobs_per_user=5))
    await cli.start()
    mine = await _submit(cli, "cli")
    assert (await cli.wait(mine.id, timeout_s=5)).status is JobStatus.succeeded
    await asyncio.sleep(0.2)
    assert [r.job_id for r in fake.submitted] == [mine.id]
    assert (await cli.get(theirs.id)).status is JobStatus.queued


async def test_a_failing_listener_does_not_stop_others(make_service: ServiceFactory) -> None:
    service = make_service(FakeExecutor())

    async def broken(event: object) -> None:
        raise RuntimeError("listener bug")

    rec = Recorder()
    service.subscribe(broken)
    service.subscribe(rec)
    await _submit(service)
    await rec.wait_for(lambda: rec.of(events.JobQueued))


async def test_stats(make_service: ServiceFactory) -> None:
    fake = FakeExecutor(workers=2)
    service = make_service(fake)
    await service.start()
    await _submit(service, "a")
    await until(lambda: fake.submitted)
    stats = await service.stats(caller=Caller.cli())
    assert stats["running"] == 1
    assert stats["workers"] == 2
    assert stats["busy"] == 1
    assert stats["idle"] == 1
    assert stats["jobs_today"] == 1
    fake.emit(JobCancelled(fake.submitted[0].job_id))
