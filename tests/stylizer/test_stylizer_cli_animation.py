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


@pytest.mark.parametrize(("photo", "output", "expected"), [
    ("a.gif", "out.png", "cannot write .png; an animation is written as .gif or .webp"),
    ("a.gif", "out.jpg", "cannot write .jpg; an animation is written as .gif or .webp"),
    ("still.png", "out.gif", "cannot write .gif; use .png, .jpg or .webp"),
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
    assert not (tmp_path / output).exists()


def test_max_frames_is_a_flag_with_its_range(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    assert "--max-frames N" in capsys.readouterr().out
    gif = write_animation(tmp_path / "a.gif", [100, 100])
    assert cli.main([str(gif), "-s", "mosaic", "--max-frames", "0", *TINY]) == 2
    assert "max_frames" in _one_line_error(capsys.readouterr().err)
