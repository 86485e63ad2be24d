"""Typed errors with messages a person can read.

Every error the engine raises for bad input derives from `StylizerError`, whose
`str()` is a short sentence fit to show a user as it is. `code` is a stable,
machine-readable tag (stored with failed jobs, used by the bot to pick wording).
"""

from __future__ import annotations


class StylizerError(Exception):
    """Base class: something about the request is wrong, not the program."""

    code = "stylizer_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UnsupportedImage(StylizerError):
    """The bytes are an image, but of a format we do not accept."""

    code = "unsupported_image"


class ImageTooLarge(StylizerError):
    """Too many bytes, too many pixels (a decompression bomb, or just huge), or too much
    metadata before the picture (thousands of text chunks or EXIF segments)."""

    code = "image_too_large"


class CorruptImage(StylizerError):
    """Zero bytes, truncated, or not an image at all."""

    code = "corrupt_image"


class UnknownStyle(StylizerError):
    """A preset name that does not exist, or a painting missing from the style pack
    (`missing` is then its title); carries the names to offer instead."""

    code = "unknown_style"

    def __init__(self, name: str, suggestions: list[str], missing: str | None = None) -> None:
        self.name = name
        self.suggestions = suggestions
        self.missing = missing
        if missing is not None:
            hint = f" Styles you can use: {', '.join(suggestions)}." if suggestions else ""
            text = f"{missing} is not installed here: its painting is not in the style pack."
        else:
            hint = f" Did you mean {', '.join(suggestions)}?" if suggestions else ""
            text = f"There is no style called '{name}'."
        super().__init__(text + hint)


class InvalidParams(StylizerError):
    """A parameter outside its allowed range."""

    code = "invalid_params"


class WeightsUnavailable(StylizerError):
    """VGG19 weights could not be found offline; says which file to place where."""

    code = "weights_unavailable"


class Cancelled(Exception):
    """Raised by `Stylizer.run` when `should_stop()` returned true."""

    code = "cancelled"
