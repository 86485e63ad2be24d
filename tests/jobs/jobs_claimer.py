"""A process of its own that claims or recovers jobs, for the tests of several processes
sharing one database.

    python jobs_claimer.py claim DATABASE_URL OUT_FILE START_AT MAX_BATCH
    python jobs_claimer.py recover DATABASE_URL OUT_FILE

`claim` waits until START_AT (seconds since the epoch: two claimers started apart begin
together), then claims batch after batch with a runner id of its own until nothing is
queued, and writes its runner id, then one line per claim: the ids claimed together.
`recover` runs one round of lease recovery and writes the ids it recovered.
"""

from __future__ import annotations

import asyncio
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import text

from bot.jobs import db
from bot.jobs.db import create_engine_and_sessionmaker
from bot.jobs.leases import Leases


def _now() -> datetime:
    return datetime.now(UTC)


async def claim(url: str, start_at: float, max_batch: int) -> list[str]:
    engine, sm = create_engine_and_sessionmaker(url)
    leases = Leases(sessionmaker=sm, clock=_now, lease_s=600, max_attempts=3)
    lines = [leases.runner]
    held: set[str] = set()
    try:
        # Connected before the start, as the other claimer is: a claim takes about a
        # millisecond, so one still connecting at the start could find the queue empty.
        # The pool keeps the connection for the runner's first claim.
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        await asyncio.sleep(max(0.0, start_at - time.time()))
        while True:
            records = await leases.claim(max_batch=max_batch, only_ids=None, held=held)
            if records:
                lines.append(" ".join(r.id for r in records))
                continue
            async with sm() as session:  # nothing claimable: done, or the other holds it
                if await db.count_queued(session) == 0:
                    break
    finally:
        await leases.close()
        await engine.dispose()
    return lines


async def recover(url: str) -> list[str]:
    engine, sm = create_engine_and_sessionmaker(url)
    leases = Leases(sessionmaker=sm, clock=_now, lease_s=600, max_attempts=3)
    try:
        records = await leases.recover(set())
    finally:
        await engine.dispose()
    return [r.id for r in records]


if __name__ == "__main__":
    command, url, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    if command == "claim":
        lines = asyncio.run(claim(url, float(sys.argv[4]), int(sys.argv[5])))
    else:
        lines = asyncio.run(recover(url))
    out.write_text("".join(f"{line}\n" for line in lines))
