"""A PostgreSQL server for the job tests: is one there, and a database of each test's own.

The server is named by STYLEBOT_TEST_POSTGRES_URL (a SQLAlchemy URL of a database the
tests may connect to in order to create and drop others). Where none answers, the
PostgreSQL tests are skipped, except under CI (the variable CI is set), where they fail:
there `.ci/run` has made sure a server runs, and a silent skip would hide a broken one.

Migrating a new database costs several times what copying one does, so the tests that
want the job table get a copy of one database migrated once per session (its template).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from dataclasses import dataclass

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from bot.jobs.db import upgrade_database

URL_VARIABLE = "STYLEBOT_TEST_POSTGRES_URL"
DEFAULT_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
CONNECT_TIMEOUT_S = 5.0
# Every test database's sessions run in a zone far from UTC and not a whole number of hours
# from it, so that a time stored or read without its zone shows up as a wrong instant.
SESSION_TIME_ZONE = "Pacific/Chatham"  # UTC+12:45, or +13:45 in its summer

# For a test whose database is beside the point (what it checks is painting, or the worker
# processes): it runs once, on SQLite, instead of once per database.
sqlite_only = pytest.mark.parametrize("database", ["sqlite"], indirect=True)
# For a test of what only PostgreSQL does.
postgresql_only = pytest.mark.parametrize(
    "database", [pytest.param("postgresql", marks=pytest.mark.postgresql)], indirect=True)


@dataclass(frozen=True)
class Server:
    """A PostgreSQL server that answered, and its database at the migrations' head."""

    url: str  # of the database the tests connect to in order to create and drop others
    migrated: str  # the name of the database at head that `create_database` can copy


def server_url() -> str:
    """The URL of the test server's maintenance database (the variable, or the default)."""
    return os.environ.get(URL_VARIABLE, "").strip() or DEFAULT_URL


def require_server(url: str) -> None:
    """Returns if a server answers at `url`; otherwise skips the test, or fails it in CI.

    Not from a coroutine: it runs its own event loop."""
    try:
        asyncio.run(_ping(url))
        return
    except (OSError, SQLAlchemyError) as exc:  # refused, timed out, or refused entry
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    message = (f"no PostgreSQL server answers at {make_url(url).render_as_string()} "
               f"({reason}); start one, or point {URL_VARIABLE} at one")
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI is set, so the PostgreSQL tests fail instead of being "
                    f"skipped)", pytrace=False)
    pytest.skip(message)


async def create_migrated(url: str) -> str:
    """Creates a database and migrates it to head; returns its name (see `Server`)."""
    database_url = await create_database(url)
    await upgrade_database(database_url)
    name = make_url(database_url).database
    assert name is not None
    return name


async def create_database(url: str, *, template: str | None = None) -> str:
    """Creates a database with a new name on the server, empty or a copy of `template`
    (which nothing may be connected to); returns its URL."""
    name = f"stylebot_test_{uuid.uuid4().hex[:12]}"
    copy = f' TEMPLATE "{template}"' if template else ""
    engine = _admin_engine(url)
    try:
        async with engine.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"{copy}'))
            # A copy does not inherit this setting: it is the database's, not its contents'.
            await conn.execute(text(f'ALTER DATABASE "{name}" SET timezone TO '
                                    f"'{SESSION_TIME_ZONE}'"))
    finally:
        await engine.dispose()
    return make_url(url).set(database=name).render_as_string(hide_password=False)


async def drop_database(url: str, name: str) -> None:
    """Drops the database `name`, closing whatever is still connected to it."""
    engine = _admin_engine(url)
    try:
        async with engine.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await engine.dispose()


def _admin_engine(url: str) -> AsyncEngine:
    # CREATE and DROP DATABASE cannot run inside a transaction block.
    return create_async_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool,
                               connect_args={"timeout": CONNECT_TIMEOUT_S})


async def _ping(url: str) -> None:
    engine = _admin_engine(url)
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    finally:
        await engine.dispose()
