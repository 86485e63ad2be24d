"""On PostgreSQL, the queries whose rows the caller writes back lock them (`FOR UPDATE`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import pytest
from jobs_postgres import postgresql_only
from sqlalchemy import text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.jobs import db
from bot.jobs.states import JobStatus

Query = Callable[[AsyncSession], Awaitable[object]]

QUERIES: dict[str, Query] = {
    "get_job": lambda s: db.get_job(s, job_id="j1", for_update=True),
    "get_jobs": lambda s: db.get_jobs(s, job_ids=["j1"]),
    "jobs_with_status": lambda s: db.jobs_with_status(s, statuses=[JobStatus.queued],
                                                      for_update=True),
}


@postgresql_only  # SQLite has no row locks: BEGIN IMMEDIATE takes the whole database
@pytest.mark.parametrize("query", list(QUERIES))
async def test_another_writer_waits_for_the_rows_a_query_locked(
        sessionmaker: async_sessionmaker[AsyncSession], query: str) -> None:
    async with sessionmaker.begin() as session:
        await db.add_job(session, job=db.Job(
            id="j1", user_id="u", user_name="u", source="cli", style="custom",
            input_hash="0" * 64, params={}, created_at=datetime.now(UTC)))
    async with sessionmaker.begin() as holder:
        await QUERIES[query](holder)
        async with sessionmaker.begin() as other:
            await other.execute(text("SET LOCAL lock_timeout = '100ms'"))
            with pytest.raises(DBAPIError, match="lock timeout"):
                await other.execute(update(db.Job).where(db.Job.id == "j1").values(step=1))
    async with sessionmaker.begin() as other:  # the lock ended with its transaction
        await other.execute(update(db.Job).where(db.Job.id == "j1").values(step=1))
