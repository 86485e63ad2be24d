"""Checks the image tests share: a spy that refuses pixel decoding, and an animation's
timing as Pillow reads it back."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

from PIL import Image, ImageFile

if TYPE_CHECKING:
    import pytest


class PixelsDecoded(BaseException):
    """Raised by the spy below; a BaseException, so that no `except Exception` hides it."""


def forbid_pixel_decoding(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records (and refuses) any attempt to decode pixel data: the formats tried."""
    calls: list[str] = []

    def refuse(self: ImageFile.ImageFile) -> Any:
        calls.append(str(self.format))
        raise PixelsDecoded("pixel data was decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)
    return calls


def animation_timing(data: bytes) -> tuple[str, tuple[int, int], list[int], Any]:
    """An animation's format, size, frame durations (ms) and loop count, as Pillow reads
    them."""
    with Image.open(io.BytesIO(data)) as img:
        durations = []
        for index in range(img.n_frames):
            img.seek(index)
            img.load()  # WebP sets the duration only here
            durations.append(img.info["duration"])
        return str(img.format), img.size, durations, img.info.get("loop")
