"""Intake: a painting request checked before anything is stored, then its images stored.

The photo's and a custom style's headers are read (in a worker thread: parsing untrusted
bytes is CPU work), a preset is looked up and its painting read once per process, and
the parameters are merged in order: the host's defaults, the preset's recommendation,
the user's options. An animated photo (GIF, WebP, APNG: `images.ImageInfo.frames`) is
painted at `animation_size` unless the user picks a size, and no more than `max_frames`
of its frames are painted, whatever the user asks (STYLEBOT_ANIMATION_SIZE and
STYLEBOT_MAX_FRAMES); `animation_plan` says which. Every refusal is an
`InvalidRequest` whose message is shown to the user as it is, or `OutOfStorage` when the
image store is short of space (under `min_free_mb`, STYLEBOT_MIN_FREE_MB, or full while
the images are stored).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.jobs.errors import InvalidRequest, OutOfStorage
from bot.jobs.storage import BlobStore
from bot.settings import Settings
from stylizer import batching, images, presets
from stylizer.errors import InvalidParams, StylizerError
from stylizer.params import StyleParams

log = logging.getLogger(__name__)

CUSTOM_STYLE = "custom"
WARN_EVERY_S = 300.0  # the operator's "out of storage" warning, at most this often
OUT_OF_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})


def out_of_space(exc: OSError) -> bool:
    """Whether `exc` says the disk (or the user's quota) is full."""
    return exc.errno in OUT_OF_SPACE


@dataclass(frozen=True)
class AnimationPlan:
    """What becomes of an animated photo: `painted` of its `source_frames` frames, evenly
    spaced (`stylizer.animation.sample_indices`); 1 paints its first frame as a still."""

    format: str  # Pillow's name of the photo's format: "GIF", "WEBP" or "PNG" (APNG)
    source_frames: int
    painted: int

    @property
    def every(self) -> int | None:
        """One frame painted in every this many, when the spacing is a whole number."""
        if self.painted < 2 or self.source_frames % self.painted:
            return None
        return self.source_frames // self.painted


def animation_plan(photo: images.ImageInfo, max_frames: int) -> AnimationPlan | None:
    """The plan for a photo painted with `max_frames` (a job's parameter); None for a
    still."""
    if photo.frames <= 1:
        return None
    return AnimationPlan(photo.format, photo.frames, max(1, min(photo.frames, max_frames)))


def stored_animation(photo: bytes, params: dict[str, Any]) -> AnimationPlan | None:
    """`animation_plan` for a job's stored photo (accepted at the door, so read without
    the door's limits) and parameters, from the photo's header alone; None for a still,
    or when either cannot be read now. CPU work: call it in a thread."""
    try:
        max_frames = StyleParams.from_dict(params).max_frames
        info = images.probe(photo, max_bytes=len(photo), max_pixels=2**40)
    except StylizerError:
        return None
    return animation_plan(info, max_frames)


@dataclass(frozen=True)
class CheckedRequest:
    photo: images.ImageInfo
    style_name: str  # a preset's name, or CUSTOM_STYLE for an uploaded style image
    style_bytes: bytes
    params: StyleParams

    @property
    def frames(self) -> int:
        """Frames to paint: 0 for a still (or an animation painted as its first frame)."""
        plan = animation_plan(self.photo, self.params.max_frames)
        return plan.painted if plan is not None and plan.painted > 1 else 0

    @property
    def batch_key(self) -> str | None:
        """The job's key for sharing a batch (`stylizer.batching`); None for an animation,
        whose frames are its batch: it goes to a worker alone."""
        if self.frames:
            return None
        return batching.batch_key(self.photo.upright_size, self.params.to_dict())


class Intake:
    """`storage`: where the images go, whose free space is checked (not when None)."""

    def __init__(self, settings: Settings, presets_dir: Path | None,
                 storage: BlobStore | None = None) -> None:
        self.settings = settings
        self.presets_dir = presets_dir
        self.storage = storage
        self._style_bytes: dict[str, bytes] = {}
        self._warned_at: float | None = None

    async def check(self, *, content: bytes, style: str | None, style_image: bytes | None,
                    params: dict[str, Any] | None) -> CheckedRequest:
        """Raises `OutOfStorage` when the store has less than `min_free_mb` free, and
        `InvalidRequest` for a bad image, style or parameter."""
        await self.check_space()
        if (style is None) == (style_image is None):
            raise InvalidRequest("Choose one style: a preset name or a style image.")
        photo = await self.probe(content)
        # Every frame of an animation is a painting: by default they are smaller.
        size = (self.settings.animation_default_size if photo.frames > 1
                else self.settings.default_size)
        merged: dict[str, Any] = {"size": size, "max_frames": self.settings.max_frames}
        if self.settings.default_steps is not None:
            merged["steps"] = self.settings.default_steps
        if style is not None:
            preset = await self.preset(style)
            merged.update(preset.params)
            style_name = preset.name
            style_bytes = await self.preset_bytes(preset)
        else:
            assert style_image is not None
            await self.probe(style_image)
            style_name, style_bytes = CUSTOM_STYLE, style_image
        merged.update(self.user_params(params))
        return CheckedRequest(photo, style_name, style_bytes, self.validate(merged))

    async def check_space(self) -> None:
        """Raises `OutOfStorage` when the store has less than `min_free_mb` free (never
        when it cannot tell: a database's blob table)."""
        if self.storage is None:
            return
        free = await asyncio.to_thread(self.storage.free_bytes)
        if free is not None and free < self.settings.min_free_mb * 2**20:
            self._warn("refusing new jobs: %.0f MB free in the image store, under "
                       "STYLEBOT_MIN_FREE_MB=%d", free / 2**20, self.settings.min_free_mb)
            raise OutOfStorage

    async def store(self, *blobs: bytes) -> list[str]:
        """Stores the request's images; returns their digests. Raises `OutOfStorage` when
        the disk fills up meanwhile (the store writes atomically: nothing half-written is
        left; a whole image stored before is, unreferenced, until retention removes it).
        Needs the `storage` given at construction."""
        assert self.storage is not None
        try:
            return [await self.storage.put_async(data) for data in blobs]
        except OSError as exc:
            if not out_of_space(exc):
                raise
            self._warn("refusing a new job: the image store is full (%s)", exc)
            raise OutOfStorage from exc

    def _warn(self, message: str, *args: object) -> None:
        """The operator's warning, at most once every `WARN_EVERY_S` (a burst of refused
        requests logs one line)."""
        now = time.monotonic()
        if self._warned_at is None or now - self._warned_at >= WARN_EVERY_S:
            self._warned_at = now
            log.warning(message, *args)

    async def probe(self, data: bytes) -> images.ImageInfo:
        """The image's header, read in a worker thread: parsing untrusted bytes is CPU
        work, and the event loop serves every other user meanwhile."""
        try:
            return await asyncio.to_thread(images.probe, data,
                                           max_bytes=self.settings.max_upload_bytes,
                                           max_pixels=self.settings.max_pixels)
        except StylizerError as exc:
            raise InvalidRequest.from_stylizer(exc) from exc

    async def preset(self, name: str) -> presets.Preset:
        """The preset called `name` (spelling is forgiven: see `presets.normalise`)."""
        try:
            return await asyncio.to_thread(presets.get, name, self.presets_dir)
        except StylizerError as exc:
            raise InvalidRequest.from_stylizer(exc) from exc

    async def preset_bytes(self, preset: presets.Preset) -> bytes:
        """The preset's painting as encoded bytes, read (or drawn) once per process."""
        if preset.name not in self._style_bytes:
            self._style_bytes[preset.name] = await asyncio.to_thread(
                presets.image_bytes, preset, self.presets_dir)
        return self._style_bytes[preset.name]

    @staticmethod
    def user_params(params: dict[str, Any] | None) -> dict[str, Any]:
        """The options the user set (None means "not given"); an unknown name is refused."""
        if not params:
            return {}
        known = set(StyleParams.__dataclass_fields__)
        unknown = sorted(set(params) - known)
        if unknown:
            raise InvalidRequest(f"Unknown setting: {', '.join(unknown)}.", code="invalid_params")
        return {k: v for k, v in params.items() if v is not None}

    def validate(self, merged: dict[str, Any]) -> StyleParams:
        """StyleParams' own ranges, then this host's largest size and most frames (a user
        may ask for fewer frames, never more: the operator's limit on one job's work)."""
        try:
            params = StyleParams.from_dict(merged)
        except InvalidParams as exc:
            raise InvalidRequest.from_stylizer(exc) from exc
        if params.size > self.settings.max_size:
            raise InvalidRequest(f"The largest size is {self.settings.max_size} pixels.",
                                 code=InvalidParams.code)
        if params.max_frames > self.settings.max_frames:
            params = params.replace(max_frames=self.settings.max_frames)
        return params
