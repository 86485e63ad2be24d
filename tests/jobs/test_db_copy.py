"""`stylebot db copy --to URL`: a SQLite history with its images on disk goes into
PostgreSQL whole; stopped part-way (a cancelled run, a Ctrl-C) and run again it ends the
same; a second run copies nothing; conflicts, bad targets and damaged copies are refused
in one line."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jobs_postgres
import pytest
from jobs_helpers import until
from jobs_postgres import postgresql_only
from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.cli import main as cli
from bot.jobs.copy import (
    BLOBS,
    JOBS,
    PREVIEWS,
    CopyConflict,
    CopyCounts,
    CopyError,
    Tally,
    Verification,
    check_urls,
    copy_history,
    head_revision,
    open_databases,
    verify_copy,
)
from bot.jobs.db import create_engine_and_sessionmaker, upgrade_database
from bot.jobs.states import JobStatus
from bot.jobs.storage import BlobStorage, DatabaseBlobStorage, sha256_hex

JOB_COUNT = 300
BATCH = 50
STYLES = [random.Random(f"style{n}").randbytes(700) for n in range(3)]
ID_LETTERS = "abcdefghjkmnpqrstuvwxyz23456789"
UNREACHABLE = "postgresql+asyncpg://postgres@127.0.0.1:1/nothing"


@dataclass(frozen=True)
class Snapshot:
    """Everything a copy carries, as read back from one side."""

    jobs: dict[str, dict[str, Any]]
    previews: dict[str, tuple[int, bytes]]
    images: dict[str, bytes]  # of the hashes the jobs name


# -- the source: a SQLite database with 300 jobs, their images on disk, some previews ------

def _source_rows() -> tuple[list[dict[str, Any]], dict[str, str], dict[str, bytes]]:
    """Job rows (every status, odd text, JSON, shared styles, remixes: one older than its
    parent, ties on created_at), their parents by id, and the images by hash."""
    rng = random.Random(7)
    start = datetime(2026, 11, 1, 12, 0, 0, 123456, tzinfo=UTC)
    statuses = list(JobStatus)
    ids: list[str] = []
    while len(ids) < JOB_COUNT:
        job_id = "".join(rng.choice(ID_LETTERS) for _ in range(6))
        if job_id not in ids:
            ids.append(job_id)
    images = {sha256_hex(style): style for style in STYLES}
    rows, parents = [], {}
    for n, job_id in enumerate(ids):
        status = statuses[n % len(statuses)]
        # Ten jobs share one instant: the order falls back on the id.
        created = start + timedelta(seconds=n if not 100 <= n < 110 else 100,
                                    microseconds=7 * n)
        photo = rng.randbytes(200 + n % 300)
        images[sha256_hex(photo)] = photo
        output = None
        if status is JobStatus.succeeded:
            painting = rng.randbytes(300 + n % 200)
            output = sha256_hex(painting)
            images[output] = painting
        begun = status is not JobStatus.queued and not (status is JobStatus.cancelled
                                                        and n % 4 == 0)
        rows.append({
            "id": job_id, "user_id": f"u{n % 17}", "user_name": f"Zoë ✓ 'n{n}' \"q\"",
            "guild_id": str(10**17 + n % 5) if n % 3 else None, "channel_id": str(n),
            "source": ("cli", "slash", "context_menu")[n % 3],
            "style": "custom" if n % 7 == 0 else "mosaic", "style_hash": sha256_hex(
                STYLES[n % 3]), "input_hash": sha256_hex(photo), "output_hash": output,
            "params": {"steps": 5 + n, "size": 48, "style_weight": n * 1e4 + 0.1,
                       "colour": n % 2 == 0, "blend": [{"style": "mosaic", "weight": 0.5}]},
            "batch_key": f"48x48:{n % 4:04x}" if n % 2 else None, "private": n % 11 == 0,
            "status": status.value,
            "error_code": "internal" if status in (JobStatus.failed, JobStatus.dead) else None,
            "error_message": "line one\nline 'two'" if status is JobStatus.failed else None,
            "attempts": n % 4, "cancel_requested": status is JobStatus.cancelled,
            "runner": f"host:{1000 + n}:ab12" if status is JobStatus.running else None,
            "lease_expires_at": created + timedelta(minutes=1)
            if status is JobStatus.running else None,
            "step": n % 5, "total_steps": 5 + n, "created_at": created,
            "started_at": created + timedelta(seconds=2) if begun else None,
            "finished_at": created + timedelta(seconds=9) if status.is_final and begun
            else None,
            "interaction_token": f"tok-{n}" if n % 2 else None,
            "token_expires_at": created + timedelta(minutes=15) if n % 2 else None,
            "application_id": "42" if n % 2 else None, "progress_message_id": str(n * 3),
            "result_message_id": str(n * 5) if status.is_final else None,
            "result_channel_id": str(n) if status.is_final else None,
            "delivered": status.is_final and n % 5 != 0,
            "delivered_at": created + timedelta(seconds=10)
            if status.is_final and n % 5 != 0 else None,
            "delivery_claimed_by": "host:1:cd34" if n % 13 == 0 else None,
            "delivery_claim_expires_at": created if n % 13 == 0 else None,
            "version": n % 9, "parent_id": None,
        })
        if n % 10 == 5:  # a remix of an older job
            parents[job_id] = ids[n - 5]
    parents[ids[250]] = ids[260]  # a parent younger than its remix (clocks disagreed)
    parents[ids[30]] = ids[250]   # and its remix: a chain of two
    return rows, parents, images


async def _build_source(data_dir: Path) -> None:
    url = f"sqlite+aiosqlite:///{data_dir / 'stylebot.db'}"
    await upgrade_database(url)
    rows, parents, images = _source_rows()
    store = BlobStorage(data_dir / "blobs")
    for digest, data in images.items():  # straight to the files: no fsync per image
        path = store.path_for(digest)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    engine, sm = create_engine_and_sessionmaker(url)
    try:
        async with sm.begin() as session:
            await session.execute(insert(JOBS), rows)
            for child, parent in parents.items():  # the parents exist now
                await session.execute(update(JOBS).where(JOBS.c.id == child)
                                      .values(parent_id=parent))
            running = [r["id"] for r in rows if r["status"] == "running"][:10]
            await session.execute(insert(PREVIEWS), [
                {"job_id": job_id, "step": n + 1, "jpeg": random.Random(job_id).randbytes(400)}
                for n, job_id in enumerate(running)])
    finally:
        await engine.dispose()


@pytest.fixture(scope="module")
def source_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built once; each test copies it."""
    data_dir = tmp_path_factory.mktemp("source") / "data"
    asyncio.run(_build_source(data_dir))
    return data_dir


@dataclass(frozen=True)
class Source:
    data_dir: Path
    url: str
    order: list[str]  # the job ids, oldest first (the copy's order)

    @property
    def blobs_dir(self) -> Path:
        return self.data_dir / "blobs"


@pytest.fixture
def source(source_template: Path, tmp_path: Path) -> Source:
    """The test's own copy of the source, in `tmp_path/data` (the CLI's data dir)."""
    data_dir = tmp_path / "data"
    shutil.copytree(source_template, data_dir)
    rows = sorted(_source_rows()[0], key=lambda r: (r["created_at"], r["id"]))
    return Source(data_dir, f"sqlite+aiosqlite:///{data_dir / 'stylebot.db'}",
                  [r["id"] for r in rows])


# -- reading both sides ----------------------------------------------------------------------

@contextlib.asynccontextmanager
async def _sessions(url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine, sm = create_engine_and_sessionmaker(url)
    try:
        yield sm
    finally:
        await engine.dispose()


async def _snapshot(url: str, blobs_dir: Path | None = None) -> Snapshot:
    """The jobs, previews and images of a database; images from `blobs_dir` when given,
    else from its `blobs` table."""
    async with _sessions(url) as sm, sm() as session:
        jobs = {row["id"]: dict(row) for row in (await session.execute(select(JOBS))).mappings()}
        previews = {job_id: (step, jpeg) for job_id, step, jpeg in
                    (await session.execute(select(PREVIEWS))).all()}
        named = {row[c] for row in jobs.values()
                 for c in ("input_hash", "style_hash", "output_hash") if row[c]}
        if blobs_dir is not None:
            store = BlobStorage(blobs_dir)
            images = {h: store.get(h) for h in named if store.exists(h)}
        else:
            images = dict((await session.execute(
                select(BLOBS.c.sha256, BLOBS.c.data))).all())
    return Snapshot(jobs, previews, images)


async def _copy(source: Source, target_url: str, *, on_progress: Any = None
                ) -> tuple[CopyCounts, Verification]:
    async with open_databases(source_url=source.url, source_blobs_dir=source.blobs_dir,
                              target_url=target_url) as dbs:
        copied = await copy_history(dbs, batch_size=BATCH, on_progress=on_progress)
        return copied, await verify_copy(dbs)


def _assert_same(source: Snapshot, target: Snapshot) -> None:
    assert target.jobs.keys() == source.jobs.keys()
    for job_id, row in source.jobs.items():  # every column, read through the same types
        assert target.jobs[job_id] == row, job_id
    assert target.previews == source.previews
    assert target.images == source.images
    assert all(sha256_hex(data) == digest for digest, data in target.images.items())


async def _main(*args: str) -> int:
    """`stylebot ARGS` in this process, in a thread: it runs an event loop of its own."""
    return await asyncio.to_thread(cli.main, list(args))


# -- the copy ----------------------------------------------------------------------------------

@postgresql_only
async def test_a_copy_cancelled_part_way_ends_the_same_when_run_again(
        source: Source, database_url: str) -> None:
    expected = await _snapshot(source.url, source.blobs_dir)
    assert len(expected.jobs) == JOB_COUNT
    assert len(expected.previews) == 10
    task: asyncio.Future[tuple[CopyCounts, Verification]] | None = None
    stages: list[tuple[str, int, int]] = []

    def cancel_after_two_batches(stage: str, done: int, total: int) -> None:
        stages.append((stage, done, total))
        if len(stages) == 2 and task is not None:
            task.cancel()  # what Ctrl-C does to `asyncio.run`'s task

    # The target is empty: the copy migrates it first.
    task = asyncio.ensure_future(_copy(source, database_url,
                                       on_progress=cancel_after_two_batches))
    with pytest.raises(asyncio.CancelledError):
        await task
    assert stages == [("copying jobs", 50, 300), ("copying jobs", 100, 300)]
    partial = await _snapshot(database_url)
    # The first two batches, and the ancestors one of them needed from later ones.
    assert set(partial.jobs) == set(source.order[:100]) | _ancestors(expected, 30)
    for row in partial.jobs.values():  # a job copied has its images
        assert {row["input_hash"], row["style_hash"], row["output_hash"]} - {None} <= set(
            partial.images)

    copied, checked = await _copy(source, database_url)
    assert copied.jobs == JOB_COUNT - len(partial.jobs)
    assert copied.previews == 10
    assert copied.images == len(expected.images) - len(partial.images)
    assert checked.ok, checked.problems
    assert (checked.jobs.source, checked.jobs.target) == (300, 300)
    assert (checked.images.source, checked.images.target) == (len(expected.images),) * 2
    assert (checked.previews.source, checked.previews.target) == (10, 10)
    assert checked.unavailable_images == ()
    done = await _snapshot(database_url)
    _assert_same(expected, done)

    copied, checked = await _copy(source, database_url)  # again: nothing to do
    assert copied == CopyCounts()
    assert checked.ok
    assert await _snapshot(database_url) == done


def _ancestors(snapshot: Snapshot, position: int) -> set[str]:
    """The parent, grandparent... of the job at `position` in creation order."""
    rows = sorted(snapshot.jobs.values(), key=lambda r: (r["created_at"], r["id"]))
    found: set[str] = set()
    parent = rows[position]["parent_id"]
    while parent is not None:
        found.add(parent)
        parent = snapshot.jobs[parent]["parent_id"]
    assert len(found) == 2  # the chain `_source_rows` makes
    return found


@postgresql_only
@pytest.mark.slow
@pytest.mark.timeout(60)
async def test_ctrl_c_keeps_the_batches_committed_and_the_same_command_goes_on(
        source: Source, migrated_database_url: str, in_process: Path) -> None:
    target = migrated_database_url
    expected = await _snapshot(source.url, source.blobs_dir)
    async with _sessions(target) as sm:
        # Hold the first job of the third batch, uncommitted: the copy's insert waits for
        # this transaction, after two batches are in, until Ctrl-C.
        holder = sm()
        await holder.begin()
        await holder.execute(insert(JOBS).values(expected.jobs[source.order[2 * 20]]))
        proc = _start_copy(source, target, "--batch-size", "20")
        try:
            # Two batches, with the ancestors the second one needs; then it waits.
            copied = 2 * 20 + len(_ancestors(expected, 30))

            async def two_batches_in() -> bool:
                return proc.poll() is not None or await _count(sm) >= copied

            await until(two_batches_in, within=30)
            await asyncio.sleep(0.3)
            assert await _count(sm) == copied
            await asyncio.sleep(0.3)
            assert proc.poll() is None  # waiting on the held row
            proc.send_signal(signal.SIGINT)
            try:
                out, err = await asyncio.to_thread(proc.communicate, timeout=45)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGABRT)  # faulthandler: every thread's stack
                out, err = await asyncio.to_thread(proc.communicate, timeout=20)
                pytest.fail(f"stylebot db copy did not stop on Ctrl-C:\n{err}")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            await holder.rollback()
            await holder.close()
        assert proc.returncode == 130, err
        assert err == ("stylebot: interrupted; what was copied stays copied: run the same "
                       "command again to go on\n")
        assert out == ""
        assert await _count(sm) == copied

    assert await _main("db", "copy", "--to", target) == 0
    _assert_same(expected, await _snapshot(target))


def _start_copy(source: Source, target: str, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STYLEBOT_")}
    env.update(STYLEBOT_DATA_DIR=str(source.data_dir), PYTHONPATH=os.pathsep.join(sys.path),
               PYTHONFAULTHANDLER="1")
    return subprocess.Popen([sys.executable, "-m", "bot.cli", "db", "copy", "--to", target,
                             *args], cwd=source.data_dir.parent, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_as_in_a_terminal)


def _as_in_a_terminal() -> None:
    """Ctrl-C as an operator's foreground command gets it. A test suite started in the
    background by a non-interactive shell (`make test &`, some CI runners) ignores SIGINT,
    as POSIX asks of background jobs, and its children inherit that: Python then never
    raises KeyboardInterrupt, and the copy waits on its held row for good."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


async def _count(sm: async_sessionmaker[AsyncSession]) -> int:
    async with sm() as session:
        return int(await session.scalar(select(func.count()).select_from(JOBS)) or 0)


@postgresql_only
async def test_the_cli_prints_a_table_and_a_second_run_copies_nothing(
        source: Source, database_url: str, in_process: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    images = len((await _snapshot(source.url, source.blobs_dir)).images)
    assert await _main("db", "copy", "--to", database_url) == 0
    first = capsys.readouterr()
    where = make_url(database_url).render_as_string(hide_password=True)
    assert first.out.splitlines() == [
        f"from {source.url}",
        f"to   {where}",
        "          source  target  copied now",
        "jobs         300     300         300",
        f"images       {images}     {images}         {images}",
        "previews      10      10          10",
        "verified: every job identical in every column, every image matching its sha256"]
    assert first.err == ""  # no bar: stderr is not a terminal

    assert await _main("db", "copy", "--to", database_url) == 0
    second = capsys.readouterr()
    assert second.out.splitlines()[3:6] == [
        "jobs         300     300           0",
        f"images       {images}     {images}           0",
        "previews      10      10           0"]
    assert second.err == ""


@postgresql_only
async def test_a_different_job_under_the_same_id_stops_the_copy_before_it_writes(
        source: Source, migrated_database_url: str, in_process: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    target = migrated_database_url
    expected = await _snapshot(source.url, source.blobs_dir)
    clash = source.order[3]  # in the first batch
    async with _sessions(target) as sm, sm.begin() as session:
        await session.execute(insert(JOBS).values(
            {**expected.jobs[clash], "user_name": "somebody else",
             "version": expected.jobs[clash]["version"] + 1}))
    with pytest.raises(CopyConflict, match=f"different job {clash} "):
        await _copy(source, target)
    assert await _main("db", "copy", "--to", target) == 1
    err = capsys.readouterr().err
    assert err == (f"stylebot: the target already holds a different job {clash} (differing "
                   "in user_name, version): another database's job under that id, or one "
                   "that changed on either side since an earlier copy (the new database's "
                   "workers may have painted it); the copy stopped there\n")
    after = await _snapshot(target)
    assert list(after.jobs) == [clash]
    assert after.images == {}  # not even the batch's images


@postgresql_only
async def test_a_row_postgresql_refuses_stops_the_copy_in_one_line(
        source: Source, migrated_database_url: str, in_process: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    target = migrated_database_url
    # SQLite keeps text longer than its column's declared length; PostgreSQL does not.
    async with _sessions(source.url) as sm, sm.begin() as session:
        await session.execute(update(JOBS).where(JOBS.c.id == source.order[60])
                              .values(error_code="x" * 40))
    assert await _main("db", "copy", "--to", target, "--batch-size", "50") == 1
    assert capsys.readouterr().err == (
        f"stylebot: the target refused the jobs {source.order[50]} to {source.order[99]}: "
        "value too long for type character varying(32); nothing more was copied\n")
    assert len((await _snapshot(target)).jobs) == 50 + 2  # the first batch, ancestors


@postgresql_only
async def test_a_damaged_image_in_the_target_fails_the_verification(
        source: Source, migrated_database_url: str, in_process: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    target = migrated_database_url
    await _copy(source, target)
    digest = sorted((await _snapshot(target)).images)[0]
    async with _sessions(target) as sm, sm.begin() as session:
        await session.execute(update(BLOBS).where(BLOBS.c.sha256 == digest)
                              .values(data=b"not the image"))
    assert await _main("db", "copy", "--to", target) == 1
    out, err = capsys.readouterr()
    assert out.splitlines()[-1] == "NOT verified: see below"
    assert err == (f"stylebot: verification failed: 1 image damaged in the target (bytes "
                   f"not matching the sha256): {digest}\n")

    changed = source.order[0]  # and a job changed behind the copy's back
    async with _sessions(target) as sm, sm.begin() as session:
        await session.execute(update(JOBS).where(JOBS.c.id == changed)
                              .values(attempts=JOBS.c.attempts + 1))
    async with open_databases(source_url=source.url, source_blobs_dir=source.blobs_dir,
                              target_url=target) as dbs:
        checked = await verify_copy(dbs)
    assert checked.problems == (
        f"1 job different in the target: {changed} in attempts",
        f"1 image damaged in the target (bytes not matching the sha256): {digest}")
    assert checked.jobs == Tally(300, 299)
    assert checked.images.source - checked.images.target == 1


@postgresql_only
async def test_images_missing_from_the_source_are_named_and_the_rest_copied(
        source: Source, migrated_database_url: str, in_process: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    target = migrated_database_url
    row = (await _snapshot(source.url, source.blobs_dir)).jobs[source.order[7]]
    lost = row["input_hash"]
    BlobStorage(source.blobs_dir).path_for(lost).unlink()
    assert await _main("db", "copy", "--to", target) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[-1].startswith("verified:")
    assert err == (f"stylebot: warning: 1 image that jobs name missing or damaged in the "
                   f"source, so not copied: {lost}\n")
    copied = await _snapshot(target)
    assert len(copied.jobs) == JOB_COUNT  # the job itself is history: it is copied
    assert lost not in copied.images


@postgresql_only
async def test_from_one_postgresql_database_to_another(
        migrated_database_url: str, postgres: jobs_postgres.Server, tmp_path: Path) -> None:
    source_url = migrated_database_url
    rows = _source_rows()[0][:12]
    async with _sessions(source_url) as sm:
        store = DatabaseBlobStorage(sm)
        for data in [*STYLES, *(random.Random(n).randbytes(100) for n in range(12))]:
            await store.put_async(data)
        async with sm.begin() as session:
            await session.execute(insert(JOBS), [
                {**r, "output_hash": None, "input_hash": sha256_hex(
                    random.Random(n).randbytes(100))} for n, r in enumerate(rows)])
    target = await jobs_postgres.create_database(postgres.url, template=postgres.migrated)
    try:
        source = Source(tmp_path / "unused", source_url, [])
        copied, checked = await _copy(source, target)
        assert (copied.jobs, copied.images, copied.previews) == (12, 15, 0)
        assert checked.ok, checked.problems
        expected = await _snapshot(source_url)
        _assert_same(expected, await _snapshot(target))
    finally:
        await jobs_postgres.drop_database(postgres.url, make_url(target).database or "")


# -- refusals ------------------------------------------------------------------------------

@pytest.mark.parametrize(("to", "message"), [
    ("nonsense", "--to 'nonsense' is not a database URL; use "
     "postgresql+asyncpg://USER:PASSWORD@HOST:PORT/DATABASE"),
    ("sqlite+aiosqlite:///other.db", "--to must name a PostgreSQL database "
     "(postgresql+asyncpg://USER@HOST/DATABASE), not sqlite+aiosqlite"),
    ("postgresql://postgres@127.0.0.1/stylebot", "--to must name the asyncpg driver: "
     "postgresql+asyncpg://… (not postgresql)"),
    ("postgresql+asyncpg://postgres@127.0.0.1", "--to names no database: "
     "postgresql+asyncpg://USER@HOST/DATABASE"),
])
def test_a_target_that_is_not_postgresql_is_refused(
        in_process: Path, capsys: pytest.CaptureFixture[str], to: str, message: str) -> None:
    assert cli.main(["db", "copy", "--to", to]) == 2
    assert capsys.readouterr().err == f"stylebot: {message}\n"


def test_no_source_database_is_refused(in_process: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["db", "copy", "--to", UNREACHABLE]) == 2
    path = in_process / "data" / "stylebot.db"
    assert capsys.readouterr().err == (
        f"stylebot: no database to copy: {path} does not exist (STYLEBOT_DATABASE_URL or "
        "--data-dir names the source)\n")
    assert not path.exists()  # looking did not create it
    path.parent.mkdir()
    path.write_bytes(b"")
    assert cli.main(["db", "copy", "--to", UNREACHABLE]) == 2
    assert capsys.readouterr().err == (
        f"stylebot: no database to copy: sqlite+aiosqlite:///{path} holds no stylebot "
        "tables\n")


async def test_a_source_behind_the_migrations_is_refused(
        in_process: Path, capsys: pytest.CaptureFixture[str]) -> None:
    await upgrade_database(f"sqlite+aiosqlite:///{in_process / 'data' / 'stylebot.db'}",
                           "0003")
    assert await _main("db", "copy", "--to", UNREACHABLE) == 2
    assert capsys.readouterr().err == (
        f"stylebot: the source database is at revision 0003, this stylebot's is "
        f"{head_revision()}: run `stylebot db upgrade` on it first\n")


def test_an_unreachable_target_and_a_bad_batch_size_are_one_line(
        source: Source, in_process: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["db", "copy", "--to", UNREACHABLE]) == 1
    err = capsys.readouterr().err
    assert err.startswith("stylebot: cannot connect to the database "
                          "postgresql+asyncpg://postgres@127.0.0.1:1/nothing: ")
    assert err.count("\n") == 1
    assert cli.main(["db", "copy", "--to", UNREACHABLE, "--batch-size", "0"]) == 2
    assert capsys.readouterr().err == "stylebot: --batch-size must be between 1 and 500\n"


def test_the_source_itself_is_refused_by_its_url(in_process: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("STYLEBOT_DATABASE_URL",
                       "postgresql+asyncpg://bot:secret@DB.example/stylebot")
    assert cli.main(["db", "copy", "--to",
                     "postgresql+asyncpg://admin:other@db.example:5432/stylebot"]) == 2
    assert capsys.readouterr().err == (
        "stylebot: --to is the source database itself "
        "(postgresql+asyncpg://bot:***@DB.example/stylebot)\n")
    check_urls("postgresql+asyncpg://bot@db.example/stylebot",
               "postgresql+asyncpg://bot@db.example/stylebot_new")  # another database: fine


@postgresql_only
async def test_the_source_itself_is_refused_under_another_host_name(
        migrated_database_url: str) -> None:
    url = make_url(migrated_database_url)
    assert url.host == "127.0.0.1"
    other_name = url.set(host="localhost").render_as_string(hide_password=False)
    with pytest.raises(CopyError, match=r"^--to is the source database itself "):
        async with open_databases(source_url=migrated_database_url,
                                  source_blobs_dir=Path("unused"), target_url=other_name):
            pass
