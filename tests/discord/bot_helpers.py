"""Images, settings and waiting helpers for the bot's end-to-end tests."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import math
import os
import re
import signal
import struct
import subprocess
import sys
import zlib
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from emulator import DiscordEmulator, Interaction, Message, Upload, User
from PIL import Image, ImageOps

from bot.app import App, running
from bot.jobs import db
from bot.jobs.db import create_engine_and_sessionmaker
from bot.jobs.executor import ExecutorBusy, LocalPoolExecutor
from bot.jobs.records import JobRecord
from bot.jobs.service import JobService
from bot.logging_setup import setup_logging
from bot.settings import Settings
from stylizer.pool.messages import (
    JobCancelled,
    JobFailed,
    JobProgress,
    JobRequest,
    JobStarted,
    JobSucceeded,
    PoolEvent,
)

HERE = Path(__file__).resolve().parent

REPO = Path(__file__).resolve().parents[2]
STYLE_PACK = REPO.parent / "shared" / "styles"
# A painting from the style pack when it is there; a procedural preset otherwise.
PRESET = "starry-night" if (STYLE_PACK / "starry-night.jpg").exists() else "mosaic"
# Few steps at one scale: a job takes about a second on a 2-core CPU. The settings have
# no knob for steps, so the composition root takes them as test-only default params.
FAST_PARAMS = {"steps": 6, "scales": 1}
EPHEMERAL = 1 << 6


def make_settings(emu: DiscordEmulator, data_dir: Path, **overrides: Any) -> Settings:
    return Settings.from_env({}, **settings_values(emu, data_dir, **overrides))


def settings_values(emu: DiscordEmulator, data_dir: Path, **overrides: Any) -> dict[str, Any]:
    """The test bot's settings, as keyword arguments of `Settings.from_env`."""
    values: dict[str, Any] = {
        "data_dir": data_dir, "styles_dir": STYLE_PACK if STYLE_PACK.exists() else None,
        "device": "cpu", "workers": 1, "default_size": 48, "max_size": 128,
        "max_upload_bytes": 1_000_000, "max_jobs_per_user": 2, "job_timeout_s": 120,
        "discord_token": emu.token, "discord_api_base": emu.api_base,
        "discord_gateway_url": emu.gateway_url, "attachment_hosts": (emu.cdn_host,),
        "requests_per_minute": 0, "log_level": "INFO"}
    values.update(overrides)
    return values


class GatedPool:
    """The real worker pool behind a gate: while the gate is shut the pool reports no
    idle worker, so accepted jobs stay queued (for limit and cancel tests)."""

    def __init__(self, inner: LocalPoolExecutor) -> None:
        self.inner = inner
        self.open = True

    async def start(self) -> None:
        await self.inner.start()

    @property
    def capacity(self) -> int:
        return self.inner.capacity

    @property
    def idle(self) -> int:
        return self.inner.idle if self.open else 0

    @property
    def max_batch(self) -> int:
        return self.inner.max_batch

    async def submit_batch(self, reqs: Sequence[JobRequest]) -> None:
        if not self.open:
            raise ExecutorBusy("gate shut")
        await self.inner.submit_batch(reqs)

    async def cancel(self, job_id: str) -> bool:
        return await self.inner.cancel(job_id)

    def events(self) -> AsyncIterator[PoolEvent]:
        return self.inner.events()

    async def close(self, grace_s: float = 30.0) -> list[str]:
        return await self.inner.close(grace_s)


def gate(app: App) -> GatedPool:
    """The gated pool of a bot started with `bot_running(..., gate=True)`."""
    executor = app.executor
    assert isinstance(executor, GatedPool)
    return executor


class FakePainter:
    """An executor that stands in for the worker pool where real painting is too slow
    (the load tests, the bot processes the crash tests kill): `workers` jobs at a time,
    one job per batch, each taking `paint_s` seconds, then a small PNG made from the photo
    (its colours inverted, at the job's size). It reports what a worker reports (started,
    progress, result or cancelled), so everything above it, the job service, SQLite,
    delivery and discord.py, is the real bot. While `paused()` is true, jobs wait
    after they have started."""

    def __init__(self, *, workers: int = 2, paint_s: float = 0.05,
                 paused: Callable[[], bool] | None = None) -> None:
        self.workers = workers
        self.paint_s = paint_s
        self.paused = paused or (lambda: False)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._busy = 0
        self._events: asyncio.Queue[PoolEvent | None] = asyncio.Queue()
        self._closing = False
        self.painted = 0

    async def start(self) -> None:
        self._closing = False

    @property
    def capacity(self) -> int:
        return self.workers

    @property
    def idle(self) -> int:
        return 0 if self._closing else self.workers - self._busy

    @property
    def max_batch(self) -> int:
        return 1

    async def submit_batch(self, reqs: Sequence[JobRequest]) -> None:
        if self.idle < 1:
            raise ExecutorBusy("no free painter")
        self._busy += 1
        task = asyncio.create_task(self._paint(list(reqs)))
        for req in reqs:
            self._tasks[req.job_id] = task

    async def _paint(self, reqs: list[JobRequest]) -> None:
        try:
            for req in reqs:
                self._events.put_nowait(JobStarted(req.job_id, 0, os.getpid()))
            while True:  # polled: the pause is a file another process controls
                if not self.paused():
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(self.paint_s)
            for req in reqs:
                total = int(req.params.get("steps", 1))
                self._events.put_nowait(JobProgress(req.job_id, total, total, 0.0, 0.0))
                try:
                    png, stats = fake_painting(req)
                except (OSError, ValueError) as exc:  # one the service should have refused
                    self._events.put_nowait(JobFailed(req.job_id, "invalid_image", str(exc),
                                                      retryable=False))
                    continue
                self.painted += 1
                self._events.put_nowait(JobSucceeded(req.job_id, png, stats))
        except asyncio.CancelledError:
            if not self._closing:
                for req in reqs:
                    self._events.put_nowait(JobCancelled(req.job_id))
            raise
        finally:
            self._busy -= 1
            for req in reqs:
                self._tasks.pop(req.job_id, None)

    async def cancel(self, job_id: str) -> bool:
        task = self._tasks.get(job_id)
        if task is None:
            return False
        task.cancel()
        return True

    async def events(self) -> AsyncIterator[PoolEvent]:
        while (event := await self._events.get()) is not None:
            yield event

    async def close(self, grace_s: float = 30.0) -> list[str]:
        self._closing = True
        tasks = set(self._tasks.values())
        killed: list[str] = []
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=grace_s)
            killed = [job_id for job_id, task in self._tasks.items() if task in late]
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        self._events.put_nowait(None)
        return killed


def fake_painting(req: JobRequest) -> tuple[bytes, dict[str, float | int]]:
    """The photo with its colours inverted, its long side at the job's size, as PNG."""
    img = Image.open(io.BytesIO(req.content)).convert("RGB")
    size = int(req.params.get("size", max(img.size)))
    img.thumbnail((size, size))  # only ever shrinks
    buf = io.BytesIO()
    ImageOps.invert(img).save(buf, "PNG")
    steps = int(req.params.get("steps", 1))
    return buf.getvalue(), {"steps": steps, "seconds": 0.0, "content_loss": 0.0,
                            "style_loss": 0.0, "total_loss": 0.0, "width": img.width,
                            "height": img.height, "size": size}


@asynccontextmanager
async def bot_running(settings: Settings, *, gate: bool = False, shut: bool = False
                      ) -> AsyncIterator[App]:
    """The whole bot (real pool, service, SQLite file, discord.py client), connected; with
    `gate`, behind a gate (`GatedPool`), shut from the start with `shut`."""
    # Progress from every step: the bot itself must keep its edits to one per ~4 s.
    pool = LocalPoolExecutor.from_settings(settings, preview_interval_s=0.0)
    executor: LocalPoolExecutor | GatedPool = pool
    if gate or shut:
        executor = GatedPool(pool)
        executor.open = not shut
    async with running(settings, executor=executor, default_params=FAST_PARAMS,
                       grace_s=20) as app:
        await app.client.wait_until_ready()
        yield app


@asynccontextmanager
async def fake_bot_running(settings: Settings, painter: FakePainter) -> AsyncIterator[App]:
    """The whole bot with `painter` in place of the worker pool, connected."""
    async with running(settings, executor=painter, default_params=FAST_PARAMS,
                       grace_s=5) as app:
        await app.client.wait_until_ready()
        yield app


# ---- the bot in a process of its own, to be killed ------------------------------------
def start_bot_process(emu: DiscordEmulator, data_dir: Path, *, paint_s: float | None = 0.05,
                      workers: int = 2, pause_file: Path | None = None,
                      **overrides: Any) -> subprocess.Popen[bytes]:
    """Starts the bot (a `FakePainter` for a pool; with `paint_s` None, the real pool of
    `workers` workers) in a new process and session, logging to DATA_DIR/bot-<pid>.log;
    `serve` is what runs there. While `pause_file` exists, a fake painter's jobs wait once
    started."""
    if paint_s is None:
        overrides["workers"] = workers
    values = settings_values(emu, data_dir, **overrides)
    spec = {"settings": {k: str(v) if isinstance(v, Path) else v for k, v in values.items()},
            "paint_s": paint_s, "workers": workers,
            "pause_file": str(pause_file) if pause_file else None}
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / f"bot-{len(list(data_dir.glob('bot-*.log')))}.log"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(HERE), str(REPO), os.environ.get("PYTHONPATH", "")]))
    with log_path.open("wb") as log_file:
        return subprocess.Popen(
            [sys.executable, "-c", "import sys, bot_helpers; sys.exit(bot_helpers.serve())",
             json.dumps(spec)], cwd=HERE, env=env, stdout=log_file, stderr=subprocess.STDOUT,
            start_new_session=True)


async def kill_bot_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL: no shutdown, no flush, nothing recorded after this instant."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    await asyncio.to_thread(proc.wait, 30)


async def stop_bot_process(proc: subprocess.Popen[bytes], within: float = 30) -> int:
    """SIGTERM (a clean shutdown), then SIGKILL if it takes longer than `within`."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return await asyncio.to_thread(proc.wait, within)
    except subprocess.TimeoutExpired:
        await kill_bot_process(proc)
        return proc.returncode


def serve() -> int:
    """`start_bot_process`'s child: runs the bot until SIGTERM (or SIGKILL)."""
    spec = json.loads(sys.argv[1])
    values = dict(spec["settings"])
    values["attachment_hosts"] = tuple(values["attachment_hosts"])
    settings = Settings.from_env({}, **values)
    setup_logging(settings.log_level)
    pause_file = Path(spec["pause_file"]) if spec["pause_file"] else None
    painter = None if spec["paint_s"] is None else FakePainter(
        workers=spec["workers"], paint_s=spec["paint_s"],
        paused=lambda: pause_file is not None and pause_file.exists())

    async def main() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        bot = bot_running(settings) if painter is None else fake_bot_running(settings, painter)
        async with bot as app:
            assert app.connection is not None
            stopping = asyncio.create_task(stop.wait())
            await asyncio.wait({app.connection, stopping},
                               return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()

    asyncio.run(main())
    return 0


# ---- images --------------------------------------------------------------------------
def photo_png(width: int = 64, height: int = 48, seed: int = 1) -> bytes:
    """A small photo-like picture: gradients and a few blocks."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    img = np.stack([x * 255 // max(1, width - 1), y * 255 // max(1, height - 1),
                    (x + y) * 127 // max(1, width + height - 2)], axis=-1).astype(np.uint8)
    for _ in range(4):
        x0, y0 = rng.integers(0, width // 2), rng.integers(0, height // 2)
        img[y0:y0 + height // 3, x0:x0 + width // 3] = rng.integers(0, 255, 3)
    buf = io.BytesIO()
    Image.fromarray(img, "RGB").save(buf, "PNG")
    return buf.getvalue()


def noise_png(width: int, height: int, seed: int = 9) -> bytes:
    """Random pixels: a picture whose painting compresses badly (a large PNG)."""
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB").save(
        buf, "PNG")
    return buf.getvalue()


def stripes_png(side: int = 48) -> bytes:
    """A style image: bold diagonal stripes."""
    y, x = np.mgrid[0:side, 0:side]
    on = ((x + y) // 6) % 2 == 0
    img = np.where(on[..., None], [200, 40, 30], [20, 30, 160]).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img, "RGB").save(buf, "PNG")
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def bomb_png(side: int = 10_000) -> bytes:
    """A valid 1-bit PNG of side x side pixels (100 megapixels) in a few kilobytes."""
    raw = b"\x00" * ((side // 8 + 1) * side)
    return (b"\x89PNG\r\n\x1a\n"
            + _chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0))
            + _chunk(b"IDAT", zlib.compress(raw, 9)) + _chunk(b"IEND", b""))


def truncated_png() -> bytes:
    """A PNG whose header is fine but whose pixel data is cut short."""
    data = photo_png(64, 64, seed=3)
    return data[: len(data) // 2]


def decode(data: bytes | None) -> Image.Image:
    assert data is not None
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


# ---- waiting -------------------------------------------------------------------------
async def answered(emu: DiscordEmulator, ix: Interaction) -> Message:
    """The interaction's answer (its "@original"), once it is final (not "thinking…")."""
    await emu.response(ix)
    message: Message = await emu.wait_for(
        lambda: (m := emu.original(ix)) and not m.loading and m)
    return message


async def progress_message(emu: DiscordEmulator, ix: Interaction) -> Message:
    """The public message a job posts as the interaction's follow-up."""
    await emu.wait_for(lambda: ix.followup_ids, 20)
    return emu.followups(ix)[0]


def painting(message: Message) -> bytes | None:
    """The painting attached to `message` (not a progress preview), if any."""
    for f in message.files:
        if f.filename.startswith("stylebot-"):
            return f.data
    return None


async def wait_painting(emu: DiscordEmulator, message: Message, within: float = 90) -> bytes:
    """Waits until `message` carries the painting and returns its bytes."""
    data: bytes = await emu.wait_for(lambda: painting(message), within)
    return data


async def wait_job(app: App, job_id: str, predicate: Callable[[Any], bool],
                   within: float = 90) -> Any:
    """Polls the job until `predicate(job_view)` holds; returns the view."""
    return await wait_service_job(app.service, job_id, predicate, within)


async def wait_service_job(service: JobService, job_id: str,
                           predicate: Callable[[Any], bool], within: float = 90) -> Any:
    """`wait_job` on the service itself."""
    async def loop() -> Any:
        while True:
            job = await service.get(job_id)
            if predicate(job):
                return job
            await asyncio.sleep(0.05)
    return await asyncio.wait_for(loop(), within)


async def wait_delivered(app: App, job_id: str, within: float = 90) -> Any:
    return await wait_job(app, job_id, lambda j: j.delivered, within)


def job_id_of(message: Message) -> str:
    """The job id from a job message's embed footer ("job k3x9p2 · alice")."""
    footer: str = message.embeds[0]["footer"]["text"]
    return footer.split()[1]


def ephemeral_text(emu: DiscordEmulator, ix: Interaction) -> str | None:
    """The private answer to `ix` (an immediate reply or its edited placeholder)."""
    if not ix.callbacks:
        return None
    cb = ix.callbacks[0]
    data = cb.get("data") or {}
    if cb["type"] == 4:
        return data.get("content", "") if data.get("flags", 0) & EPHEMERAL else None
    original = emu.original(ix)
    if cb["type"] == 5 and original is not None and original.ephemeral and not original.loading:
        return original.text()
    return None


# ---- load ------------------------------------------------------------------------------
QUEUED_RECEIPT = "is in the queue"  # jobflow's private receipt for an accepted job
FAILED_TITLE = "That did not work"


@dataclass
class Outcome:
    """How one painting request has ended so far, as its user saw it."""

    ix: Interaction
    answered_s: float | None  # to the first callback: a reply, or the deferral
    replied_s: float | None   # to the first answer after it: the queued receipt, or why not
    job_id: str | None        # accepted: the job its progress message shows
    result: str | None        # "painted" or "failed", once the result is in that message
    refusal: str | None       # refused: what the user was told

    @property
    def settled(self) -> bool:
        return self.result is not None or self.refusal is not None


def outcome(emu: DiscordEmulator, ix: Interaction) -> Outcome:
    def since_sent(t: float | None) -> float | None:
        return None if t is None or ix.sent_at is None else t - ix.sent_at

    job_id = result = refusal = None
    if ix.followup_ids:
        progress = emu.followups(ix)[0]
        if progress.embeds:
            job_id = job_id_of(progress)
            if painting(progress) is not None:
                result = "painted"
            elif progress.embeds[0].get("title") == FAILED_TITLE:
                result = "failed"
    else:
        text = ephemeral_text(emu, ix)
        if text and QUEUED_RECEIPT not in text:
            refusal = text
        elif text and (m := re.search(r"`([^`]+)`", text)):
            # Accepted, but its progress message could not be posted (a busy Discord):
            # the result then comes as a channel message or a DM.
            job_id = m.group(1)
            result = delivered_elsewhere(emu, job_id)
    return Outcome(ix, since_sent(ix.answered_at), since_sent(ix.replied_at), job_id, result,
                   refusal)


def delivered_elsewhere(emu: DiscordEmulator, job_id: str) -> str | None:
    """"painted" or "failed" when a message outside the interaction carries job_id's
    result, else None."""
    for message in list(emu.messages.values()):
        if message.deleted:
            continue
        if any(f.filename.startswith(f"stylebot-{job_id}.") for f in message.files):
            return "painted"
        if any(e.get("title") == FAILED_TITLE and job_id in (e.get("footer") or {}).get(
                "text", "") for e in message.embeds):
            return "failed"
    return None


async def stylize_all(emu: DiscordEmulator, requests: Sequence[tuple[User, dict[str, Any]]]
                      ) -> list[Interaction]:
    """Sends every `/stylize` at once (options as `emu.slash` takes them)."""
    return list(await asyncio.gather(*(emu.slash("stylize", user, **options)
                                       for user, options in requests)))


async def settle(emu: DiscordEmulator, ixs: Sequence[Interaction], within: float,
                 poll_s: float = 0.2) -> list[Outcome]:
    """The outcomes once all have settled, or as they stand after `within` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        outcomes = [outcome(emu, ix) for ix in ixs]
        if all(o.settled for o in outcomes) or loop.time() >= deadline:
            return outcomes
        await asyncio.sleep(poll_s)


async def job_views(settings: Settings) -> list[JobRecord]:
    """Every job in the bot's database (read from this process)."""
    engine, sessionmaker = create_engine_and_sessionmaker(settings.database_url)
    try:
        async with sessionmaker() as session:
            return [JobRecord.from_row(j) for j in await db.list_jobs(session, limit=1_000_000)]
    finally:
        await engine.dispose()


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), nearest rank."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def bad_upload(seed: int = 0, side: int = 560) -> Upload:
    """A photo that passes every check on its metadata and fails only once downloaded
    and decoded (its pixel data is cut short): the most work a bad upload costs."""
    data = noise_png(side, side, seed=seed)
    return Upload(f"cut{seed}.png", data[: len(data) * 2 // 3])
