"""`stylebot stylize PHOTO -s STYLE`: one painting through the bot's own pipeline (a job
in the database, a worker pool, the job service), written to a file.

With `STYLEBOT_WORKERS=0` this process paints nothing: it queues the job and shows it
being painted by whichever `stylebot worker` sharing the database takes it, reading its
progress from the database (`bot.jobs.watch`).

The photo (and a style image) are judged by their bytes before anything else, with the
check the Discord bot makes on a download (`check_image_bytes`: an animation cut short is
refused here, not by a worker), then as the job service's intake will judge them; the
output's name is checked then too (`painting_file`), so that no job is stored for a
request that cannot be met. The painting is written in the format the output's
extension says: a PNG by default, or for an animated photo an animated GIF (WebP for a
WebP photo).

The worker pool's "no CUDA device" warning, meant for an operator whose bot was to have
a GPU, is information for the person painting here (`pool_news_as_info`: INFO, shown
with -v)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import logging
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

from bot.cli.common import (
    CLI_USER,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    OPERATOR,
    CliError,
    job_service,
    painting_file,
    write_painting,
)
from bot.discord.validation import check_image_bytes
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
from bot.jobs.intake import CUSTOM_STYLE, CheckedRequest, Intake, animation_plan
from bot.jobs.records import JobRecord
from bot.jobs.service import JobService
from bot.jobs.states import JobStatus
from bot.settings import Settings
from stylizer.animation import painting_suffix
from stylizer.errors import StylizerError
from stylizer.flags import given_engine, given_params
from stylizer.images import read_path
from stylizer.terminal import ProgressDisplay


def cmd_stylize(args: argparse.Namespace, settings: Settings) -> int:
    content = _read(args.photo, "photo", settings)
    style_image = (_read(args.style_image, "style image", settings) if args.style_image
                   else None)
    request = asyncio.run(_check(args, settings, content, style_image))
    animated = request.photo.format if request.frames else None
    style = request.style_name if request.style_name != CUSTOM_STYLE else args.style_image.stem
    out, fmt = painting_file(
        args.output or Path(f"{args.photo.stem}-{style}{painting_suffix(animated)}"), animated,
        hint=" (or --max-frames 1 to paint its first frame as a still)" if animated else "")
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
                display.message(f"job {record.id}: {record.style}, {record.params['size']} px, "
                                f"{record.total_steps} steps"
                                f"{_frames_note(args, settings, request)}{queued}")
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
                return await _finish(service, final, await service.read_output(final.id),
                                     out, fmt)

    with pool_news_as_info():
        return asyncio.run(paint())


async def _check(args: argparse.Namespace, settings: Settings, content: bytes,
                 style_image: bytes | None) -> CheckedRequest:
    """The request as the job service's intake will find it (the photo's frames, the
    parameters merged and capped), before anything is stored or started."""
    try:
        return await Intake(settings, settings.styles_dir).check(
            content=content, style=args.style, style_image=style_image,
            params=given_params(args))
    except InvalidRequest as exc:
        raise CliError(_request_message(exc, settings)) from None


async def _submit(service: JobService, args: argparse.Namespace, settings: Settings,
                  content: bytes, style_image: bytes | None) -> JobRecord:
    try:
        return await service.submit(
            user_id=CLI_USER, user_name=_user_name(), content=content, style=args.style,
            style_image=style_image, params=given_params(args), source="cli")
    except InvalidRequest as exc:
        raise CliError(_request_message(exc, settings)) from None


def _request_message(exc: InvalidRequest, settings: Settings) -> str:
    return _style_hint(exc.message, settings) if exc.code == "unknown_style" else exc.message


def _frames_note(args: argparse.Namespace, settings: Settings,
                 request: CheckedRequest) -> str:
    """What is painted of an animated photo, and which limit left frames out: the
    --max-frames asked for, the style's own, or this host's (STYLEBOT_MAX_FRAMES, or
    its default); "" for a still."""
    plan = animation_plan(request.photo, request.params.max_frames)
    if plan is None:
        return ""
    frames = f"{plan.source_frames} frames of an animated {plan.format}"
    if plan.painted == plan.source_frames:
        return f", all {frames}"
    asked = given_params(args).get("max_frames")
    limit = settings.max_frames
    host = (f"STYLEBOT_MAX_FRAMES={limit}" if "max_frames" in settings.model_fields_set
            else f"at most {limit} by default, STYLEBOT_MAX_FRAMES")
    if asked is not None and asked > limit:
        why = f"--max-frames {asked} is over this host's limit: {host}"
    elif asked is not None:
        why = f"--max-frames {asked}"
    elif request.params.max_frames < limit:
        why = f"the style's limit of {request.params.max_frames}"
    else:
        why = host
    if plan.painted == 1:
        return f", the first of the {frames}, as a still ({why})"
    return f", {plan.painted} of the {frames}, evenly spaced ({why})"


# `WorkerPool.start` warns an operator whose pool came up on the CPU, as no CUDA device
# was found: a bot that was meant to have a GPU. `stylebot stylize` starts a pool of its
# own on whatever machine it is run on, where that is news, not a fault: INFO (-v).
POOL_LOGGER = "stylizer.pool.supervisor"
POOL_READY = "worker pool ready"


class _PoolNewsAsInfo(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if (record.levelno == logging.WARNING and isinstance(record.msg, str)
                and record.msg.startswith(POOL_READY)):
            record.levelno, record.levelname = logging.INFO, logging.getLevelName(logging.INFO)
            return logging.getLogger(record.name).isEnabledFor(logging.INFO)
        return True


@contextlib.contextmanager
def pool_news_as_info() -> Iterator[None]:
    """Within it, the worker pool's "ready ... on the CPU" warning is logged at INFO."""
    news = _PoolNewsAsInfo()
    logger = logging.getLogger(POOL_LOGGER)
    logger.addFilter(news)
    try:
        yield
    finally:
        logger.removeFilter(news)


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


def _read(path: Path, what: str, settings: Settings) -> bytes:
    """The file's bytes, judged as the bot judges a download: decoded (every frame of an
    animation, within its limits), so that a damaged picture is refused now, not by a
    worker after its job is stored."""
    try:
        data = read_path(str(path))  # bounded: /dev/zero is refused, not read to the end
    except OSError as exc:
        raise CliError(f"cannot read the {what} {path}: {exc.strerror or exc}") from None
    except StylizerError as exc:
        raise CliError(f"the {what} {path}: {exc}") from None
    try:
        check_image_bytes(data, what=f"{what} {path}", max_bytes=settings.max_upload_bytes,
                          max_pixels=settings.max_pixels)
    except InvalidRequest as exc:
        raise CliError(exc.message[:1].lower() + exc.message[1:]) from None
    return data


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


async def _finish(service: JobService, final: JobRecord, painting: bytes | None, out: Path,
                  fmt: str) -> int:
    if final.status is not JobStatus.succeeded or painting is None:
        await service.mark_delivered(final.id)  # the error below is its delivery
        if final.status is JobStatus.cancelled:
            raise CliError(f"job {final.id} was cancelled", EXIT_FAILED)
        why = (f"its pictures were {final.pictures_gone}" if final.pictures_gone
               else final.error_message or f"the job ended {final.status}")
        raise CliError(f"job {final.id} failed: {why}", EXIT_FAILED)
    await asyncio.to_thread(write_painting, out, painting, fmt)
    # Delivered (to a file): the bot's delivery side must not try to send it anywhere.
    await service.mark_delivered(final.id)
    seconds = f" in {final.seconds:.1f} s" if final.seconds is not None else ""
    print(f"job {final.id} done{seconds}: {out}")
    return 0
