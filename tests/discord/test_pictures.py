"""Results made to fit a channel's upload limit: animations as they are, in the other
animated format, or scaled down with their timing; PNG as before."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw

from bot.discord import pictures
from stylizer import animation

DURATIONS = [60, 60, 80, 100, 60, 60, 120, 60]


def _photo_frames(n: int = 8, width: int = 96, height: int = 64) -> list[Image.Image]:
    """Smooth, slightly grainy moving colours: far smaller as lossy WebP than as GIF."""
    y, x = np.mgrid[0:height, 0:width].astype(float)
    rng = np.random.default_rng(0)
    frames = []
    for i in range(n):
        pixels = np.stack([128 + 100 * np.sin(x / 9 + i / 2), 128 + 100 * np.cos(y / 7 - i / 3),
                           128 + 60 * np.sin((x + y) / 11 + i)], -1)
        pixels += rng.normal(0, 6, pixels.shape)
        frames.append(Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB"))
    return frames


def _flat_frames(n: int = 8, width: int = 96, height: int = 64) -> list[Image.Image]:
    """A few flat colours, a box moving: smaller as GIF than as lossy WebP."""
    frames = []
    for i in range(n):
        frame = Image.new("RGB", (width, height), (20, 20, 160))
        draw = ImageDraw.Draw(frame)
        draw.rectangle([i * 4, 10, i * 4 + 20, 40], fill=(250, 250, 0))
        draw.line([0, 0, width, height], fill=(255, 0, 0), width=3)
        frames.append(frame)
    return frames


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def _check_animation(fitted: pictures.Fitted, fmt: str, loop: int) -> None:
    """The fitted bytes are an animation in `fmt` of the size reported, with every frame
    and the timing and loop of the original."""
    anim = animation.decode_animation(fitted.data, max_side=4096)
    assert anim.format == fmt
    assert fitted.ext == fmt.lower()
    assert anim.frames[0].size == (fitted.width, fitted.height)
    assert anim.source_frames == len(DURATIONS)
    assert anim.durations_ms == tuple(DURATIONS)
    assert anim.loop == loop


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_an_animation_that_fits_is_sent_as_it_is(fmt: str) -> None:
    data = animation.encode_animation(_photo_frames(), DURATIONS, 0, fmt)
    fitted = pictures.fit_to_limit(data, len(data))
    assert (fitted.data, fitted.ext, fitted.note) == (data, fmt.lower(), None)
    assert (fitted.width, fitted.height) == (96, 64)


def test_a_gif_too_large_goes_as_animated_webp() -> None:
    frames = _photo_frames()
    gif = animation.encode_animation(frames, DURATIONS, 0, "GIF")
    webp = animation.encode_animation(frames, DURATIONS, 0, "WEBP")
    assert len(webp) < len(gif) // 2
    fitted = pictures.fit_to_limit(gif, len(gif) - 1)
    assert len(fitted.data) < len(gif) // 2
    assert fitted.note == ("Sent as animated WebP: the GIF was larger than this channel's "
                           "upload limit.")
    assert (fitted.width, fitted.height) == (96, 64)
    _check_animation(fitted, "WEBP", 0)


def test_an_animated_webp_too_large_goes_as_gif() -> None:
    # Flat colours at WebP's top quality: the GIF is half the size.
    webp = animation.encode_animation(_flat_frames(), DURATIONS, 3, "WEBP", quality=100)
    fitted = pictures.fit_to_limit(webp, len(webp) - 1)
    assert len(fitted.data) < len(webp) * 2 // 3
    assert fitted.note is not None
    assert fitted.note.startswith("Sent as GIF: the animated WebP was larger")
    _check_animation(fitted, "GIF", 3)


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_an_animation_fitting_in_neither_format_is_scaled_down(fmt: str) -> None:
    frames = _photo_frames()
    data = animation.encode_animation(frames, DURATIONS, 0, fmt)
    webp = animation.encode_animation(frames, DURATIONS, 0, "WEBP")
    limit = len(webp) // 2
    fitted = pictures.fit_to_limit(data, limit)
    assert len(fitted.data) <= limit
    assert fitted.width < 96
    assert fitted.height < 64
    assert fitted.width / fitted.height == pytest.approx(96 / 64, rel=0.1)
    assert fitted.note is not None
    assert fitted.note.startswith("Scaled down from 96×64")
    assert ("as animated WebP" in fitted.note) == (fmt == "GIF")
    _check_animation(fitted, "WEBP", 0)  # the smaller of the two, here


def test_an_animation_that_cannot_fit_is_refused() -> None:
    data = animation.encode_animation(_photo_frames(), DURATIONS, 0, "GIF")
    with pytest.raises(ValueError, match="cannot fit a 96x64 animation"):
        pictures.fit_to_limit(data, 100)


def test_a_png_is_fitted_as_before() -> None:
    png = _png(_photo_frames(1)[0])
    fitted = pictures.fit_to_limit(png, len(png))
    assert (fitted.data, fitted.ext, fitted.note) == (png, "png", None)
    smaller = pictures.fit_to_limit(png, len(png) - 1)
    assert smaller.ext == "jpg"


def test_bytes_of_another_kind_are_refused() -> None:
    buf = io.BytesIO()
    _photo_frames(1)[0].save(buf, "JPEG")
    for data in (buf.getvalue(), b"RIFF\0\0\0\0WAVEfmt ", b"not a picture"):
        with pytest.raises(ValueError, match="not a PNG, GIF or WebP"):
            pictures.fit_to_limit(data, 10_000_000)
