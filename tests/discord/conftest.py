from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy.engine import make_url

# The job tests' PostgreSQL helpers (jobs_postgres), shared rather than copied: their
# folder is on sys.path only when its own tests are collected too (appended: this
# folder's modules come first).
sys.path.append(str(Path(__file__).resolve().parents[1] / "jobs"))

# pytest puts this directory on sys.path (no __init__.py: a package here would be
# called "discord" and hide the library); jobs_postgres is from the folder added above.
import jobs_postgres
from emulator import DiscordEmulator


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def emu() -> AsyncIterator[DiscordEmulator]:
    """One emulated Discord per test module (the bot under test keeps connecting to it)."""
    emulator = DiscordEmulator()
    await emulator.start()
    yield emulator
    await emulator.close()


# ---- PostgreSQL, for the tests of bots and workers in processes of their own ----------
@pytest.fixture(scope="session")
def postgres_server() -> Iterator[jobs_postgres.Server]:
    """A PostgreSQL server that answers (where none does, the test is skipped, or fails
    under CI: see tests/jobs/jobs_postgres.py), with a database at the migrations' head
    for the tests' databases to copy."""
    url = jobs_postgres.server_url()
    jobs_postgres.require_server(url)
    migrated = asyncio.run(jobs_postgres.create_migrated(url))
    yield jobs_postgres.Server(url, migrated)
    asyncio.run(jobs_postgres.drop_database(url, migrated))


@pytest.fixture
def postgres_url(postgres_server: jobs_postgres.Server) -> Iterator[str]:
    """A database of the test's own at the migrations' head, dropped afterwards (with
    whatever is still connected to it). A plain function, not a coroutine: it runs event
    loops of its own, which it cannot do inside the test's."""
    url = asyncio.run(jobs_postgres.create_database(postgres_server.url,
                                                    template=postgres_server.migrated))
    yield url
    asyncio.run(jobs_postgres.drop_database(postgres_server.url, make_url(url).database or ""))
