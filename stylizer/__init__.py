"""stylizer: neural style transfer (Gatys et al. 2015) on VGG19, as a library.

Images in, images out: no Discord, no database, no prints. Importing this package
does not import torch; `Stylizer` and the result types load it on first use, so the
bot process can use the image checks and presets without paying for torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stylizer.errors import (
    Cancelled,
    CorruptImage,
    ImageTooLarge,
    InvalidParams,
    StylizerError,
    UnknownStyle,
    UnsupportedImage,
    WeightsUnavailable,
)
from stylizer.params import StyleParams

if TYPE_CHECKING:
    from stylizer.engine import Progress, Result, Stylizer

__all__ = [
    "Cancelled", "CorruptImage", "ImageTooLarge", "InvalidParams", "Progress", "Result",
    "StyleParams", "Stylizer", "StylizerError", "UnknownStyle", "UnsupportedImage",
    "WeightsUnavailable",
]


def __getattr__(name: str) -> Any:
    if name in ("Stylizer", "Result", "Progress"):
        from stylizer import engine

        return getattr(engine, name)
    raise AttributeError(f"module 'stylizer' has no attribute {name!r}")
