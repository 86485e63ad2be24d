"""What every `stylebot` command shares: the operator, exit codes, the one-line error,
the one way a command gets a job service, and the one way it writes a painting."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.jobs.access import Caller
from bot.jobs.executor import Executor, OfflineExecutor
from bot.jobs.retention import Housekeeping, Privacy
from bot.jobs.service import JobService
from bot.jobs.storage import BlobStore
from bot.settings import Settings
from stylizer.animation import OutputRefused, convert_painting, output_file

# The operator at this machine: owns the jobs it submits, may see and cancel any job.
OPERATOR = Caller.cli()
CLI_USER = OPERATOR.user_id
EXIT_USER_ERROR = 2
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130


class CliError(Exception):
    """A one-line error for the terminal, with its exit status."""

    def __init__(self, message: str, status: int = EXIT_USER_ERROR) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Parts:
    """What a command works with: the job service, and beneath it the database and the
    image store (for the pictures' clean-up, `bot.jobs.retention`)."""
    service: JobService
    sessionmaker: async_sessionmaker[AsyncSession]
    storage: BlobStore

    def privacy(self) -> Privacy:
        return Privacy(self.service, self.sessionmaker, self.storage)

    def housekeeping(self, settings: Settings) -> Housekeeping:
        return Housekeeping.from_settings(self.sessionmaker, self.storage, settings)


@contextlib.asynccontextmanager
async def job_parts(settings: Settings, *, executor: Executor | None = None,
                    own_jobs_only: bool = False, watch: bool = False
                    ) -> AsyncIterator[Parts]:
    """Migrations, engine, storage and a service (not started: `stylize` and `worker`
    start it, a listing has no painting to do); all closed afterwards. Without an
    `executor` the service paints nothing: it reads and changes job records only; with
    `watch` it reports the changes other processes make to its jobs (`JobWatcher`).

    Raises `DatabaseUnavailable` when the database cannot be reached."""
    from bot.jobs.db import create_engine_and_sessionmaker, upgrade_database
    from bot.jobs.storage import open_storage

    await upgrade_database(settings.database_url)
    engine, sessionmaker = create_engine_and_sessionmaker(settings.database_url)
    storage = open_storage(settings.database_url, settings.blobs_dir, sessionmaker)
    service = JobService(sessionmaker=sessionmaker, storage=storage,
                         executor=executor or OfflineExecutor(), settings=settings,
                         presets_dir=settings.styles_dir, own_jobs_only=own_jobs_only,
                         watch=watch, lease_s=settings.lease_s,
                         poll_interval_s=settings.poll_interval_s)
    try:
        yield Parts(service, sessionmaker, storage)
    finally:
        try:
            await service.stop(grace_s=5)
        finally:
            await engine.dispose()


@contextlib.asynccontextmanager
async def job_service(settings: Settings, *, executor: Executor | None = None,
                      own_jobs_only: bool = False, watch: bool = False
                      ) -> AsyncIterator[JobService]:
    """`job_parts`' service alone."""
    async with job_parts(settings, executor=executor, own_jobs_only=own_jobs_only,
                         watch=watch) as parts:
        yield parts.service


def write_atomically(path: Path, data: bytes) -> None:
    """Writes `data` to `path` through a temporary file beside it (a reader never sees half
    a file), as an ordinary file (mode from the umask). Raises `CliError`."""
    path = path.expanduser()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        # mkstemp makes the file private (0600); a painting is an ordinary file.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except OSError as exc:
        raise CliError(f"cannot write {path}: {exc.strerror or exc}", EXIT_FAILED) from None




def painting_file(asked: Path, animation: str | None, *, hint: str = "") -> tuple[Path, str]:
    """Where a painting asked for as `asked` goes, and its format (Pillow's name): the one
    its extension says, and a name without one gets the painting's own (see
    `stylizer.animation.output_file`, which `python -m stylizer` follows too).
    `animation`: the photo's format when it is painted as an animation, None for a
    still. Raises `CliError` (exit 2) for a folder, or an extension that cannot hold the
    painting (`hint` added to that message)."""
    if asked.expanduser().is_dir():
        raise CliError(f"{asked} is a directory; give a file name")
    try:
        return output_file(asked, animation)
    except OutputRefused as exc:
        raise CliError(f"{exc}{hint}") from None


def write_painting(path: Path, painting: bytes, fmt: str) -> None:
    """Writes a job's painting (`painting_file`'s `path` and `fmt`) in that format,
    converted when the worker painted another one. Raises `CliError`."""
    try:
        data = convert_painting(painting, fmt)
    except ValueError as exc:  # an animation, where a still was expected
        raise CliError(f"cannot write {path}: {exc}", EXIT_FAILED) from None
    write_atomically(path, data)
