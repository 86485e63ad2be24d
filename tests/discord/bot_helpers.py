"""Images, settings and waiting helpers for the bot's end-to-end tests."""

from __future__ import annotations

import asyncio
import io
import struct
import zlib
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
from emulator import DiscordEmulator, Interaction, Message
from PIL import Image

from bot.app import App, running
from bot.jobs.executor import ExecutorBusy, LocalPoolExecutor
from bot.settings import Settings
from stylizer.pool.messages import JobRequest, PoolEvent

REPO = Path(__file__).resolve().parents[2]
STYLE_PACK = REPO.parent / "shared" / "styles"
# A painting from the style pack when it is there; a procedural preset otherwise.
PRESET = "starry-night" if (STYLE_PACK / "starry-night.jpg").exists() else "mosaic"
# Few steps at one scale: a job takes about a second on a 2-core CPU. The settings have
# no knob for steps, so the composition root takes them as test-only default params.
FAST_PARAMS = {"steps": 6, "scales": 1}
EPHEMERAL = 1 << 6


def make_settings(emu: DiscordEmulator, data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": data_dir, "styles_dir": STYLE_PACK if STYLE_PACK.exists() else None,
        "device": "cpu", "workers": 1, "default_size": 48, "max_size": 128,
        "max_upload_bytes": 1_000_000, "max_jobs_per_user": 2, "job_timeout_s": 120,
        "discord_token": emu.token, "discord_api_base": emu.api_base,
        "discord_gateway_url": emu.gateway_url, "attachment_hosts": (emu.cdn_host,),
        "requests_per_minute": 0, "log_level": "INFO"}
    values.update(overrides)
    return Settings.from_env({}, **values)


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


@asynccontextmanager
async def bot_running(settings: Settings, *, gate: bool = False) -> AsyncIterator[App]:
    """The whole bot (real pool, service, SQLite file, discord.py client), connected."""
    # Progress from every step: the bot itself must keep its edits to one per ~4 s.
    pool = LocalPoolExecutor.from_settings(settings, preview_interval_s=0.0)
    executor = GatedPool(pool) if gate else pool
    async with running(settings, executor=executor, default_params=FAST_PARAMS,
                       grace_s=20) as app:
        await app.client.wait_until_ready()
        yield app


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
    async def loop() -> Any:
        while True:
            job = await app.service.get(job_id)
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
