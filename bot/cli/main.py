"""The `stylebot` command's parser, and `main`: settings, logging, then the command."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bot.cli.admin import cmd_db_upgrade, cmd_run, cmd_sync
from bot.cli.common import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USER_ERROR, CliError
from bot.cli.db import cmd_db_copy
from bot.cli.jobs import cmd_cancel, cmd_job, cmd_jobs
from bot.cli.pictures import cmd_forget, cmd_gc, cmd_jobs_delete
from bot.cli.stylize import cmd_stylize
from bot.cli.worker import DEFAULT_GRACE_S, cmd_worker
from bot.jobs.copy import DEFAULT_BATCH_SIZE
from bot.jobs.db import DatabaseUnavailable
from bot.jobs.errors import UserError
from bot.jobs.executor import ExecutorStartError
from bot.logging_setup import setup_logging
from bot.settings import Settings, SettingsError
from stylizer.config import EngineConfig
from stylizer.errors import InvalidParams
from stylizer.flags import add_engine_flags, add_param_flags, given_engine


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stylebot", description="Paint photos in the style of famous artworks.")
    _add_global_options(parser)
    # The same options after the command too (`stylebot stylize ... --styles-dir DIR`):
    # there they default to "not given", so that one given before the command stays.
    common = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    _add_global_options(common)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("stylize", parents=[common], help="paint one photo",
                       description="Paint PHOTO in a style and write the painting: a PNG, "
                       "or, for an animated GIF, WebP or PNG photo, an animated GIF (WebP for "
                       "a WebP); prints the job id and the file written.")
    p.add_argument("photo", type=Path, metavar="PHOTO")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("-s", "--style", help="a preset name (e.g. starry-night, mosaic)")
    which.add_argument("--style-image", type=Path, metavar="PATH",
                       help="your own style image instead of a preset")
    p.add_argument("-o", "--output", type=Path, metavar="OUT",
                   help="output file, in the format its extension says (.png, .jpg, .webp or "
                   ".gif; an animation .gif or .webp); without one, .png, or for an "
                   "animation .gif (.webp from a WebP) (default: <photo name>-<style> here)")
    add_engine_flags(p, from_settings=True)
    # Several styles in one painting are a Discord-only feature for now.
    add_param_flags(p, title="painting parameters (defaults: the style's own, then "
                    "STYLEBOT_DEFAULT_SIZE and the engine's)", skip=("style_blend",),
                    unstated_defaults=("size",))
    p.set_defaults(func=cmd_stylize)

    p = sub.add_parser("jobs", parents=[common], help="recent jobs (or: jobs delete ID...)",
                       usage="stylebot jobs [--limit N] [--json] | stylebot jobs delete ID...")
    p.add_argument("--limit", type=int, default=20, metavar="N",
                   help="how many of the latest jobs (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="as JSON, every field")
    p.set_defaults(func=cmd_jobs)
    jobs_sub = p.add_subparsers(dest="jobs_command", metavar="delete")
    p = jobs_sub.add_parser("delete", parents=[common], help="delete jobs' pictures",
                            description="Delete the photo, style image, painting and "
                            "preview of each job (its line in the history stays).")
    p.add_argument("job_ids", nargs="+", metavar="ID")
    p.set_defaults(func=cmd_jobs_delete)

    p = sub.add_parser("forget", parents=[common], help="delete one user's pictures",
                       description="Delete the pictures of every job of one user (their "
                       "queued and running jobs are cancelled first), as /forget does.")
    p.add_argument("--user", required=True, metavar="ID",
                   help="the Discord user id (`stylebot job ID` shows it as user_id; this "
                   "command line's own jobs are user 'cli')")
    p.set_defaults(func=cmd_forget)

    p = sub.add_parser("gc", parents=[common], help="expire old pictures, remove unused ones",
                       description="Delete the pictures of jobs older than "
                       "STYLEBOT_RETENTION_DAYS (and jobs older than STYLEBOT_HISTORY_DAYS), "
                       "then remove every image no job needs. The bot does this hourly.")
    p.set_defaults(func=cmd_gc)

    p = sub.add_parser("job", parents=[common], help="one job in full")
    p.add_argument("job_id", metavar="ID")
    p.add_argument("--json", action="store_true")
    p.add_argument("-o", "--output", type=Path, metavar="FILE",
                   help="also write the job's painting there (e.g. one Discord could not "
                   "take), in the format the extension says (an animation: .gif or .webp); "
                   "without one, in the painting's own")
    p.set_defaults(func=cmd_job)

    p = sub.add_parser("cancel", parents=[common], help="cancel a queued or running job")
    p.add_argument("job_id", metavar="ID")
    p.set_defaults(func=cmd_cancel)

    p = sub.add_parser("db", parents=[common], help="database maintenance")
    db_sub = p.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    db_sub.add_parser("upgrade", parents=[common],
                      help="apply migrations").set_defaults(func=cmd_db_upgrade)
    p = db_sub.add_parser(
        "copy", parents=[common], help="copy every job and image into another database",
        description="Copy the jobs, their images and previews from this bot's database "
        "(STYLEBOT_DATABASE_URL) into a PostgreSQL database, migrated first; then check "
        "every row and image. Safe to run again: it copies only what is missing.")
    p.add_argument("--to", required=True, metavar="URL",
                   help="the target: postgresql+asyncpg://USER:PASSWORD@HOST:PORT/DATABASE")
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, metavar="N",
                   help="jobs per transaction (default: %(default)s)")
    p.set_defaults(func=cmd_db_copy)

    p = sub.add_parser("run", parents=[common], help="run the Discord bot")
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("worker", parents=[common],
                       help="paint queued jobs from the shared database",
                       description="Run this machine's worker processes on the jobs queued "
                       "in STYLEBOT_DATABASE_URL (no Discord), until SIGINT or SIGTERM.")
    p.add_argument("--grace", type=float, default=DEFAULT_GRACE_S, metavar="SECONDS",
                   help="on stopping, how long running jobs may take to finish before they "
                   "go back to the queue (default: %(default)s)")
    p.set_defaults(func=cmd_worker)
    p = sub.add_parser("sync", parents=[common], help="push the slash commands to Discord")
    p.add_argument("--guild", type=int, metavar="ID", help="one guild (instant) instead of "
                   "globally (STYLEBOT_DEV_GUILD)")
    p.set_defaults(func=cmd_sync)
    return parser


def _add_global_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=Path, help="where jobs and images are kept "
                        "(STYLEBOT_DATA_DIR)")
    parser.add_argument("--styles-dir", type=Path, help="a style pack with the paintings "
                        "(STYLEBOT_STYLES_DIR)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Flags win over the environment: the folders, and the engine flags of `stylize`.
    overrides: dict[str, Any] = given_engine(args)
    try:
        EngineConfig(**overrides)  # a bad flag is named as a flag, not as its variable
    except InvalidParams as exc:
        return _fail(f"--{exc.message}", EXIT_USER_ERROR)
    if args.data_dir is not None:
        overrides["data_dir"] = args.data_dir
    if args.styles_dir is not None:
        overrides["styles_dir"] = args.styles_dir
    try:
        settings = Settings.from_env(**overrides)
    except SettingsError as exc:
        return _fail(str(exc), EXIT_USER_ERROR)
    if args.command not in ("run", "sync"):
        # A terminal tool stays quiet unless asked; a worker, a service, logs at its level
        # (the bot sets up its own).
        chosen = "log_level" in settings.model_fields_set  # STYLEBOT_LOG_LEVEL was set
        level = "INFO" if args.verbose else settings.log_level if chosen else "WARNING"
        setup_logging(settings.log_level if args.command == "worker" and not args.verbose
                      else level)
    try:
        status: int = args.func(args, settings)
        return status
    except CliError as exc:
        return _fail(str(exc), exc.status)
    except UserError as exc:
        return _fail(exc.message, EXIT_USER_ERROR)
    except ExecutorStartError as exc:
        return _fail(f"the painter could not start: {exc.message}", EXIT_FAILED)
    except DatabaseUnavailable as exc:
        return _fail(str(exc), EXIT_FAILED)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`stylebot jobs | head`): stop quietly. Python's docs ("Note
        # on SIGPIPE", signal module): point stdout at devnull so that the interpreter's
        # final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    except OSError as exc:  # the data folder is a file, a disk is full or read-only...
        where = f"{exc.filename}: " if exc.filename else ""
        return _fail(f"cannot use {where}{exc.strerror or exc}", EXIT_FAILED)


def _fail(message: str, status: int) -> int:
    sys.stderr.write(f"stylebot: {message}\n")
    return status
