"""The quality judge: its two scores by hand on tiny tensors, and at their end points."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from stylizer import judge
from stylizer.judge import Judge, content_keep, judged_size, style_distance, style_gain


def test_style_distance_is_the_summed_mean_squared_gram_difference() -> None:
    rng = np.random.default_rng(0)
    a = [rng.normal(size=(2, 3, 4, 5)), rng.normal(size=(2, 2, 3, 3))]  # 2 layers, batch 2
    t = [rng.normal(size=(1, 3, 6, 2)), rng.normal(size=(1, 2, 2, 2))]
    got = style_distance([torch.tensor(x) for x in a], [torch.tensor(x) for x in t])
    for b in range(2):
        expected = 0.0
        for f, s in zip(a, t, strict=True):
            fb = f[b].reshape(f.shape[1], -1)
            ff = fb @ fb.T / fb.shape[1]  # Gram = F·Fᵀ / (H·W)
            ss = s[0].reshape(s.shape[1], -1)
            gs = ss @ ss.T / ss.shape[1]
            expected += float(np.mean((ff - gs) ** 2))
        assert float(got[b]) == pytest.approx(expected, rel=1e-12)


def test_gain_and_keep_by_hand() -> None:
    assert style_gain(2.0, 8.0) == pytest.approx(0.75)
    assert style_gain(8.0, 8.0) == 0.0
    assert style_gain(12.0, 8.0) == pytest.approx(-0.5)  # further from the style than the photo
    assert content_keep(1.0, 4.0) == pytest.approx(0.75)
    assert content_keep(6.0, 4.0) == pytest.approx(-0.5)  # further from the photo than noise


def test_judged_size() -> None:
    assert judged_size(128, 72) == (128, 72)
    assert judged_size(512, 288) == (256, 144)
    assert judged_size(300, 1000) == (77, 256)


@pytest.fixture(scope="module")
def the_judge() -> Judge:
    return Judge("cpu")


def _picture(seed: int, size: tuple[int, int]) -> Image.Image:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size[1], 0:size[0]]
    base = np.stack([x * 3 % 255, y * 5 % 255, (x + y) * 2 % 255], -1)
    return Image.fromarray((0.7 * base + rng.uniform(0, 76, base.shape)).astype(np.uint8))


def test_the_end_points(the_judge: Judge) -> None:
    photo, style = _picture(1, (64, 48)), _picture(2, (80, 80))
    same = the_judge.score(photo, photo, style)
    assert (same.gain, same.keep) == (0.0, 1.0)
    # The judge's own noise picture keeps nothing of the photo, by definition.
    rng = np.random.default_rng(judge.NOISE_SEED)
    noise = Image.fromarray((rng.uniform(0, 1, (48, 64, 3)) * 255).round().astype(np.uint8))
    assert the_judge.score(noise, photo, style).keep == pytest.approx(0.0, abs=1e-9)
    # The style image itself, at the judged size, is most of the way to the style.
    assert the_judge.score(style.resize((64, 48)), photo, style).gain > 0.5
    # A large painting is judged at 256 px: the same score as its 256-px copy.
    big = photo.resize((512, 384))
    assert the_judge.score(big, big, style).keep == pytest.approx(1.0)


def test_a_picture_too_thin_for_the_network_is_judged_mirrored_out(the_judge: Judge) -> None:
    photo, style = _picture(1, (200, 5)), _picture(2, (300, 4))
    same = the_judge.score(photo, photo, style)
    assert (same.gain, same.keep) == (0.0, 1.0)
    assert the_judge.score(style.resize((200, 5)), photo, style).gain > 0  # (0.22 here)


def test_off_the_grid_is_the_mean_over_shifted_crops(the_judge: Judge) -> None:
    photo, style = _picture(1, (40, 30)), _picture(2, (60, 60))
    painting = _picture(3, (40, 30))
    got = the_judge.score_off_grid(painting, photo, style, period=4, step=2)
    crops = [the_judge.score(painting.crop(b), photo.crop(b), style)
             for b in ((0, 0, 36, 26), (0, 2, 36, 28), (2, 0, 38, 26), (2, 2, 38, 28))]
    assert got.gain == pytest.approx(np.mean([c.gain for c in crops]), rel=1e-9)
    assert got.keep == pytest.approx(np.mean([c.keep for c in crops]), rel=1e-9)
    same = the_judge.score_off_grid(photo, photo, style)
    assert (same.gain, same.keep) == (pytest.approx(0.0), pytest.approx(1.0))
    with pytest.raises(ValueError, match="over 8 px a side"):
        the_judge.score_off_grid(photo.resize((40, 8)), photo, style)
