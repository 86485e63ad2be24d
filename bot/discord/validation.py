"""Pure checks on what a user sent. Each raises a `UserError` whose message says what is
wrong and what is allowed; none does I/O, so each is tested with plain values.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from bot.jobs.errors import InvalidRequest, UserError
from stylizer import animation, images
from stylizer.errors import StylizerError
from stylizer.params import StyleParams, limits

ACTIONS = ("again", "more", "less")
# "More style" / "Less style" multiply the strength by this much.
STRENGTH_STEP = 2.0


@dataclass(frozen=True)
class AttachmentInfo:
    """What Discord tells us about an attachment before we download it."""

    filename: str
    content_type: str | None
    size: int
    width: int | None = None
    height: int | None = None


# Declared types that say nothing about what a file is.
_UNTYPED = ("", "application/octet-stream", "binary/octet-stream")


def could_be_image(filename: str, content_type: str | None) -> bool:
    """Whether a file's name or its declared type leaves room for an image we read. Both
    are hints: a `.jfif`, a name with no extension, or a PNG named `.jpg` all pass, and
    only the downloaded bytes decide (`check_image_bytes`)."""
    ext = PurePosixPath(filename.lower()).suffix
    ctype = (content_type or "").split(";")[0].strip().lower()
    return (ext in images.ALLOWED_EXTENSIONS or not ext
            or ctype in images.ALLOWED_CONTENT_TYPES or ctype in _UNTYPED)


def check_attachment(info: AttachmentInfo, *, what: str, max_bytes: int, max_pixels: int) -> None:
    """What Discord says about an attachment, before it is downloaded: raises
    `InvalidRequest` when neither its name nor its declared type could be an image we
    read, when it is empty or over `max_bytes` bytes, or when Discord's width x height is
    over `max_pixels` pixels."""
    allowed = images.describe_allowed()
    if not could_be_image(info.filename, info.content_type):
        ctype = (info.content_type or "").split(";")[0].strip().lower()
        kind = f" (`{ctype}`)" if ctype else ""
        raise InvalidRequest(f"The {what} `{info.filename}`{kind} is not an image I accept; "
                             f"send a {allowed} file.", code="unsupported_image")
    if info.size <= 0:
        raise InvalidRequest(f"The {what} is empty.", code="corrupt_image")
    if info.size > max_bytes:
        raise InvalidRequest(f"The {what} is {info.size / 2**20:.1f} MB; the limit is "
                             f"{max_bytes / 2**20:.0f} MB.", code="image_too_large")
    if info.width and info.height and info.width * info.height > max_pixels:
        raise InvalidRequest(f"The {what} is {info.width}x{info.height}; the limit is "
                             f"{max_pixels / 1e6:.0f} megapixels.", code="image_too_large")


def check_image_bytes(data: bytes, *, what: str, max_bytes: int, max_pixels: int) -> None:
    """Decodes the downloaded bytes (at most `max_bytes` bytes, `max_pixels` pixels), so
    that a file that is not an image we read, or is damaged, is refused by what it is
    before a job exists: raises `InvalidRequest` with the image error's code. An animation
    is decoded frame by frame (a frame cut short is caught here too, not by a worker),
    within `stylizer.animation`'s budget of frames x pixels: a few seconds at most. CPU
    work: call it in a thread (`asyncio.to_thread`)."""
    try:
        if images.probe(data, max_bytes=max_bytes, max_pixels=max_pixels).frames > 1:
            animation.decode_animation(data, max_side=64, max_frames=1,
                                       max_bytes=max_bytes, max_pixels=max_pixels)
        else:
            images.decode(data, max_side=256, max_bytes=max_bytes, max_pixels=max_pixels)
    except StylizerError as exc:
        raise InvalidRequest(f"The {what}: {exc.message}", code=exc.code) from exc


def check_host(url: str, allowed_hosts: tuple[str, ...]) -> None:
    """Only URLs on the allowed CDN hosts (`host` or `host:port` entries)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme not in ("https", "http") or not host:
        raise UserError("That attachment link is not one I can download.", code="bad_host")
    for entry in allowed_hosts:
        entry = entry.lower()
        if ":" in entry:
            if port is not None and entry == f"{host}:{port}":
                return
        elif entry == host and port is None:
            return
    raise UserError("I only download images uploaded to Discord.", code="bad_host")


def check_style_choice(style: str | None, has_style_image: bool) -> None:
    if style and has_style_image:
        raise InvalidRequest("Pick either a preset `style` or a `style_image`, not both.",
                             code="style_choice")
    if not style and not has_style_image:
        raise InvalidRequest("Pick a preset `style` (start typing to see the list) or upload "
                             "a `style_image`.", code="style_choice")


def build_params(defaults: Mapping[str, Any], *, strength: float | None, size: int | None,
                 preserve_colors: bool | None, max_size: int) -> dict[str, Any]:
    """The job's parameter overrides: `defaults`, then the user's options. What is left
    out comes from the preset and the server's default size (the job service adds them)."""
    params: dict[str, Any] = dict(defaults)
    if size is not None:
        if size > max_size:
            raise InvalidRequest(f"The largest size here is {max_size} px.", code="invalid_params")
        params["size"] = size
    if strength is not None:
        params["style_weight"] = strength
    if preserve_colors is not None:
        params["preserve_colors"] = preserve_colors
    return validate_params(params)


def validate_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Checks the values against `StyleParams`; returns only the keys given (the job
    service fills in the rest, e.g. a preset's recommended settings)."""
    try:
        full = StyleParams.from_dict(dict(params)).to_dict()
    except StylizerError as exc:
        raise InvalidRequest.from_stylizer(exc) from exc
    return {k: full[k] for k in params if k in full}


def derive_params(parent: Mapping[str, Any], action: str, *, new_seed: int) -> dict[str, Any]:
    """Parameters for "Again" (a new seed), "More style" and "Less style"."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    params = dict(parent)
    lim = limits()["style_weight"]
    weight = float(params.get("style_weight", lim.default))
    if action == "again":
        params["seed"] = new_seed
    elif action == "more":
        params["style_weight"] = _clamp(weight * STRENGTH_STEP, lim.min, lim.max)
    else:
        params["style_weight"] = _clamp(weight / STRENGTH_STEP, lim.min, lim.max)
    if action != "again" and params["style_weight"] == weight:
        word = "strongest" if action == "more" else "weakest"
        raise InvalidRequest(f"This painting already has the {word} style allowed.",
                             code="invalid_params")
    return validate_params(params)


def _clamp(value: float, lo: float | None, hi: float | None) -> float:
    if lo is not None:
        value = max(lo, value)
    if hi is not None:
        value = min(hi, value)
    return float(round(value, 6)) if math.isfinite(value) else value
