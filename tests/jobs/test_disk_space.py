"""A full disk: new jobs are refused before anything is stored, a painting that cannot be
stored fails its job cleanly, and the database and the image store stay consistent."""

from __future__ import annotations

import errno
import logging
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from jobs_helpers import FakeExecutor, ServiceFactory, png, until
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.jobs import db
from bot.jobs.errors import OutOfStorage
from bot.jobs.states import JobStatus
from bot.jobs.storage import BlobStorage
from bot.settings import Settings
from stylizer.pool.messages import JobRequest, JobStarted, JobSucceeded, PoolEvent

STYLE = png(99)
MB = 2**20


class FullDisk(BlobStorage):
    """A file store whose disk reports `free` bytes (None: unknown) and takes `room` more
    bytes (None: no limit), then raises ENOSPC as a full disk does."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.free: int | None = 10_000 * MB
        self.room: int | None = None

    def free_bytes(self) -> int | None:
        return self.free

    def put(self, data: bytes) -> str:
        if self.room is not None:
            if len(data) > self.room:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            self.room -= len(data)
        return super().put(data)


@pytest.fixture
def storage(settings: Settings) -> FullDisk:
    """Overrides conftest's: the service the test builds stores its images here."""
    return FullDisk(settings.blobs_dir)


def paints(req: JobRequest) -> list[PoolEvent]:
    return [JobStarted(req.job_id, 0, 1), JobSucceeded(req.job_id, png(5), {"steps": 1})]


async def assert_consistent(sm: async_sessionmaker[AsyncSession], store: BlobStorage) -> None:
    """Every image a job refers to is there, whole; no temporary file is left."""
    async with sm() as session:
        rows = (await session.execute(
            select(db.Job.input_hash, db.Job.style_hash, db.Job.output_hash))).all()
    for digest in {h for row in rows for h in row if h is not None}:
        assert store.exists(digest)
    assert [p.name for p in store.root.rglob(".tmp-*")] == []


async def job_count(sm: async_sessionmaker[AsyncSession]) -> int:
    async with sm() as session:
        return await db.count_jobs(session)


async def test_too_little_free_space_refuses_new_jobs_before_storing_anything(
        make_service: ServiceFactory, storage: FullDisk, settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession], caplog: pytest.LogCaptureFixture
        ) -> None:
    service = make_service()
    storage.free = settings.min_free_mb * MB - 1
    caplog.set_level(logging.WARNING, logger="bot.jobs.intake")
    for seed in (1, 2):
        with pytest.raises(OutOfStorage, match="out of storage"):
            await service.submit(user_id="u1", user_name="Ada", content=png(seed),
                                 style_image=STYLE)
    assert await job_count(sessionmaker) == 0
    assert storage.list_blobs() == []
    warnings = [r.getMessage() for r in caplog.records if r.name == "bot.jobs.intake"]
    assert len(warnings) == 1  # not one per refusal
    assert "MB free" in warnings[0]
    assert "STYLEBOT_MIN_FREE_MB" in warnings[0]

    storage.free = None  # unknown (a database's blob table): never refused for it
    job = await service.submit(user_id="u1", user_name="Ada", content=png(1),
                               style_image=STYLE)
    assert job.status is JobStatus.queued


async def test_a_disk_that_fills_while_the_photo_is_stored_refuses_the_job(
        make_service: ServiceFactory, storage: FullDisk,
        sessionmaker: async_sessionmaker[AsyncSession], caplog: pytest.LogCaptureFixture
        ) -> None:
    service = make_service()
    storage.room = 100  # plenty free by the disk's count, but no room for the photo
    caplog.set_level(logging.WARNING, logger="bot.jobs.intake")
    with pytest.raises(OutOfStorage):
        await service.submit(user_id="u1", user_name="Ada", content=png(1), style_image=STYLE)
    assert await job_count(sessionmaker) == 0
    assert storage.list_blobs() == []
    await assert_consistent(sessionmaker, storage)
    assert any("image store is full" in r.getMessage() for r in caplog.records)


async def test_a_painting_that_cannot_be_stored_fails_its_job_and_the_next_one_runs(
        make_service: ServiceFactory, storage: FullDisk,
        sessionmaker: async_sessionmaker[AsyncSession], caplog: pytest.LogCaptureFixture
        ) -> None:
    service = make_service(FakeExecutor(auto=paints))
    photo = png(1)
    storage.room = len(photo) + len(STYLE)  # the request's images fit; the painting won't
    await service.start()
    caplog.set_level(logging.WARNING, logger="bot.jobs.dispatch")
    first = await service.wait((await service.submit(
        user_id="u1", user_name="Ada", content=photo, style_image=STYLE)).id, timeout_s=10)
    assert (first.status, first.error_code, first.output_hash) == (
        JobStatus.failed, "out_of_storage", None)
    assert "out of storage" in (first.error_message or "")
    logged = [r.getMessage() for r in caplog.records if r.name == "bot.jobs.dispatch"]
    assert any(first.id in m and "could not be stored" in m for m in logged)
    assert all(len(m) < 500 for m in logged)  # no image bytes in the log
    await assert_consistent(sessionmaker, storage)

    storage.room = None  # space freed
    second = await service.wait((await service.submit(
        user_id="u1", user_name="Ada", content=png(2), style_image=STYLE)).id, timeout_s=10)
    assert second.status is JobStatus.succeeded
    assert await service.read_output(second.id) == png(5)
    await assert_consistent(sessionmaker, storage)


@pytest.fixture
def tmpfs(settings: Settings) -> Iterator[Path]:
    """A real 1 MB tmpfs as the image store's disk; skipped where this process may not
    mount one (it must be root, with CAP_SYS_ADMIN)."""
    root = settings.blobs_dir
    root.mkdir(parents=True)
    if os.geteuid() != 0 or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(root)],
            capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield root
    finally:
        subprocess.run(["umount", str(root)], check=True)


def fill(path: Path) -> None:
    """Writes zeros to `path` until its disk is full."""
    with path.open("wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 4096)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise


async def test_a_real_full_disk_refuses_jobs_fails_paintings_and_corrupts_nothing(
        tmpfs: Path, make_service: ServiceFactory, storage: FullDisk, settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    # The store writes to the real disk (no `room`); with no minimum, the disk refuses.
    executor = FakeExecutor()
    service = make_service(executor, settings_=settings.replace(min_free_mb=0))
    await service.start()
    job = await service.submit(user_id="u1", user_name="Ada", content=png(1),
                               style_image=STYLE)
    await until(lambda: job.id in executor.running)
    filler = tmpfs / "filler"
    fill(filler)
    assert (BlobStorage(tmpfs).free_bytes() or 0) < 8192

    executor.emit(JobSucceeded(job.id, png(5), {}))
    failed = await service.wait(job.id, timeout_s=10)
    assert (failed.status, failed.error_code) == (JobStatus.failed, "out_of_storage")
    with pytest.raises(OutOfStorage):
        await service.submit(user_id="u1", user_name="Ada", content=png(2), style_image=STYLE)
    assert await job_count(sessionmaker) == 1
    await assert_consistent(sessionmaker, storage)

    filler.unlink()
    executor.auto = paints
    again = await service.wait((await service.submit(
        user_id="u1", user_name="Ada", content=png(2), style_image=STYLE)).id, timeout_s=10)
    assert again.status is JobStatus.succeeded
    await assert_consistent(sessionmaker, storage)
