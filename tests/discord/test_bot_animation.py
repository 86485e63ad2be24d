"""End to end, animated photos: discord.py's client, the job service, a SQLite file and a
real worker pool against the emulated Discord. A `/stylize` of an animated GIF comes back
as an animated GIF, painted frame by frame, with no more frames than STYLEBOT_MAX_FRAMES
(here 3). One bot for the module; tests run in file order."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from bot_helpers import (
    PRESET,
    bot_running,
    gate,
    job_id_of,
    make_settings,
    painting,
    progress_message,
    wait_delivered,
    wait_painting,
)
from emulator import DiscordEmulator, Upload
from PIL import Image, ImageSequence

from bot.app import App, push_commands
from bot.jobs.states import JobStatus

pytestmark = pytest.mark.asyncio(loop_scope="module")

MAX_FRAMES = 3
ANIMATION_SIZE = 64
FRAME_MS = 80


def animated_gif(frames: int, width: int = 48, height: int = 32) -> bytes:
    """A small animated GIF whose frames differ: a block moving over a gradient."""
    pictures = []
    for n in range(frames):
        img = Image.linear_gradient("L").resize((width, height)).convert("RGB")
        img.paste((230 - 30 * n, 60, 40 + 30 * n), (n * 6, 8, n * 6 + 12, 20))
        pictures.append(img)
    buf = io.BytesIO()
    pictures[0].save(buf, "GIF", save_all=True, append_images=pictures[1:],
                     duration=FRAME_MS, loop=0)
    return buf.getvalue()


def frames_of(data: bytes) -> tuple[str | None, int, tuple[int, int], int]:
    """(format, frames, size, milliseconds it lasts) of an animation's bytes."""
    with Image.open(io.BytesIO(data)) as img:
        shown = [frame.info.get("duration", 0) for frame in ImageSequence.Iterator(img)]
        return img.format, len(shown), img.size, sum(shown)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def app(emu: DiscordEmulator, tmp_path_factory: pytest.TempPathFactory
              ) -> AsyncIterator[App]:
    # Animations painted at 64 px: larger than the GIFs (48x32), and quick on a CPU.
    settings = make_settings(emu, tmp_path_factory.mktemp("bot"), max_frames=MAX_FRAMES,
                             animation_size=ANIMATION_SIZE)
    await push_commands(settings)
    async with bot_running(settings, gate=True) as running_app:
        yield running_app


async def test_an_animated_gif_comes_back_animated(emu: DiscordEmulator, app: App) -> None:
    ix = await emu.slash("stylize", emu.alice, image=Upload("wave.gif", animated_gif(3)),
                         style=PRESET)
    progress = await progress_message(emu, ix)
    job_id = job_id_of(progress)
    data = await wait_painting(emu, progress)
    name = next(f.filename for f in progress.files if f.filename.startswith("stylebot-"))
    assert name == f"stylebot-{job_id}.gif"
    fmt, frames, size, lasts = frames_of(data)
    assert (fmt, frames, size) == ("GIF", 3, (64, 43))  # scaled up, as a still would be
    assert abs(lasts - 3 * FRAME_MS) <= 10 * frames  # GIF keeps delays in 10 ms units
    assert progress.embeds[0]["image"]["url"] == f"attachment://{name}"
    text = progress.text()
    assert "ready" in text
    assert "64×43 px · 3 frames" in text
    # While it ran, its message showed the frames painted.
    assert any("frames done" in shown for shown, _files in progress.history)

    job = await wait_delivered(app, job_id)
    assert job.status is JobStatus.succeeded
    assert job.params["size"] == ANIMATION_SIZE
    assert job.params["max_frames"] == MAX_FRAMES
    # The engine's steps over all three frames, not the 6 of one.
    assert job.total_steps > job.params["steps"]
    assert f"{job.total_steps} steps" in text


async def test_frames_over_the_limit_are_dropped_evenly(emu: DiscordEmulator,
                                                         app: App) -> None:
    gate(app).open = False  # it stays queued until its queued message has been seen
    try:
        ix = await emu.slash("stylize", emu.bob, image=Upload("long.gif", animated_gif(6)),
                             style=PRESET)
        progress = await progress_message(emu, ix)
        queued = await emu.wait_for(
            lambda: "Animated GIF: 3 of its 6 frames will be painted (every 2nd)"
            in progress.text() and progress.text(), 20)
        assert "Position in the queue" in queued
    finally:
        gate(app).open = True
    data = await wait_painting(emu, progress)
    fmt, frames, size, lasts = frames_of(data)
    assert (fmt, frames, size) == ("GIF", MAX_FRAMES, (64, 43))
    # Each kept frame is shown for the frames it stands for: the animation lasts as long.
    assert abs(lasts - 6 * FRAME_MS) <= 10 * frames
    assert "3 of 6 frames, evenly spaced" in progress.text()
    assert painting(progress) == data
    job = await wait_delivered(app, job_id_of(progress))
    assert job.params["max_frames"] == MAX_FRAMES
