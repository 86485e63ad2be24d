"""Batch keys: which queued jobs the pool may paint together, from headers alone."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from stylizer import images
from stylizer.batching import batch_key, batch_limit
from stylizer.params import StyleParams


def _jpeg(width: int, height: int, orientation: int | None = None) -> bytes:
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif.tobytes())
    return buf.getvalue()


@pytest.mark.parametrize(("width", "height", "orientation"),
                         [(640, 480, None), (480, 640, 1), (640, 480, 6), (640, 480, 8),
                          (100, 60, None), (1001, 333, 3)])
def test_the_key_size_is_the_size_decode_paints_at(width: int, height: int,
                                                   orientation: int | None) -> None:
    data = _jpeg(width, height, orientation)
    params = StyleParams(size=256).to_dict()
    key = batch_key(images.probe(data).upright_size, params)
    decoded = images.decode(data, max_side=256)
    assert key.startswith(f"{decoded.width}x{decoded.height}:")


def test_equal_sizes_and_parameters_share_a_key_and_anything_else_does_not() -> None:
    params = StyleParams(size=512).to_dict()
    key = batch_key((1024, 768), params)
    assert key == batch_key((2048, 1536), dict(params))  # same painted size: 512x384
    assert key != batch_key((1024, 800), params)
    assert key != batch_key((1024, 768), StyleParams(size=512, steps=199).to_dict())
    assert key != batch_key((1024, 768), StyleParams(size=512, seed=1).to_dict())
    # Strength is per image in a batch: it does not split jobs.
    assert key == batch_key((1024, 768), StyleParams(size=512, style_weight=3.0).to_dict())
    assert len(key) <= 64  # fits its column


def test_the_limit_keeps_a_batch_to_the_pixels_of_the_limit_at_512() -> None:
    small = batch_key((512, 288), StyleParams(size=512).to_dict())
    big = batch_key((1024, 1024), StyleParams(size=1024).to_dict())
    assert batch_limit(small, 16) == 16
    assert batch_limit(big, 16) == 4
    assert batch_limit(big, 2) == 1
    assert batch_limit(small, 1) == 1
    assert batch_limit("not a key", 16) == 1


def test_fitted_size_is_what_resize_to_fit_gives() -> None:
    for w, h, side in [(1000, 333, 512), (333, 1000, 100), (64, 48, 512), (3, 1000, 32)]:
        img = Image.new("RGB", (w, h))
        assert images.resize_to_fit(img, side).size == images.fitted_size(w, h, side)
