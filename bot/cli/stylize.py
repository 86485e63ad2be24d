"""`stylebot stylize PHOTO -s STYLE`: one painting through the bot's own pipeline (a job
in the database, a worker pool, the job service), written to a file.

With `STYLEBOT_WORKERS=0` this process paints nothing: it queues the job and shows it
being painted by whichever `stylebot worker` sharing the database takes it, reading its
progress from the database (`bot.jobs.watch`).

The painting is a PNG, or for an animated photo an animated GIF (WebP for a WebP photo):
the file written gets that extension (`painting_path`)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import signal
import sys
from pathlib import Path

from bot.cli.common import (
    CLI_USER,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    OPERATOR,
    CliError,
    job_service,
    write_atomically,
)
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
from bot.jobs.intake import stored_animation
from bot.jobs.records import JobRecord
from bot.jobs.service import JobService
from bot.jobs.states import JobStatus
from bot.settings import Settings
from stylizer.errors import StylizerError
from stylizer.flags import given_engine, given_params
from stylizer.images import read_path
from stylizer.terminal import ProgressDisplay


def cmd_stylize(args: argparse.Namespace, settings: Settings) -> int:
    content = _read(args.photo, "photo")
    style_image = _read(args.style_image, "style image") if args.style_image else None
    from bot.jobs.executor import Executor, LocalPoolExecutor, OfflineExecutor

    elsewhere = settings.workers == 0  # painted by a `stylebot worker`
    # Progress once a second: a terminal bar wants more than the bot's default.
    executor: Executor = (OfflineExecutor() if elsewhere else
                          LocalPoolExecutor.from_settings(settings, preview_interval_s=1.0))

    async def paint() -> int:
        # A bar on a terminal; `step N/TOTAL` lines in a log.
        with ProgressDisplay(sys.stderr, plain_lines=True) as display:
            async with job_service(settings, executor=executor, own_jobs_only=True,
                                   watch=elsewhere) as service:
                shown = JobProgressShown(display)
                service.subscribe(shown)
                record = await _submit(service, args, settings, content, style_image)
                shown.job_id = record.id
                position = await service.queue_position(record.id)
                queued = f" (queue position {position})" if position and position > 1 else ""
                plan = await asyncio.to_thread(stored_animation, content, record.params)
                frames = "" if plan is None else (
                    f", {plan.painted} of the {plan.source_frames} frames of an animated "
                    f"{plan.format}")
                display.message(f"job {record.id}: {record.style}, {record.params['size']} px, "
                                f"{record.total_steps} steps{frames}{queued}")
                if elsewhere:
                    display.message("waiting for a worker (STYLEBOT_WORKERS=0: a "
                                    "`stylebot worker` sharing the database paints it)…")
                    ignored = ", ".join(f"--{name}" for name in given_engine(args))
                    if ignored:
                        display.message(f"{ignored}: not used here; the worker paints with "
                                        "its own settings")
                try:
                    await service.start()
                except BaseException:
                    with contextlib.suppress(UserError):
                        await service.cancel(record.id, caller=OPERATOR)
                    raise
                final = await _wait_or_cancel(service, record.id)
                display.close()
                return await _finish(args, service, final,
                                     await service.read_output(final.id))

    return asyncio.run(paint())


async def _submit(service: JobService, args: argparse.Namespace, settings: Settings,
                  content: bytes, style_image: bytes | None) -> JobRecord:
    try:
        return await service.submit(
            user_id=CLI_USER, user_name=_user_name(), content=content, style=args.style,
            style_image=style_image, params=given_params(args), source="cli")
    except InvalidRequest as exc:
        message = exc.message
        if exc.code == "unknown_style":
            message = _style_hint(message, settings)
        raise CliError(message) from None


class JobProgressShown:
    """Shows one job's events (`JobService.subscribe`) on a `ProgressDisplay`."""

    def __init__(self, display: ProgressDisplay) -> None:
        self.display = display
        self.job_id: str | None = None  # set once the job is submitted
        self.runs = 0  # JobStarted seen
        self.requeues: set[tuple[int, int]] = set()  # (attempts, runs) announced

    async def __call__(self, event: JobEvent) -> None:
        if self.job_id is None or event.job_id != self.job_id:
            return
        if isinstance(event, JobQueued) and self.runs:
            seen = (event.job.attempts, self.runs)
            if seen in self.requeues:
                return  # told already (recovery here, and the row read back, both tell)
            self.requeues.add(seen)
            if event.job.attempts >= self.runs:  # the run counted: it ended abnormally
                self.display.message(f"the painter stopped; trying again "
                                     f"(attempt {event.job.attempts + 1})")
            else:  # a clean stop, which does not count the run
                self.display.message("the worker painting it stopped; back in the queue "
                                     "for another one")
        elif isinstance(event, JobStarted):
            self.runs += 1
            self.display.message("painting…")
        elif isinstance(event, JobProgress):
            self.display.update(event.step, event.total)
        elif isinstance(event, JobSucceeded):
            if event.job.total_steps:
                self.display.update(event.job.total_steps, event.job.total_steps)
            self.display.close()
        elif isinstance(event, JobFailed | JobCancelled):
            self.display.close()


def painting_path(path: Path, painting: bytes) -> Path:
    """Where a painting goes: `path`, or for an animation (GIF or WebP bytes) `path` with
    its extension, so that the file opens as what it is (a still is written as given)."""
    if painting.startswith((b"GIF87a", b"GIF89a")):
        suffix = ".gif"
    elif painting[:4] == b"RIFF" and painting[8:12] == b"WEBP":
        suffix = ".webp"
    else:
        return path
    return path if path.suffix.lower() == suffix else path.with_suffix(suffix)


def _read(path: Path, what: str) -> bytes:
    try:
        return read_path(str(path))  # bounded: /dev/zero is refused, not read to the end
    except OSError as exc:
        raise CliError(f"cannot read the {what} {path}: {exc.strerror or exc}") from None
    except StylizerError as exc:
        raise CliError(f"the {what} {path}: {exc}") from None


def _style_hint(message: str, settings: Settings) -> str:
    """Paintings live in a style pack; without one only procedural styles exist."""
    pack = settings.styles_dir
    if pack is None:
        return (f"{message} Paintings such as starry-night need a style pack: set "
                "STYLEBOT_STYLES_DIR or pass --styles-dir.")
    if not pack.is_dir():
        return f"{message} The style pack {pack} does not exist (STYLEBOT_STYLES_DIR)."
    return message


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
                  png: bytes | None) -> int:
    if final.status is not JobStatus.succeeded or png is None:
        await service.mark_delivered(final.id)  # the error below is its delivery
        if final.status is JobStatus.cancelled:
            raise CliError(f"job {final.id} was cancelled", EXIT_FAILED)
        why = (f"its pictures were {final.pictures_gone}" if final.pictures_gone
               else final.error_message or f"the job ended {final.status}")
        raise CliError(f"job {final.id} failed: {why}", EXIT_FAILED)
    style = final.style if final.style != "custom" else Path(args.style_image).stem
    out = painting_path(args.output or Path(f"{args.photo.stem}-{style}.png"), png)
    write_atomically(out, png)
    # Delivered (to a file): the bot's delivery side must not try to send it anywhere.
    await service.mark_delivered(final.id)
    seconds = f" in {final.seconds:.1f} s" if final.seconds is not None else ""
    print(f"job {final.id} done{seconds}: {out}")
    return 0
