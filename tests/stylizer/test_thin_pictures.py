"""Pictures that pass validation but are thinner than VGG19's four poolings can see (issue
15): each paints, at the size asked for, through the engine and the CLI."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stylizer import cli, images
from stylizer.canvas import PAINTED_MIN_SIDE, Frame
from stylizer.engine import Progress, Result, RunOptions, Stylizer
from stylizer.levels import level_sizes
from stylizer.params import StyleParams
from stylizer.vgg import MIN_SIDE

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FEW = StyleParams(steps=2, scales=1)


def _photo(width: int, height: int) -> Image.Image:
    """A photo-like picture of any shape, down to one pixel wide: a sky gradient, ripples
    and a dark band, as the conftest's `synthetic_photo` draws them at usual sizes."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    t = (yy + xx) / (height + width)
    sky = np.stack([90 + 80 * t, 140 + 60 * t, 230 - 40 * t], -1)
    ripple = 24 * np.sin(xx / 3.0 + yy / 5.0)[..., None]
    band = np.where((t > 0.6) & (t < 0.8), -80.0, 0.0)[..., None]
    return Image.fromarray(np.clip(sky + ripple + band, 0, 255).astype(np.uint8), "RGB")


def _painted(result: Result, size: tuple[int, int]) -> None:
    assert result.image.size == size
    assert math.isfinite(result.total_loss)
    assert result.steps >= 1


# -- the frame ------------------------------------------------------------------------------

def test_a_frame_mirrors_a_thin_picture_out_and_crops_it_back() -> None:
    frame = Frame.around(5, 1, 16)
    assert frame.size == (16, 16)
    x = torch.arange(5.0).view(1, 1, 1, 5)
    padded = frame.pad(x)
    assert padded.shape == (1, 1, 16, 16)
    # Mirrored about both edges, again and again, the edge pixels repeated.
    assert padded[0, 0, 0].tolist() == [4, 3, 2, 1, 0, 0, 1, 2, 3, 4, 4, 3, 2, 1, 0, 0]
    assert (padded[0, 0] == padded[0, 0, :1]).all()  # one row, repeated
    assert torch.equal(frame.crop(padded), x)


def test_a_frame_leaves_a_usual_picture_alone() -> None:
    frame = Frame.around(64, 48)
    assert not frame.padded
    x = torch.rand(2, 3, 48, 64)
    assert frame.pad(x) is x
    assert torch.equal(frame.crop(x), x)


def test_a_frame_refuses_what_the_network_could_not_see() -> None:
    with pytest.raises(ValueError, match="at least 16"):
        Frame.around(4, 4, MIN_SIDE - 1)
    with pytest.raises(ValueError, match="pixels"):
        Frame.around(0, 4)
    with pytest.raises(ValueError, match="expected a 4x4"):
        Frame.around(4, 4).pad(torch.zeros(1, 3, 5, 4))


# -- the engine: the examples ------------------------------------------------------------

@pytest.mark.parametrize(("photo_size", "size", "painted"), [
    ((2560, 1080), 32, (32, 14)),   # a screenshot at the smallest size
    ((1200, 300), 48, (48, 12)),
    ((1, 5000), 64, (1, 64)),       # a one-pixel strip
    ((5000, 1), 48, (48, 1)),
])
def test_a_thin_photo_paints_at_the_size_asked_for(engine: Stylizer, style_image: Image.Image,
                                                   photo_size: tuple[int, int], size: int,
                                                   painted: tuple[int, int]) -> None:
    photo = _photo(*photo_size)
    _painted(engine.run(photo, [style_image], FEW.replace(size=size)), painted)


def test_a_4000x100_banner_paints_at_the_default_size(engine: Stylizer,
                                                       style_image: Image.Image) -> None:
    params = StyleParams(steps=1, scales=1)
    assert params.size == 512
    photo = _photo(4000, 100)
    assert level_sizes(4000, 100, params.size, 1) == [(512, 13)]
    _painted(engine.run(photo, [style_image], params), (512, 13))


def test_the_worker_s_way_in_paints_too(engine: Stylizer, style_image: Image.Image) -> None:
    """The pool decodes the upload at the job's size first, then the engine paints it."""
    data = images.encode(_photo(1200, 300), "PNG")
    photo = images.decode(data, max_side=48)
    assert photo.size == (48, 12)
    _painted(engine.run(photo, [style_image], FEW.replace(size=48)), (48, 12))


@pytest.mark.parametrize("extra", [
    {"optimizer": "adam"},
    {"canvas": "pixels"},
    {"preserve_colors": True},
    {"init": "noise", "pooling": "avg"},
])
def test_thin_photos_paint_with_every_optimiser_and_option(engine: Stylizer,
                                                           style_image: Image.Image,
                                                           extra: dict[str, object]) -> None:
    params = FEW.replace(size=48).replace(**extra)
    _painted(engine.run(_photo(1200, 300), [style_image], params), (48, 12))


def test_coarse_to_fine_levels_of_a_thin_photo_paint(engine: Stylizer,
                                                     style_image: Image.Image) -> None:
    # 64x6 then 128x13: both levels are too thin for the network.
    assert level_sizes(1000, 100, 128, 2) == [(64, 6), (128, 13)]
    params = StyleParams(size=128, steps=2, scales=2)
    _painted(engine.run(_photo(1000, 100), [style_image], params), (128, 13))


def test_previews_of_a_thin_photo_show_the_picture_not_its_margins(
        engine: Stylizer, style_image: Image.Image) -> None:
    seen: list[Progress] = []
    engine.run(_photo(1200, 300), [style_image], FEW.replace(size=48),
               RunOptions(on_progress=seen.extend, progress_every=1, preview_every=1))
    assert [p.step for p in seen] == [1, 2]
    assert all(p.preview is not None and p.preview.size == (48, 12) for p in seen)


def test_a_batch_of_thin_photos_paints(engine: Stylizer, style_image: Image.Image,
                                       second_style_image: Image.Image) -> None:
    photos = [_photo(1200, 300), _photo(1200, 300).transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    photos = [images.resize_to_fit(p, 48) for p in photos]
    results = engine.run_batch(photos, [[style_image], [second_style_image]],
                               FEW.replace(size=48), style_weights=[1.0, 2.0])
    for result in results:
        _painted(result, (48, 12))


def test_the_margins_are_cropped_from_what_is_saved(engine: Stylizer,
                                                    style_image: Image.Image) -> None:
    """With no steps' worth of change the painting is the photo itself: its pixels, not
    the mirrored margins', land in the result."""
    photo = _photo(48, 12)
    params = StyleParams(size=48, steps=1, scales=1, init="content", optimizer="adam",
                         lr=0.01)
    result = engine.run(photo, [style_image], params)
    diff = np.abs(np.asarray(result.image, np.int16) - np.asarray(photo, np.int16))
    assert diff.max() <= 1


# -- the style image --------------------------------------------------------------------------

def test_a_one_pixel_wide_style_image_paints(engine: Stylizer,
                                             content_image: Image.Image) -> None:
    strip = _photo(1, 5000)
    _painted(engine.run(content_image, [strip], FEW.replace(size=48)), (48, 36))


def test_a_thin_style_at_a_small_size_and_style_scale_paints(engine: Stylizer,
                                                              content_image: Image.Image) -> None:
    # The photo's 32x32 canvas x 0.25^2 is 64 pixels of style: 18x4 for this painting, 8x8
    # for a square one; either is too small for the network.
    thin = _photo(300, 60)
    square = _photo(96, 96)
    for style in (thin, square):
        params = FEW.replace(size=32, style_scale=0.25)
        _painted(engine.run(content_image, [style], params), (32, 24))


def test_a_thin_photo_and_a_thin_style_together(engine: Stylizer) -> None:
    params = FEW.replace(size=64, style_scale=0.5)
    _painted(engine.run(_photo(5000, 1), [_photo(3000, 2)], params), (64, 1))


def test_evaluate_judges_a_thin_painting(engine: Stylizer, style_image: Image.Image) -> None:
    photo = _photo(48, 12)
    scores = engine.evaluate(photo, photo, [style_image], StyleParams(size=48))
    assert scores["content"] == pytest.approx(0.0, abs=1e-3)
    assert math.isfinite(scores["style"])


def test_a_usual_photo_gets_no_margins() -> None:
    """The frame is only for pictures the network could not see well: a usual size
    paints exactly as it did."""
    for w, h in level_sizes(640, 480, 64, 1) + level_sizes(1024, 256, 128, 1):
        assert min(w, h) >= PAINTED_MIN_SIDE
        assert not Frame.around(w, h).padded


# -- the command line -----------------------------------------------------------------------------

@pytest.mark.parametrize(("photo_size", "args", "painted"), [
    ((2560, 1080), ["--size", "32"], (32, 14)),
    ((1200, 300), ["--size", "48", "-s", "strip.png", "--style-scale", "0.25"], (48, 12)),
    ((1, 5000), ["--size", "48"], (1, 48)),
])
def test_the_cli_paints_thin_photos_and_styles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str],
                                               photo_size: tuple[int, int], args: list[str],
                                               painted: tuple[int, int]) -> None:
    monkeypatch.chdir(tmp_path)
    _photo(*photo_size).save("photo.png")
    _photo(1, 5000).save("strip.png")
    assert cli.main(["photo.png", "-s", "mosaic", "-o", "out.png", *args, "--steps", "2",
                     "--device", "cpu", "-q"]) == 0
    assert images.decode((tmp_path / "out.png").read_bytes()).size == painted
    assert capsys.readouterr().err == ""


@pytest.mark.slow
def test_python_m_stylizer_paints_a_banner_without_a_traceback(tmp_path: Path) -> None:
    _photo(1200, 300).save(tmp_path / "banner.png")
    env = {k: v for k, v in os.environ.items() if k != "STYLEBOT_STYLES_DIR"}
    env["OMP_NUM_THREADS"] = "1"
    proc = subprocess.run([sys.executable, "-m", "stylizer", "banner.png", "-s", "mosaic",
                           "-o", "out.png", "--size", "48", "--steps", "2", "--device", "cpu",
                           "-q"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=240, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout.startswith("wrote out.png (48x12, 2 steps")
    assert images.decode((tmp_path / "out.png").read_bytes()).size == (48, 12)
