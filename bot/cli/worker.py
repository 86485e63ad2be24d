"""`stylebot worker`: paint the shared queue's jobs on this machine, with no Discord.

A worker is the dispatcher and the local pool of the job service, and nothing else: it
claims fair batches from the database (`STYLEBOT_DATABASE_URL`, PostgreSQL when workers
run on several machines), paints them, writes their progress, previews, results and
failures back, renews its leases, stops a job when anyone asks for it to be cancelled,
and expires old pictures as the bot does (`bot.jobs.retention`). Bots and `stylebot
stylize` with `STYLEBOT_WORKERS=0` submit the jobs and show them. SIGINT or SIGTERM
stops it: running jobs get `--grace` seconds to finish, and those still running then go
back to the queue for another worker, attempts unchanged. A second SIGINT or SIGTERM ends
the grace at once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal

from sqlalchemy.engine import make_url

from bot.cli.common import EXIT_USER_ERROR, CliError, job_parts
from bot.jobs.executor import Executor, LocalPoolExecutor
from bot.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_GRACE_S = 30.0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    """`stylebot worker [--grace SECONDS]`: paints until SIGINT or SIGTERM; returns 0.

    Raises `CliError` when this machine has no workers to run (`STYLEBOT_WORKERS=0`),
    `DatabaseUnavailable` when the database cannot be reached, `ExecutorStartError` when
    the pool cannot start."""
    if settings.workers < 1:
        raise CliError("a worker paints: set STYLEBOT_WORKERS to 1 or more (it is 0).",
                       EXIT_USER_ERROR)
    if args.grace < 0:
        raise CliError("--grace must be 0 or more seconds.", EXIT_USER_ERROR)
    asyncio.run(_serve(settings, LocalPoolExecutor.from_settings(settings), args.grace))
    return 0


async def _serve(settings: Settings, executor: Executor, grace_s: float) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # not on Windows
            loop.add_signal_handler(sig, stop.set)
    try:
        async with job_parts(settings, executor=executor) as parts:
            service = parts.service
            await service.start()
            housekeeping = parts.housekeeping(settings)
            housekeeping.start()
            url = make_url(settings.database_url)
            log.info("worker %s: %d worker process(es) painting jobs from %s",
                     service.runner_id, settings.workers,
                     url.render_as_string(hide_password=True))
            if url.get_backend_name() == "sqlite":
                log.info("the database is a SQLite file: only processes on this machine "
                         "share it. For workers on other machines, point "
                         "STYLEBOT_DATABASE_URL at PostgreSQL (stylebot db copy moves the "
                         "jobs there).")
            await stop.wait()
            log.info("worker %s: stopping; running jobs get %.0f s to finish (again to put "
                     "them back in the queue now)", service.runner_id, grace_s)
            stop.clear()
            await housekeeping.stop()
            stopping = asyncio.ensure_future(service.stop(grace_s))
            hurry = asyncio.ensure_future(stop.wait())
            try:
                await asyncio.wait({stopping, hurry}, return_when=asyncio.FIRST_COMPLETED)
                if hurry.done() and not stopping.done():
                    log.info("worker %s: stopping now; running jobs go back to the queue",
                             service.runner_id)
                    await executor.close(0)
                await stopping
            finally:
                hurry.cancel()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.remove_signal_handler(sig)
