"""Wake-ups between processes that share a PostgreSQL database: NOTIFY and LISTEN.

A write that other processes may want to act on at once sends, inside its own
transaction, a notification on one of two channels. PostgreSQL delivers it to every
session listening on the channel when the transaction commits, and never if it rolls
back ("NOTIFY", PostgreSQL documentation, SQL Commands):

- `QUEUED`: a job entered the queue (submitted, or put back): a dispatcher with a free
  worker claims;
- `CHANGED`: any change a reader may show or act on (claimed, progress, finished,
  cancelled, a cancel requested).

A payload is "<job id>:<version>" and nothing more: NOTIFY payloads are limited to 8000
bytes, and the row is the truth. A reader re-reads the row, and may skip a version it
has already seen. A notification is a wake-up, never the only one: a listening
connection can drop, so every reader also polls. SQLite has neither; its readers poll.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

log = logging.getLogger(__name__)

QUEUED = "stylebot_queued"
CHANGED = "stylebot_changed"
CHANNELS = (QUEUED, CHANGED)

# (job id, version): what a listener is told.
Callback = Callable[[str, int], None]


def payload(job_id: str, version: int) -> str:
    """The text a notification carries: "<job id>:<version>" (a few bytes, far below the
    8000-byte limit)."""
    return f"{job_id}:{version}"


def parse(text_: str) -> tuple[str, int] | None:
    """The job id and version of a payload; None for one this program did not send."""
    job_id, _, version = text_.rpartition(":")
    if not job_id or not version.isdigit():
        return None
    return job_id, int(version)


async def send(session: AsyncSession, *, changed: Iterable[tuple[str, int]] = (),
               queued: Iterable[tuple[str, int]] = ()) -> None:
    """Notifies the listeners of both channels when `session`'s transaction commits; does
    nothing on a database other than PostgreSQL. `changed` and `queued` are (job id,
    version) pairs; a job that entered the queue belongs in both."""
    if session.get_bind().dialect.name != "postgresql":
        return
    for channel, jobs in ((CHANGED, list(changed)), (QUEUED, list(queued))):
        if jobs:
            # One round trip for any number of jobs; pg_notify is NOTIFY as a function.
            await session.execute(
                text("SELECT pg_notify(:channel, p) FROM unnest(CAST(:payloads AS text[])) p"),
                {"channel": channel, "payloads": [payload(j, v) for j, v in jobs]})


class Listener:
    """One connection that LISTENs on the channels its subscribers asked for, and calls
    them back (on the event loop, without blocking) for each notification ("LISTEN",
    PostgreSQL documentation, SQL Commands; asyncpg's `Connection.add_listener`, on the
    driver connection under SQLAlchemy's adapter). A session listens only until it ends,
    so this one is held, outside the pool, until `stop`.

    Best effort by design: when the server is SQLite, unreachable or restarts, it logs,
    and `ensure` (called by the readers' polls) connects again; the readers poll anyway.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._callbacks: dict[str, list[Callback]] = {}
        self._conn: AsyncConnection | None = None
        self._driver: Any = None
        self._running = False
        self._warned = False
        self._lock = asyncio.Lock()  # one connection, however many ask at once

    @property
    def enabled(self) -> bool:
        """Whether the database has notifications at all (PostgreSQL)."""
        return self._engine.dialect.name == "postgresql"

    @property
    def listening(self) -> bool:
        """Whether the listening connection is open right now."""
        return self._driver is not None and not self._driver.is_closed()

    def subscribe(self, channel: str, callback: Callback) -> None:
        """Calls `callback(job_id, version)` for each notification on `channel` (`QUEUED`
        or `CHANGED`; `ValueError` for another). Before `start` only."""
        if channel not in CHANNELS:
            raise ValueError(f"unknown channel {channel!r}")
        self._callbacks.setdefault(channel, []).append(callback)

    async def start(self) -> None:
        """Starts listening (see `ensure`); never raises for a server it cannot reach."""
        self._running = True
        await self.ensure()

    async def ensure(self) -> None:
        """Connects and listens unless it already does; logs (once) when it cannot."""
        if not (self._running and self.enabled and self._callbacks) or self.listening:
            return
        async with self._lock:
            if self._running and not self.listening:
                await self._connect()

    async def _connect(self) -> None:
        await self._close()
        conn = await self._engine.connect()
        try:
            # The asyncpg connection under SQLAlchemy's adapter: LISTEN needs a session
            # that stays open, which this one does until `stop`.
            raw = await conn.get_raw_connection()
            driver = raw.driver_connection
            assert driver is not None
            for channel in self._callbacks:
                await driver.add_listener(channel, self._on_notification)
        except Exception as exc:  # noqa: BLE001 - any failure: poll, and try again later
            await conn.close()
            if not self._warned:
                log.warning("cannot LISTEN for job changes (%s); polling only", exc)
                self._warned = True
            return
        self._conn, self._driver = conn, driver
        self._warned = False
        log.debug("listening on %s", ", ".join(self._callbacks))

    async def stop(self) -> None:
        """Stops listening and closes the connection."""
        self._running = False
        async with self._lock:
            await self._close()

    async def _close(self) -> None:
        conn, driver = self._conn, self._driver
        self._conn = self._driver = None
        if conn is None:
            return
        try:
            if driver is not None and not driver.is_closed():
                for channel in self._callbacks:
                    await driver.remove_listener(channel, self._on_notification)
            # Never back to the pool: a pooled session would go on listening.
            await conn.invalidate()
        except Exception:
            log.debug("closing the listening connection failed", exc_info=True)
        finally:
            await conn.close()

    def _on_notification(self, connection: Any, pid: int, channel: str, text_: str) -> None:
        parsed = parse(text_)
        if parsed is None:
            return
        for callback in self._callbacks.get(channel, []):
            try:
                callback(*parsed)
            except Exception:
                log.exception("a job notification callback failed")
