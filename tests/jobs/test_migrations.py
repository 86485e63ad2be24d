"""Alembic migrations on an empty database (SQLite and PostgreSQL), and agreement with the
models."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from jobs_postgres import sqlite_only
from sqlalchemy import JSON, DateTime, column, inspect, select, table
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.jobs.db import (
    Base,
    Job,
    UTCDateTime,
    add_job,
    alembic_config,
    create_engine,
    create_engine_and_sessionmaker,
    current_revision,
    get_job,
    upgrade_database,
)


def _diff(connection: Connection) -> list[object]:
    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "compare_server_default": True})
    return list(compare_metadata(context, Base.metadata))


def _head() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


async def test_migrations_create_the_schema_the_models_describe(database_url: str) -> None:
    await upgrade_database(database_url)
    assert await current_revision(database_url) == _head()
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            assert await conn.run_sync(_diff) == []
            tables = await conn.run_sync(lambda c: inspect(c).get_table_names())
            assert "jobs" in tables
    finally:
        await engine.dispose()
    await upgrade_database(database_url)  # a second run is a no-op
    assert await current_revision(database_url) == _head()


@sqlite_only  # the file, its folder and its pragmas are SQLite's own
async def test_a_sqlite_database_is_made_in_a_new_folder_with_its_pragmas(
        tmp_path: Path, database_url: str) -> None:
    assert not (tmp_path / "data").exists()
    await upgrade_database(database_url)
    assert (tmp_path / "data" / "stylebot.db").is_file()
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            assert (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar() == "wal"
            assert (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar() == 1
            assert (await conn.exec_driver_sql("PRAGMA busy_timeout")).scalar_one() >= 5000
    finally:
        await engine.dispose()


async def test_models_differ_from_an_empty_database(database_url: str) -> None:
    """The comparison above can fail: against an unmigrated database it finds the table."""
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            diff = await conn.run_sync(_diff)
    finally:
        await engine.dispose()
    assert any(d[0] == "add_table" for d in diff if isinstance(d, tuple))


async def test_downgrade_to_base_and_back(database_url: str) -> None:
    await upgrade_database(database_url)
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_downgrade, database_url, "base")
            tables = await conn.run_sync(lambda c: inspect(c).get_table_names())
            assert "jobs" not in tables
    finally:
        await engine.dispose()
    assert await current_revision(database_url) is None
    await upgrade_database(database_url)
    assert await current_revision(database_url) == _head()


async def test_job_times_keep_their_instant_through_0003_down_and_up(database_url: str
                                                                    ) -> None:
    """0003 changes the type of the time columns on PostgreSQL (none on SQLite)."""
    created = datetime(2026, 11, 30, 23, 30, 15, 250_000, tzinfo=UTC)
    await upgrade_database(database_url)
    engine, sessionmaker = create_engine_and_sessionmaker(database_url)
    try:
        async with sessionmaker.begin() as session:
            await add_job(session, job=Job(
                id="abc", user_id="u", user_name="u", source="cli", style="custom",
                input_hash="0" * 64, params={}, created_at=created,
                lease_expires_at=created + timedelta(minutes=5)))
        async with engine.begin() as conn:
            await conn.run_sync(_downgrade, database_url, "0002")
            # As 0002 left them: UTC without a zone.
            stored = (await conn.execute(
                select(column("created_at", DateTime())).select_from(table("jobs")))).scalar()
        assert stored == created.replace(tzinfo=None)
        assert await current_revision(database_url) == "0002"
        await upgrade_database(database_url)
        async with sessionmaker() as session:
            job = await get_job(session, job_id="abc")
    finally:
        await engine.dispose()
    assert job is not None
    assert job.created_at == created
    assert job.lease_expires_at == created + timedelta(minutes=5)
    assert job.started_at is None


async def _insert_old_row(session: Any, **values: Any) -> None:
    """A job row as an older revision's table takes it: only the columns named."""
    types = {"params": JSON(), "created_at": UTCDateTime(), "started_at": UTCDateTime()}
    await session.execute(table("jobs", *(column(name, types.get(name)) for name in values))
                          .insert().values(**values))


def _downgrade(connection: Connection, url: str, revision: str) -> None:
    cfg = alembic_config(url)
    cfg.attributes["connection"] = connection
    command.downgrade(cfg, revision)


@contextlib.asynccontextmanager
async def _rows_through(database_url: str, revision: str, rows: dict[str, dict[str, Any]]
                        ) -> AsyncIterator[tuple[AsyncEngine, dict[str, Job]]]:
    """These job rows inserted as `revision` left the table, then migrated to head: the
    engine, and the rows as head reads them."""
    await upgrade_database(database_url)
    engine, sessionmaker = create_engine_and_sessionmaker(database_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_downgrade, database_url, revision)
        async with sessionmaker.begin() as session:
            for job_id, values in rows.items():
                await _insert_old_row(session, **{
                    "id": job_id, "user_name": "u", "source": "cli", "style": "custom",
                    "input_hash": "0" * 64, "params": {}, **values})
        await upgrade_database(database_url)
        async with sessionmaker() as session:
            jobs = {j: job for j in rows if (job := await get_job(session, job_id=j))}
        yield engine, jobs
    finally:
        await engine.dispose()


async def test_0005_counts_the_run_each_started_job_was_in(database_url: str) -> None:
    """Before 0005 `attempts` counted abnormal ends; after it, runs started."""
    at = datetime(2026, 11, 30, 12, tzinfo=UTC)
    # (status, step, started, attempts before 0005, attempts after)
    rows = {"q0": ("queued", 0, False, 0, 0), "q1": ("queued", 0, True, 1, 1),
            "run": ("running", 3, True, 0, 1), "ok": ("succeeded", 9, True, 1, 2),
            "bad": ("failed", 0, True, 0, 1), "dead": ("dead", 0, True, 3, 3),
            "cq": ("cancelled", 0, False, 0, 0), "cr": ("cancelled", 4, True, 0, 1)}
    old = {j: {"user_id": "u", "created_at": at, "status": status, "step": step,
               "started_at": at if started else None, "attempts": before}
           for j, (status, step, started, before, _after) in rows.items()}
    async with _rows_through(database_url, "0004", old) as (engine, after):
        assert {j: job.attempts for j, job in after.items()} == {
            j: r[4] for j, r in rows.items()}
        async with engine.begin() as conn:
            await conn.run_sync(_downgrade, database_url, "0004")
            back = dict((await conn.execute(select(column("id"), column("attempts"))
                                            .select_from(table("jobs")))).all())
    assert back == {j: r[3] for j, r in rows.items()}


async def test_0006_gives_queued_jobs_the_round_robin_turns(database_url: str) -> None:
    at = datetime(2026, 11, 30, 12, tzinfo=UTC)
    # (user, status, minutes after `at`) -> the turn 0006 gives it
    rows = {"a1": ("a", "queued", 0, 0), "a2": ("a", "queued", 1, 1),
            "a3": ("a", "queued", 5, 2), "b1": ("b", "queued", 2, 0),
            "bx": ("b", "succeeded", 0, 0), "c1": ("c", "queued", 3, 0)}
    old = {j: {"user_id": user, "status": status, "created_at": at + timedelta(minutes=m)}
           for j, (user, status, m, _turn) in rows.items()}
    async with _rows_through(database_url, "0005", old) as (_engine, after):
        assert {j: job.turn for j, job in after.items()} == {j: r[3] for j, r in rows.items()}


async def test_0008_adds_an_animations_frames_at_zero_and_takes_them_away(
        database_url: str) -> None:
    at = datetime(2026, 12, 3, 12, tzinfo=UTC)
    old = {"q": {"user_id": "u", "created_at": at, "status": "queued"},
           "run": {"user_id": "u", "created_at": at, "status": "running", "step": 3,
                   "started_at": at}}
    async with _rows_through(database_url, "0007", old) as (engine, after):
        assert {j: (job.frame, job.frames, job.step) for j, job in after.items()} == {
            "q": (0, 0, 0), "run": (0, 0, 3)}
        async with engine.begin() as conn:
            await conn.execute(table("jobs", column("frame"), column("frames"))
                               .update().values(frame=12, frames=48))
            await conn.run_sync(_downgrade, database_url, "0007")
            columns = await conn.run_sync(
                lambda c: {col["name"] for col in inspect(c).get_columns("jobs")})
            steps = dict((await conn.execute(select(column("id"), column("step"))
                                             .select_from(table("jobs")))).all())
    assert not {"frame", "frames"} & columns
    assert steps == {"q": 0, "run": 3}
    await upgrade_database(database_url)
    assert await current_revision(database_url) == _head()


async def test_0009_backfills_where_earlier_jobs_were_asked(database_url: str) -> None:
    """Every job before 0009 came through a server's install or the bot's DM."""
    at = datetime(2026, 12, 4, 12, tzinfo=UTC)
    base = {"user_id": "u", "created_at": at, "status": "succeeded"}
    old = {"srv": {**base, "source": "slash", "guild_id": "g1", "channel_id": "c1"},
           "dm": {**base, "source": "slash", "channel_id": "c2"},
           "cli": {**base}}
    async with _rows_through(database_url, "0008", old) as (engine, after):
        assert {j: (job.context, job.guild_install) for j, job in after.items()} == {
            "srv": ("guild", True), "dm": ("bot_dm", False), "cli": (None, False)}
        async with engine.begin() as conn:
            await conn.run_sync(_downgrade, database_url, "0008")
            columns = await conn.run_sync(
                lambda c: {col["name"] for col in inspect(c).get_columns("jobs")})
    assert not {"context", "guild_install"} & columns
    await upgrade_database(database_url)
    assert await current_revision(database_url) == _head()
