"""Copying a stylebot database and its images into another one (`stylebot db copy`), so
that a bot that outgrows one machine takes every user's history to PostgreSQL.

What is copied, as it is (every column, statuses and times untouched):
- every row of `jobs`;
- every row of `job_previews` (only running jobs have one; they are few);
- every image a job names (its photo, style and painting), from the source's blob store
  (`bot.jobs.storage.open_storage`: files in the data folder for SQLite, the `blobs`
  table for PostgreSQL) into the target's `blobs` table. Images no job names (left by a
  request refused after its upload) stay behind; so does the source's `alembic_version`:
  the target is migrated to head first, and the source must be at head too.

Safe to repeat, and to stop at any moment. Jobs go in batches, oldest first (`created_at`,
then `id`: a stable order), each batch in one transaction, after the images it names have
been committed: a job in the target always has its images. Every insert is `INSERT ... ON
CONFLICT DO NOTHING`, and what the target already holds is not sent again (images are
looked up by hash before they are read), so a second run copies nothing, and a run after
an interruption passes over what the first one wrote and goes on. A job the target holds
under the same id with any other value is a conflict (`CopyConflict`): the batch holding
it is not written, and nothing more is; so with a row PostgreSQL refuses (`CopyStopped`).
Nothing should write to the source meanwhile (stop the bot): a job changed after it was
copied is such a conflict at the next run.

`verify_copy` then reads both sides: every job row equal in every column, every preview's
step and sha256 equal, every image present in the target with bytes that hash to its name
(computed by PostgreSQL, so the images do not travel back).

Long because the copy, its refusals and its verification are one story: whoever wants to
know what `stylebot db copy` promises reads this file and no other.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Table, and_, func, or_, select, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.jobs.db import (
    Base,
    alembic_config,
    create_engine_and_sessionmaker,
    current_revision,
    upgrade_database,
)
from bot.jobs.storage import BlobNotFound, BlobStore, open_storage, sha256_hex

log = logging.getLogger(__name__)

JOBS: Table = Base.metadata.tables["jobs"]
PREVIEWS: Table = Base.metadata.tables["job_previews"]
BLOBS: Table = Base.metadata.tables["blobs"]
JOB_COLUMNS = tuple(column.name for column in JOBS.columns)

DEFAULT_BATCH_SIZE = 200
# One multi-row INSERT carries a batch (and the parents it needs): PostgreSQL takes at most
# 32,767 parameters per statement, and a job row has ~40 columns.
MAX_BATCH_SIZE = 500
# The most image bytes sent in one transaction (uploads are at most a few MB each).
IMAGE_CHUNK_BYTES = 32 * 1024 * 1024
# Hashes looked up per query while verifying.
VERIFY_PAGE = 500

# `on_progress(what, done, total)`: "copying jobs", "checking jobs", "checking images",
# "checking previews"; called after each batch.
Progress = Callable[[str, int, int], None]


class CopyError(Exception):
    """The copy cannot start or go on; the message is one line for an operator."""


class CopyStopped(CopyError):
    """The copy stopped part-way: the target refused a batch. What went before stays."""


class CopyConflict(CopyStopped):
    """The target holds a different job under an id the source uses."""


@dataclass(frozen=True)
class Databases:
    """The two ends of a copy, opened by `open_databases`."""

    source: async_sessionmaker[AsyncSession]
    source_images: BlobStore
    target: async_sessionmaker[AsyncSession]


@dataclass(frozen=True)
class CopyCounts:
    """What one run wrote to the target (0 everywhere: it held everything already)."""

    jobs: int = 0
    previews: int = 0
    images: int = 0


@dataclass(frozen=True)
class Tally:
    """How many of the source's items there are, and how many the target holds equal."""

    source: int
    target: int


@dataclass(frozen=True)
class Verification:
    """What `verify_copy` found. `problems`: one phrase per kind of difference (empty:
    verified). `unavailable_images`: hashes jobs name that the source itself lacks, or
    holds damaged; they cannot be copied, and are not counted as the copy's fault."""

    jobs: Tally
    previews: Tally
    images: Tally
    unavailable_images: tuple[str, ...]
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


# ---------------------------------------------------------------------- refusals, opening

def describe(url: str) -> str:
    """`url` as it may be shown: without its password."""
    return make_url(url).render_as_string(hide_password=True)


def check_urls(source_url: str, target_url: str) -> None:
    """Raises `CopyError` unless `target_url` names a PostgreSQL database through the
    asyncpg driver, other than the source's as far as the two URLs tell (same host, port
    and database; `open_databases` also asks the servers)."""
    try:
        target = make_url(target_url)
    except ArgumentError:
        raise CopyError(f"--to {target_url!r} is not a database URL; use "
                        "postgresql+asyncpg://USER:PASSWORD@HOST:PORT/DATABASE") from None
    if target.get_backend_name() != "postgresql":
        raise CopyError(f"--to must name a PostgreSQL database "
                        f"(postgresql+asyncpg://USER@HOST/DATABASE), not {target.drivername}")
    if target.get_driver_name() != "asyncpg":
        raise CopyError(f"--to must name the asyncpg driver: postgresql+asyncpg://… "
                        f"(not {target.drivername})")
    if not target.database:
        raise CopyError("--to names no database: postgresql+asyncpg://USER@HOST/DATABASE")
    source = make_url(source_url)
    if source.get_backend_name() == "postgresql" and _place(source) == _place(target):
        raise CopyError(f"--to is the source database itself ({describe(source_url)})")


def _place(url: URL) -> tuple[str, int, str | None]:
    return ((url.host or "localhost").lower(), url.port or 5432, url.database)


def head_revision() -> str | None:
    """The newest migration this program has."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


@contextlib.asynccontextmanager
async def open_databases(*, source_url: str, source_blobs_dir: Path, target_url: str
                         ) -> AsyncIterator[Databases]:
    """Checks both ends, migrates the target to head, and yields them; closes both after.

    Raises `CopyError` when --to is not a PostgreSQL URL, is the source itself, when there
    is no source database (no SQLite file, or no stylebot tables in it) or it is not at
    head, or when the target cannot be migrated; `bot.jobs.db.DatabaseUnavailable` when
    either cannot be reached."""
    check_urls(source_url, target_url)
    source = make_url(source_url)
    if source.get_backend_name() == "sqlite":
        _check_source_file(source)
    revision, head = await current_revision(source_url), head_revision()
    if revision is None:
        raise CopyError(f"no database to copy: {describe(source_url)} holds no stylebot "
                        "tables")
    if revision != head:
        raise CopyError(f"the source database is at revision {revision}, this stylebot's is "
                        f"{head}: run `stylebot db upgrade` on it first")
    source_engine, source_sm = create_engine_and_sessionmaker(source_url)
    target_engine, target_sm = create_engine_and_sessionmaker(target_url)
    try:
        # The target first: an unreachable one is reported as such (`DatabaseUnavailable`);
        # were it the source, migrating it would change nothing (it is at head).
        await _migrate(target_url)
        if source.get_backend_name() == "postgresql":
            await _refuse_one_database(source_sm, target_sm, target_url)
        yield Databases(source=source_sm,
                        source_images=open_storage(source_url, source_blobs_dir, source_sm),
                        target=target_sm)
    finally:
        await source_engine.dispose()
        await target_engine.dispose()


def _check_source_file(source: URL) -> None:
    """Connecting would create a missing SQLite file: look first."""
    path = Path(source.database or "").expanduser()
    if not source.database or source.database == ":memory:" or not path.is_file():
        raise CopyError(f"no database to copy: {path} does not exist "
                        "(STYLEBOT_DATABASE_URL or --data-dir names the source)")


async def _refuse_one_database(source: async_sessionmaker[AsyncSession],
                               target: async_sessionmaker[AsyncSession],
                               target_url: str) -> None:
    """Two URLs may name one database (a host name and its address): ask the servers."""
    # Not the address or port: one server answers on several (127.0.0.1, ::1, a socket).
    which = text("SELECT current_database(), pg_postmaster_start_time(), oid "
                 "FROM pg_database WHERE datname = current_database()")
    async with source() as s, target() as t:
        if tuple((await s.execute(which)).one()) == tuple((await t.execute(which)).one()):
            raise CopyError(f"--to is the source database itself ({describe(target_url)})")


async def _migrate(target_url: str) -> None:
    from alembic.util import CommandError

    try:
        await upgrade_database(target_url)
    except CommandError as exc:  # at a revision this program does not know: a newer one
        raise CopyError(f"cannot migrate the target {describe(target_url)}: "
                        f"{str(exc).splitlines()[0]}") from None


# -------------------------------------------------------------------------------- copying

async def copy_history(dbs: Databases, *, batch_size: int = DEFAULT_BATCH_SIZE,
                       on_progress: Progress | None = None) -> CopyCounts:
    """Copies the jobs, the images they name and the previews (see the module docstring)
    from `dbs.source` into `dbs.target`; returns what this run wrote.

    `batch_size` jobs per transaction (1 to `MAX_BATCH_SIZE`, else `ValueError`).
    Raises `CopyConflict` at the first batch holding a job that the target holds
    differently, `CopyStopped` at the first rows the target refuses (a text longer than
    its column: SQLite does not check lengths); that batch and the rest are not written.
    Other errors of the databases (a lost connection) pass through. Cancelling it
    (Ctrl-C) loses at most the batch in flight."""
    if not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise ValueError(f"batch_size must be between 1 and {MAX_BATCH_SIZE}")
    async with dbs.source() as session:
        total = int(await session.scalar(select(func.count()).select_from(JOBS)) or 0)
    jobs = images = done = 0
    after: tuple[datetime, str] | None = None
    while True:
        async with dbs.source() as session:
            rows = await _source_jobs_after(session, after, batch_size)
        if not rows:
            break
        batch = await _with_missing_parents(dbs, rows)
        async with dbs.target() as session:  # before the images: a conflict writes nothing
            _refuse_conflicts(batch, await _jobs_by_id(session, (r["id"] for r in batch)))
        images += await _copy_images(dbs, _image_hashes(batch))
        jobs += await _insert_jobs(dbs.target, batch)
        done += len(rows)
        after = (rows[-1]["created_at"], rows[-1]["id"])
        log.debug("copied jobs up to %s (%d of %d)", after[1], done, total)
        if on_progress is not None:
            on_progress("copying jobs", done, total)
    previews = await _copy_previews(dbs, batch_size)
    log.info("copied %d jobs, %d images and %d previews", jobs, images, previews)
    return CopyCounts(jobs=jobs, previews=previews, images=images)


async def _source_jobs_after(session: AsyncSession, after: tuple[datetime, str] | None,
                             limit: int) -> list[dict[str, Any]]:
    stmt = select(JOBS).order_by(JOBS.c.created_at, JOBS.c.id).limit(limit)
    if after is not None:
        created_at, job_id = after
        stmt = stmt.where(or_(JOBS.c.created_at > created_at,
                              and_(JOBS.c.created_at == created_at, JOBS.c.id > job_id)))
    return [dict(row) for row in (await session.execute(stmt)).mappings()]


async def _jobs_by_id(session: AsyncSession, job_ids: Iterable[str]
                      ) -> dict[str, dict[str, Any]]:
    ids = list(job_ids)
    if not ids:
        return {}
    rows = (await session.execute(select(JOBS).where(JOBS.c.id.in_(ids)))).mappings()
    return {row["id"]: dict(row) for row in rows}


async def _with_missing_parents(dbs: Databases, rows: list[dict[str, Any]]
                                ) -> list[dict[str, Any]]:
    """`rows` and, before them, those of their ancestors that the target lacks. A parent is
    older than its remix, so this is nearly always `rows` alone; clocks of several machines
    may disagree, though. `jobs.parent_id` is checked at the end of each statement, so a
    batch written in one INSERT may hold a job and its parent in any order."""
    have = {row["id"] for row in rows}
    parents = {row["parent_id"] for row in rows if row["parent_id"]} - have
    extra: list[dict[str, Any]] = []
    while parents:
        async with dbs.target() as session:
            present = set((await session.scalars(
                select(JOBS.c.id).where(JOBS.c.id.in_(list(parents))))).all())
        async with dbs.source() as session:
            found = list((await _jobs_by_id(session, parents - present)).values())
        extra += found
        have |= parents
        parents = {row["parent_id"] for row in found if row["parent_id"]} - have
    return extra + rows


def _image_hashes(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    hashes = {row[name] for row in rows for name in ("input_hash", "style_hash", "output_hash")}
    return sorted(h for h in hashes if h)


async def _copy_images(dbs: Databases, hashes: Sequence[str]) -> int:
    """Writes to the target the images of `hashes` that it lacks; returns how many. An
    image the source lacks, or holds damaged, is left out (`verify_copy` names it)."""
    if not hashes:
        return 0
    async with dbs.target() as session:
        present = set((await session.scalars(
            select(BLOBS.c.sha256).where(BLOBS.c.sha256.in_(list(hashes))))).all())
    written = 0
    chunk: list[dict[str, Any]] = []
    chunk_bytes = 0
    for digest in hashes:
        if digest in present:
            continue
        data = await _source_image(dbs.source_images, digest)
        if data is None:
            continue
        chunk.append({"sha256": digest, "size": len(data), "data": data,
                      "created_at": datetime.now(UTC)})
        chunk_bytes += len(data)
        if chunk_bytes >= IMAGE_CHUNK_BYTES:
            written += await _insert_images(dbs.target, chunk)
            chunk, chunk_bytes = [], 0
    if chunk:
        written += await _insert_images(dbs.target, chunk)
    return written


async def _source_image(images: BlobStore, digest: str) -> bytes | None:
    """The bytes named `digest`, or None when the source lacks them or they do not hash
    to their name (never stored under a wrong name)."""
    try:
        data = await images.get_async(digest)
    except (BlobNotFound, ValueError):  # ValueError: a job names a malformed hash
        log.info("image %s is missing from the source: not copied", digest)
        return None
    if sha256_hex(data) != digest:
        log.info("image %s is damaged in the source: not copied", digest)
        return None
    return data


async def _insert_images(target: async_sessionmaker[AsyncSession],
                         rows: list[dict[str, Any]]) -> int:
    async with target.begin() as session:
        with _refused(f"{len(rows)} images"):
            result = await session.execute(
                postgresql.insert(BLOBS).values(rows)
                .on_conflict_do_nothing(index_elements=[BLOBS.c.sha256])
                .returning(BLOBS.c.sha256))
        return len(result.all())


async def _insert_jobs(target: async_sessionmaker[AsyncSession],
                       rows: list[dict[str, Any]]) -> int:
    """Writes the jobs the target lacks, in one transaction; returns how many. Raises
    `CopyConflict` (writing nothing) if it holds one of them differently."""
    async with target.begin() as session:
        # Again in this transaction: another process may have written meanwhile.
        held = await _jobs_by_id(session, (row["id"] for row in rows))
        _refuse_conflicts(rows, held)
        missing = [row for row in rows if row["id"] not in held]
        if not missing:
            return 0
        with _refused(f"the jobs {missing[0]['id']} to {missing[-1]['id']}"):
            result = await session.execute(
                postgresql.insert(JOBS).values(missing)
                .on_conflict_do_nothing(index_elements=[JOBS.c.id]).returning(JOBS.c.id))
        return len(result.all())


@contextlib.contextmanager
def _refused(what: str) -> Iterator[None]:
    """The target refusing rows (a value longer than its column allows, a NUL character in
    a text: SQLite takes both) as a `CopyStopped` naming them; a lost connection passes."""
    try:
        yield
    except DBAPIError as exc:
        if exc.connection_invalidated:
            raise
        reason = str(exc.orig or exc).strip().splitlines()[0]
        raise CopyStopped(f"the target refused {what}: {reason}; nothing more was "
                          "copied") from None


def _refuse_conflicts(rows: Iterable[Mapping[str, Any]],
                      held: Mapping[str, Mapping[str, Any]]) -> None:
    """`CopyConflict` if the target holds one of `rows` (by id) with other values."""
    for row in rows:
        other = held.get(row["id"])
        if other is not None and (differ := _differences(row, other)):
            raise CopyConflict(
                f"the target already holds a different job {row['id']} (differing in "
                f"{', '.join(differ)}): another database's job under that id, or one that "
                "changed on either side since an earlier copy (the new database's workers "
                "may have painted it); the copy stopped there")


def _differences(row: Mapping[str, Any], other: Mapping[str, Any]) -> list[str]:
    """The columns in which two job rows differ (both read through the same column types:
    aware UTC times, parsed JSON)."""
    return [name for name in JOB_COLUMNS if row[name] != other[name]]


async def _copy_previews(dbs: Databases, batch_size: int) -> int:
    written = 0
    after = ""
    while True:
        async with dbs.source() as session:
            rows = [dict(row) for row in (await session.execute(
                select(PREVIEWS).where(PREVIEWS.c.job_id > after)
                .order_by(PREVIEWS.c.job_id).limit(batch_size))).mappings()]
        if not rows:
            return written
        what = f"the previews of the jobs {rows[0]['job_id']} to {rows[-1]['job_id']}"
        async with dbs.target.begin() as session:
            with _refused(what):
                result = await session.execute(
                    postgresql.insert(PREVIEWS).values(rows)
                    .on_conflict_do_nothing(index_elements=[PREVIEWS.c.job_id])
                    .returning(PREVIEWS.c.job_id))
            written += len(result.all())
        after = rows[-1]["job_id"]


# ---------------------------------------------------------------------------- verifying

async def verify_copy(dbs: Databases, *, on_progress: Progress | None = None
                      ) -> Verification:
    """Compares the target with the source (see the module docstring); changes nothing.
    Errors of the databases pass through."""
    problems: list[str] = []
    jobs, hashes = await _verify_jobs(dbs, problems, on_progress)
    previews = await _verify_previews(dbs, problems, on_progress)
    images, unavailable = await _verify_images(dbs, sorted(hashes), problems, on_progress)
    return Verification(jobs=jobs, previews=previews, images=images,
                        unavailable_images=tuple(unavailable), problems=tuple(problems))


async def _verify_jobs(dbs: Databases, problems: list[str], on_progress: Progress | None
                       ) -> tuple[Tally, set[str]]:
    """Every source job against the target's; also returns the hashes the jobs name."""
    async with dbs.source() as session:
        total = int(await session.scalar(select(func.count()).select_from(JOBS)) or 0)
    missing: list[str] = []
    different: list[str] = []
    hashes: set[str] = set()
    seen = 0
    after = ""
    while True:
        async with dbs.source() as session:
            rows = [dict(row) for row in (await session.execute(
                select(JOBS).where(JOBS.c.id > after).order_by(JOBS.c.id)
                .limit(VERIFY_PAGE))).mappings()]
        if not rows:
            break
        async with dbs.target() as session:
            held = await _jobs_by_id(session, (row["id"] for row in rows))
        for row in rows:
            other = held.get(row["id"])
            if other is None:
                missing.append(row["id"])
            elif differ := _differences(row, other):
                different.append(f"{row['id']} in {', '.join(differ)}")
        hashes.update(_image_hashes(rows))
        seen += len(rows)
        after = rows[-1]["id"]
        if on_progress is not None:
            on_progress("checking jobs", seen, total)
    _note(problems, "job", "missing from the target", missing)
    _note(problems, "job", "different in the target", different)
    return Tally(seen, seen - len(missing) - len(different)), hashes


async def _verify_previews(dbs: Databases, problems: list[str],
                           on_progress: Progress | None) -> Tally:
    async with dbs.source() as session:
        rows = (await session.execute(
            select(PREVIEWS.c.job_id, PREVIEWS.c.step, PREVIEWS.c.jpeg)
            .order_by(PREVIEWS.c.job_id))).all()
    # Previews are few (one per running job): one query each way.
    wanted = {job_id: (step, sha256_hex(jpeg)) for job_id, step, jpeg in rows}
    async with dbs.target() as session:
        held = {job_id: (step, digest) for job_id, step, digest in (await session.execute(
            select(PREVIEWS.c.job_id, PREVIEWS.c.step,
                   func.encode(func.sha256(PREVIEWS.c.jpeg), "hex"))
            .where(PREVIEWS.c.job_id.in_(list(wanted))))).all()}
    wrong = [job_id for job_id, value in wanted.items() if held.get(job_id) != value]
    _note(problems, "preview", "missing or different in the target", wrong)
    if on_progress is not None:
        on_progress("checking previews", len(wanted), len(wanted))
    return Tally(len(wanted), len(wanted) - len(wrong))


async def _verify_images(dbs: Databases, hashes: Sequence[str], problems: list[str],
                         on_progress: Progress | None) -> tuple[Tally, list[str]]:
    """Each image in the target must hash to its name and have its size; PostgreSQL
    computes the hashes. One the target lacks is the copy's fault unless the source
    lacks it too (or holds it damaged)."""
    absent: list[str] = []
    damaged: list[str] = []
    for start in range(0, len(hashes), VERIFY_PAGE):
        page = hashes[start:start + VERIFY_PAGE]
        async with dbs.target() as session:
            found: dict[str, bool] = dict((await session.execute(
                select(BLOBS.c.sha256,
                       and_(func.encode(func.sha256(BLOBS.c.data), "hex") == BLOBS.c.sha256,
                            func.length(BLOBS.c.data) == BLOBS.c.size))
                .where(BLOBS.c.sha256.in_(page)))).all())
        absent += [digest for digest in page if digest not in found]
        damaged += [digest for digest in page if found.get(digest) is False]
        if on_progress is not None:
            on_progress("checking images", start + len(page), len(hashes))
    unavailable = [digest for digest in absent
                   if await _source_image(dbs.source_images, digest) is None]
    not_copied = sorted(set(absent) - set(unavailable))
    _note(problems, "image", "missing from the target", not_copied)
    _note(problems, "image", "damaged in the target (bytes not matching the sha256)",
          damaged)
    available = len(hashes) - len(unavailable)
    return Tally(available, available - len(not_copied) - len(damaged)), unavailable


def _note(problems: list[str], noun: str, what: str, items: Sequence[str]) -> None:
    if items:
        shown = ", ".join(items[:3]) + (", …" if len(items) > 3 else "")
        problems.append(f"{len(items)} {noun}{'s' if len(items) != 1 else ''} {what}: "
                        f"{shown}")
