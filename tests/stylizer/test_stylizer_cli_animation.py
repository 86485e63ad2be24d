"""`python -m stylizer` with an animated photo: an animation back, timed as the photo."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from picture_checks import animation_timing
from PIL import Image, ImageDraw

from stylizer import cli, images
from stylizer.params import StyleParams

# In-process runs share the test session's torch settings (one thread on shared cores).
pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = ["--size", "32", "--steps", "3", "--scales", "1", "--device", "cpu"]


def write_animation(path: Path, durations_ms: Sequence[int], *, loop: int = 0) -> Path:
    """A disc crossing a sine texture, 64x48, one frame per duration, in the format
    `path`'s suffix names."""
    yy, xx = np.mgrid[0:48, 0:64].astype(np.float32)
    texture = np.stack([120 + 60 * np.sin(xx / 3), 140 + 50 * np.cos(yy / 4),
                        110 + 40 * np.sin((xx + yy) / 5)], axis=-1).astype(np.uint8)
    frames = []
    for i in range(len(durations_ms)):
        frame = Image.fromarray(texture, "RGB")
        ImageDraw.Draw(frame).ellipse([2 + 8 * i, 16, 18 + 8 * i, 32], fill=(230, 40, 40))
        frames.append(frame)
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=list(durations_ms),
                   loop=loop)
    return path


def read_animation(path: Path) -> tuple[str, tuple[int, int], list[int], Any]:
    return animation_timing(path.read_bytes())



def _one_line_error(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: "), stderr
    return lines[0]


def test_python_m_paints_a_gif_into_a_gif(tmp_path: Path, styles_dir: Path) -> None:
    gif = write_animation(tmp_path / "in.gif", [80, 120, 80, 120], loop=0)
    out = tmp_path / "out.gif"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "STYLEBOT_STYLES_DIR": str(styles_dir)}
    proc = subprocess.run([sys.executable, "-m", "stylizer", str(gif), "-s", "starry-night",
                           "-o", str(out), *TINY], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=240, check=False)
    assert proc.returncode == 0, proc.stderr
    assert read_animation(out) == ("GIF", (32, 24), [80, 120, 80, 120], 0)
    assert proc.stdout.startswith(f"wrote {out} (4 frames, 32x24, ")
    assert "painting 4 frames" in proc.stderr  # the bar itself is only drawn on a terminal
    assert "Traceback" not in proc.stderr


def test_a_webp_becomes_a_webp_and_max_frames_samples_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    durations = [50, 60, 70, 80, 90, 100]
    write_animation(tmp_path / "clip.webp", durations, loop=2)
    assert cli.main(["clip.webp", "-s", "mosaic", "--max-frames", "3", *TINY]) == 0
    fmt, size, got, loop = read_animation(tmp_path / "clip-mosaic.webp")
    assert (fmt, size, loop) == ("WEBP", (32, 24), 2)
    assert got == [110, 150, 190]  # frames 0, 2 and 4, each with the one after it
    assert sum(got) == sum(durations)
    out, err = capsys.readouterr()
    assert "3 frames" in out
    assert "painting 3 of the 6 frames" in err


def test_an_animation_can_be_written_as_webp_and_one_frame_as_a_still(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write_animation(tmp_path / "a.gif", [100, 100, 100])
    assert cli.main(["a.gif", "-s", "mosaic", "-o", "a.webp", "-q", *TINY]) == 0
    assert read_animation(tmp_path / "a.webp")[:3] == ("WEBP", (32, 24), [100, 100, 100])
    # --max-frames 1: the first frame, painted as a still, to a PNG by default.
    assert cli.main(["a.gif", "-s", "mosaic", "--max-frames", "1", "-q", *TINY]) == 0
    painted = (tmp_path / "a-mosaic.png").read_bytes()
    assert images.probe(painted).format == "PNG"
    assert images.decode(painted).size == (32, 24)


def test_one_frame_is_a_still_in_any_format_and_says_what_was_left_out(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    write_animation(tmp_path / "a.gif", [100, 100, 100])
    write_animation(tmp_path / "single.gif", [100])
    assert cli.main(["single.gif", "-s", "mosaic", "-o", "one.gif", *TINY]) == 0
    assert cli.main(["a.gif", "-s", "mosaic", "--max-frames", "1", "-o", "first.gif",
                     *TINY]) == 0
    for name in ("one.gif", "first.gif"):
        assert images.probe((tmp_path / name).read_bytes()) == images.ImageInfo(
            "GIF", 32, 24, False, 1)
    out, err = capsys.readouterr()
    assert "painting the first of the 3 frames, as a still (--max-frames 1)" in err
    assert "wrote first.gif (32x24, " in out
    # No extension: the painting's own, and the line says which file it is.
    assert cli.main(["a.gif", "-s", "mosaic", "-o", "clip", *TINY]) == 0
    assert read_animation(tmp_path / "clip.gif")[:2] == ("GIF", (32, 24))
    assert "wrote clip.gif (3 frames, " in capsys.readouterr().out


def test_the_sampling_message_names_the_limit_that_applied() -> None:
    parser = cli._build_parser()
    default, flag = parser.parse_args(["a.gif"]), parser.parse_args(["a.gif", "--max-frames",
                                                                     "12"])
    params = StyleParams()
    assert cli._frames_note(default, {}, params, 300) == (
        "painting 48 of the 300 frames, evenly spaced (at most 48 by default; --max-frames "
        "changes it)")
    assert cli._frames_note(flag, {}, params.replace(max_frames=12), 300) == (
        "painting 12 of the 300 frames, evenly spaced (--max-frames 12)")
    assert cli._frames_note(default, {}, params, 30) == "painting 30 frames"


@pytest.mark.parametrize(("photo", "output", "expected"), [
    ("a.gif", "out.png", "cannot write an animation as .png; use .gif or .webp (or "
     "--max-frames 1 to paint its first frame as a still)"),
    ("a.gif", "out.jpg", "cannot write an animation as .jpg; use .gif or .webp"),
    ("still.png", "out.bmp", "cannot write a painting as .bmp; use .png, .jpg, .jpeg, .webp "
     "or .gif"),
    ("a.gif", ".", "is a directory; give a file name"),
])
def test_a_format_that_cannot_hold_the_painting_exits_2_before_painting(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], photo: str, output: str,
        expected: str) -> None:
    write_animation(tmp_path / "a.gif", [100, 100])
    write_animation(tmp_path / "still.png", [100])
    code = cli.main([str(tmp_path / photo), "-s", "mosaic", "-o", str(tmp_path / output),
                     "--device", "no-such-device"])  # never reached: refused before
    assert code == 2
    assert expected in _one_line_error(capsys.readouterr().err)
    assert not (tmp_path / output).is_file()


def test_max_frames_is_a_flag_with_its_range(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    assert "--max-frames N" in capsys.readouterr().out
    gif = write_animation(tmp_path / "a.gif", [100, 100])
    assert cli.main([str(gif), "-s", "mosaic", "--max-frames", "0", *TINY]) == 2
    assert "max_frames" in _one_line_error(capsys.readouterr().err)
