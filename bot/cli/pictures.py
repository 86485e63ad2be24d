"""`stylebot forget --user ID`, `stylebot jobs delete ID...` and `stylebot gc`: the
operator deletes people's pictures on their behalf, and cleans the store now rather than
at the bot's next hourly pass (`bot.jobs.retention`)."""

from __future__ import annotations

import argparse
import asyncio

from bot.cli.common import EXIT_FAILED, OPERATOR, CliError, job_parts
from bot.jobs.access import Action, Caller
from bot.jobs.retention import Removed
from bot.settings import Settings


def cmd_forget(args: argparse.Namespace, settings: Settings) -> int:
    """Deletes the pictures of every job of user `--user` (a Discord user id), cancelling
    their queued and running jobs first."""
    async def forget() -> tuple[int, Removed]:
        async with job_parts(settings) as parts:
            jobs = await parts.service.count_for_user(args.user)
            # The operator acting as that user: their jobs, and the rights of their owner.
            return jobs, await parts.privacy().forget_user(
                caller=Caller(user_id=args.user, operator=True))

    jobs, removed = asyncio.run(forget())
    if not jobs:
        raise CliError(f"user {args.user!r} has no jobs here (the id is the one "
                       "`stylebot job ID` shows as user_id; jobs from this command line "
                       "are user 'cli').", EXIT_FAILED)
    print(_said(removed, f"user {args.user}"))
    return 0


def cmd_jobs_delete(args: argparse.Namespace, settings: Settings) -> int:
    """Deletes the pictures of the jobs `job_ids`. Raises `JobNotFound` for an unknown
    id, before deleting anything."""
    async def delete() -> Removed:
        removed = Removed()
        async with job_parts(settings) as parts:
            for job_id in args.job_ids:  # every id first: a typo deletes nothing
                await parts.service.authorize(job_id, caller=OPERATOR, action=Action.delete)
            privacy = parts.privacy()
            for job_id in args.job_ids:
                removed += await privacy.forget_job(job_id, caller=OPERATOR)
        return removed

    print(_said(asyncio.run(delete()), ", ".join(args.job_ids)))
    return 0


def cmd_gc(args: argparse.Namespace, settings: Settings) -> int:
    """Expires pictures past STYLEBOT_RETENTION_DAYS (and jobs past
    STYLEBOT_HISTORY_DAYS), then removes the images no job needs."""
    async def clean() -> tuple[Removed, tuple[int, int]]:
        async with job_parts(settings) as parts:
            removed = await parts.housekeeping(settings).run_once()
            return removed, await parts.storage.usage_async()

    removed, (blobs, size) = asyncio.run(clean())
    print(f"pictures of {removed.jobs} job(s) expired, {removed.rows} old job(s) deleted, "
          f"{removed.blobs} image(s) removed; the store keeps {blobs} image(s), "
          f"{size / 1e6:.1f} MB")
    return 0


def _said(removed: Removed, whose: str) -> str:
    line = (f"{whose}: pictures of {removed.jobs} job(s) deleted, {removed.blobs} image(s) "
            "removed from the store")
    if removed.active:
        line += (f"; {removed.active} job(s) still running keep theirs until they stop "
                 "(run this again in a minute)")
    return line
