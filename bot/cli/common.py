"""What every `stylebot` command shares: the operator, exit codes, the one-line error,
and the one way a command gets a job service."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from bot.jobs.access import Caller
from bot.jobs.executor import Executor, OfflineExecutor
from bot.jobs.service import JobService
from bot.settings import Settings

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


@contextlib.asynccontextmanager
async def job_service(settings: Settings, *, executor: Executor | None = None,
                      own_jobs_only: bool = False, watch: bool = False
                      ) -> AsyncIterator[JobService]:
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
        yield service
    finally:
        try:
            await service.stop(grace_s=5)
        finally:
            await engine.dispose()
