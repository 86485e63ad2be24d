"""Jobs of animated photos: what intake makes of them (size, frames), their frames'
progress through the dispatcher, the row and the watcher (SQLite and PostgreSQL), and
where the command line writes their paintings."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from jobs_helpers import FakeExecutor, Recorder, ServiceFactory, painter_and_watcher, png, until
from PIL import Image
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.cli.common import CliError, painting_file, write_painting
from bot.jobs import db, events
from bot.jobs.errors import InvalidRequest
from bot.jobs.intake import AnimationPlan, Intake, animation_plan, stored_animation
from bot.jobs.states import JobStatus
from bot.settings import Settings
from stylizer import images
from stylizer.pool.messages import JobFailed, JobProgress, JobStarted, JobSucceeded

STYLE = png(99)


def gif(frames: int = 6, width: int = 48, height: int = 32) -> bytes:
    """An animated GIF whose frames differ (a block moving over a gradient)."""
    pictures = []
    for n in range(frames):
        img = Image.new("RGB", (width, height), (40 * n % 256, 90, 160))
        img.paste((250, 220, 40), (n * 4 % width, 4, n * 4 % width + 8, 12))
        pictures.append(img)
    buf = io.BytesIO()
    pictures[0].save(buf, "GIF", save_all=True, append_images=pictures[1:], duration=80,
                     loop=0)
    return buf.getvalue()


async def _row(sm: async_sessionmaker[AsyncSession], job_id: str) -> db.Job:
    async with sm() as session:
        job = await db.get_job(session, job_id=job_id)
        assert job is not None
        return job


# -- intake ------------------------------------------------------------------------------

def _intake(tmp_path: Path, **values: object) -> Intake:
    """The door of a host with these settings (no database, no image store: nothing is
    stored)."""
    return Intake(Settings.from_env({}, data_dir=tmp_path, device="cpu", **values), None)


async def _params(intake: Intake, photo: bytes, **user: object) -> dict[str, object]:
    checked = await intake.check(content=photo, style=None, style_image=STYLE,
                                 params=dict(user) or None)
    return checked.params.to_dict()


async def test_an_animation_is_painted_at_the_animation_size_unless_the_user_picks_one(
        tmp_path: Path) -> None:
    intake = _intake(tmp_path, default_size=200, max_size=256, animation_size=64)
    assert (await _params(intake, gif()))["size"] == 64
    assert (await _params(intake, png(1)))["size"] == 200  # a still: the default size
    assert (await _params(intake, gif(), size=128))["size"] == 128  # the user's own wins
    with pytest.raises(InvalidRequest, match="largest size is 256"):
        await _params(intake, gif(), size=300)


async def test_the_animation_size_never_exceeds_the_largest_size(tmp_path: Path) -> None:
    intake = _intake(tmp_path, default_size=48, max_size=96, animation_size=256)
    assert (await _params(intake, gif()))["size"] == 96


async def test_the_frames_painted_come_from_the_settings_and_a_user_cannot_raise_them(
        tmp_path: Path) -> None:
    intake = _intake(tmp_path, max_frames=3)
    assert (await _params(intake, gif()))["max_frames"] == 3
    assert (await _params(intake, gif(), max_frames=400))["max_frames"] == 3
    assert (await _params(intake, gif(), max_frames=2))["max_frames"] == 2  # fewer: fine
    assert (await _params(_intake(tmp_path), gif()))["max_frames"] == 48  # the default


def test_the_plan_says_how_many_of_the_frames_are_painted() -> None:
    info = images.probe(gif(6))
    assert info.frames == 6
    assert animation_plan(info, 3) == AnimationPlan("GIF", 6, 3)
    assert animation_plan(info, 48) == AnimationPlan("GIF", 6, 6)
    assert animation_plan(info, 1) == AnimationPlan("GIF", 6, 1)
    assert [AnimationPlan("GIF", 6, n).every for n in (1, 2, 3, 4, 6)] == [None, 3, 2, None, 1]
    assert animation_plan(images.probe(png(1)), 48) is None
    assert stored_animation(gif(6), {"max_frames": 3}) == AnimationPlan("GIF", 6, 3)
    assert stored_animation(gif(6), {}) == AnimationPlan("GIF", 6, 6)  # StyleParams' 48
    assert stored_animation(png(1), {"max_frames": 3}) is None
    assert stored_animation(b"not a picture", {}) is None


# -- progress through the dispatcher, the row and the watcher ------------------------------

async def test_an_animations_frames_are_stored_on_the_row_and_reported(
        make_service: ServiceFactory, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    fake = FakeExecutor()
    service = make_service(fake)
    rec = Recorder()
    service.subscribe(rec)
    await service.start()
    view = await service.submit(user_id="u", user_name="u", content=gif(6), style_image=STYLE,
                                params={"steps": 9})
    assert view.params["max_frames"] == 48
    await until(lambda: fake.submitted)
    assert fake.submitted[0].params["max_frames"] == 48
    fake.emit(JobStarted(view.id, 0, 1))
    # The engine counts steps over every frame: 9 for the first, fewer for the others.
    fake.emit(JobProgress(view.id, 14, 29, 1.0, 2.0, None, frame=2, frames=6))
    await rec.wait_for(lambda: rec.of(events.JobProgress, view.id))
    progress = rec.of(events.JobProgress, view.id)[0]
    assert (progress.step, progress.total, progress.frame, progress.frames) == (14, 29, 2, 6)
    row = await _row(sessionmaker, view.id)
    assert (row.step, row.total_steps, row.frame, row.frames) == (14, 29, 2, 6)
    # Its ETA goes by the engine's total, not by params["steps"] (which it is past).
    assert (await service.get(view.id)).total_steps == 29
    assert (await service.position_and_eta(view.id))[1] is not None

    fake.emit(JobSucceeded(view.id, gif(6), {"steps": 29, "frames": 6}))
    done = await service.wait(view.id, timeout_s=5)
    assert done.status is JobStatus.succeeded
    row = await _row(sessionmaker, view.id)
    assert (row.step, row.total_steps, row.frame, row.frames) == (29, 29, 6, 6)
    assert await service.read_output(view.id) == gif(6)


async def test_a_new_run_starts_its_frames_again(
        make_service: ServiceFactory, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    fake = FakeExecutor()
    service = make_service(fake)
    await service.start()
    view = await service.submit(user_id="u", user_name="u", content=gif(6), style_image=STYLE,
                                params={"steps": 9})
    await until(lambda: fake.submitted)
    fake.emit(JobStarted(view.id, 0, 1))
    fake.emit(JobProgress(view.id, 14, 29, 1.0, 2.0, None, frame=2, frames=6))
    await until(lambda: _frame_is(sessionmaker, view.id, 2))
    fake.emit(JobFailed(view.id, "worker_died", "The painter stopped.", retryable=True))
    await until(lambda: len(fake.submitted) == 2)  # put back, and claimed again
    row = await _row(sessionmaker, view.id)
    assert (row.status, row.attempts, row.step, row.frame) == ("running", 2, 0, 0)


async def _frame_is(sm: async_sessionmaker[AsyncSession], job_id: str, frame: int) -> bool:
    return (await _row(sm, job_id)).frame == frame


async def test_a_process_that_does_not_paint_reads_the_frames_from_the_row(
        make_service: ServiceFactory) -> None:
    fake, shower, rec = await painter_and_watcher(make_service)
    view = await shower.submit(user_id="u", user_name="u", content=gif(6), style_image=STYLE,
                               params={"steps": 9})
    await until(lambda: fake.submitted)
    fake.emit(JobStarted(view.id, 0, 1))
    fake.emit(JobProgress(view.id, 14, 29, 1.0, 2.0, b"jpeg", frame=2, frames=6))
    await rec.wait_for(lambda: rec.of(events.JobProgress, view.id))
    progress = rec.of(events.JobProgress, view.id)[-1]
    assert (progress.step, progress.total, progress.frame, progress.frames,
            progress.preview_jpeg) == (14, 29, 2, 6, b"jpeg")
    fake.emit(JobSucceeded(view.id, gif(6), {}))
    assert (await shower.wait(view.id, timeout_s=5)).status is JobStatus.succeeded


# -- the command line's files ----------------------------------------------------------------

def test_a_painting_is_written_in_the_format_its_name_says(tmp_path: Path) -> None:
    def written(name: str, painting: bytes, animation: str | None) -> tuple[str, int]:
        out, fmt = painting_file(tmp_path / name, animation)
        write_painting(out, painting, fmt)
        info = images.probe(out.read_bytes())
        return info.format, info.frames

    # A still (the worker's PNG) in whatever format its name says: a GIF of one frame too.
    assert written("first.gif", png(1), None) == ("GIF", 1)
    assert written("first.jpg", png(1), None) == ("JPEG", 1)
    assert written("first", png(1), None) == ("PNG", 1)  # no extension: a PNG, named so
    assert (tmp_path / "first.png").is_file()
    # An animation (the worker's GIF) as GIF or WebP, never renamed.
    assert written("clip.webp", gif(4), "GIF") == ("WEBP", 4)
    assert written("clip", gif(4), "GIF") == ("GIF", 4)
    assert (tmp_path / "clip.gif").read_bytes() == gif(4)
    with pytest.raises(CliError, match=r"cannot write an animation as \.png; use \.gif or "
                       r"\.webp$") as refused:
        painting_file(tmp_path / "clip.png", "GIF")
    assert refused.value.status == 2
    assert not (tmp_path / "clip.png").exists()


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_stylebot_stylize_writes_an_animation_as_a_gif(tmp_path: Path) -> None:
    (tmp_path / "wave.gif").write_bytes(gif(3))
    env = {k: v for k, v in os.environ.items() if not k.startswith("STYLEBOT_")}
    env.update(STYLEBOT_DATA_DIR=str(tmp_path / "data"), STYLEBOT_DEVICE="cpu",
               STYLEBOT_MAX_FRAMES="2", PYTHONPATH=os.pathsep.join(sys.path))

    def stylebot(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "bot.cli", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=200)

    run = stylebot("stylize", "wave.gif", "-s", "mosaic", "--size", "48", "--steps", "4",
                   "--scales", "1", "--max-frames", "5")  # more than the host allows
    assert run.returncode == 0, run.stderr
    match = re.fullmatch(r"job (\w{6}) done in [\d.]+ s: wave-mosaic\.gif\n", run.stdout)
    assert match, run.stdout
    assert ("2 of the 3 frames of an animated GIF, evenly spaced (--max-frames 5 is over "
            "this host's limit: STYLEBOT_MAX_FRAMES=2)") in run.stderr
    with Image.open(tmp_path / "wave-mosaic.gif") as img:
        assert (img.format, img.n_frames, img.size) == ("GIF", 2, (48, 32))
    job_id = match.group(1)
    refused = stylebot("job", job_id, "-o", "copy.png")  # was written as copy.gif
    assert refused.returncode == 2
    assert refused.stderr == ("stylebot: cannot write an animation as .png; use .gif or "
                              ".webp\n")
    assert not list(tmp_path.glob("copy*"))
    again = stylebot("job", job_id, "-o", "copy")
    assert again.returncode == 0, again.stderr
    assert "written to copy.gif" in again.stderr
    assert (tmp_path / "copy.gif").read_bytes() == (tmp_path / "wave-mosaic.gif").read_bytes()
    webp = stylebot("job", job_id, "-o", "copy.webp")
    assert webp.returncode == 0, webp.stderr
    with Image.open(tmp_path / "copy.webp") as img:
        assert (img.format, img.n_frames, img.size) == ("WEBP", 2, (48, 32))
    # One frame: a still, in the format asked for (it was a PNG in a file named .gif).
    first = stylebot("stylize", "wave.gif", "-s", "mosaic", "--size", "48", "--steps", "4",
                     "--scales", "1", "--max-frames", "1", "-o", "first.gif")
    assert first.returncode == 0, first.stderr
    assert first.stdout.endswith(": first.gif\n")
    assert "the first of the 3 frames of an animated GIF, as a still (--max-frames 1)" in (
        first.stderr)
    assert "WARNING" not in first.stderr
    with Image.open(tmp_path / "first.gif") as img:
        assert (img.format, getattr(img, "n_frames", 1), img.size) == ("GIF", 1, (48, 32))
