from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

# pytest puts this directory on sys.path (no __init__.py); spawned workers inherit it.
from jobs_helpers import FakeExecutor, ServiceFactory, TickingClock
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.jobs.db import create_engine_and_sessionmaker, upgrade_database
from bot.jobs.service import JobService
from bot.jobs.storage import BlobStorage
from bot.settings import Settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.from_env(
        {}, data_dir=tmp_path / "data", device="cpu", workers=1, default_size=48,
        max_size=256, max_jobs_per_user=5, max_queue=50, max_attempts=3, job_timeout_s=60)


@pytest.fixture
async def sessionmaker(settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    await upgrade_database(settings.database_url)
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
