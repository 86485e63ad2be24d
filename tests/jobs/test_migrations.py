"""Alembic migrations on an empty SQLite file, and agreement with the models."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from bot.jobs.db import (
    Base,
    alembic_config,
    create_engine,
    current_revision,
    upgrade_database,
)


def _diff(connection: Connection) -> list[object]:
    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "compare_server_default": True})
    return list(compare_metadata(context, Base.metadata))


async def test_migrations_create_the_schema_the_models_describe(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "fresh.db"  # the directory does not exist yet
    url = f"sqlite+aiosqlite:///{path}"
    await upgrade_database(url)
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert await current_revision(url) == head
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            assert await conn.run_sync(_diff) == []
            tables = await conn.run_sync(lambda c: inspect(c).get_table_names())
            assert "jobs" in tables
            assert (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar() == "wal"
            assert (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar() == 1
            assert (await conn.exec_driver_sql("PRAGMA busy_timeout")).scalar_one() >= 5000
    finally:
        await engine.dispose()
    await upgrade_database(url)  # a second run is a no-op
    assert await current_revision(url) == head


async def test_models_differ_from_an_empty_database(tmp_path: Path) -> None:
    """The comparison above can fail: against an unmigrated file it finds the table."""
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}")
    try:
        async with engine.connect() as conn:
            diff = await conn.run_sync(_diff)
    finally:
        await engine.dispose()
    assert any(d[0] == "add_table" for d in diff if isinstance(d, tuple))


async def test_downgrade_to_base_and_back(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"
    await upgrade_database(url)
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            def down(connection: Connection) -> None:
                cfg = alembic_config(url)
                cfg.attributes["connection"] = connection
                command.downgrade(cfg, "base")
            await conn.run_sync(down)
            tables = await conn.run_sync(lambda c: inspect(c).get_table_names())
            assert "jobs" not in tables
    finally:
        await engine.dispose()
    await upgrade_database(url)
    assert await current_revision(url) is not None
