"""`stylebot`: paint photos locally through the job pipeline, look at jobs, run the bot.

    stylebot stylize PHOTO -s STYLE [-o OUT] [--size PX] [--steps N] [--seed N] ...
    stylebot jobs [--limit N] [--json]      stylebot job ID [--json]
    stylebot cancel ID                      stylebot db upgrade
    stylebot run                            stylebot sync [--guild ID]

`stylize` goes through the same pipeline as the bot (database, worker pool, job
service), so its jobs show up in `stylebot jobs` and survive a crash like any other.
Errors are one line on stderr; a mistake in the request exits with 2, a failed job 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import json
import os
import signal
import sys
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import IO, Any, TypeVar

from bot.jobs.access import Action, Caller
from bot.jobs.errors import InvalidRequest, UserError
from bot.jobs.events import (
    JobCancelled,
    JobEvent,
    JobFailed,
    JobProgress,
    JobQueued,
    JobStarted,
    JobSucceeded,
)
from bot.jobs.executor import Executor, ExecutorStartError, OfflineExecutor
from bot.jobs.records import JobRecord
from bot.jobs.service import JobService
from bot.jobs.states import JobStatus
from bot.logging_setup import setup_logging
from bot.settings import Settings, SettingsError
from stylizer.config import PRECISIONS
from stylizer.errors import StylizerError
from stylizer.images import read_path
from stylizer.params import limits

# The operator at this machine: owns the jobs it submits, may see and cancel any job.
OPERATOR = Caller.cli()
CLI_USER = OPERATOR.user_id
EXIT_USER_ERROR = 2
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130
T = TypeVar("T")


class CliError(Exception):
    """A one-line error for the terminal, with its exit status."""

    def __init__(self, message: str, status: int = EXIT_USER_ERROR) -> None:
        super().__init__(message)
        self.status = status


# ------------------------------------------------------------------------------ parser

def _add_param_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per `StyleParams` field, with its range and help from `limits()`."""
    group = parser.add_argument_group("painting parameters (defaults: the style's own, "
                                      "then STYLEBOT_DEFAULT_SIZE and the engine's)")
    for name, lim in limits().items():
        if name == "style_blend":  # several styles are a Discord-only feature for now
            continue
        flag = "--" + name.replace("_", "-")
        default = lim.default
        text = lim.help
        if lim.min is not None and lim.max is not None:
            text += f" ({lim.min:g}–{lim.max:g}"
            text += f", default {default})" if name != "size" else ")"
        elif name != "size":
            text += f" (default {default})"
        if isinstance(default, bool):
            group.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction,
                               default=None, help=text)
        elif lim.choices:
            group.add_argument(flag, dest=name, choices=lim.choices, default=None, help=text)
        else:
            kind: type = int if isinstance(default, int) else float
            group.add_argument(flag, dest=name, type=kind, default=None, help=text,
                               metavar="N" if kind is int else "X")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stylebot", description="Paint photos in the style of famous artworks.")
    parser.add_argument("--data-dir", type=Path, help="where jobs and images are kept "
                        "(STYLEBOT_DATA_DIR)")
    parser.add_argument("--styles-dir", type=Path, help="a style pack with the paintings "
                        "(STYLEBOT_STYLES_DIR)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("stylize", help="paint one photo", description="Paint PHOTO in a "
                       "style and write a PNG; prints the job id and the file written.")
    p.add_argument("photo", type=Path, metavar="PHOTO")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("-s", "--style", help="a preset name (e.g. starry-night, mosaic)")
    which.add_argument("--style-image", type=Path, metavar="PATH",
                       help="your own style image instead of a preset")
    p.add_argument("-o", "--output", type=Path, metavar="OUT",
                   help="output file (default: <photo name>-<style>.png here)")
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N (STYLEBOT_DEVICE)")
    p.add_argument("--precision", choices=PRECISIONS,
                   help="the workers' network: auto, bf16 or fp32 (STYLEBOT_PRECISION)")
    _add_param_flags(p)
    p.set_defaults(func=cmd_stylize)

    p = sub.add_parser("jobs", help="recent jobs")
    p.add_argument("--limit", type=int, default=20, metavar="N")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_jobs)

    p = sub.add_parser("job", help="one job in full")
    p.add_argument("job_id", metavar="ID")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_job)

    p = sub.add_parser("cancel", help="cancel a queued or running job")
    p.add_argument("job_id", metavar="ID")
    p.set_defaults(func=cmd_cancel)

    p = sub.add_parser("db", help="database maintenance")
    db_sub = p.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    db_sub.add_parser("upgrade", help="apply migrations").set_defaults(func=cmd_db_upgrade)

    p = sub.add_parser("run", help="run the Discord bot")
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("sync", help="push the slash commands to Discord")
    p.add_argument("--guild", type=int, metavar="ID", help="one guild (instant) instead of "
                   "globally (STYLEBOT_DEV_GUILD)")
    p.set_defaults(func=cmd_sync)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    overrides: dict[str, Any] = {}
    if args.data_dir is not None:
        overrides["data_dir"] = args.data_dir
    if args.styles_dir is not None:
        overrides["styles_dir"] = args.styles_dir
    if getattr(args, "device", None):
        overrides["device"] = args.device
    if getattr(args, "precision", None):
        overrides["precision"] = args.precision
    try:
        settings = Settings.from_env(**overrides)
    except SettingsError as exc:
        return _fail(str(exc), EXIT_USER_ERROR)
    if args.command not in ("run", "sync"):
        # A terminal tool stays quiet unless asked; the bot logs at its configured level.
        level = "INFO" if args.verbose else os.environ.get("STYLEBOT_LOG_LEVEL", "WARNING")
        setup_logging(level)
    try:
        status: int = args.func(args, settings)
        return status
    except CliError as exc:
        return _fail(str(exc), exc.status)
    except UserError as exc:
        return _fail(exc.message, EXIT_USER_ERROR)
    except ExecutorStartError as exc:
        return _fail(f"the painter could not start: {exc.message}", EXIT_FAILED)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def _fail(message: str, status: int) -> int:
    sys.stderr.write(f"stylebot: {message}\n")
    return status


# --------------------------------------------------------------------------- plumbing

async def _with_service(settings: Settings, body: Callable[[JobService], Awaitable[T]], *,
                        executor: Executor | None = None, own_jobs_only: bool = False) -> T:
    """Migrations, engine, storage and a service around `body`; all closed afterwards."""
    from bot.jobs.db import create_engine_and_sessionmaker, upgrade_database
    from bot.jobs.storage import BlobStorage

    await upgrade_database(settings.database_url)
    engine, sessionmaker = create_engine_and_sessionmaker(settings.database_url)
    service = JobService(sessionmaker=sessionmaker, storage=BlobStorage(settings.blobs_dir),
                         executor=executor or OfflineExecutor(), settings=settings,
                         presets_dir=settings.styles_dir, own_jobs_only=own_jobs_only)
    try:
        return await body(service)
    finally:
        try:
            await service.stop(grace_s=5)
        finally:
            await engine.dispose()


def _read(path: Path, what: str) -> bytes:
    try:
        return read_path(str(path))  # bounded: /dev/zero is refused, not read to the end
    except OSError as exc:
        raise CliError(f"cannot read the {what} {path}: {exc.strerror or exc}") from None
    except StylizerError as exc:
        raise CliError(f"the {what} {path}: {exc}") from None


def _write_atomically(path: Path, data: bytes) -> None:
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


# ----------------------------------------------------------------------------- stylize

class ProgressDisplay:
    """A progress bar on stderr when it is a terminal; plain lines otherwise."""

    WIDTH = 30

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.job_id: str | None = None
        self._bar_shown = False
        self._last_line = ""

    async def __call__(self, event: JobEvent) -> None:
        if self.job_id is None or event.job_id != self.job_id:
            return
        if isinstance(event, JobQueued) and event.job.attempts > 0:
            self.line(f"the painter stopped; trying again (attempt {event.job.attempts + 1})")
        elif isinstance(event, JobStarted):
            self.line("painting…")
        elif isinstance(event, JobProgress):
            self.progress(event.step, event.total)
        elif isinstance(event, JobSucceeded):
            if event.job.total_steps:
                self.progress(event.job.total_steps, event.job.total_steps)
            self.end()
        elif isinstance(event, JobFailed | JobCancelled):
            self.end()

    def line(self, text: str) -> None:
        self.end()
        self.stream.write(text + "\n")
        self.stream.flush()

    def progress(self, step: int, total: int) -> None:
        total = max(total, 1)
        if not self.tty:
            text = f"step {step}/{total}"
            if text != self._last_line:
                self._last_line = text
                self.stream.write(text + "\n")
                self.stream.flush()
            return
        filled = round(self.WIDTH * min(step, total) / total)
        bar = "█" * filled + "░" * (self.WIDTH - filled)
        self.stream.write(f"\r[{bar}] {100 * step // total:3d}%  step {step}/{total}")
        self.stream.flush()
        self._bar_shown = True

    def end(self) -> None:
        if self._bar_shown:
            self.stream.write("\n")
            self.stream.flush()
            self._bar_shown = False


def _style_hint(message: str, settings: Settings) -> str:
    """Paintings live in a style pack; without one only procedural styles exist."""
    pack = settings.styles_dir
    if pack is None:
        return (f"{message} Paintings such as starry-night need a style pack: set "
                "STYLEBOT_STYLES_DIR or pass --styles-dir.")
    if not pack.is_dir():
        return f"{message} The style pack {pack} does not exist (STYLEBOT_STYLES_DIR)."
    return message


def cmd_stylize(args: argparse.Namespace, settings: Settings) -> int:
    content = _read(args.photo, "photo")
    style_image = _read(args.style_image, "style image") if args.style_image else None
    params = {name: getattr(args, name) for name in limits()
              if name != "style_blend" and getattr(args, name, None) is not None}
    display = ProgressDisplay(sys.stderr)
    from bot.jobs.executor import LocalPoolExecutor

    # Progress once a second: a terminal bar wants more than the bot's default.
    executor = LocalPoolExecutor.from_settings(settings, preview_interval_s=1.0)

    async def body(service: JobService) -> int:
        service.subscribe(display)
        try:
            view = await service.submit(
                user_id=CLI_USER, user_name=_user_name(), content=content, style=args.style,
                style_image=style_image, params=params, source="cli")
        except InvalidRequest as exc:
            message = exc.message
            if exc.code == "unknown_style":
                message = _style_hint(message, settings)
            raise CliError(message) from None
        display.job_id = view.id
        position = await service.queue_position(view.id)
        display.line(f"job {view.id}: {view.style}, {view.params['size']} px, "
                     f"{view.total_steps} steps" + (f" (queue position {position})"
                                                    if position and position > 1 else ""))
        try:
            await service.start()
        except BaseException:
            with contextlib.suppress(UserError):
                await service.cancel(view.id, caller=OPERATOR)
            raise
        final = await _wait_or_cancel(service, view.id)
        return await _finish(args, service, final, display,
                             await service.read_output(final.id))

    return asyncio.run(_with_service(settings, body, executor=executor, own_jobs_only=True))


def _user_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return CLI_USER


async def _wait_or_cancel(service: JobService, job_id: str) -> JobRecord:
    """Waits for the job; the first Ctrl-C (or SIGTERM) cancels it, a second one quits."""
    loop = asyncio.get_running_loop()
    interrupted = asyncio.Event()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, interrupted.set)
    waiting = asyncio.ensure_future(service.wait(job_id))
    stopping = asyncio.ensure_future(interrupted.wait())
    try:
        await asyncio.wait({waiting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if waiting.done():
            return waiting.result()
        for sig in signals:  # a second Ctrl-C now interrupts for real
            with contextlib.suppress(NotImplementedError):
                loop.remove_signal_handler(sig)
        sys.stderr.write("\ncancelling…\n")
        with contextlib.suppress(UserError):  # it may have finished meanwhile
            await service.cancel(job_id, caller=OPERATOR)
        final = await service.wait(job_id, timeout_s=15)
        if final.status is JobStatus.succeeded:
            return final
        raise CliError(f"job {job_id} cancelled", EXIT_INTERRUPTED)
    finally:
        waiting.cancel()
        stopping.cancel()
        for sig in signals:
            with contextlib.suppress(NotImplementedError):
                loop.remove_signal_handler(sig)


async def _finish(args: argparse.Namespace, service: JobService, final: JobRecord,
                  display: ProgressDisplay, png: bytes | None) -> int:
    display.end()
    if final.status is not JobStatus.succeeded or png is None:
        await service.mark_delivered(final.id)  # the error below is its delivery
        why = final.error_message or f"the job ended {final.status}"
        raise CliError(f"job {final.id} failed: {why}", EXIT_FAILED)
    style = final.style if final.style != "custom" else Path(args.style_image).stem
    out = args.output or Path(f"{args.photo.stem}-{style}.png")
    _write_atomically(out, png)
    # Delivered (to a file): the bot's delivery side must not try to send it anywhere.
    await service.mark_delivered(final.id)
    seconds = f" in {final.seconds:.1f} s" if final.seconds is not None else ""
    print(f"job {final.id} done{seconds}: {out}")
    return 0


# ------------------------------------------------------------------------ job listings

def _when(value: datetime | None) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M") if value else "-"


def _seconds(view: JobRecord) -> str:
    return f"{view.seconds:.1f}" if view.seconds is not None else "-"


def cmd_jobs(args: argparse.Namespace, settings: Settings) -> int:
    views = asyncio.run(_with_service(
        settings, lambda s: s.list_all(limit=max(1, args.limit))))
    if args.json:
        print(json.dumps([v.to_dict() for v in views], indent=2))
        return 0
    if not views:
        print("No jobs yet. Try: stylebot stylize PHOTO -s mosaic")
        return 0
    rows = [("ID", "WHEN", "USER", "STYLE", "SIZE", "STATUS", "SECONDS")]
    rows += [(v.id, _when(v.created_at), v.user_name, v.style, str(v.size or "-"),
              v.status.value, _seconds(v)) for v in views]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        cells = [c.rjust(w) if i in (4, 6) else c.ljust(w)
                 for i, (c, w) in enumerate(zip(r, widths, strict=True))]
        print("  ".join(cells).rstrip())
    return 0


def cmd_job(args: argparse.Namespace, settings: Settings) -> int:
    async def body(service: JobService) -> tuple[JobRecord, int | None, float | None]:
        view = await service.authorize(args.job_id, caller=OPERATOR, action=Action.see)
        return view, await service.queue_position(view.id), await service.eta_seconds(view.id)

    view, position, eta = asyncio.run(_with_service(settings, body))
    data = view.to_dict()
    data["queue_position"], data["eta_seconds"] = position, eta
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    width = max(len(key) for key in data)
    for key, value in data.items():
        if key == "params":
            value = ", ".join(f"{k}={v}" for k, v in value.items())
        print(f"{key:>{width}}: {'-' if value is None else value}")
    return 0


def cmd_cancel(args: argparse.Namespace, settings: Settings) -> int:
    view = asyncio.run(_with_service(
        settings, lambda s: s.cancel(args.job_id, caller=OPERATOR)))
    if view.status is JobStatus.cancelled:
        print(f"job {view.id} cancelled")
    else:
        print(f"job {view.id}: asked to stop; it is {view.status} for now")
    return 0


def cmd_db_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    from sqlalchemy.engine import make_url

    from bot.jobs.db import current_revision, upgrade_database

    async def upgrade() -> str | None:
        await upgrade_database(settings.database_url)
        return await current_revision(settings.database_url)

    revision = asyncio.run(upgrade())
    where = make_url(settings.database_url).render_as_string(hide_password=True)
    print(f"database {where} is at revision {revision}")
    return 0


# ------------------------------------------------------------------------ the Discord bot

def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from bot.app import run_bot

    return run_bot(settings)


def cmd_sync(args: argparse.Namespace, settings: Settings) -> int:
    from bot.app import sync_commands

    return sync_commands(settings, args.guild if args.guild is not None
                         else settings.dev_guild_id)


if __name__ == "__main__":
    sys.exit(main())
