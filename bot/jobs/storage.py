"""Image bytes, content-addressed by sha256: `BlobStore`, and where the bytes live.

`BlobStorage` keeps them on disk, `<root>/<ab>/<abcdef...>`: the default, one machine
over SQLite. Writes are atomic (a temporary file in the same directory, fsync, rename),
so a crash never leaves a half-written blob under a real name, and writing the same
bytes twice is harmless. `DatabaseBlobStorage` keeps them in the database's `blobs`
table, so that every machine sharing a PostgreSQL database reads the same images;
`open_storage` picks one for a database. Either way the job rows hold only the hashes.

A blob is removed when no job needs it any more (`bot.jobs.retention`): `list_async`
gives each blob's last use (storing the same bytes again counts as a use), so that the
collector can leave alone what a job about to be inserted has just stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.jobs.db import Blob

log = logging.getLogger(__name__)

_HASH_RE = re.compile(r"^[0-9a-f]{64}$")
DISK_FULL = "53100"  # PostgreSQL's SQLSTATE disk_full ("could not extend file")


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


@dataclass(frozen=True)
class BlobInfo:
    digest: str
    size: int             # bytes
    used_at: datetime     # stored, or stored again, last (UTC)


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

    async def delete_async(self, digest: str) -> bool:
        """Removes the bytes; False if there were none. `ValueError` for a bad digest."""
        ...

    async def list_async(self) -> list[BlobInfo]:
        """Every blob, in no particular order."""
        ...

    async def usage_async(self) -> tuple[int, int]:
        """(blobs, bytes) stored."""
        ...

    def free_bytes(self) -> int | None:
        """Bytes free where new blobs go; None where this process cannot tell (a
        database server's disk)."""
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
            with contextlib.suppress(FileNotFoundError):
                os.utime(path)  # a use: the collector leaves it alone for a while
            if path.exists():
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

    def delete(self, digest: str) -> bool:
        try:
            self.path_for(digest).unlink()
        except FileNotFoundError:
            return False
        log.debug("removed blob %s", digest[:12])
        return True

    def _files(self) -> Iterator[tuple[os.DirEntry[str], os.stat_result]]:
        """Every file in the store's folders (blobs and temporary files), with its stat;
        one removed meanwhile is skipped."""
        if not self.root.is_dir():
            return
        for shard in os.scandir(self.root):
            if not shard.is_dir() or len(shard.name) != 2:
                continue
            for entry in os.scandir(shard.path):
                try:
                    yield entry, entry.stat()
                except FileNotFoundError:
                    continue

    def list_blobs(self) -> list[BlobInfo]:
        """Every blob file (temporary files of writes in progress are not blobs)."""
        return [BlobInfo(entry.name, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC))
                for entry, st in self._files() if _HASH_RE.match(entry.name)]

    def remove_stale_temp_files(self, *, older_than: datetime) -> int:
        """Removes the temporary files of writes that a crash interrupted, last touched
        before `older_than`; returns how many."""
        removed = 0
        for entry, st in self._files():
            if (entry.name.startswith(".tmp-")
                    and datetime.fromtimestamp(st.st_mtime, UTC) < older_than):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                    removed += 1
        return removed

    def free_bytes(self) -> int | None:
        """Bytes free on the file system of the store (of its nearest existing parent)."""
        path = self.root
        while not path.exists() and path != path.parent:
            path = path.parent
        return shutil.disk_usage(path).free

    async def put_async(self, data: bytes) -> str:
        return await asyncio.to_thread(self.put, data)

    async def get_async(self, digest: str) -> bytes:
        return await asyncio.to_thread(self.get, digest)

    async def exists_async(self, digest: str) -> bool:
        """`exists` in a worker thread."""
        return await asyncio.to_thread(self.exists, digest)

    async def delete_async(self, digest: str) -> bool:
        return await asyncio.to_thread(self.delete, digest)

    async def list_async(self) -> list[BlobInfo]:
        return await asyncio.to_thread(self.list_blobs)

    async def usage_async(self) -> tuple[int, int]:
        blobs = await self.list_async()
        return len(blobs), sum(b.size for b in blobs)


class DatabaseBlobStorage:
    """Blobs as rows of the `blobs` table (`bytea` on PostgreSQL, whose values may be up
    to 1 GB; the uploads this program takes are far smaller). Writing the same bytes twice,
    even from two machines at once, stores them once (`INSERT ... ON CONFLICT DO
    NOTHING`); nothing is sent when the row is already there. Works on SQLite too."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self._sm = sessionmaker

    async def put_async(self, data: bytes) -> str:
        """Stores `data` unless a row has it already; returns its sha256 hex digest.
        Raises `OSError(ENOSPC)` when the database's disk is full (SQLSTATE 53100,
        disk_full), as the file store does."""
        try:
            return await self._put(data)
        except DBAPIError as exc:
            if getattr(exc.orig, "sqlstate", None) != DISK_FULL:
                raise
            raise OSError(errno.ENOSPC, "the database's disk is full") from exc

    async def _put(self, data: bytes) -> str:
        digest = sha256_hex(data)
        async with self._sm.begin() as session:
            # A use of bytes already there: the collector leaves them alone for a while.
            touched = await session.execute(update(Blob).where(Blob.sha256 == digest)
                                            .values(created_at=datetime.now(UTC)))
            if touched.rowcount:  # type: ignore[attr-defined]
                return digest
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

    async def delete_async(self, digest: str) -> bool:
        check_digest(digest)
        async with self._sm.begin() as session:
            result = await session.execute(delete(Blob).where(Blob.sha256 == digest))
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def list_async(self) -> list[BlobInfo]:
        async with self._sm() as session:
            rows = (await session.execute(
                select(Blob.sha256, Blob.size, Blob.created_at))).all()
        return [BlobInfo(digest, size, used_at) for digest, size, used_at in rows]

    async def usage_async(self) -> tuple[int, int]:
        async with self._sm() as session:
            count, total = (await session.execute(
                select(func.count(), func.coalesce(func.sum(Blob.size), 0)))).one()
        return int(count), int(total)

    def free_bytes(self) -> int | None:
        return None  # the database server's disk


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
