"""The job table, the engine/session factory, migrations, and every query.

Queries are keyword-only functions that take an `AsyncSession`; the caller owns the
transaction (`async with sessionmaker.begin() as session: ...`). The two writes a
worker makes for every job, its claim and its finish, are the exception: each is one
statement in autocommit, on a connection the runner holds (`HeldConnection`), run
straight on the driver on PostgreSQL (`_fetch_on_driver`): about 0.5-0.8 ms each here.

SQLite (the default) is set up so that many writers in one or several processes queue
up instead of failing: WAL journal, a busy timeout, foreign keys on, and every
transaction opened with `BEGIN IMMEDIATE`, which takes the write lock up front. A
deferred transaction that reads and then writes can fail at once with "database is
locked" (SQLite cannot upgrade its read snapshot, so the busy timeout does not help).

PostgreSQL (`postgresql+asyncpg://...`) gets none of this: its transactions are READ
COMMITTED and writers wait only for the rows they touch. So a query whose rows the
caller writes back takes them `FOR UPDATE` (SQLite ignores it and needs no lock: the
whole transaction already holds the database's write lock). Timestamps are `timestamp
with time zone` there, so that SQL comparing them with the server's clock is right
whatever the session's time zone; SQLite keeps naive UTC text.

Several processes, on several machines, may share one PostgreSQL database; then the
job table is the queue and nothing else passes between them. The queries they race on
say how they stay safe: `claim_next_queued` passes over rows another claimer holds (`FOR
UPDATE SKIP LOCKED`), every write to a running job is fenced on its runner
(`fenced_update`, `held_jobs`, `renew_leases`), and a result's delivery is claimed in
the row (`claim_delivery`). Each change bumps the row's `version`, which notifications
(`bot.jobs.notify`) carry. The other tables: `blobs` (image bytes, when they live in the
database: `bot.jobs.storage`) and `job_previews` (the latest preview of a running job).

Long because it is the one file with SQL for the job table in it: whoever asks what
touches the job table reads this file and no other.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Collection, Iterable, Sequence, Set
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import asyncpg
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    and_,
    bindparam,
    cast,
    delete,
    event,
    false,
    func,
    literal_column,
    or_,
    select,
    text,
    true,
    update,
)
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import (
    AsyncAttrs,
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import TypeDecorator, TypeEngine

from bot.jobs.ids import new_job_id
from bot.jobs.notify import CHANGED
from bot.jobs.states import ACTIVE, FINAL, JobStatus, check_transition

log = logging.getLogger(__name__)

BUSY_TIMEOUT_S = 30.0
CONNECT_TIMEOUT_S = 10.0
# Held while migrating a PostgreSQL database, so that processes starting together on a
# new database migrate it once (pg_advisory_xact_lock: "Advisory Lock Functions",
# PostgreSQL documentation); any constant shared by every version of this program.
MIGRATION_LOCK_KEY = 0x5374796C65426F74  # "StyleBot"
# Held by each job insert from counting the queue to committing (see `lock_admission`).
ADMISSION_LOCK_KEY = 0x5374796C65416471  # "StyleAdq"

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(AsyncAttrs, DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in Python; in the column, naive UTC on SQLite (it keeps no
    zone) and `timestamp with time zone` on PostgreSQL."""

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(DateTime(timezone=True))
        return dialect.type_descriptor(DateTime())

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value if dialect.name == "postgresql" else value.replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


_STATUS_VALUES = ", ".join(f"'{s.value}'" for s in JobStatus)


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        CheckConstraint(f"status IN ({_STATUS_VALUES})", name="status"),
        Index("ix_jobs_status_created_at", "status", "created_at"),
        Index("ix_jobs_user_id_created_at", "user_id", "created_at"),
        Index("ix_jobs_user_id_started_at", "user_id", "started_at"),
        # The fair order (`bot.jobs.scheduling`): the next claim is the first row of the
        # first index, a user's next turn the last of the second, the round being served
        # the last of the third.
        Index("ix_jobs_status_turn_created_at_id", "status", "turn", "created_at", "id"),
        Index("ix_jobs_user_id_turn", "user_id", "turn"),
        Index("ix_jobs_turn_started", "turn", postgresql_where=text("started_at IS NOT NULL"),
              sqlite_where=text("started_at IS NOT NULL")),
        # Whether any job still needs a blob (`bot.jobs.retention`), and the finished
        # jobs whose pictures are due to expire.
        Index("ix_jobs_input_hash", "input_hash"),
        Index("ix_jobs_style_hash", "style_hash"),
        Index("ix_jobs_output_hash", "output_hash"),
        Index("ix_jobs_finished_at", "finished_at"),
    )

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    # Who and where. Discord snowflakes are kept as text; the CLI uses user "cli".
    user_id: Mapped[str] = mapped_column(String(32))
    user_name: Mapped[str] = mapped_column(String(100))
    guild_id: Mapped[str | None] = mapped_column(String(32))
    channel_id: Mapped[str | None] = mapped_column(String(32))
    # Discord's interaction context, and whether the app is installed in the server
    # (`bot.jobs.access.Origin`): where the bot itself may post, and whose admins count.
    context: Mapped[str | None] = mapped_column(String(16))
    guild_install: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    source: Mapped[str] = mapped_column(String(16))  # "cli", "slash", "context_menu", ...
    # What: a preset name or "custom"; the images are blobs named by their sha256.
    style: Mapped[str] = mapped_column(String(64))
    style_hash: Mapped[str | None] = mapped_column(String(64))
    input_hash: Mapped[str | None] = mapped_column(String(64))  # NULL: pictures gone
    output_hash: Mapped[str | None] = mapped_column(String(64))
    # Why the job's pictures (photo, custom style, painting, preview) are gone: "deleted"
    # by its owner, or "expired" (`bot.jobs.retention`); NULL while they are kept.
    pictures_gone: Mapped[str | None] = mapped_column(String(16))
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    # Jobs with equal keys (photo size and parameters) can be painted as one batch; see
    # stylizer.batching. NULL: painted alone.
    batch_key: Mapped[str | None] = mapped_column(String(64))
    # The round of the fair order this job is served in (`bot.jobs.scheduling`): queued
    # jobs are taken by (turn, created_at, id).
    turn: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    private: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    parent_id: Mapped[str | None] = mapped_column(
        ForeignKey("jobs.id", ondelete="SET NULL"))
    # State.
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.queued.value)
    error_code: Mapped[str | None] = mapped_column(String(32))
    error_message: Mapped[str | None] = mapped_column(Text)
    # Runs started so far, this one included (one more at each claim, as Oban's and
    # River's `attempt`); a run that ends abnormally (worker death, lost lease) is
    # retried until settings.max_attempts, then the job is `dead`. A run handed back
    # unstarted or cut short by a clean stop does not count.
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Set by a process that wants a job stopped which another process is running.
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # "host:pid:nonce" of the service running the job, and until when it holds it.
    runner: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    step: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The engine's count, over all of an animation's frames once its run reports.
    total_steps: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # An animation's progress: `frame` frames finished of `frames` (both 0 for a still,
    # and until its run reports), as the worker pool's `JobProgress` says.
    frame: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    frames: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Delivery bookkeeping for the Discord side; the job id is the idempotency key.
    interaction_token: Mapped[str | None] = mapped_column(Text)
    token_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    application_id: Mapped[str | None] = mapped_column(String(32))
    progress_message_id: Mapped[str | None] = mapped_column(String(32))
    result_message_id: Mapped[str | None] = mapped_column(String(32))
    result_channel_id: Mapped[str | None] = mapped_column(String(32))
    delivered: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The process delivering the result (a runner id), and until when it may.
    delivery_claimed_by: Mapped[str | None] = mapped_column(String(128))
    delivery_claim_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # One more at every change a reader may show (not at lease renewals): what
    # notifications carry, so that a reader knows whether it has seen a change.
    version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    def __repr__(self) -> str:  # never the interaction token
        return f"<Job {self.id} {self.status} user={self.user_id} style={self.style}>"


class JobPreview(Base):
    """The latest preview of a running job, for processes that show it but do not paint."""

    __tablename__ = "job_previews"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"),
                                        primary_key=True)
    step: Mapped[int] = mapped_column(Integer)
    jpeg: Mapped[bytes] = mapped_column(LargeBinary)


class Blob(Base):
    """Image bytes named by their sha256, where every machine can read them (used on
    PostgreSQL: `bot.jobs.storage.DatabaseBlobStorage`)."""

    __tablename__ = "blobs"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


DELIVERY_FIELDS = frozenset({"interaction_token", "token_expires_at", "application_id",
                             "progress_message_id", "result_message_id", "result_channel_id"})


# ---------------------------------------------------------------- engine and migrations

class DatabaseUnavailable(RuntimeError):
    """The database could not be reached or refused us; the message is one line for an
    operator, naming the database (without its password) and the server's reason."""


def create_engine(url: str, *, echo: bool = False) -> AsyncEngine:
    """An async engine; for SQLite, with the pragmas and immediate transactions above;
    for PostgreSQL, with a connect timeout, so that an unreachable server is reported
    within `CONNECT_TIMEOUT_S` seconds instead of a minute."""
    parsed = make_url(url)
    is_sqlite = parsed.get_backend_name() == "sqlite"
    kwargs: dict[str, Any] = {"echo": echo}
    if is_sqlite:
        database = parsed.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": BUSY_TIMEOUT_S}
    elif parsed.get_driver_name() == "asyncpg":
        kwargs["connect_args"] = {"timeout": CONNECT_TIMEOUT_S}
    engine = create_async_engine(url, **kwargs)
    if is_sqlite:
        _setup_sqlite(engine)
    return engine


def _setup_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, connection_record: Any) -> None:
        # Take transaction control away from the sqlite3 module (it would BEGIN DEFERRED
        # lazily); SQLAlchemy's "begin" event below emits BEGIN IMMEDIATE instead.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
            cursor.execute("PRAGMA foreign_keys=ON")
            # synchronous stays FULL: an accepted job survives a power cut, not just a crash.
        finally:
            cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def create_engine_and_sessionmaker(
        url: str, *, echo: bool = False,
) -> tuple[AsyncEngine, async_sessionmaker[AsyncSession]]:
    engine = create_engine(url, echo=echo)
    return engine, async_sessionmaker(engine, expire_on_commit=False)


def migrations_dir() -> Path:
    import migrations

    # __path__ rather than __file__: an editable install may load it as a namespace package.
    return Path(next(iter(migrations.__path__))).resolve()


def alembic_config(url: str | None = None) -> Any:
    """An Alembic `Config` for the `migrations` package (no alembic.ini needed)."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


async def upgrade_database(url: str, revision: str = "head") -> None:
    """Applies the migrations up to `revision` (creating the database file if needed)."""
    from alembic import command

    def run(connection: Connection) -> None:
        cfg = alembic_config(url)
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)

    engine = create_engine(url)
    try:
        async with _connected(engine, url) as conn, conn.begin():
            if engine.dialect.name == "postgresql":
                await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                                   {"key": MIGRATION_LOCK_KEY})
            await conn.run_sync(run)
    finally:
        await engine.dispose()
    log.info("database at %s migrated to %s", make_url(url).render_as_string(), revision)


@contextlib.asynccontextmanager
async def _connected(engine: AsyncEngine, url: str) -> AsyncIterator[AsyncConnection]:
    """A connection, or `DatabaseUnavailable` when none can be made (refused, no such
    host, database or role, a timeout); errors after connecting pass through as they are."""
    conn = engine.connect()
    try:
        await conn.start()
    except (OSError, TimeoutError, SQLAlchemyError) as exc:
        orig = getattr(exc, "orig", None) or exc
        reason = (getattr(orig, "strerror", None) or str(orig) or type(orig).__name__)
        where = make_url(url).render_as_string(hide_password=True)
        raise DatabaseUnavailable(f"cannot connect to the database {where}: "
                                  f"{reason.splitlines()[0]}") from exc
    try:
        yield conn
    finally:
        await conn.close()


async def current_revision(url: str) -> str | None:
    from alembic.runtime.migration import MigrationContext

    def get(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    engine = create_engine(url)
    try:
        async with _connected(engine, url) as conn:
            return await conn.run_sync(get)
    finally:
        await engine.dispose()


# ---------------------------------------------------------------------------- queries

async def add_job(session: AsyncSession, *, job: Job) -> Job:
    session.add(job)
    await session.flush()
    return job


async def get_job(session: AsyncSession, *, job_id: str, for_update: bool = False) -> Job | None:
    stmt = select(Job).where(Job.id == job_id)
    if for_update:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def jobs_of_user(session: AsyncSession, *, user_id: str) -> list[tuple[str, str]]:
    """(id, status) of every job of the user's."""
    rows = await session.execute(select(Job.id, Job.status).where(Job.user_id == user_id))
    return [(job_id, status) for job_id, status in rows.all()]


async def referenced_hashes(session: AsyncSession, *, digests: Collection[str]) -> set[str]:
    """Those of `digests` that some job refers to (its photo, style or painting)."""
    wanted = list(digests)
    found: set[str] = set()
    for column in (Job.input_hash, Job.style_hash, Job.output_hash):
        found |= {h for h in (await session.scalars(
            select(column).where(column.in_(wanted)).distinct())).all() if h}
    return found


async def unused_job_id(session: AsyncSession) -> str:
    """A new job id (`ids.new_job_id`) that no job has. Raises RuntimeError after 20
    taken ones in a row (a table near the id space's size)."""
    for _ in range(20):
        job_id = new_job_id()
        if await get_job(session, job_id=job_id) is None:
            return job_id
    raise RuntimeError("could not find an unused job id")


async def get_jobs(session: AsyncSession, *, job_ids: Iterable[str]) -> list[Job]:
    """The jobs with these ids, locked until the transaction ends (`FOR UPDATE`): every
    caller changes the rows it reads, and two processes must not both claim one job."""
    ids = list(job_ids)
    if not ids:
        return []
    stmt = select(Job).where(Job.id.in_(ids)).order_by(Job.id).with_for_update()
    return list((await session.scalars(stmt)).all())


def set_status(job: Job, status: JobStatus, **fields: Any) -> None:
    """Moves `job` through the state machine (raises `IllegalTransition`), sets fields
    and bumps its version."""
    check_transition(job.status, status)
    job.status = status.value
    for name, value in fields.items():
        setattr(job, name, value)
    touch(job)


def touch(job: Job) -> None:
    """Marks a change readers may show: one more on the row's version."""
    job.version = (job.version or 0) + 1


# -- claims, fenced writes and recovery: what several processes race on

async def fenced_update(session: AsyncSession, *, job_id: str, runner: str,
                        values: dict[str, Any]) -> Job | None:
    """Writes `values` to the job only if `runner` still runs it (`WHERE runner = :runner
    AND status = 'running'`), bumping its version; returns the row as written, or None
    when the write changed nothing (the runner lost its lease: another process took the
    job back and its new run is the one that counts).

    A single `UPDATE ... RETURNING`: the check and the write are one statement, so no
    other process can take the job between them. A value may be an SQL expression of the
    row's columns (`Job.total_steps`)."""
    status = values.get("status")
    if status is not None:
        check_transition(JobStatus.running, status)
        values = {**values, "status": JobStatus(status).value}
    stmt = (update(Job).where(Job.id == job_id, Job.runner == runner,
                              Job.status == JobStatus.running.value)
            .values(version=Job.version + 1, **values).returning(Job)
            .execution_options(synchronize_session=False, populate_existing=True))
    return (await session.execute(stmt)).scalar_one_or_none()


async def held_jobs(session: AsyncSession, *, job_ids: Iterable[str], runner: str) -> list[Job]:
    """Those of these jobs that `runner` still runs, locked until the transaction ends (for
    a write that depends on the row: retry or bury, put back)."""
    ids = list(job_ids)
    if not ids:
        return []
    stmt = (select(Job).where(Job.id.in_(ids), Job.runner == runner,
                              Job.status == JobStatus.running.value)
            .order_by(Job.id).with_for_update())
    return list((await session.scalars(stmt)).all())


async def renew_leases(session: AsyncSession, *, job_ids: Sequence[str], runner: str,
                       until: datetime) -> set[str]:
    """Extends `runner`'s leases on these jobs to `until`; returns the ids it still holds
    (fenced like `fenced_update`; the version is left alone: nothing to show)."""
    if not job_ids:
        return set()
    result = await session.execute(
        update(Job).where(Job.id.in_(list(job_ids)), Job.runner == runner,
                          Job.status == JobStatus.running.value)
        .values(lease_expires_at=until).returning(Job.id)
        .execution_options(synchronize_session=False))
    return set(result.scalars().all())


async def recovery_candidates(session: AsyncSession, *, now: datetime, host: str) -> list[Job]:
    """Running jobs whose lease has expired, or whose runner is a process on `host`
    (which the caller checks for life), locked with `SKIP LOCKED`: a row that its runner
    is writing right now, or that another process is recovering, is left for later."""
    stmt = (select(Job).where(
        Job.status == JobStatus.running.value,
        or_(Job.lease_expires_at.is_(None), Job.lease_expires_at <= now,
            Job.runner.startswith(f"{host}:", autoescape=True)))
        .order_by(Job.created_at, Job.id).with_for_update(skip_locked=True))
    return list((await session.scalars(stmt)).all())


async def save_preview(session: AsyncSession, *, job_id: str, step: int, jpeg: bytes) -> None:
    """Keeps the job's latest preview (one row per job, replaced)."""
    await session.merge(JobPreview(job_id=job_id, step=step, jpeg=jpeg))


async def get_preview(session: AsyncSession, *, job_id: str) -> JobPreview | None:
    """The job's latest preview, if its run has sent one."""
    return await session.get(JobPreview, job_id)


async def delete_preview(session: AsyncSession, *, job_id: str) -> None:
    """Drops the job's preview (its run has ended)."""
    await session.execute(delete(JobPreview).where(JobPreview.job_id == job_id))


async def jobs_to_watch(session: AsyncSession, *, job_ids: Iterable[str] = (),
                        active: bool = True, only_ids: Set[str] | None = None) -> list[Job]:
    """The jobs a watcher re-reads: these ids, and, with `active`, every queued or
    running job (of `only_ids` when it is given)."""
    ids = list(job_ids)
    wanted = [Job.id.in_(ids)] if ids else []
    if active:
        wanted.append(Job.status.in_([s.value for s in ACTIVE]))
    if not wanted:
        return []
    stmt = select(Job).where(or_(*wanted))
    if only_ids is not None:
        stmt = stmt.where(Job.id.in_(list(only_ids)))
    return list((await session.scalars(stmt.order_by(Job.created_at, Job.id))).all())


async def lock_admission(session: AsyncSession) -> None:
    """Makes the limit checks of concurrent inserts take turns, up to their commit.

    On PostgreSQL two processes that count a user's jobs at once under READ COMMITTED
    would both see room for one more and both insert; a transaction-level advisory lock
    (pg_advisory_xact_lock, "Advisory Lock Functions" in the PostgreSQL documentation)
    makes the second wait for the first's commit and count its job. SQLite needs none:
    the transaction already holds the write lock (BEGIN IMMEDIATE)."""
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                              {"key": ADMISSION_LOCK_KEY})


async def count_active_for_user(session: AsyncSession, *, user_id: str) -> int:
    stmt = select(func.count()).select_from(Job).where(
        Job.user_id == user_id, Job.status.in_([s.value for s in ACTIVE]))
    return int((await session.execute(stmt)).scalar_one())


async def count_active_by_user(session: AsyncSession, *, user_ids: Iterable[str]
                               ) -> dict[str, int]:
    """Jobs queued or running per user, for these users (those with none left out)."""
    stmt = (select(Job.user_id, func.count()).where(
        Job.user_id.in_(list(user_ids)), Job.status.in_([s.value for s in ACTIVE]))
        .group_by(Job.user_id))
    return {user: int(n) for user, n in (await session.execute(stmt)).all()}


async def count_by_status(session: AsyncSession, *, guild_id: str | None = None
                          ) -> dict[JobStatus, int]:
    """Jobs per status; only those made in `guild_id` when it is given."""
    stmt = select(Job.status, func.count()).group_by(Job.status)
    if guild_id is not None:
        stmt = stmt.where(Job.guild_id == guild_id)
    rows = await session.execute(stmt)
    counts = dict.fromkeys(JobStatus, 0)
    for status, n in rows:
        counts[JobStatus(status)] = int(n)
    return counts


async def count_queued(session: AsyncSession) -> int:
    stmt = select(func.count()).select_from(Job).where(Job.status == JobStatus.queued.value)
    return int((await session.execute(stmt)).scalar_one())


def fair_key() -> tuple[Any, ...]:
    """The fair order's sort key: queued jobs are taken by turn, then age, then id."""
    return (Job.turn, Job.created_at, Job.id)


def _ahead_of(job: Job, *, inclusive: bool) -> Any:
    """Rows before `job` in the fair order (`fair_key`), and `job` itself if `inclusive`."""
    last = Job.id <= job.id if inclusive else Job.id < job.id
    return or_(Job.turn < job.turn,
               and_(Job.turn == job.turn,
                    or_(Job.created_at < job.created_at,
                        and_(Job.created_at == job.created_at, last))))


async def queued_in_order(session: AsyncSession, *, only_ids: Iterable[str] | None = None,
                          through: Job | None = None) -> list[Any]:
    """Queued jobs in the fair order, as rows of (id, user_id, created_at, batch_key,
    attempts, params); only those up to `through` (included) when it is given."""
    stmt = select(Job.id, Job.user_id, Job.created_at, Job.batch_key, Job.attempts, Job.frames,
                  Job.params).where(Job.status == JobStatus.queued.value)
    if only_ids is not None:
        stmt = stmt.where(Job.id.in_(list(only_ids)))
    if through is not None:
        stmt = stmt.where(_ahead_of(through, inclusive=True))
    return list((await session.execute(stmt.order_by(*fair_key()))).all())


async def count_queued_ahead(session: AsyncSession, *, job: Job) -> int:
    """Queued jobs before `job` in the fair order."""
    stmt = select(func.count()).select_from(Job).where(
        Job.status == JobStatus.queued.value, _ahead_of(job, inclusive=False))
    return int((await session.execute(stmt)).scalar_one())


# -- the two writes a worker makes for every job, each one statement and one round trip

@contextlib.asynccontextmanager
async def single_statement(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection for a write that is one statement (`claim_next_queued`,
    `finish_running`): on PostgreSQL in autocommit, so that the statement is its own
    transaction and costs one round trip, not three (BEGIN, the statement, COMMIT); on
    SQLite in a transaction like every other write there (BEGIN IMMEDIATE), committed at
    the end of the block. Raises what the driver raises (`sqlalchemy.exc.DBAPIError`)."""
    if engine.dialect.name == "postgresql":
        async with engine.connect() as conn:
            yield await conn.execution_options(isolation_level="AUTOCOMMIT")
    else:
        async with engine.begin() as conn:
            yield conn


class HeldConnection:
    """One connection, held across calls, for a runner's single-statement writes (its
    claims and finishes): on PostgreSQL in autocommit, one statement at a time (an
    `asyncio.Lock`), opened on first use and again after a failure; elsewhere simply
    `single_statement`'s connection, taken from the pool at each call.

    Own code in place of a pool checkout per statement, because a measurement shows the
    checkout costs more Python than the statement: `Leases.claim` and `Leases.finish` of
    one job took 1.26-1.42 ms of the claimer's CPU through the pool and 0.48-0.49 ms held
    (800 jobs, 10,000 queued), and that Python limits claims per second when the claimers
    and the server share the cores (README, "The job queue on PostgreSQL").

    A statement that fails, or is cancelled, takes the connection with it (invalidated:
    it may be mid-protocol), and the next call opens a new one; so a server restart costs
    one failed call, as with the pool. `close` gives it back; call it before the engine
    is disposed."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._conn: AsyncConnection | None = None
        self._lock = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def __call__(self) -> AsyncIterator[AsyncConnection]:
        if self._engine.dialect.name != "postgresql":
            async with single_statement(self._engine) as conn:
                yield conn
            return
        async with self._lock:
            if self._conn is None or self._conn.closed or self._conn.invalidated:
                fresh = await self._engine.connect()
                self._conn = await fresh.execution_options(isolation_level="AUTOCOMMIT")
            conn = self._conn
            try:
                yield conn
            except BaseException:
                self._conn = None
                with contextlib.suppress(Exception):
                    await conn.invalidate()
                    await conn.close()
                raise

    async def close(self) -> None:
        async with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                await conn.close()


def _notifying(rows: Any) -> Any:
    """`SELECT rows.*, pg_notify(CHANGED, "id:version")`: what a DML CTE returned, each row
    announced on the CHANGED channel of `bot.jobs.notify` in the same statement (sent at
    its commit)."""
    payload = rows.c.id + ":" + cast(rows.c.version, Text)
    return select(rows, func.pg_notify(CHANGED, payload).label("notified"))


@functools.cache
def _driver_sql(stmt: Any, dialect: Dialect) -> tuple[str, Any]:
    """`stmt` compiled once for asyncpg: its SQL text ($1, $2, ... placeholders) and the
    compiled form, which knows the order of the parameters and their fixed values."""
    compiled = stmt.compile(dialect=dialect)
    return str(compiled), compiled


async def _fetch_on_driver(conn: AsyncConnection, stmt: Any, params: dict[str, Any]
                           ) -> list[Any]:
    """Runs a cached statement of `_claim_statement` or `_finish_statement` straight on
    the asyncpg connection under `conn` (`AsyncConnection.get_raw_connection`) and returns
    its rows with attribute access, as SQLAlchemy's would be.

    Own code in place of `conn.execute` for the two statements a worker runs for every
    job, because a measurement shows that SQLAlchemy's async execution cannot serve the
    queue's throughput: on one connection, one after another, with 10,000 queued, a
    claim took 1.19 ms through `conn.execute` and 0.73-0.85 ms here, a finish 1.37 ms and
    0.77 ms; the benchmark's claims per second went up by a third to a half (README, "The
    job queue on PostgreSQL").

    Only what these statements need: the bound values are what `claim_next_queued` and
    `finish_running` pass (aware datetimes, strings, numbers), which asyncpg encodes as
    SQLAlchemy would; the columns come back as asyncpg decodes them (timestamps aware, in
    UTC; JSON by the codec SQLAlchemy's dialect installs on each connection). Raises
    `sqlalchemy.exc.DBAPIError` for the driver's errors, after discarding the
    connection."""
    sql, compiled = _driver_sql(stmt, conn.dialect)
    values = compiled.construct_params(params)
    args = [values[name] for name in compiled.positiontup]
    driver: asyncpg.Connection = (await conn.get_raw_connection()).driver_connection
    try:
        records = await driver.fetch(sql, *args)
    except (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError,
            OSError) as exc:
        # Whatever went wrong, the connection may be broken (a server that is shutting
        # down or has ended the session answers with a PostgresError too): a new one costs
        # a few milliseconds, a broken one in the pool fails the next caller.
        await conn.invalidate(exc)
        raise DBAPIError(sql, args, exc) from exc
    return [SimpleNamespace(**record) for record in records]


def _on_driver(conn: AsyncConnection) -> bool:
    return conn.dialect.name == "postgresql" and conn.dialect.driver == "asyncpg"


@functools.cache
def _claim_statement(dialect: str, only_ids: bool, riders: bool, limit: int) -> Any:
    """The statement of `claim_next_queued`, built once per shape: building it costs more
    than running it (about 1.5 ms of Python, against 0.1 ms for the server to execute it:
    cProfile and auto_explain, 10,000 jobs queued); with bound parameters its compiled
    form is cached too.

    The status it looks for and the LIMIT are written into the SQL, not bound: with
    them bound, PostgreSQL cannot cost a generic plan of the prepared statement as low
    as a custom one and plans it again at every execution ("plan_cache_mode", PREPARE,
    PostgreSQL documentation), which took a claim from 0.87 ms to 1.3 ms on one
    connection here (10,000 queued)."""
    queued: ColumnElement[str] = literal_column(f"'{JobStatus.queued.value}'")
    picked = select(Job.id).where(Job.status == queued)
    if only_ids:
        picked = picked.where(Job.id.in_(bindparam("only_ids", expanding=True)))
    if riders:
        picked = picked.where(Job.batch_key == bindparam("rider_key"), Job.attempts == 0)
    # MATERIALIZED: the locking read runs once, so the LIMIT holds (an inlined subquery
    # may be rescanned by the plan around it).
    picked_cte = (picked.order_by(*fair_key()).limit(literal_column(str(int(limit))))
                  .with_for_update(skip_locked=True).cte("picked")
                  .prefix_with("MATERIALIZED", dialect="postgresql"))
    claimed = (update(Job)
               .where(Job.id.in_(select(picked_cte.c.id)),
                      Job.status == queued)
               .values(status=JobStatus.running.value, started_at=bindparam("now"),
                       finished_at=None, runner=bindparam("claimant"),
                       lease_expires_at=bindparam("lease_until"), step=0, frame=0,
                       attempts=Job.attempts + 1,
                       total_steps=func.coalesce(Job.params["steps"].as_integer(), 0),
                       version=Job.version + 1)
               .returning(*Job.__table__.c))
    if dialect != "postgresql":
        return claimed
    return _notifying(claimed.cte("claimed")).add_columns(_ASYNC_COMMIT)


# `set_config(..., is_local => true)` in a statement run in autocommit: the statement's own
# transaction commits without waiting for its WAL to reach the disk ("Asynchronous
# Commit", PostgreSQL documentation, 28.4); the session's setting is untouched. Evaluated
# once per claimed row, so only a claim that wrote something carries it.
_ASYNC_COMMIT = func.set_config(literal_column("'synchronous_commit'"),
                                literal_column("'off'"), true()).label("async_commit")


async def claim_next_queued(conn: AsyncConnection, *, runner: str, now: datetime,
                            lease_until: datetime, limit: int = 1,
                            only_ids: Iterable[str] | None = None,
                            batch_key: str | None = None) -> list[Any]:
    """Claims for `runner` the first `limit` queued jobs in the fair order that no other
    transaction holds, in one statement: each becomes running, held by `runner` until
    `lease_until`, with one more attempt and a new version; on PostgreSQL the statement
    also notifies CHANGED. With `batch_key`, only queued jobs of that key that have never
    ended abnormally (the riders of a batch). Returns the claimed rows (all the job
    table's columns) in the fair order; [] when nothing is free.

    The read is `SELECT ... ORDER BY turn, created_at, id LIMIT n FOR UPDATE SKIP LOCKED`
    ("The Locking Clause", PostgreSQL documentation, SELECT), the write an
    `UPDATE ... RETURNING` of those rows: a row another claimer has locked is passed over
    instead of waited for, and a row another claimer has already committed as running no
    longer matches when it is locked (READ COMMITTED re-checks the newest version). So
    two claimers never get one job, neither waits for the other, and a claim reads a few
    entries of the fair-order index however long the queue. SQLite renders no locking
    clause and needs none: the transaction holds the database's write lock.

    On PostgreSQL the claim commits asynchronously: it returns before its WAL is flushed
    (about 0.1 ms less a claim here), and only a crash of the server in the next few
    hundred milliseconds could undo it. Undone, the job is simply queued again: every
    later write of this runner to it is fenced (`fenced_update`, `finish_running`) and
    changes nothing, and any durable commit after it (a finish, anyone's) flushes it too.
    The finish stays durable: a delivered result must not come back as running.

    Run it on `single_statement`'s connection (in a transaction of the caller's, the
    whole transaction would commit asynchronously); raises what the driver raises."""
    params: dict[str, Any] = {"now": now, "lease_until": lease_until, "claimant": runner}
    if only_ids is not None:
        params["only_ids"] = list(only_ids)
    if batch_key is not None:
        params["rider_key"] = batch_key
    stmt = _claim_statement(conn.dialect.name, only_ids is not None, batch_key is not None,
                            limit)
    if only_ids is None and _on_driver(conn):
        rows = await _fetch_on_driver(conn, stmt, params)
    else:  # an expanding IN list is compiled per length: SQLAlchemy renders it
        rows = list((await conn.execute(stmt, params)).all())
    rows.sort(key=lambda row: (row.turn, row.created_at, row.id))
    return rows


@functools.cache
def _finish_statement(dialect: str, names: tuple[str, ...], step_to_total: bool) -> Any:
    """The statement of `finish_running`, built once per shape (see `_claim_statement`)."""
    values: dict[str, Any] = {name: bindparam(f"set_{name}") for name in names}
    if step_to_total:
        values["step"] = Job.total_steps
        values["frame"] = Job.frames
    done = (update(Job)
            .where(Job.id == bindparam("job_id"), Job.runner == bindparam("holder"),
                   Job.status == JobStatus.running.value)
            .values(lease_expires_at=None, version=Job.version + 1, **values)
            .returning(*Job.__table__.c))
    if dialect != "postgresql":
        return done
    done_cte = done.cte("done")
    gone = delete(JobPreview).where(JobPreview.job_id.in_(select(done_cte.c.id))).cte("gone")
    return _notifying(done_cte).add_cte(gone)


async def finish_running(conn: AsyncConnection, *, job_id: str, runner: str,
                         status: JobStatus, finished_at: datetime, **fields: Any) -> Any:
    """Ends `runner`'s run of the job with `status` (succeeded, failed or cancelled;
    `IllegalTransition` for another), `finished_at` and `fields` (columns: `output_hash`,
    `error_code`, `error_message`, ...), releases its lease, bumps its version, drops its
    preview and, on PostgreSQL, notifies CHANGED; a succeeded job's `step` becomes its
    `total_steps` (and `frame` its `frames`) unless `fields` says otherwise. Returns the
    row as written, or None when the write changed nothing: fenced like `fenced_update`,
    in one statement on PostgreSQL (`UPDATE ... RETURNING`, with the preview's DELETE and
    the NOTIFY as CTEs: "WITH Queries", PostgreSQL documentation), in one transaction on
    SQLite.

    Run it on `single_statement`'s connection; raises what the driver raises."""
    check_transition(JobStatus.running, status)
    values = {"status": JobStatus(status).value, "finished_at": finished_at, **fields}
    names = tuple(sorted(values))
    step_to_total = status is JobStatus.succeeded and "step" not in values
    params = {"job_id": job_id, "holder": runner,
              **{f"set_{name}": values[name] for name in names}}
    stmt = _finish_statement(conn.dialect.name, names, step_to_total)
    if _on_driver(conn):
        rows = await _fetch_on_driver(conn, stmt, params)
        return rows[0] if rows else None
    row = (await conn.execute(stmt, params)).first()
    if row is not None and conn.dialect.name != "postgresql":
        await conn.execute(delete(JobPreview).where(JobPreview.job_id == job_id))
    return row


async def next_turn(session: AsyncSession, *, user_id: str) -> int:
    """The turn of a job this user submits now (see `bot.jobs.scheduling`): the round
    being served (the highest turn ever started), or the one after the user's latest
    job, whichever is later. Two index lookups; call it under the admission lock."""
    served = await session.scalar(select(func.max(Job.turn)).where(
        Job.started_at.is_not(None)))
    mine = await session.scalar(select(func.max(Job.turn)).where(Job.user_id == user_id))
    return max(served or 0, mine + 1 if mine is not None else 0)


async def list_jobs(session: AsyncSession, *, user_id: str | None = None, limit: int = 10,
                    offset: int = 0) -> list[Job]:
    """Newest first; all users when `user_id` is None."""
    stmt = select(Job)
    if user_id is not None:
        stmt = stmt.where(Job.user_id == user_id)
    stmt = stmt.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit).offset(offset)
    return list((await session.scalars(stmt)).all())


async def count_jobs(session: AsyncSession, *, user_id: str | None = None) -> int:
    stmt = select(func.count()).select_from(Job)
    if user_id is not None:
        stmt = stmt.where(Job.user_id == user_id)
    return int((await session.execute(stmt)).scalar_one())


async def jobs_with_status(session: AsyncSession, *, statuses: Iterable[JobStatus],
                           for_update: bool = False) -> list[Job]:
    """Jobs in any of `statuses`, oldest first; `for_update` locks them until the
    transaction ends (for a caller that writes them back)."""
    stmt = (select(Job).where(Job.status.in_([s.value for s in statuses]))
            .order_by(Job.created_at, Job.id))
    if for_update:
        stmt = stmt.with_for_update()
    return list((await session.scalars(stmt)).all())


async def cancel_requested_ids(session: AsyncSession, *, job_ids: Sequence[str]) -> list[str]:
    if not job_ids:
        return []
    stmt = select(Job.id).where(Job.id.in_(list(job_ids)), Job.cancel_requested.is_(True))
    return list((await session.scalars(stmt)).all())


async def recent_runs(session: AsyncSession, *, limit: int = 20,
                      since: datetime | None = None, guild_id: str | None = None
                      ) -> list[tuple[dict[str, Any], float, int]]:
    """(parameters, seconds from start to finish, frames painted: 0 for a still) of the
    latest succeeded jobs, finished after `since` and of `guild_id` where given."""
    stmt = select(Job.params, Job.started_at, Job.finished_at, Job.frames).where(
        Job.status == JobStatus.succeeded.value, Job.started_at.is_not(None),
        Job.finished_at.is_not(None))
    if since is not None:
        stmt = stmt.where(Job.finished_at >= since)
    if guild_id is not None:
        stmt = stmt.where(Job.guild_id == guild_id)
    stmt = stmt.order_by(Job.finished_at.desc()).limit(limit)
    rows = (await session.execute(stmt)).all()
    return [(params or {}, max(0.0, (finished - started).total_seconds()), frames or 0)
            for params, started, finished, frames in rows
            if started is not None and finished is not None]


async def count_created_since(session: AsyncSession, *, since: datetime,
                              guild_id: str | None = None) -> int:
    stmt = select(func.count()).select_from(Job).where(Job.created_at >= since)
    if guild_id is not None:
        stmt = stmt.where(Job.guild_id == guild_id)
    return int((await session.execute(stmt)).scalar_one())


async def set_delivery(session: AsyncSession, *, job_id: str, fields: dict[str, Any]) -> int:
    unknown = set(fields) - DELIVERY_FIELDS
    if unknown:
        raise TypeError(f"not delivery fields: {', '.join(sorted(unknown))}")
    result = await session.execute(update(Job).where(Job.id == job_id).values(**fields))
    return int(result.rowcount)  # type: ignore[attr-defined]


async def mark_delivered(session: AsyncSession, *, job_id: str, now: datetime,
                         result_message_id: str | None = None,
                         result_channel_id: str | None = None) -> bool:
    """Compare-and-set on `delivered`: True for exactly one caller per job."""
    values: dict[str, Any] = {"delivered": True, "delivered_at": now}
    if result_message_id is not None:
        values["result_message_id"] = result_message_id
    if result_channel_id is not None:
        values["result_channel_id"] = result_channel_id
    result = await session.execute(
        update(Job).where(Job.id == job_id, Job.delivered.is_(False)).values(**values))
    return int(result.rowcount) == 1  # type: ignore[attr-defined]


async def claim_delivery(session: AsyncSession, *, job_id: str, claimant: str, now: datetime,
                         until: datetime, take_from: str | None = None) -> bool:
    """Claims the delivery of a finished job's result for `claimant` until `until`; True
    for exactly one of several processes asking at once (a compare-and-set in one UPDATE).

    It succeeds while the result is undelivered and the delivery is unclaimed, already
    `claimant`'s, claimed by `take_from` (a claimant the caller knows is gone), or its
    claim has expired."""
    free = or_(Job.delivery_claimed_by.is_(None), Job.delivery_claimed_by == claimant,
               Job.delivery_claim_expires_at.is_(None), Job.delivery_claim_expires_at <= now)
    if take_from is not None:
        free = or_(free, Job.delivery_claimed_by == take_from)
    result = await session.execute(
        update(Job).where(Job.id == job_id, Job.delivered.is_(False), free)
        .values(delivery_claimed_by=claimant, delivery_claim_expires_at=until))
    return int(result.rowcount) == 1  # type: ignore[attr-defined]


async def release_delivery(session: AsyncSession, *, job_id: str, claimant: str) -> None:
    """Ends `claimant`'s claim on the delivery, if it still holds it."""
    await session.execute(
        update(Job).where(Job.id == job_id, Job.delivery_claimed_by == claimant)
        .values(delivery_claimed_by=None, delivery_claim_expires_at=None))


async def undelivered(session: AsyncSession) -> list[Job]:
    stmt = (select(Job).where(Job.status.in_([s.value for s in FINAL
                                              if s is not JobStatus.cancelled]),
                              Job.delivered.is_(False))
            .order_by(Job.finished_at, Job.id))
    return list((await session.scalars(stmt)).all())
