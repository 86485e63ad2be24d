"""Image bytes, content-addressed by sha256: `BlobStore`, and where the bytes live.

`BlobStorage` keeps them on disk, `<root>/<ab>/<abcdef...>`: the default, one machine
over SQLite. Writes are atomic (a temporary file in the same directory, fsync, rename),
so a crash never leaves a half-written blob under a real name, and writing the same
bytes twice is harmless. `DatabaseBlobStorage` keeps them in the database's `blobs`
table, so that every machine sharing a PostgreSQL database reads the same images;
`open_storage` picks one for a database. Either way the job rows hold only the hashes.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.jobs.db import Blob

log = logging.getLogger(__name__)

_HASH_RE = re.compile(r"^[0-9a-f]{64}$")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_digest(digest: str) -> str:
    """`digest` if it is exactly 64 lower-case hex digits; else `ValueError` (a hash may
    become a path)."""
    if not _HASH_RE.match(digest):
        raise ValueError(f"not a sha256 hex digest: {digest!r}")
    return digest


class BlobNotFound(FileNotFoundError):
    pass


class BlobStore(Protocol):
    """Where the job layer keeps image bytes, named by their sha256 hex digest."""

    async def put_async(self, data: bytes) -> str:
        """Stores `data` (if not already there); returns its sha256 hex digest."""
        ...

    async def get_async(self, digest: str) -> bytes:
        """The bytes; `BlobNotFound` if there are none, `ValueError` for a bad digest."""
        ...

    async def exists_async(self, digest: str) -> bool:
        """Whether the bytes are there; `ValueError` for a bad digest."""
        ...


def open_storage(database_url: str, blobs_dir: Path,
                 sessionmaker: async_sessionmaker[AsyncSession]) -> BlobStore:
    """The store for a database: its own `blobs` table on PostgreSQL, which every machine
    sharing it can read; files in `blobs_dir` on SQLite, which only one machine can."""
    from sqlalchemy.engine import make_url

    if make_url(database_url).get_backend_name() == "postgresql":
        return DatabaseBlobStorage(sessionmaker)
    return BlobStorage(blobs_dir)


class BlobStorage:
    """Blobs as files under `root` (see the module docstring)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path_for(self, digest: str) -> Path:
        # The hash becomes a path: refuse anything that is not exactly 64 hex digits.
        check_digest(digest)
        return self.root / digest[:2] / digest

    def put(self, data: bytes) -> str:
        """Stores `data` (if not already there) and returns its sha256 hex digest."""
        digest = sha256_hex(data)
        path = self.path_for(digest)
        if path.exists() and path.stat().st_size == len(data):
            return digest
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        _fsync_dir(path.parent)
        log.debug("stored blob %s (%d bytes)", digest[:12], len(data))
        return digest

    def get(self, digest: str) -> bytes:
        try:
            return self.path_for(digest).read_bytes()
        except FileNotFoundError:
            raise BlobNotFound(f"blob {digest} is missing from {self.root}") from None

    def exists(self, digest: str) -> bool:
        return self.path_for(digest).exists()

    async def put_async(self, data: bytes) -> str:
        return await asyncio.to_thread(self.put, data)

    async def get_async(self, digest: str) -> bytes:
        return await asyncio.to_thread(self.get, digest)

    async def exists_async(self, digest: str) -> bool:
        """`exists` in a worker thread."""
        return await asyncio.to_thread(self.exists, digest)


class DatabaseBlobStorage:
    """Blobs as rows of the `blobs` table (`bytea` on PostgreSQL, whose values may be up
    to 1 GB; the uploads this program takes are far smaller). Writing the same bytes twice,
    even from two machines at once, stores them once (`INSERT ... ON CONFLICT DO
    NOTHING`); nothing is sent when the row is already there. Works on SQLite too."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self._sm = sessionmaker

    async def put_async(self, data: bytes) -> str:
        """Stores `data` unless a row has it already; returns its sha256 hex digest."""
        digest = sha256_hex(data)
        if await self.exists_async(digest):
            return digest
        async with self._sm.begin() as session:
            dialect = session.get_bind().dialect.name
            insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
            await session.execute(
                insert(Blob).values(sha256=digest, size=len(data), data=data,
                                    created_at=datetime.now(UTC))
                .on_conflict_do_nothing(index_elements=[Blob.sha256]))
        log.debug("stored blob %s (%d bytes) in the database", digest[:12], len(data))
        return digest

    async def get_async(self, digest: str) -> bytes:
        """The bytes; `BlobNotFound` if no row has them, `ValueError` for a bad digest."""
        check_digest(digest)
        async with self._sm() as session:
            data = await session.scalar(select(Blob.data).where(Blob.sha256 == digest))
        if data is None:
            raise BlobNotFound(f"blob {digest} is missing from the database")
        return bytes(data)

    async def exists_async(self, digest: str) -> bool:
        """Whether a row has the bytes; `ValueError` for a bad digest."""
        check_digest(digest)
        async with self._sm() as session:
            found = await session.scalar(select(Blob.sha256).where(Blob.sha256 == digest))
        return found is not None


def _fsync_dir(path: Path) -> None:
    # Makes the rename itself durable; not possible on every platform (Windows).
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
