"""Several processes sharing one database: claims that race, fenced writes, recovery by
anyone, events read from the rows, delivery claimed once, images in the database."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic.script import ScriptDirectory
from jobs_helpers import (
    FakeExecutor,
    Recorder,
    ServiceFactory,
    TickingClock,
    painter_and_watcher,
    png,
    until,
)
from jobs_postgres import postgresql_only
from sqlalchemy import func, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.jobs import db, events, notify
from bot.jobs.db import alembic_config, current_revision, upgrade_database
from bot.jobs.errors import LimitExceeded
from bot.jobs.executor import OfflineExecutor
from bot.jobs.leases import Leases
from bot.jobs.states import JobStatus
from bot.jobs.storage import (
    BlobNotFound,
    BlobStorage,
    BlobStore,
    DatabaseBlobStorage,
    open_storage,
    sha256_hex,
)
from bot.settings import Settings
from stylizer.pool.messages import JobFailed, JobProgress, JobStarted, JobSucceeded

Sessions = async_sessionmaker[AsyncSession]
HERE = Path(__file__).parent
STYLE = png(99)


@pytest.fixture
async def make_leases(sessionmaker: Sessions, clock: TickingClock
                      ) -> AsyncIterator[Callable[[], Leases]]:
    """Makes runners' `Leases` (60-s leases) and closes them before the engine goes."""
    made: list[Leases] = []

    def make() -> Leases:
        made.append(Leases(sessionmaker=sessionmaker, clock=clock, lease_s=60,
                           max_attempts=3))
        return made[-1]

    yield make
    for leases in made:
        await leases.close()


async def _insert_queued(sm: Sessions, clock: TickingClock, users: list[str],
                         batch_keys: list[str | None] | None = None) -> list[str]:
    """One queued job per entry of `users`, created in that order (each with the turn a
    submit gives it); returns their ids."""
    ids = []
    async with sm.begin() as session:
        for n, user in enumerate(users):
            job_id = f"j{n:04d}"
            session.add(db.Job(
                id=job_id, user_id=user, user_name=user, source="cli", style="custom",
                input_hash="0" * 64, params={"steps": 5},
                batch_key=batch_keys[n] if batch_keys else None, created_at=clock(),
                turn=await db.next_turn(session, user_id=user)))
            await session.flush()
            ids.append(job_id)
    return ids


def _run_claimers(url: str, tmp_path: Path, count: int, max_batch: int
                  ) -> list[tuple[str, list[list[str]]]]:
    """`count` claimer processes (jobs_claimer.py) started together over `url`; each one's
    runner id and the batches it claimed, in its order."""
    start_at = time.time() + 3.0  # after the slowest interpreter start
    outs = [tmp_path / f"claims-{n}.txt" for n in range(count)]
    procs = [subprocess.Popen(
        [sys.executable, str(HERE / "jobs_claimer.py"), "claim", url, str(out),
         str(start_at), str(max_batch)],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        stderr=subprocess.PIPE, text=True) for out in outs]
    results = []
    for proc, out in zip(procs, outs, strict=True):
        _, err = proc.communicate(timeout=90)
        assert proc.returncode == 0, err
        runner, *lines = out.read_text().splitlines()
        results.append((runner, [line.split() for line in lines]))
    return results


# -- claims that race ---------------------------------------------------------------------

@postgresql_only
@pytest.mark.timeout(120)
@pytest.mark.parametrize("batched", [False, True], ids=["one-by-one", "batches"])
async def test_two_processes_claiming_at_once_never_claim_a_job_twice(
        settings: Settings, sessionmaker: Sessions, clock: TickingClock, tmp_path: Path,
        batched: bool) -> None:
    users = [f"u{n % 10}" for n in range(400)]
    # A quarter alone, the rest in three kinds of batch (keys as stylizer.batching makes).
    keys: list[str | None] = [None if n % 4 == 0 else f"48x48:{n % 3:04x}"
                              for n in range(400)]
    ids = await _insert_queued(sessionmaker, clock, users, keys if batched else None)
    results = await asyncio.to_thread(_run_claimers, settings.database_url, tmp_path, 2,
                                      4 if batched else 1)
    claimed = [[job for batch in batches for job in batch] for _, batches in results]
    assert sorted(claimed[0] + claimed[1]) == ids  # every job, and none twice
    assert not set(claimed[0]) & set(claimed[1])
    # They really raced: each made a good share of the ~200 claims per process.
    assert all(len(batches) > 40 for _, batches in results), [len(b) for _, b in results]
    async with sessionmaker() as session:
        rows = (await session.execute(select(db.Job.id, db.Job.runner, db.Job.status))).all()
    owner = {job: runner for runner, batches in results for b in batches for job in b}
    assert {(job, runner, "running") for job, runner in owner.items()} == set(rows)
    if batched:
        by_key = dict(zip(ids, keys, strict=True))
        sizes = [len(b) for _, batches in results for b in batches]
        assert max(sizes) == 4
        for _, batches in results:  # a batch never mixes keys, and unkeyed jobs go alone
            for b in batches:
                assert len({by_key[j] for j in b}) == 1
                assert by_key[b[0]] is not None or len(b) == 1


async def test_a_claim_and_a_finish_are_one_statement_each_and_announce_themselves(
        sessionmaker: Sessions, clock: TickingClock) -> None:
    """`db.claim_next_queued` takes the first free jobs in fair order (the riders of a
    batch only of its key and never retried), and `db.finish_running` ends only its own
    runner's job, drops its preview and fills in its steps; on PostgreSQL each announces
    the row's new version on CHANGED in the same statement."""
    ids = await _insert_queued(sessionmaker, clock, ["a", "a", "b", "b"], ["k", "k", "k", "x"])
    async with sessionmaker.begin() as session:  # j0002 has ended abnormally before
        await session.execute(update(db.Job).where(db.Job.id == ids[2]).values(attempts=1))
    engine = sessionmaker.kw["bind"]
    heard: list[tuple[str, int]] = []
    listener = notify.Listener(engine)
    listener.subscribe(notify.CHANGED, lambda job_id, version: heard.append((job_id, version)))
    await listener.start()
    try:
        now = clock()
        async with db.single_statement(engine) as conn:
            head = await db.claim_next_queued(conn, runner="r:1:a", now=now,
                                              lease_until=now + timedelta(seconds=60))
            riders = await db.claim_next_queued(conn, runner="r:1:a", now=now,
                                                lease_until=now, limit=5, batch_key="k")
        # Fair order: a's first job, then b's first (retried: it rides alone), then a's.
        assert [r.id for r in head] == [ids[0]]
        assert [r.id for r in riders] == [ids[1]]
        row = head[0]
        assert (row.status, row.runner, row.attempts, row.total_steps, row.version) == (
            "running", "r:1:a", 1, 5, 1)
        assert (row.started_at, row.lease_expires_at) == (now, now + timedelta(seconds=60))
        async with sessionmaker.begin() as session:
            await db.save_preview(session, job_id=ids[0], step=2, jpeg=b"jpeg")
        async with db.single_statement(engine) as conn:
            other = await db.finish_running(conn, job_id=ids[0], runner="r:2:b",
                                            status=JobStatus.succeeded, finished_at=now)
            done = await db.finish_running(conn, job_id=ids[0], runner="r:1:a",
                                           status=JobStatus.succeeded, finished_at=now,
                                           output_hash="f" * 64)
            again = await db.finish_running(conn, job_id=ids[0], runner="r:1:a",
                                            status=JobStatus.failed, finished_at=now,
                                            error_code="x")
        assert other is None  # fenced: not its runner's
        assert again is None  # nor once it is over
        assert done is not None
        assert (done.status, done.step, done.output_hash, done.lease_expires_at,
                done.version) == ("succeeded", 5, "f" * 64, None, 2)
        async with sessionmaker() as session:
            assert await db.get_preview(session, job_id=ids[0]) is None
            assert await db.get_preview(session, job_id=ids[1]) is None
        if listener.enabled:
            await until(lambda: len(heard) >= 3, within=5)
            assert sorted(heard) == [(ids[0], 1), (ids[0], 2), (ids[1], 1)]
    finally:
        await listener.stop()


@postgresql_only
async def test_a_claim_commits_without_waiting_for_the_disk_and_a_lost_one_is_harmless(
        sessionmaker: Sessions, clock: TickingClock) -> None:
    """The claim sets `synchronous_commit` off for its own transaction only (the session
    keeps its setting, and the finish stays durable). A claim that a server crash undoes
    leaves the job queued: its runner's finish then changes nothing, and another runner
    claims the job."""
    ids = await _insert_queued(sessionmaker, clock, ["a"])
    engine = sessionmaker.kw["bind"]
    now = clock()
    async with db.single_statement(engine) as conn:
        rows = await db.claim_next_queued(conn, runner="r:1:a", now=now, lease_until=now)
        assert [(r.id, r.async_commit) for r in rows] == [(ids[0], "off")]
        assert (await conn.execute(text("SHOW synchronous_commit"))).scalar() == "on"
        none = await db.claim_next_queued(conn, runner="r:1:a", now=now, lease_until=now)
        assert none == []
    async with sessionmaker.begin() as session:  # what the crash leaves: the row before
        await session.execute(update(db.Job).where(db.Job.id == ids[0]).values(
            status="queued", runner=None, started_at=None, lease_expires_at=None,
            attempts=0, version=0))
    async with db.single_statement(engine) as conn:
        late = await db.finish_running(conn, job_id=ids[0], runner="r:1:a",
                                       status=JobStatus.succeeded, finished_at=now)
        assert late is None
        again = await db.claim_next_queued(conn, runner="r:2:b", now=now, lease_until=now)
        assert [(r.id, r.runner, r.attempts) for r in again] == [(ids[0], "r:2:b", 1)]
        done = await db.finish_running(conn, job_id=ids[0], runner="r:2:b",
                                       status=JobStatus.succeeded, finished_at=now)
        assert done is not None
        assert not hasattr(done, "async_commit")
        assert (await conn.execute(text("SHOW synchronous_commit"))).scalar() == "on"


@postgresql_only
async def test_a_runner_claims_and_finishes_on_one_held_connection_and_replaces_a_lost_one(
        sessionmaker: Sessions, clock: TickingClock,
        make_leases: Callable[[], Leases]) -> None:
    """`Leases` runs its claims and finishes on one connection (`db.HeldConnection`), not
    one from the pool each time; a server that drops it fails one call, and the next
    opens another; `close` gives it back to the pool."""
    ids = await _insert_queued(sessionmaker, clock, ["a", "b", "c"])
    engine = sessionmaker.kw["bind"]
    leases = make_leases()
    pids: list[int] = []

    async def pid() -> None:
        async with engine.connect() as admin:
            pids.append((await admin.execute(text(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND "
                "(query LIKE 'WITH picked%' OR query LIKE 'WITH done%')"))).scalar_one())

    try:
        (first,) = await leases.claim(max_batch=1, only_ids=None, held=set())
        await pid()
        assert await leases.finish(first.id, JobStatus.succeeded) is not None
        await pid()
        assert engine.pool.checkedout() == 1  # held between calls
        async with engine.connect() as admin:
            await admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pids[0]})
        with pytest.raises(DBAPIError):
            await leases.claim(max_batch=1, only_ids=None, held=set())
        (second,) = await leases.claim(max_batch=1, only_ids=None, held=set())
        await pid()
        assert await leases.finish(second.id, JobStatus.succeeded) is not None
    finally:
        await leases.close()
    assert engine.pool.checkedout() == 0
    assert pids[0] == pids[1] != pids[2]
    assert [first.id, second.id] == ids[:2]


@postgresql_only
async def test_a_claim_on_a_lost_connection_fails_as_sqlalchemy_would_and_the_next_works(
        sessionmaker: Sessions, clock: TickingClock) -> None:
    """The claim and the finish run straight on asyncpg (`db._fetch_on_driver`): a server
    that drops the connection gives SQLAlchemy's `DBAPIError`, the broken connection
    leaves the pool, and the next claim gets a new one and the job."""
    ids = await _insert_queued(sessionmaker, clock, ["a"])
    engine = sessionmaker.kw["bind"]
    now = clock()
    async with db.single_statement(engine) as conn:
        pid = (await conn.get_raw_connection()).driver_connection.get_server_pid()
        async with engine.connect() as admin:
            await admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        with pytest.raises(DBAPIError):
            await db.claim_next_queued(conn, runner="r:1:a", now=now, lease_until=now)
    async with db.single_statement(engine) as conn:
        rows = await db.claim_next_queued(conn, runner="r:1:a", now=now, lease_until=now)
        assert (await conn.get_raw_connection()).driver_connection.get_server_pid() != pid
    assert [r.id for r in rows] == ids


@postgresql_only
@pytest.mark.timeout(120)
async def test_two_claiming_processes_keep_the_fair_order_across_three_users(
        settings: Settings, sessionmaker: Sessions, clock: TickingClock,
        tmp_path: Path) -> None:
    # Eight jobs each, all of a's first: first come, first served would run a's eight first.
    ids = await _insert_queued(sessionmaker, clock, ["a"] * 8 + ["b"] * 8 + ["c"] * 8)
    results = await asyncio.to_thread(_run_claimers, settings.database_url, tmp_path, 2, 1)
    assert all(batches for _, batches in results)  # both took part
    async with sessionmaker() as session:
        # In the order of the claims: each is one transaction, and a transaction's id
        # (the row's xmin, "System Columns" in the PostgreSQL documentation) is given at
        # its first write. `started_at` would not do: a claimer reads its clock before it
        # claims, and may be descheduled in between while the other claims several.
        rows = (await session.execute(text(
            "SELECT id, user_id FROM jobs ORDER BY xmin::text::bigint, id"))).all()
    assert sorted(r.id for r in rows) == ids
    counts = dict.fromkeys("abc", 0)
    for row in rows:
        counts[row.user_id] += 1
        # Round-robin: nobody gets ahead of anyone by more than a round, give or take the
        # one claim the other process may have in flight at the same moment.
        assert max(counts.values()) - min(counts.values()) <= 2, rows
    for user in "abc":  # and each user's own jobs first in, first out, give or take the
        # same: two claims in flight at once take the first two free jobs.
        mine = [r.id for r in rows if r.user_id == user]
        assert all(abs(mine.index(job_id) - rank) <= 1
                   for rank, job_id in enumerate(sorted(mine))), mine


# -- fenced writes, recovery by anyone ----------------------------------------------------

async def test_writes_from_a_runner_that_lost_its_lease_change_nothing(
        sessionmaker: Sessions, clock: TickingClock,
        make_leases: Callable[[], Leases]) -> None:
    (job_id,) = await _insert_queued(sessionmaker, clock, ["u"])
    stalled, other = make_leases(), make_leases()
    assert stalled.runner != other.runner
    (claimed,) = await stalled.claim(max_batch=1, only_ids=None, held=set())
    assert (claimed.id, claimed.runner, claimed.status) == (job_id, stalled.runner,
                                                           JobStatus.running)
    assert await other.recover(set()) == []  # a live lease is left alone
    clock.advance(61)  # the stalled runner misses its renewals
    (recovered,) = await other.recover(set())
    assert (recovered.status, recovered.attempts, recovered.runner) == (JobStatus.queued, 1,
                                                                       None)
    (again,) = await other.claim(max_batch=1, only_ids=None, held=set())
    assert again.runner == other.runner

    # The stalled runner wakes up and writes as if nothing had happened.
    assert await stalled.progress(job_id, step=5, total_steps=9, preview=b"late") is None
    assert await stalled.finish(job_id, JobStatus.succeeded, output_hash="f" * 64) is None
    assert await stalled.finish(job_id, JobStatus.failed, error_code="x") is None
    assert await stalled.end_abnormally(job_id, "worker_died") is None
    assert await stalled.put_back([job_id]) == []
    lost, _ = await stalled.heartbeat([job_id], renew=True)
    assert lost == {job_id}
    async with sessionmaker() as session:
        row = await db.get_job(session, job_id=job_id)
        assert row is not None
        assert (row.status, row.runner, row.step, row.attempts, row.output_hash) == (
            "running", other.runner, 0, 2, None)
        assert row.lease_expires_at == again.started_at + timedelta(seconds=60)
        assert await db.get_preview(session, job_id=job_id) is None
    # The runner that holds it writes as usual.
    progress = await other.progress(job_id, step=3, total_steps=9, preview=b"jpeg")
    assert progress is not None
    assert (progress.step, progress.version) == (3, again.version + 1)


async def test_a_dispatcher_stops_painting_a_job_taken_back_by_another_process(
        make_service: ServiceFactory, sessionmaker: Sessions) -> None:
    fake = FakeExecutor()
    service = make_service(fake)
    await service.start()
    view = await service.submit(user_id="u", user_name="u", content=png(1), style_image=STYLE,
                                params={"steps": 9})
    await until(lambda: fake.submitted)
    async with sessionmaker.begin() as session:  # as if another process had taken it back
        await session.execute(update(db.Job).where(db.Job.id == view.id)
                              .values(runner="elsewhere:1:x"))
    fake.emit(JobProgress(view.id, 4, 9, 1.0, 1.0, None))
    await until(lambda: fake.cancel_calls == [view.id])  # the worker is freed
    assert (await service.get(view.id)).step == 0


async def test_another_process_recovers_an_expired_lease(
        settings: Settings, sessionmaker: Sessions, clock: TickingClock,
        tmp_path: Path) -> None:
    ids = await _insert_queued(sessionmaker, clock, ["a", "b", "c"])
    now = clock()
    leases = {ids[0]: (now - timedelta(seconds=5), 1),    # expired: back in the queue
              ids[1]: (now + timedelta(minutes=5), 1),    # alive: left alone
              ids[2]: (now - timedelta(seconds=5), 3)}    # expired at its last attempt: dead
    async with sessionmaker.begin() as session:
        for job_id, (until_, attempts) in leases.items():
            await session.execute(update(db.Job).where(db.Job.id == job_id).values(
                status="running", runner="other-host:123:abc", lease_expires_at=until_,
                attempts=attempts, started_at=now))
    out = tmp_path / "recovered.txt"
    done = await asyncio.to_thread(
        subprocess.run, [sys.executable, str(HERE / "jobs_claimer.py"), "recover",
                         settings.database_url, str(out)],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}, capture_output=True,
        text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert sorted(out.read_text().split()) == [ids[0], ids[2]]
    async with sessionmaker() as session:
        rows = {j.id: j for j in await db.list_jobs(session, limit=10)}
    assert (rows[ids[0]].status, rows[ids[0]].attempts, rows[ids[0]].runner) == ("queued", 1,
                                                                                 None)
    assert (rows[ids[1]].status, rows[ids[1]].runner) == ("running", "other-host:123:abc")
    assert (rows[ids[2]].status, rows[ids[2]].attempts, rows[ids[2]].error_code) == (
        "dead", 3, "worker_died")


async def test_jobs_recovered_while_painting_are_claimed_again_and_kept(
        make_service: ServiceFactory, sessionmaker: Sessions) -> None:
    """A running dispatcher recovers a dead runner's batch and claims its jobs again while
    it is still reporting them: the claims stand, and their leases are renewed."""
    submitter = make_service(OfflineExecutor())
    ids = [(await submitter.submit(user_id=user, user_name=user, content=png(n),
                                   style_image=STYLE)).id for n, user in enumerate("abc")]
    now = datetime.now(UTC)
    async with sessionmaker.begin() as session:  # a batch whose runner is about to go quiet
        await session.execute(update(db.Job).where(db.Job.id.in_(ids)).values(
            status="running", runner="other-host:123:abc", attempts=1, started_at=now,
            lease_expires_at=now + timedelta(seconds=0.5)))
    fake = FakeExecutor(workers=3)
    service = make_service(fake, lease_s=0.6, clock=lambda: datetime.now(UTC))
    dispatch = service._dispatch
    report = dispatch._requeued

    async def slowly(record: Any) -> None:  # as on a loaded machine: the claims overtake
        await asyncio.sleep(0.2)
        await report(record)
    dispatch._requeued = slowly  # type: ignore[method-assign]
    await service.start()  # the lease is still alive: recovered later, while running
    await until(lambda: len(fake.submitted) == 3, within=5)
    await asyncio.sleep(1.5)  # over two leases: unrenewed, they would be recovered again
    async with sessionmaker() as session:
        rows = {j.id: j for j in await db.list_jobs(session, limit=10)}
    assert {(r.status, r.runner, r.attempts) for r in rows.values()} == {
        ("running", service.runner_id, 2)}
    assert len(fake.submitted) == 3


# -- limits that hold across processes ----------------------------------------------------

async def test_submits_racing_in_several_processes_keep_a_user_s_limit(
        make_service: ServiceFactory, settings: Settings) -> None:
    """Each service counts the user's jobs and inserts in one transaction; twelve of them
    at once (each on a connection of its own, as processes are) admit exactly the limit."""
    limited = Settings.from_env({}, **{**settings.model_dump(), "max_jobs_per_user": 3})
    services = [make_service(OfflineExecutor(), settings_=limited) for _ in range(12)]
    outcomes = await asyncio.gather(
        *(service.submit(user_id="u", user_name="u", content=png(n), style_image=STYLE)
          for n, service in enumerate(services)), return_exceptions=True)
    admitted = [o for o in outcomes if not isinstance(o, BaseException)]
    refused = [o for o in outcomes if isinstance(o, LimitExceeded)]
    assert (len(admitted), len(refused)) == (3, 9), outcomes


# -- events read from the database --------------------------------------------------------

async def test_a_process_that_does_not_paint_reports_what_another_paints(
        make_service: ServiceFactory) -> None:
    fake, shower, rec = await painter_and_watcher(make_service)
    view = await shower.submit(user_id="u", user_name="u", content=png(1), style_image=STYLE,
                               params={"steps": 9})
    await until(lambda: fake.submitted)
    fake.emit(JobStarted(view.id, 0, 1))
    fake.emit(JobProgress(view.id, 4, 9, 1.0, 2.0, b"jpeg"))
    await rec.wait_for(lambda: rec.of(events.JobProgress, view.id))
    progress = rec.of(events.JobProgress, view.id)[-1]
    assert (progress.step, progress.total, progress.preview_jpeg) == (4, 9, b"jpeg")
    fake.emit(JobSucceeded(view.id, png(7), {}))
    assert (await shower.wait(view.id, timeout_s=5)).status is JobStatus.succeeded
    await rec.wait_for(lambda: rec.of(events.JobSucceeded, view.id))
    assert rec.of(events.JobSucceeded, view.id)[0].png == png(7)
    assert rec.kinds(view.id) == ["JobQueued", "JobStarted", "JobProgress", "JobSucceeded"]


async def test_a_bot_without_workers_reports_jobs_submitted_and_painted_elsewhere(
        make_service: ServiceFactory) -> None:
    """Every job in the database, whoever submitted it: what a bot process that leaves the
    painting to `stylebot worker`s delivers from."""
    fake = FakeExecutor()
    painter = make_service(fake)
    await painter.start()
    bot = make_service(OfflineExecutor(), watch=True)
    rec = Recorder()
    bot.subscribe(rec)
    await bot.start()
    view = await painter.submit(user_id="u", user_name="u", content=png(1), style_image=STYLE,
                                params={"steps": 9})
    await until(lambda: fake.submitted)
    fake.emit(JobProgress(view.id, 4, 9, 1.0, 2.0, None))
    await rec.wait_for(lambda: rec.of(events.JobProgress, view.id))
    fake.emit(JobFailed(view.id, "worker_died", "gone", retryable=True))
    await until(lambda: len(fake.submitted) == 2)  # put back, and taken again at once
    await rec.wait_for(lambda: len(rec.of(events.JobStarted, view.id)) == 2)
    fake.emit(JobSucceeded(view.id, png(7), {}))
    assert (await bot.wait(view.id, timeout_s=5)).attempts == 2
    await rec.wait_for(lambda: rec.of(events.JobSucceeded, view.id))
    assert rec.kinds(view.id) == ["JobStarted", "JobProgress", "JobQueued", "JobStarted",
                                  "JobSucceeded"]
    assert rec.of(events.JobQueued, view.id)[0].job.attempts == 1


async def test_a_service_that_paints_and_watches_reports_each_change_once(
        make_service: ServiceFactory) -> None:
    fake = FakeExecutor()
    service = make_service(fake, watch=True)
    rec = Recorder()
    service.subscribe(rec)
    await service.start()
    view = await service.submit(user_id="u", user_name="u", content=png(1), style_image=STYLE,
                                params={"steps": 9})
    await until(lambda: fake.submitted)
    fake.emit(JobStarted(view.id, 0, 1))
    fake.emit(JobProgress(view.id, 4, 9, 1.0, 2.0, None))
    fake.emit(JobSucceeded(view.id, png(7), {}))
    await service.wait(view.id, timeout_s=5)
    await asyncio.sleep(0.3)  # several of the watcher's polls
    assert rec.kinds(view.id) == ["JobQueued", "JobStarted", "JobProgress", "JobSucceeded"]


@postgresql_only
async def test_notifications_wake_other_processes_long_before_their_poll(
        make_service: ServiceFactory) -> None:
    fake = FakeExecutor()
    painter = make_service(fake, poll_interval_s=30)
    await painter.start()
    shower = make_service(OfflineExecutor(), watch=True, poll_interval_s=30)
    rec = Recorder()
    shower.subscribe(rec)
    await shower.start()
    await asyncio.sleep(0.2)  # the painter's first look at the queue, which is empty
    started = time.monotonic()
    view = await shower.submit(user_id="u", user_name="u", content=png(1), style_image=STYLE)
    await until(lambda: fake.submitted, within=3)  # NOTIFY on the queued channel
    await rec.wait_for(lambda: rec.of(events.JobStarted, view.id), within=3)
    fake.emit(JobSucceeded(view.id, png(7), {}))
    assert (await shower.wait(view.id, timeout_s=3)).status is JobStatus.succeeded
    await rec.wait_for(lambda: rec.of(events.JobSucceeded, view.id), within=3)
    assert time.monotonic() - started < 5


def test_notification_payloads_carry_a_job_id_and_a_version_only() -> None:
    assert notify.payload("abc234", 17) == "abc234:17"
    assert notify.parse("abc234:17") == ("abc234", 17)
    assert notify.parse("something else") is None
    assert notify.parse(":3") is None


# -- delivery claimed once ----------------------------------------------------------------

async def test_exactly_one_process_claims_a_result_s_delivery(
        make_service: ServiceFactory, clock: TickingClock) -> None:
    fake = FakeExecutor(auto=lambda r: [JobSucceeded(r.job_id, png(3), {})])
    runner = make_service(fake)
    await runner.start()
    view = await runner.submit(user_id="u", user_name="u", content=png(1), style_image=STYLE)
    await runner.wait(view.id, timeout_s=5)
    bots = [make_service(OfflineExecutor()) for _ in range(4)]
    claims = await asyncio.gather(*(bot.claim_delivery(view.id) for bot in bots))
    assert claims.count(True) == 1
    winner = bots[claims.index(True)]
    loser = bots[(claims.index(True) + 1) % 4]
    assert await winner.claim_delivery(view.id) is True  # its own claim, renewed
    assert await loser.claim_delivery(view.id) is False
    await winner.release_delivery(view.id)  # it could deliver nowhere: the next one tries
    assert await loser.claim_delivery(view.id) is True
    assert await winner.claim_delivery(view.id) is False
    clock.advance(121)  # the claimant died without delivering: its claim runs out
    assert await winner.claim_delivery(view.id) is True
    assert await loser.claim_delivery(view.id) is False
    await winner.release_delivery(view.id)
    assert await loser.claim_delivery(view.id) is True
    assert await loser.mark_delivered(view.id) is True
    clock.advance(121)
    assert [await bot.claim_delivery(view.id) for bot in bots] == [False] * 4


# -- images where every machine can read them ---------------------------------------------

async def test_the_blob_store_round_trips(database: str, settings: Settings,
                                          sessionmaker: Sessions) -> None:
    chosen = open_storage(settings.database_url, settings.blobs_dir, sessionmaker)
    expected = DatabaseBlobStorage if database == "postgresql" else BlobStorage
    assert type(chosen) is expected
    stores: list[BlobStore] = [chosen, DatabaseBlobStorage(sessionmaker)]
    for n, store in enumerate(stores):
        data = png(n, 64, 64)
        digests = await asyncio.gather(*(store.put_async(data) for _ in range(4)))
        assert set(digests) == {sha256_hex(data)}
        assert await store.get_async(digests[0]) == data
        assert await store.exists_async(digests[0])
        assert not await store.exists_async("0" * 64)
        with pytest.raises(BlobNotFound):
            await store.get_async("0" * 64)
        with pytest.raises(ValueError, match="not a sha256"):
            await store.get_async("../../etc/passwd")
    async with sessionmaker() as session:  # stored once, whoever wrote it how often
        assert await session.scalar(select(func.count()).select_from(db.Blob)) == (
            1 if database == "sqlite" else 2)
    if database == "postgresql":
        assert not settings.blobs_dir.exists()  # nothing on this machine's disk


@postgresql_only
async def test_processes_starting_together_on_a_new_database_migrate_it_once(
        database_url: str) -> None:
    # Each with its own engine and connection, as separate processes would be; without the
    # advisory lock the second CREATE TABLE fails.
    await asyncio.gather(*(upgrade_database(database_url) for _ in range(3)))
    assert await current_revision(database_url) == ScriptDirectory.from_config(
        alembic_config()).get_current_head()
