"""The `stylebot` command: a real job through the whole pipeline, listings, errors, Ctrl-C."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from jobs_helpers import png
from PIL import Image

from bot.cli import main as cli
from bot.jobs.db import alembic_config
from stylizer.flags import given_params

PAINT = ["--size", "48", "--steps", "5", "--scales", "1", "--optimizer", "adam"]


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STYLEBOT_")}
    env.update(STYLEBOT_DATA_DIR=str(tmp_path / "data"), STYLEBOT_DEVICE="cpu",
               PYTHONPATH=os.pathsep.join(sys.path))
    return env


def _stylebot(tmp_path: Path, *args: str, timeout: float = 120
              ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bot.cli", *args], cwd=tmp_path,
                          env=_env(tmp_path), capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_stylize_through_the_pipeline_then_list_it(tmp_path: Path) -> None:
    (tmp_path / "harbour.png").write_bytes(png(1, 64, 40))
    run = _stylebot(tmp_path, "stylize", "harbour.png", "-s", "mosaic", *PAINT)
    assert run.returncode == 0, run.stderr
    match = re.fullmatch(r"job (\w{6}) done in [\d.]+ s: harbour-mosaic\.png\n", run.stdout)
    assert match, run.stdout
    job_id = match.group(1)
    assert f"job {job_id}: mosaic, 48 px, 5 steps" in run.stderr
    assert "step 5/5" in run.stderr  # plain progress lines when stderr is not a terminal
    with Image.open(tmp_path / "harbour-mosaic.png") as img:
        assert img.format == "PNG"
        assert img.size == (48, 30)
    # An ordinary file for its owner's umask, not mkstemp's private 0600.
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "harbour-mosaic.png").stat().st_mode & 0o777 == 0o666 & ~umask

    listing = _stylebot(tmp_path, "jobs", "--json")
    assert listing.returncode == 0, listing.stderr
    (job,) = json.loads(listing.stdout)
    assert (job["id"], job["status"], job["style"], job["user_id"]) == (
        job_id, "succeeded", "mosaic", "cli")
    assert job["delivered"] is True  # written to a file: the bot must not deliver it
    table = _stylebot(tmp_path, "jobs").stdout.splitlines()
    assert table[0].split() == ["ID", "WHEN", "USER", "STYLE", "SIZE", "STATUS", "SECONDS"]
    assert table[1].split()[0] == job_id
    assert "succeeded" in table[1]
    one = json.loads(_stylebot(tmp_path, "job", job_id.upper(), "--json").stdout)
    assert one["id"] == job_id
    assert one["params"]["steps"] == 5
    assert one["seconds"] > 0
    again = _stylebot(tmp_path, "job", job_id, "-o", "again/copy.png")
    assert again.returncode == 0, again.stderr
    assert f"painting of job {job_id} written to again/copy.png" in again.stderr
    assert (tmp_path / "again" / "copy.png").read_bytes() == (
        tmp_path / "harbour-mosaic.png").read_bytes()


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_ctrl_c_cancels_the_job(tmp_path: Path) -> None:
    (tmp_path / "p.png").write_bytes(png(2))
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "stylize", "p.png", "-s", "mosaic", "--size", "48",
         "--steps", "5000", "--scales", "1", "--optimizer", "adam"],
        cwd=tmp_path, env=_env(tmp_path), stderr=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True)
    try:
        assert proc.stderr is not None
        lines: list[str] = []
        while not (line := proc.stderr.readline()).startswith("painting"):  # it runs
            assert line, "".join(lines)
            lines.append(line)
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert err.rstrip().endswith("cancelled")
    assert "Traceback" not in err
    assert not list(tmp_path.glob("*.png"))[1:]  # only the photo
    (job,) = json.loads(_stylebot(tmp_path, "jobs", "--json").stdout)
    assert job["status"] == "cancelled"


@pytest.mark.parametrize(("args", "fragment"), [
    (["stylize", "missing.jpg", "-s", "mosaic"], "cannot read the photo missing.jpg"),
    (["stylize", "notes.txt", "-s", "mosaic"], "not an image"),
    (["stylize", "p.png", "-s", "starry-night"], "STYLEBOT_STYLES_DIR"),
    (["--styles-dir", "no-such-pack", "stylize", "p.png", "-s", "starry-night"],
     "The style pack no-such-pack does not exist"),
    (["stylize", "p.png", "-s", "mosaic", "--size", "4000"], "size must be between"),
    (["stylize", "p.png", "-s", "mosaic", "--size", "2048"], "largest size is 1024"),
    (["stylize", "/dev/zero", "-s", "mosaic"], "over 25 MB"),  # refused, not read to the end
    (["stylize", ".", "-s", "mosaic"], "cannot read the photo ."),
    (["job", "zzzzzz"], "There is no job 'zzzzzz'"),
    (["job", "zzzzzz", "-o", "x.png"], "There is no job 'zzzzzz'"),
    (["cancel", "zzzzzz"], "There is no job 'zzzzzz'"),
])
def test_mistakes_are_one_line_and_exit_2(in_process: Path, capsys: pytest.CaptureFixture[str],
                                          args: list[str], fragment: str) -> None:
    (in_process / "notes.txt").write_text("hello")
    (in_process / "p.png").write_bytes(png(3))
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("stylebot: "), err
    assert err.count("\n") == 1, err
    assert fragment in err


def _clip(frames: int = 6) -> bytes:
    """An animated GIF of noise (every frame needs its whole data): 64x48."""
    import numpy as np

    rng = np.random.default_rng(0)
    pictures = [Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
                for _ in range(frames)]
    buf = io.BytesIO()
    pictures[0].save(buf, "GIF", save_all=True, append_images=pictures[1:], duration=80)
    return buf.getvalue()


@pytest.mark.parametrize(("args", "fragment"), [
    # Cut short in its last frame: its framing still counts 6 frames; decoding finds the cut.
    (["stylize", "cut.gif", "-s", "mosaic"],
     "the photo cut.gif: The animation is damaged or cut short"),
    (["stylize", "p.png", "--style-image", "cut.gif"],
     "the style image cut.gif: The animation is damaged or cut short"),
    (["stylize", "clip.gif", "-s", "mosaic", "-o", "x.png"],
     "cannot write an animation as .png; use .gif or .webp (or --max-frames 1 to paint its "
     "first frame as a still)"),
    (["stylize", "clip.gif", "-s", "mosaic", "-o", "x.jpg"],
     "cannot write an animation as .jpg; use .gif or .webp"),
    (["stylize", "p.png", "-s", "mosaic", "-o", "x.bmp"],
     "cannot write a painting as .bmp; use .png, .jpg, .jpeg, .webp or .gif"),
    (["stylize", "p.png", "-s", "mosaic", "-o", "."], ". is a directory; give a file name"),
])
def test_a_request_that_cannot_be_met_is_refused_before_a_job_exists(
        in_process: Path, capsys: pytest.CaptureFixture[str], args: list[str],
        fragment: str) -> None:
    (in_process / "p.png").write_bytes(png(3))
    (in_process / "clip.gif").write_bytes(_clip())
    (in_process / "cut.gif").write_bytes(_clip()[:-60])
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("stylebot: "), err
    assert err.count("\n") == 1, err
    assert fragment in err
    assert cli.main(["jobs", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []  # nothing stored, nothing painted
    assert sorted(p.name for p in in_process.iterdir()) == ["clip.gif", "cut.gif", "data",
                                                            "p.png"]


def test_the_frames_painted_and_the_limit_that_chose_them_are_said(tmp_path: Path) -> None:
    from bot.cli.stylize import _frames_note
    from bot.jobs.intake import Intake
    from bot.settings import Settings

    def note(env: dict[str, str], *flags: str) -> str:
        settings = Settings.from_env(env, data_dir=tmp_path, device="cpu")
        args = cli.build_parser().parse_args(["stylize", "c.gif", "-s", "mosaic", *flags])
        request = asyncio.run(Intake(settings, None).check(
            content=_clip(), style=None, style_image=png(1), params=given_params(args)))
        return _frames_note(args, settings, request)

    assert note({}) == ", all 6 frames of an animated GIF"
    assert note({}, "--max-frames", "4") == (
        ", 4 of the 6 frames of an animated GIF, evenly spaced (--max-frames 4)")
    assert note({}, "--max-frames", "1") == (
        ", the first of the 6 frames of an animated GIF, as a still (--max-frames 1)")
    assert note({"STYLEBOT_MAX_FRAMES": "3"}) == (
        ", 3 of the 6 frames of an animated GIF, evenly spaced (STYLEBOT_MAX_FRAMES=3)")
    assert note({"STYLEBOT_MAX_FRAMES": "3"}, "--max-frames", "5") == (
        ", 3 of the 6 frames of an animated GIF, evenly spaced (--max-frames 5 is over this "
        "host's limit: STYLEBOT_MAX_FRAMES=3)")


def test_the_pools_cpu_warning_is_information_on_the_command_line(
        caplog: pytest.LogCaptureFixture) -> None:
    import inspect

    from bot.cli.stylize import POOL_LOGGER, POOL_READY, pool_news_as_info
    from stylizer.pool import supervisor

    # The record this relies on is the pool's own.
    assert supervisor.log.name == POOL_LOGGER
    assert f'log.warning("{POOL_READY}: %d on the CPU' in inspect.getsource(
        supervisor.WorkerPool.start)
    log = logging.getLogger(POOL_LOGGER)
    for level, shown in ((logging.WARNING, []), (logging.INFO, ["INFO"])):
        caplog.clear()
        with caplog.at_level(level):
            with pool_news_as_info():  # `stylebot stylize`
                log.warning("worker pool ready: %d on the CPU, as no CUDA device was found", 1)
                log.warning("worker %d (pid %d) exited with code %s", 0, 9, -9)
            log.warning("worker pool ready: %d on the CPU, as no CUDA device was found", 1)
        assert [r.levelname for r in caplog.records] == [*shown, "WARNING", "WARNING"]
    assert not log.filters


def test_listing_and_upgrading_an_empty_database(in_process: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["db", "upgrade"]) == 0
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert f"is at revision {head}" in capsys.readouterr().out
    assert cli.main(["jobs"]) == 0
    assert "No jobs yet" in capsys.readouterr().out
    assert cli.main(["jobs", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_param_flags_come_from_the_parameter_limits() -> None:
    parser = cli.build_parser()
    args = parser.parse_args(["stylize", "x.jpg", "-s", "mosaic", "--style-weight", "2.5",
                              "--preserve-colors", "--pooling", "avg", "--seed", "7"])
    assert (args.style_weight, args.preserve_colors, args.pooling, args.seed) == (
        2.5, True, "avg", 7)
    assert parser.parse_args(["stylize", "x.jpg", "-s", "m", "--no-balance"]).balance is False
    assert args.steps is None  # unset flags leave the preset's and the settings' defaults
    with pytest.raises(SystemExit):
        parser.parse_args(["stylize", "x.jpg", "-s", "mosaic", "--optimizer", "sgd"])
    with pytest.raises(SystemExit):
        parser.parse_args(["stylize", "x.jpg", "-s", "mosaic", "--precision", "fp16"])
    with pytest.raises(SystemExit):  # a preset or a style image, not both
        parser.parse_args(["stylize", "x.jpg", "-s", "mosaic", "--style-image", "y.jpg"])


def test_run_and_sync_hand_over_to_the_bot(in_process: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import bot.app

    calls: list[tuple[str, object]] = []
    monkeypatch.setattr(bot.app, "run_bot", lambda s: calls.append(("run", s.data_dir)) or 0)
    monkeypatch.setattr(bot.app, "sync_commands",
                        lambda s, guild: calls.append(("sync", guild)) or 3)
    monkeypatch.setenv("STYLEBOT_DEV_GUILD", "77")
    assert cli.main(["run"]) == 0
    assert cli.main(["sync"]) == 3
    assert cli.main(["sync", "--guild", "5"]) == 3
    assert calls == [("run", in_process / "data"), ("sync", 77), ("sync", 5)]


def test_device_and_precision_flags_override_the_settings(
        in_process: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, str]] = []
    monkeypatch.setattr(cli, "cmd_stylize",
                        lambda args, s: seen.append((s.device, s.precision)) or 0)
    monkeypatch.setenv("STYLEBOT_PRECISION", "bf16")
    assert cli.main(["stylize", "x.jpg", "-s", "mosaic"]) == 0
    assert cli.main(["stylize", "x.jpg", "-s", "mosaic", "--device", "cpu",
                     "--precision", "fp32"]) == 0
    assert seen == [("auto", "bf16"), ("cpu", "fp32")]
    monkeypatch.setattr(cli, "cmd_stylize", lambda args, s: seen.append(s.engine) or 0)
    assert cli.main(["stylize", "x.jpg", "-s", "mosaic", "--weights", "vgg.pth"]) == 0
    assert (seen[-1].weights, seen[-1].precision) == ("vgg.pth", "bf16")


def test_a_bad_engine_flag_is_one_line_naming_the_flag(
        in_process: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["stylize", "x.jpg", "-s", "mosaic", "--device", "tpu"]) == 2
    err = capsys.readouterr().err
    assert err == "stylebot: --device must be auto, cpu, cuda or cuda:N, not 'tpu'.\n"


def test_a_data_folder_that_is_a_file_is_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "afile").write_text("")
    assert cli.main(["--data-dir", str(tmp_path / "afile"), "jobs"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("stylebot: cannot use "), err
    assert err.count("\n") == 1, err


@pytest.mark.slow
def test_both_command_lines_paint_the_same_picture(tmp_path: Path) -> None:
    """`python -m stylizer` paints in-process, `stylebot stylize` through a worker: the
    same photo, style, parameters and seed give the same painting (both decode the photo
    and the style the same way; a photo decoded at full size and shrunk afterwards
    differed by 12 levels per pixel on average). Measured equal in fp32; the bound leaves
    room for another CPU's kernels, which may sum in another order with another number of
    threads."""
    import numpy as np

    rng = np.random.default_rng(3)
    photo = (rng.random((150, 240, 3)) * 255).astype("uint8")
    Image.fromarray(photo).resize((480, 300)).save(tmp_path / "harbour.jpg", quality=90)
    # fp32: bf16 convolutions round differently with the number of threads.
    paint = ["-s", "mosaic", "--size", "64", "--steps", "8", "--seed", "5", "--precision", "fp32"]
    direct = subprocess.run([sys.executable, "-m", "stylizer", "harbour.jpg", *paint, "-q",
                             "-o", "direct.png"], cwd=tmp_path, env=_env(tmp_path),
                            capture_output=True, text=True, timeout=300)
    assert direct.returncode == 0, direct.stderr
    piped = _stylebot(tmp_path, "stylize", "harbour.jpg", *paint, "-o", "piped.png",
                      timeout=300)
    assert piped.returncode == 0, piped.stderr
    a, b = (np.asarray(Image.open(tmp_path / f), dtype=np.float64)
            for f in ("direct.png", "piped.png"))
    assert a.shape == b.shape == (40, 64, 3)
    assert np.abs(a - b).mean() < 0.5  # levels of 255; decoding at full size gave 12


def test_a_reader_that_goes_away_ends_the_listing_quietly(tmp_path: Path) -> None:
    # `stylebot jobs --json | head -1`: the pipe is closed before the listing is written.
    proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "jobs", "--json"], cwd=tmp_path,
                            env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None
    assert proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read()
    proc.wait(timeout=120)
    assert err == ""


class _Lines:
    """A `ProgressDisplay` stand-in that keeps the messages."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def message(self, text: str) -> None:
        self.lines.append(text)


async def test_the_progress_says_why_a_job_went_back_to_the_queue() -> None:
    from types import SimpleNamespace

    from bot.cli.stylize import JobProgressShown
    from bot.jobs.events import JobQueued, JobStarted

    shown = JobProgressShown(_Lines())  # type: ignore[arg-type]
    shown.job_id = "abcdef"

    def queued(attempts: int) -> JobQueued:
        return JobQueued("abcdef", SimpleNamespace(attempts=attempts), 1, None)  # type: ignore[arg-type]

    def started(attempts: int) -> JobStarted:
        return JobStarted("abcdef", SimpleNamespace(attempts=attempts))  # type: ignore[arg-type]

    await shown(queued(0))  # submitted
    await shown(started(1))
    await shown(queued(1))  # its worker died: the run counted
    await shown(queued(1))  # the same, seen again (recovered here, and read back)
    await shown(started(2))
    await shown(queued(1))  # its worker stopped cleanly: the run did not count
    assert shown.display.lines == [  # type: ignore[attr-defined]
        "painting…", "the painter stopped; trying again (attempt 2)", "painting…",
        "the worker painting it stopped; back in the queue for another one"]


def test_the_global_options_work_before_or_after_the_command() -> None:
    parser = cli.build_parser()
    after = parser.parse_args(["stylize", "p.png", "-s", "mosaic", "--styles-dir", "pack", "-v"])
    before = parser.parse_args(["--styles-dir", "pack", "-v", "stylize", "p.png", "-s", "mosaic"])
    neither = parser.parse_args(["db", "copy", "--to", "postgresql+asyncpg://h/d"])
    assert (after.styles_dir, after.verbose) == (Path("pack"), True)
    assert (before.styles_dir, before.verbose) == (Path("pack"), True)
    assert (neither.styles_dir, neither.data_dir, neither.verbose) == (None, None, False)
