"""An animation job in the worker: an animated GIF, WebP or APNG photo decoded to at most
`StyleParams.max_frames` frames (`stylizer.animation`), painted steadily through
`Engine.run_animation`, and encoded back to an animation: WebP for a WebP photo, GIF for
the others (the GIF is the one format every Discord client plays).

The worker keeps the job's life (cancel checks, out-of-memory retries, its one final
event); this module holds only what differs from a still.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Executor
from typing import TYPE_CHECKING

from PIL import Image

from stylizer import images
from stylizer.animation import Animation, decode_animation, encode_animation, frame_count
from stylizer.params import StyleParams
from stylizer.pool.spec import Engine

if TYPE_CHECKING:
    from stylizer.engine import RunOptions

# A job's figures: numbers, and for an animation the output's format ("gif" or "webp").
Stats = dict[str, float | int | str]


def decode_job(data: bytes, params: StyleParams) -> Animation | None:
    """The frames to paint when the photo `data` is an animation of more than one frame
    and `params.max_frames` is over 1: at most `params.max_frames` of them, evenly spaced,
    at most `params.size` pixels on their long side. None for a still (and for an
    animation painted as a still: its first frame, as `images.decode_photo` gives it).

    Raises what `images.decode` raises (`CorruptImage`, `UnsupportedImage`,
    `ImageTooLarge`), and `ImageTooLarge` for an animation too long to decode.
    """
    if params.max_frames < 2 or frame_count(data) < 2:
        return None
    return decode_animation(data, max_side=params.size, max_frames=params.max_frames)


def output_format(anim: Animation) -> str:
    """What an animation is painted into: "WEBP" for a WebP photo, else "GIF"."""
    return "WEBP" if anim.format == "WEBP" else "GIF"


def paint(engine: Engine, anim: Animation, styles: Sequence[Image.Image],
          style_keys: Sequence[str] | None, params: StyleParams, options: RunOptions,
          threads: Executor) -> tuple[bytes, Stats]:
    """Paints `anim`'s frames at `params.size` (frames decoded larger are shrunk: an
    out-of-memory retry paints smaller) and encodes them on `threads` with the source's
    timing and loop (`output_format`). Returns the animation's bytes and its stats: the
    engine's (steps, seconds, losses, width and height in pixels, bf16, frames), with
    "size", "batch" (jobs painted together: 1), "source_frames" and "format" ("gif" or
    "webp").

    Raises what `Engine.run_animation` raises (`Cancelled` when `options.should_stop`
    says so, torch's out-of-memory error).
    """
    frames = [images.resize_to_fit(frame, params.size) for frame in anim.frames]
    result = engine.run_animation(frames, styles, params, options, style_keys=style_keys)
    fmt = output_format(anim)
    data = threads.submit(encode_animation, result.frames, anim.durations_ms, anim.loop,
                          fmt).result()
    stats: Stats = dict(result.stats())
    stats.update(size=params.size, batch=1, frames=len(result.frames),
                 source_frames=anim.source_frames, format=fmt.lower())
    return data, stats
