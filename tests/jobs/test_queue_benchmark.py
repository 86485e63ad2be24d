"""`benchmarks/queue_throughput.py --quick` runs against the test server
(STYLEBOT_TEST_POSTGRES_URL), reports each of its parts, and leaves no database of its own
behind."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest
from jobs_postgres import require_server, server_url
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

REPO_ROOT = Path(__file__).resolve().parents[2]


async def _databases(url: str) -> set[str]:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            return set((await conn.execute(text("SELECT datname FROM pg_database"))).scalars())
    finally:
        await engine.dispose()


@pytest.mark.slow
@pytest.mark.postgresql
@pytest.mark.timeout(300)
def test_the_queue_benchmark_runs_on_postgresql(tmp_path: Path) -> None:
    url = server_url()
    require_server(url)
    out = tmp_path / "queue.json"
    proc = subprocess.run(
        [sys.executable, "benchmarks/queue_throughput.py", "--quick", "--url", url,
         "--depths", "200", "--seconds", "1", "--worker-jobs", "2", "--json", str(out)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=280, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(out.read_text())

    claims = {(r["queued"], r["claimers"]): r for r in res["claims"]}
    assert set(claims) == {(200, 1), (200, 2)}
    for row in claims.values():
        assert row["claims_per_s"] > 0
        assert row["jobs"] == row["claims"]  # batches of one
        assert 1 <= row["claims"] <= 100  # stops at half the queue
    waits = {r["claimers"]: r for r in res["wait"]}
    assert set(waits) == {1, 2}
    for row in waits.values():
        assert row["jobs"] >= 1
        assert 0 < row["wait_p50_ms"] <= row["wait_p95_ms"] <= row["wait_max_ms"]
    workers = {r["workers"]: r for r in res["workers"]}
    assert set(workers) == {1, 2}
    assert workers[1]["speedup"] == 1.0
    for row in workers.values():
        assert row["jobs"] == 2
        assert row["jobs_per_min"] > 0
        assert row["paint_s"] > 0

    for header in ("| queued | claimers | claims/s |", "| claimers | jobs | rate | wait p50 |",
                   "| workers | torch threads each | jobs/min (whole run) |"):
        assert header in proc.stdout
    assert "load average" in proc.stdout
    assert res["databases"]
    assert not set(res["databases"]) & asyncio.run(_databases(url))
