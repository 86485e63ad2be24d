"""Image bytes for Discord messages: results (pictures and animations) shrunk to fit the
upload limit, thumbnails.

CPU work on small images; callers run these in a thread (`asyncio.to_thread`).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, ImageSequence

from stylizer import animation, images

JPEG_QUALITIES = (90, 80, 70)
SHRINK = 0.75
MIN_SIDE = 16


# Animated formats the engine writes, by Pillow's name: file extension, name for the user.
_ANIMATED = {"GIF": ("gif", "GIF"), "WEBP": ("webp", "animated WebP")}


@dataclass(frozen=True)
class Fitted:
    data: bytes
    ext: str          # "png", "jpg", "gif" or "webp"
    width: int
    height: int
    note: str | None  # what was done to make it fit, for the user


def _format(data: bytes) -> str:
    """Pillow's name of the engine's output format, from its signature."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "GIF"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    raise ValueError("the painting is not a PNG, GIF or WebP file")


def fit_to_limit(data: bytes, limit: int) -> Fitted:
    """The engine's output (a PNG, or an animated GIF or WebP, told by its signature and
    opened with that format's reader alone) made to fit in `limit` bytes.

    A PNG as it is if it fits; else JPEG, then downscaled JPEG. An animation as it is if
    it fits; else in the other of the two formats (animated WebP is usually far smaller
    than GIF); else every frame downscaled, step by step, in whichever of the two was
    smaller, with its timing and loop. `ValueError` for bytes of another kind, or if not
    even 16 pixels a side fit.
    """
    kind = _format(data)
    if kind == "PNG":
        return _fit_png(data, limit)
    return _fit_animation(data, kind, limit)


def _fit_png(png: bytes, limit: int) -> Fitted:
    img = Image.open(io.BytesIO(png), formats=("PNG",))
    img.load()
    width, height = img.size
    if len(png) <= limit:
        return Fitted(png, "png", width, height, None)
    rgb = img.convert("RGB")
    for quality in JPEG_QUALITIES:
        data = images.encode(rgb, "JPEG", quality=quality)
        if len(data) <= limit:
            return Fitted(data, "jpg", width, height,
                          "Sent as JPEG: the PNG was larger than this channel's upload limit.")
    small = rgb
    while min(small.size) > MIN_SIDE:
        w, h = small.size
        small = small.resize((max(1, round(w * SHRINK)), max(1, round(h * SHRINK))),
                             Image.Resampling.LANCZOS)
        data = images.encode(small, "JPEG", quality=JPEG_QUALITIES[-1])
        if len(data) <= limit:
            return Fitted(data, "jpg", small.size[0], small.size[1],
                          f"Scaled down from {width}×{height} to fit this channel's upload limit.")
    raise ValueError(f"cannot fit a {width}x{height} image into {limit} bytes")


def _fit_animation(data: bytes, kind: str, limit: int) -> Fitted:
    with Image.open(io.BytesIO(data), formats=(kind,)) as img:
        frames, durations = [], []
        for frame in ImageSequence.Iterator(img):
            frames.append(frame.convert("RGB"))  # loads it; WebP's duration comes with it
            durations.append(round(frame.info.get("duration", 0)))
        loop = animation.loop_plays(img)
    width, height = frames[0].size
    if len(data) <= limit:
        return Fitted(data, _ANIMATED[kind][0], width, height, None)
    other = "WEBP" if kind == "GIF" else "GIF"
    converted = animation.encode_animation(frames, durations, loop, other)
    if len(converted) <= limit:
        return Fitted(converted, _ANIMATED[other][0], width, height,
                      f"Sent as {_ANIMATED[other][1]}: the {_ANIMATED[kind][1]} was larger "
                      "than this channel's upload limit.")
    best = other if len(converted) < len(data) else kind
    size = (width, height)
    while min(size) > MIN_SIDE:
        size = (max(1, round(size[0] * SHRINK)), max(1, round(size[1] * SHRINK)))
        small = [frame.resize(size, Image.Resampling.LANCZOS) for frame in frames]
        shrunk = animation.encode_animation(small, durations, loop, best)
        if len(shrunk) <= limit:
            how = "" if best == kind else f" as {_ANIMATED[best][1]}"
            return Fitted(shrunk, _ANIMATED[best][0], size[0], size[1],
                          f"Scaled down from {width}×{height}{how} to fit this channel's "
                          "upload limit.")
    raise ValueError(f"cannot fit a {width}x{height} animation into {limit} bytes")


def thumbnail(data: bytes, side: int = 256) -> bytes:
    """A JPEG at most `side` pixels on its long side of any image we stored (inputs were
    checked when the job was made; `stylizer.images.decode`'s errors otherwise)."""
    img = images.decode(data, max_side=side)
    return images.encode(img, "JPEG", quality=85)
