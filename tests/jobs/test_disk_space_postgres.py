"""A full disk under PostgreSQL's blob table: the same as for the file store (see
test_disk_space.py). The table is moved to a tablespace on a real 1 MB tmpfs, which the
server fills up ("could not extend file", SQLSTATE 53100)."""

from __future__ import annotations

import errno
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from jobs_helpers import FakeExecutor, ServiceFactory, png, until
from jobs_postgres import postgresql_only
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from bot.jobs import db
from bot.jobs.errors import OutOfStorage
from bot.jobs.service import JobService
from bot.jobs.states import JobStatus
from bot.jobs.storage import DatabaseBlobStorage
from bot.settings import Settings
from stylizer.pool.messages import JobStarted, JobSucceeded

pytestmark = postgresql_only


@pytest.fixture
def storage(sessionmaker: async_sessionmaker[AsyncSession]) -> DatabaseBlobStorage:
    """Overrides conftest's: the images go to the database, as on PostgreSQL."""
    return DatabaseBlobStorage(sessionmaker)


@pytest.fixture
async def small_disk(settings: Settings) -> AsyncIterator[None]:
    """The test database's `blobs` table on a 1 MB tmpfs; skipped where this process may
    not mount one, or the server runs elsewhere (it must write to that folder)."""
    root = Path(tempfile.mkdtemp(prefix="stylebot-pg-disk-"))
    if not _mount(root):
        pytest.skip("cannot mount a tmpfs for the server here")
    name = f"stylebot_small_{secrets.token_hex(4)}"
    engine = create_async_engine(settings.database_url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            try:
                await conn.execute(text(f"CREATE TABLESPACE {name} LOCATION '{root}'"))
            except DBAPIError as exc:  # the server is not on this machine, or not ours
                pytest.skip(f"the server cannot use a tablespace here: {exc}")
            await conn.execute(text(f"ALTER TABLE blobs SET TABLESPACE {name}"))
        try:
            yield
        finally:
            async with engine.connect() as conn:
                await conn.execute(text("ALTER TABLE blobs SET TABLESPACE pg_default"))
                await conn.execute(text(f"DROP TABLESPACE {name}"))
    finally:
        await engine.dispose()
        _unmount(root)


def _mount(root: Path) -> bool:
    """A 1 MB tmpfs at `root`, owned by the server's user; False (nothing left mounted)
    where that cannot be."""
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(root)],
                       check=True, capture_output=True)
        shutil.chown(root, "postgres")
    except (OSError, LookupError, subprocess.CalledProcessError):
        _unmount(root)
        return False
    return True


def _unmount(root: Path) -> None:
    subprocess.run(["umount", str(root)], check=False, capture_output=True)
    shutil.rmtree(root, ignore_errors=True)


def noise(seed: int, size: int = 200_000) -> bytes:
    """Bytes PostgreSQL cannot compress."""
    return np.random.default_rng(seed).bytes(size)


async def test_a_full_database_disk_refuses_jobs_and_fails_a_painting_cleanly(
        small_disk: None, make_service: ServiceFactory, storage: DatabaseBlobStorage,
        sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    fake = FakeExecutor()
    service = make_service(fake)
    await service.start()
    running = await service.submit(user_id="a", user_name="a", content=png(1),
                                   style="mosaic")
    await until(lambda: fake.submitted)
    fake.emit(JobStarted(running.id, 0, 1))

    # The disk fills up: the store says so as the file store does.
    with pytest.raises(OSError, match="disk is full") as full:  # noqa: PT012 (until full)
        for seed in range(20):
            await storage.put_async(noise(seed))
    assert full.value.errno == errno.ENOSPC

    # A new job is refused, and nothing of it is kept.
    with pytest.raises(OutOfStorage):
        await service.submit(user_id="b", user_name="b", content=png(2, 300, 300),
                             style="mosaic")
    async with sessionmaker() as session:
        assert await db.count_jobs(session) == 1

    # The running job's painting cannot be stored: it fails, saying why.
    fake.emit(JobSucceeded(running.id, png(3, 300, 300), {}))
    await until(lambda: _status(service, running.id, JobStatus.failed))
    failed = await service.get(running.id)
    assert (failed.error_code, failed.output_hash) == ("out_of_storage", None)
    assert "ran out of storage" in (failed.error_message or "")
    async with sessionmaker() as session:  # every image a job refers to is there
        rows = (await session.execute(select(db.Job.input_hash, db.Job.style_hash))).all()
    for digest in {h for row in rows for h in row if h}:
        assert await storage.exists_async(digest)


async def _status(service: JobService, job_id: str, status: JobStatus) -> bool:
    return (await service.get(job_id)).status is status

