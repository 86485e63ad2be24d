"""Image bytes on disk, content-addressed by sha256: `<root>/<ab>/<abcdef...>`.

Writes are atomic (a temporary file in the same directory, fsync, rename), so a crash
never leaves a half-written blob under a real name, and writing the same bytes twice
is harmless. The database holds only the hashes.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

_HASH_RE = re.compile(r"^[0-9a-f]{64}$")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class BlobNotFound(FileNotFoundError):
    pass


class BlobStorage:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path_for(self, digest: str) -> Path:
        # The hash becomes a path: refuse anything that is not exactly 64 hex digits.
        if not _HASH_RE.match(digest):
            raise ValueError(f"not a sha256 hex digest: {digest!r}")
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
