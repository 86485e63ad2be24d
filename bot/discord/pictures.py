"""Image bytes for Discord messages: results shrunk to fit the upload limit, thumbnails.

CPU work on small images; callers run these in a thread (`asyncio.to_thread`).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image

from stylizer import images

JPEG_QUALITIES = (90, 80, 70)
SHRINK = 0.75
MIN_SIDE = 16


@dataclass(frozen=True)
class Fitted:
    data: bytes
    ext: str          # "png" or "jpg"
    width: int
    height: int
    note: str | None  # what was done to make it fit, for the user


def fit_to_limit(png: bytes, limit: int) -> Fitted:
    """The painting as PNG if it fits in `limit` bytes; else JPEG, then downscaled JPEG.
    `png` is the engine's own output, opened with the PNG reader alone; `ValueError` if
    not even a 16-pixel JPEG fits."""
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


def thumbnail(data: bytes, side: int = 256) -> bytes:
    """A JPEG at most `side` pixels on its long side of any image we stored (inputs were
    checked when the job was made; `stylizer.images.decode`'s errors otherwise)."""
    img = images.decode(data, max_side=side)
    return images.encode(img, "JPEG", quality=85)
