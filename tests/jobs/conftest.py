from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

# pytest puts this directory on sys.path (no __init__.py); spawned workers inherit it.
import jobs_postgres
import pytest
from jobs_helpers import FakeExecutor, ServiceFactory, TickingClock
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.cli import main as cli
from bot.jobs.db import create_engine_and_sessionmaker, upgrade_database
from bot.jobs.service import JobService
from bot.jobs.storage import BlobStorage
from bot.settings import Settings


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[jobs_postgres.Server]:
    """A PostgreSQL server that answers (jobs_postgres says what happens where none does),
    with a database migrated to head for the tests' databases to copy."""
    url = jobs_postgres.server_url()
    jobs_postgres.require_server(url)
    migrated = asyncio.run(jobs_postgres.create_migrated(url))
    yield jobs_postgres.Server(url, migrated)
    asyncio.run(jobs_postgres.drop_database(url, migrated))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def database(request: pytest.FixtureRequest) -> str:
    """Which database the test's job table lives in: a test that has one runs on each
    (`jobs_postgres.sqlite_only` and `postgresql_only` keep one to one of them)."""
    return str(request.param)


@pytest.fixture
def postgres(database: str, request: pytest.FixtureRequest) -> jobs_postgres.Server | None:
    """The server when the test runs on PostgreSQL (it is skipped, or fails, when none
    answers); None on SQLite."""
    if database != "postgresql":
        return None
    # Asked for here, in a plain function, because it runs an event loop of its own, which
    # it cannot do inside the test's (as it would if a coroutine fixture asked for it).
    server: jobs_postgres.Server = request.getfixturevalue("postgres_server")
    return server


@pytest.fixture
async def database_url(postgres: jobs_postgres.Server | None, tmp_path: Path
                       ) -> AsyncIterator[str]:
    """An empty database of the test's own: a file in its data folder (which does not exist
    yet), or a new database on the PostgreSQL server, dropped afterwards."""
    async with _own_database(postgres, tmp_path, migrated=False) as url:
        yield url


@pytest.fixture
async def migrated_database_url(postgres: jobs_postgres.Server | None, tmp_path: Path
                                ) -> AsyncIterator[str]:
    """A database of the test's own with the job table, as `database_url` but migrated
    to head."""
    async with _own_database(postgres, tmp_path, migrated=True) as url:
        yield url


@contextlib.asynccontextmanager
async def _own_database(postgres: jobs_postgres.Server | None, tmp_path: Path, *,
                        migrated: bool) -> AsyncIterator[str]:
    if postgres is None:
        url = f"sqlite+aiosqlite:///{tmp_path / 'data' / 'stylebot.db'}"
        if migrated:
            await upgrade_database(url)
        yield url
        return
    url = await jobs_postgres.create_database(
        postgres.url, template=postgres.migrated if migrated else None)
    try:
        yield url
    finally:
        await jobs_postgres.drop_database(postgres.url, make_url(url).database or "")


@pytest.fixture
def settings(tmp_path: Path, migrated_database_url: str) -> Settings:
    return Settings.from_env(
        {}, data_dir=tmp_path / "data", database_url=migrated_database_url, device="cpu",
        workers=1, default_size=48, max_size=256, max_jobs_per_user=5, max_queue=50,
        max_attempts=3, job_timeout_s=60)


@pytest.fixture
async def sessionmaker(settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine, sm = create_engine_and_sessionmaker(settings.database_url)
    yield sm
    await engine.dispose()


@pytest.fixture
def storage(settings: Settings) -> BlobStorage:
    return BlobStorage(settings.blobs_dir)


@pytest.fixture
def clock() -> TickingClock:
    return TickingClock()


@pytest.fixture
async def make_service(sessionmaker: async_sessionmaker[AsyncSession], storage: BlobStorage,
                       settings: Settings, clock: TickingClock
                       ) -> AsyncIterator[ServiceFactory]:
    """Builds services over the test database (fake executor unless one is given) and
    stops every one that was started."""
    made: list[JobService] = []

    def factory(executor: Any = None, *, settings_: Settings | None = None,
                **kwargs: Any) -> JobService:
        kwargs.setdefault("clock", clock)
        kwargs.setdefault("poll_interval_s", 0.05)
        service = JobService(sessionmaker=sessionmaker, storage=storage,
                             executor=executor if executor is not None else FakeExecutor(),
                             settings=settings_ or settings, presets_dir=None, **kwargs)
        made.append(service)
        return service

    yield factory
    for service in made:
        await service.stop(grace_s=1)


@pytest.fixture
def in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Runs `cli.main` here (fast) against a fresh data directory."""
    for key in list(os.environ):
        if key.startswith("STYLEBOT_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("STYLEBOT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    # Logging set-up belongs to the process; leave pytest's capture alone.
    monkeypatch.setattr(cli, "setup_logging", lambda level: None)
    return tmp_path
