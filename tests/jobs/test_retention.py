"""People's pictures (`bot.jobs.retention`): deleted on request, expired after the
retention period, and never left behind, never taken from a job that needs them. On both
databases and both stores (files; the database's blob table)."""

from __future__ import annotations

import itertools
import logging
import os
from datetime import datetime, timedelta

import pytest
from jobs_helpers import FakeExecutor, ServiceFactory, TickingClock, png, until
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.jobs import db, retention
from bot.jobs.access import Caller
from bot.jobs.errors import JobNotFound, PicturesGone
from bot.jobs.records import JobRecord
from bot.jobs.retention import Housekeeping, Privacy, collect_garbage, expire, forget_jobs
from bot.jobs.service import JobService
from bot.jobs.states import JobStatus
from bot.jobs.storage import BlobStorage, BlobStore, DatabaseBlobStorage
from bot.settings import Settings
from stylizer.pool.messages import JobSucceeded

ALICE, BOB = Caller("alice"), Caller("bob")
_paintings = itertools.count(100)


@pytest.fixture(params=["files", "table"])
def storage(request: pytest.FixtureRequest, settings: Settings,
            sessionmaker: async_sessionmaker[AsyncSession]) -> BlobStore:
    if request.param == "files":
        return BlobStorage(settings.blobs_dir)
    return DatabaseBlobStorage(sessionmaker)


def _paint(request: object) -> list[JobSucceeded]:
    job_id = request.job_id  # type: ignore[attr-defined]
    return [JobSucceeded(job_id, png(next(_paintings)), {})]


@pytest.fixture
async def service(make_service: ServiceFactory, settings: Settings) -> JobService:
    service = make_service(FakeExecutor(auto=_paint),
                           settings_=settings.replace(max_jobs_per_user=10))
    await service.start()
    return service


async def painted(service: JobService, user: Caller, photo: bytes, *,
                  style_image: bytes | None = None) -> JobRecord:
    job = await service.submit(user_id=user.user_id, user_name=user.user_id.title(),
                               content=photo, style=None if style_image else "mosaic",
                               style_image=style_image)
    done = await service.wait(job.id, timeout_s=10)
    assert done.status is JobStatus.succeeded
    return done


async def kept(storage: BlobStore, *digests: str | None) -> list[bool]:
    return [digest is not None and await storage.exists_async(digest) for digest in digests]


async def test_forgetting_removes_exactly_the_user_s_pictures(
        service: JobService, storage: BlobStore,
        sessionmaker: async_sessionmaker[AsyncSession],
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    caplog.set_level(logging.DEBUG, logger="bot")
    monkeypatch.setattr(retention, "BATCH", 1)  # a user's jobs in several transactions
    privacy = Privacy(service, sessionmaker, storage)
    shared_photo = png(1)
    mine = await painted(service, ALICE, shared_photo)
    custom = await painted(service, ALICE, png(2), style_image=png(3))
    theirs = await painted(service, BOB, shared_photo)  # the same photo: one blob

    removed = await privacy.forget_user(caller=ALICE)
    assert (removed.jobs, removed.active) == (2, 0)
    # Alice's paintings, her own photo and her style image: gone. The photo Bob sent too
    # stays, as does the preset painting (not hers), and all of Bob's.
    assert await kept(storage, mine.output_hash, custom.output_hash, custom.input_hash,
                      custom.style_hash) == [False] * 4
    assert await kept(storage, shared_photo_hash := mine.input_hash, mine.style_hash) == [
        True, True]
    assert await kept(storage, theirs.input_hash, theirs.output_hash) == [True, True]
    assert theirs.input_hash == shared_photo_hash
    assert removed.blobs == 4

    for job in (mine, custom):
        gone = await service.get(job.id)
        assert gone.pictures_gone == retention.DELETED
        assert (gone.input_hash, gone.output_hash, gone.user_name) == (None, None, "")
        assert gone.status is JobStatus.succeeded  # the history stays
        with pytest.raises(PicturesGone, match="were deleted"):
            await service.read_input(job.id)
        assert await service.read_output(job.id) is None
    assert (await service.get(custom.id)).style_hash is None
    assert (await service.get(mine.id)).style_hash == mine.style_hash  # a preset's
    assert (await service.get(theirs.id)).pictures_gone is None

    # Bob forgets his one job: now the shared photo goes too.
    removed = await privacy.forget_job(theirs.id, caller=BOB)
    assert (removed.jobs, removed.blobs) == (1, 2)
    assert await kept(storage, theirs.input_hash, theirs.output_hash) == [False, False]
    # Again: nothing left to do.
    assert (await privacy.forget_job(theirs.id, caller=BOB)).jobs == 0
    # The log names users and jobs by id, never by name.
    assert "forgot the pictures of 2 job(s) of user alice" in caplog.text
    assert "Alice" not in caplog.text
    assert "Bob" not in caplog.text


async def test_only_the_owner_may_delete_a_job_s_pictures(
        service: JobService, storage: BlobStore,
        sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    privacy = Privacy(service, sessionmaker, storage)
    job = await painted(service, ALICE, png(1))
    admin = Caller("carol", guild_id=job.guild_id, guild_admin=True)
    for caller in (BOB, admin):
        with pytest.raises(JobNotFound):
            await privacy.forget_job(job.id, caller=caller)
    assert await kept(storage, job.input_hash, job.output_hash) == [True, True]
    assert (await privacy.forget_job(job.id, caller=Caller.cli())).jobs == 1


async def test_forgetting_cancels_the_user_s_queued_jobs_first(
        make_service: ServiceFactory, storage: BlobStore, settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    stalled = FakeExecutor()  # takes the first job and never ends it
    service = make_service(stalled, settings_=settings.replace(max_jobs_per_user=10))
    await service.start()
    privacy = Privacy(service, sessionmaker, storage)
    running = await service.submit(user_id="alice", user_name="Alice", content=png(1),
                                   style="mosaic")
    queued = await service.submit(user_id="alice", user_name="Alice", content=png(2),
                                  style="mosaic")
    removed = await privacy.forget_user(caller=ALICE)
    assert removed.jobs == 2
    for job in (running, queued):
        gone = await service.get(job.id)
        assert (gone.status, gone.pictures_gone) == (JobStatus.cancelled, retention.DELETED)
        assert not await storage.exists_async(job.input_hash or "")


async def test_pictures_expire_after_the_retention_period_and_rows_after_the_history_one(
        service: JobService, storage: BlobStore, clock: TickingClock,
        sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    old = await painted(service, ALICE, png(1))
    clock.advance(timedelta(days=20).total_seconds())
    again = await service.submit(user_id="alice", user_name="Alice", content=png(9),
                                 style="mosaic", parent_id=old.id)
    child = await service.wait(again.id, timeout_s=10)
    clock.advance(timedelta(days=11).total_seconds())
    recent = await painted(service, ALICE, png(2))
    now = clock()  # 31 days after the first job, 11 after its child

    removed = await expire(sessionmaker, storage, now=now, retention_days=30, history_days=0)
    assert (removed.jobs, removed.rows) == (1, 0)
    assert (await service.get(old.id)).pictures_gone == retention.EXPIRED
    assert await kept(storage, old.input_hash, old.output_hash) == [False, False]
    assert await kept(storage, child.input_hash, child.output_hash, recent.input_hash) == [
        True] * 3
    with pytest.raises(PicturesGone, match="have expired"):
        await service.read_input(old.id)
    # Nothing more to do on a second pass; with no retention nothing is ever due.
    assert not await expire(sessionmaker, storage, now=now, retention_days=30,
                            history_days=0)
    assert not await expire(sessionmaker, storage, now=now + timedelta(days=999),
                            retention_days=0, history_days=0)

    # The history setting: rows that ended more than 25 days ago go; the child made from
    # one of them stays, without its parent.
    removed = await expire(sessionmaker, storage, now=now, retention_days=30, history_days=25)
    assert removed.rows == 1
    with pytest.raises(JobNotFound):
        await service.get(old.id)
    assert (await service.get(child.id)).parent_id is None


async def test_the_collector_removes_what_a_crash_left_and_nothing_a_job_needs(
        make_service: ServiceFactory, storage: BlobStore, settings: Settings,
        clock: TickingClock, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    stalled = FakeExecutor(workers=0)  # nothing runs: the jobs stay queued
    service = make_service(stalled)
    await service.start()
    queued = await service.submit(user_id="bob", user_name="Bob", content=png(1),
                                  style="mosaic")
    # A crash between a forgotten row's commit and its blob's removal: the row no longer
    # refers to the blob, which is still there.
    orphan = await storage.put_async(png(2))
    # A blob just stored for a job about to be inserted: no row refers to it yet.
    later = clock() + retention.GRACE + timedelta(minutes=1)
    assert await collect_garbage(sessionmaker, storage, now=clock()) == 0  # all too new
    fresh = await storage.put_async(png(3))
    await _age(storage, sessionmaker, fresh, to=later)

    assert await collect_garbage(sessionmaker, storage, now=later) == 1
    assert await kept(storage, orphan, fresh, queued.input_hash, queued.style_hash) == [
        False, True, True, True]
    assert (await service.get(queued.id)).status is JobStatus.queued


async def _age(storage: BlobStore, sessionmaker: async_sessionmaker[AsyncSession],
               digest: str, *, to: datetime) -> None:
    """Makes the blob look last used at `to`."""
    if isinstance(storage, BlobStorage):
        os.utime(storage.path_for(digest), (to.timestamp(), to.timestamp()))
    else:
        async with sessionmaker.begin() as session:
            await session.execute(update(db.Blob).where(db.Blob.sha256 == digest)
                                  .values(created_at=to))


async def test_housekeeping_runs_expiry_and_the_collector(
        service: JobService, storage: BlobStore, clock: TickingClock,
        sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    job = await painted(service, ALICE, png(1))
    clock.advance(timedelta(days=2).total_seconds())
    orphan = await storage.put_async(png(2))
    await _age(storage, sessionmaker, orphan, to=clock() - timedelta(days=1))
    housekeeping = Housekeeping(sessionmaker, storage, retention_days=1, history_days=0,
                                clock=clock)
    removed = await housekeeping.run_once()
    assert (removed.jobs, removed.blobs) == (1, 3)  # photo, painting, orphan
    assert await kept(storage, job.input_hash, job.output_hash, orphan) == [False] * 3


async def test_forget_jobs_leaves_active_jobs_alone(
        make_service: ServiceFactory, storage: BlobStore,
        sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    service = make_service(FakeExecutor(workers=0))
    await service.start()
    job = await service.submit(user_id="bob", user_name="Bob", content=png(1),
                               style="mosaic")
    removed = await forget_jobs(sessionmaker, storage, job_ids=[job.id],
                                why=retention.DELETED)
    assert (removed.jobs, removed.active, removed.blobs) == (0, 1, 0)
    assert await kept(storage, job.input_hash) == [True]


async def test_housekeeping_runs_in_the_background_until_stopped(
        service: JobService, storage: BlobStore, clock: TickingClock,
        sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    job = await painted(service, ALICE, png(1))
    clock.advance(timedelta(days=2).total_seconds())
    housekeeping = Housekeeping(sessionmaker, storage, retention_days=1, history_days=0,
                                first_s=0.0, interval_s=0.05, clock=clock)
    housekeeping.start()
    try:
        # The row first, then its blobs.
        await until(lambda: _gone(service, storage, job))
    finally:
        await housekeeping.stop()
    assert (await service.get(job.id)).pictures_gone == retention.EXPIRED


async def _gone(service: JobService, storage: BlobStore, job: JobRecord) -> bool:
    return (await service.get(job.id)).pictures_gone == retention.EXPIRED and not any(
        await kept(storage, job.input_hash, job.output_hash))
