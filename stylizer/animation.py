"""Animated pictures in and out: an animated GIF, WebP or PNG (APNG) decoded to a few
small frames and their timing, and painted frames encoded back to an animation.

Untrusted bytes get `stylizer.images`' checks first (size, framing, format, pixels per
frame); then the frames are counted from the framing, without decoding a pixel
(`images.frame_layout`), and the work that decoding them would take, frames decoded x
canvas pixels, is refused above MAX_DECODED_PIXELS before any is decoded. Every format
composites each frame onto the one before (GIF disposal, APNG dispose and blend, WebP
blending), so the readers cannot skip frames: every frame is decoded in turn, but only
the kept ones (at most `max_frames`, evenly spaced) are held, each shrunk right away, so
a GIF of thousands of frames never holds more than a few small frames. Timing follows
what browsers show: a frame's delay under MIN_FRAME_MS is shown for 100 ms, and the
frames dropped lend their time to the kept frame before them, so the animation lasts as
long as the original.

Like `images.decode`, `decode_animation` returns or raises `CorruptImage`,
`UnsupportedImage` or `ImageTooLarge`, whatever the bytes.

Both command lines name a painting's file with `output_file` (the extension asked for is
the format written; an animation cannot go to a still-only one), and `stylebot` turns
what a worker painted into that format with `convert_painting`.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate, pairwise
from pathlib import Path

from PIL import Image

from stylizer import image_structure, images
from stylizer.errors import CorruptImage, ImageTooLarge

MAX_FRAMES = 48  # frames painted by default; more are dropped, evenly
# Refused above this many frames; counted from the framing (see `frame_count`).
MAX_SOURCE_FRAMES = image_structure.MAX_SOURCE_FRAMES
# Frames decoded x canvas pixels (full size, as stored): a few seconds of decoding in the
# worker, at most. Measured on a busy 2-core CPU at 100 MP: 25 kept frames of 2000x2000
# take 2.2-2.7 s (GIF, APNG, WebP: each kept frame is also copied and shrunk), 100 of
# 1000x1000 (48 kept) 1.5-1.9 s; lossy WebP of noise, the slowest to decode, is held to
# ~40 MP by the 25 MB file size cap (1.6 s for 30 MP). 48 frames of 480x270 are 6 MP;
# 10 s of 720p at 25 fps, 230 MP, which the limit lets through (5-7 s of decoding there,
# against minutes of painting on a CPU); a minute of 1080p, 3,700 MP, it refuses.
MAX_DECODED_PIXELS = 300_000_000
# Firefox and Chromium show a frame whose delay is under 20 ms (0 or 1 in GIF's 10 ms
# units: ads once flashed that way) for 100 ms instead; so do we, in every format.
MIN_FRAME_MS = 20
SHORT_FRAME_SHOWN_MS = 100
# The most pixels a GIF's shared palette is quantised from: a mosaic of all frames, each
# subsampled to its share (fast octree takes 10 ms on 1 MP; see `_gif_palette`).
PALETTE_SAMPLE_PIXELS = 1 << 20
_GIF_MAX_DELAY_MS = 65_535 * 10  # a 16-bit count of 10 ms units
_WEBP_MAX_DURATION_MS = (1 << 24) - 1  # ANMF's 24-bit frame duration
_MAX_LOOP = 65_535  # GIF's NETSCAPE2.0 and WebP's ANIM loop counts are 16-bit

_DAMAGED = "The animation is damaged or cut short; try saving it again."


@dataclass(frozen=True)
class Animation:
    """Frames to paint, and how long each is shown (`decode_animation`)."""

    frames: tuple[Image.Image, ...]  # RGB, one size, upright, transparency on white
    durations_ms: tuple[int, ...]  # per kept frame: its own time and that of those dropped
    # Times the animation plays: 0 = forever, 1 = once (WebP and APNG count plays; a GIF
    # plays once with no NETSCAPE2.0 block, and N + 1 times with one that says N repeats).
    loop: int
    format: str  # Pillow's name of the source's format: "GIF", "WEBP" or "PNG" (APNG too)
    source_frames: int  # frames in the file's animation

    @property
    def dropped(self) -> int:
        """Frames of the source left out: `source_frames` - len(`frames`)."""
        return self.source_frames - len(self.frames)


def frame_count(data: bytes, *, max_bytes: int = images.MAX_BYTES,
                max_pixels: int = images.MAX_PIXELS) -> int:
    """The frames of an image file's animation, counted from its framing without decoding
    pixels (see `images.frame_layout`): 1 for a still, and for JPEG and BMP. Raises what
    `images.probe` raises (`max_bytes` in bytes, `max_pixels` in pixels per frame), and
    `ImageTooLarge` for more than MAX_SOURCE_FRAMES frames."""
    return images.probe(data, max_bytes=max_bytes, max_pixels=max_pixels).frames


def sample_indices(n_source: int, max_frames: int) -> list[int]:
    """`min(n_source, max_frames)` frame indices spread evenly over `n_source` frames,
    strictly increasing, starting at 0 (index i * n_source // kept). `ValueError` for a
    negative `n_source` or a `max_frames` under 1."""
    if n_source < 0 or max_frames < 1:
        raise ValueError(f"cannot sample {max_frames} of {n_source} frames")
    kept = min(n_source, max_frames)
    return [i * n_source // kept for i in range(kept)]


def shown_ms(duration_ms: int) -> int:
    """How long browsers show a frame of this delay, in ms: under MIN_FRAME_MS, 100 ms."""
    return duration_ms if duration_ms >= MIN_FRAME_MS else SHORT_FRAME_SHOWN_MS


def sample_durations(durations_ms: Sequence[int], kept: Sequence[int]) -> list[int]:
    """How long each kept frame is shown, in ms: the sum of the `shown_ms` delays of the
    source frames from it up to the next kept one (the last, up to the end), so that the
    whole lasts as long as the source. `kept` are indices into `durations_ms`, strictly
    increasing from 0 (`ValueError` otherwise)."""
    if kept and (kept[0] != 0 or kept[-1] >= len(durations_ms)
                 or any(b <= a for a, b in pairwise(kept))):
        raise ValueError(f"kept frames {list(kept)} are not increasing indices from 0 into "
                         f"{len(durations_ms)} frames")
    if not kept:
        return []
    shown = [shown_ms(d) for d in durations_ms]
    ends = [*kept[1:], len(shown)]
    return [sum(shown[start:end]) for start, end in zip(kept, ends, strict=True)]


def loop_plays(img: Image.Image) -> int:
    """The times an opened GIF, WebP or APNG plays (0 = forever), from the loop count its
    Pillow reader reports (see `Animation.loop`); 1 for a still."""
    loop = img.info.get("loop")
    if not isinstance(loop, int) or loop < 0:
        return 1
    if img.format == "GIF":
        return 0 if loop == 0 else min(loop + 1, _MAX_LOOP + 1)  # repeats after the first
    return loop


def _duration_ms(img: Image.Image) -> int:
    """The loaded frame's delay in whole ms (APNG's is a fraction of a second)."""
    value = img.info.get("duration", 0)
    return max(0, round(value)) if isinstance(value, (int, float)) else 0


def decode_animation(data: bytes, *, max_side: int, max_frames: int = MAX_FRAMES,
                     max_bytes: int = images.MAX_BYTES, max_pixels: int = images.MAX_PIXELS,
                     max_decoded_pixels: int = MAX_DECODED_PIXELS) -> Animation:
    """Untrusted bytes to at most `max_frames` upright RGB frames, evenly spaced, each at
    most `max_side` pixels on its long side (exactly `images.fitted_size` of the upright
    size `images.probe` reports), with their timing (see `sample_durations`) and loop.

    Reads animated GIF (GIF89a: disposal methods, transparency), WebP (WebP container
    specification: ANIM, ANMF, blending and disposal) and APNG (APNG specification:
    dispose and blend ops; a default image apart from the animation is skipped) through
    Pillow's readers; a still, or any other format `images.decode` reads, gives one frame
    as `images.decode` does, shown for 0 ms. Every frame is decoded in turn (each is
    composited onto the one before, and each one's delay counts); only the kept ones are
    held. The EXIF orientation of the file applies to every frame; transparency is
    composited on white. A GIF frame reaching past the logical screen is cropped to the
    size `probe` reports.

    Raises `ImageTooLarge` before decoding anything when the frames x their canvas in
    pixels would exceed `max_decoded_pixels` (or what `images.probe` refuses:
    `max_bytes` in bytes, `max_pixels` per frame, MAX_SOURCE_FRAMES frames);
    `CorruptImage` for a damaged frame anywhere; `UnsupportedImage` as `images.decode`.
    `ValueError` for a `max_side` or `max_frames` under 1.
    """
    if max_side < 1 or max_frames < 1:
        raise ValueError(f"max_side ({max_side}) and max_frames ({max_frames}) must be >= 1")
    with images.open_image(data, max_bytes=max_bytes, max_pixels=max_pixels) as img:
        layout = images.frame_layout(img, data)
        if layout.count > 1:
            _check_budget(layout, max_pixels, max_decoded_pixels)
            kept = sample_indices(layout.count, max_frames)
            return _decode_frames(img, layout, kept, max_side, max_pixels)
        fmt, plays = str(img.format), loop_plays(img)
    still = images.decode(data, max_side=max_side, max_bytes=max_bytes, max_pixels=max_pixels)
    return Animation((still,), (0,), plays, fmt, 1)


def _check_budget(layout: images.FrameLayout, max_pixels: int,
                  max_decoded_pixels: int) -> None:
    width, height = layout.canvas
    if width * height > max_pixels:
        raise ImageTooLarge(f"The animation's frames reach {width}x{height} pixels, over the "
                            f"limit of {max_pixels:,} ({max_pixels / 1e6:g} megapixels): send a "
                            "smaller one.")
    decoded = (layout.first + layout.count) * width * height
    if decoded > max_decoded_pixels:
        raise ImageTooLarge(
            f"The animation is {layout.count:,} frames of {width}x{height} pixels, "
            f"{decoded / 1e6:,.0f} megapixels in all; the limit is "
            f"{max_decoded_pixels / 1e6:,.0f}: send a shorter or smaller one.")


def _decode_frames(img: Image.Image, layout: images.FrameLayout, kept: Sequence[int],
                   max_side: int, max_pixels: int) -> Animation:
    size = img.size  # frame one's canvas, as `probe` reports it
    target = images.fitted_size(*size, max_side)  # as stored; the long side either way up
    keep = set(kept)
    frames: list[Image.Image] = []
    durations: list[int] = []
    with images.pillow_errors(CorruptImage(_DAMAGED), max_pixels):
        orientation = images.exif_orientation(img)
        # Every frame, to the last: the ones after the last kept one lend it their time.
        for index in range(layout.count):
            img.seek(layout.first + index)
            img.load()  # WebP sets the frame's duration only here
            durations.append(_duration_ms(img))
            if index not in keep:
                continue
            # A copy where converting would change the reader's own image: the palette
            # and transparency of GIF frame one are those the next frame is drawn on.
            source = img.copy() if img.mode in ("P", "PA") else img
            if source.size != size:  # a GIF frame grew the canvas: clip to the screen
                source = source.crop((0, 0, *size))
            frame = images.upright_rgb(source, target, orientation)
            frames.append(img.copy() if frame is img else frame)
        plays = loop_plays(img)
    return Animation(tuple(frames), tuple(sample_durations(durations, kept)), plays,
                     str(img.format), layout.count)


def encode_animation(frames: Sequence[Image.Image], durations_ms: Sequence[int], loop: int,
                     fmt: str = "GIF", *, quality: int = 85) -> bytes:
    """Frames of one size (any mode; drawn as RGB) to an animation with no metadata, each
    shown for its duration in ms, played `loop` times (0 = forever; see `Animation.loop`).

    "GIF" (GIF89a): one global colour table of at most 256 colours shared by every frame,
    quantised from all the frames together, each frame mapped to it without dithering (see
    `_gif_palette`); a NETSCAPE2.0 block for any `loop` but 1; delays rounded to GIF's
    10 ms units so that the running time stays within 5 ms of the sum. "WEBP" (WebP
    container specification: ANIM and ANMF chunks): lossy at `quality` (0-100). Pillow's
    writers store only what changed from frame to frame, and merge a frame identical to
    the one before into it (their durations summed). Delays under MIN_FRAME_MS are shown
    for 100 ms by browsers.

    `ValueError` for another `fmt`, no frames, frames of several sizes, a duration per
    frame missing, or a negative `loop`.
    """
    kind = fmt.upper()
    if kind not in ("GIF", "WEBP"):
        raise ValueError(f"cannot encode an animation as {fmt}")
    if loop < 0:
        raise ValueError(f"loop must be 0 (forever) or the times to play, not {loop}")
    if not frames or len(frames) != len(durations_ms):
        raise ValueError(f"{len(frames)} frames and {len(durations_ms)} durations")
    if len({frame.size for frame in frames}) != 1:
        raise ValueError("the frames are not all of one size")
    clean = []
    for frame in frames:
        rgb = frame.convert("RGB")  # a new image, even from RGB: its info is ours to clear
        rgb.info = {}
        clean.append(rgb)
    buf = io.BytesIO()
    if kind == "GIF":
        _encode_gif(buf, clean, durations_ms, loop)
    else:
        clean[0].save(buf, "WEBP", save_all=True, append_images=clean[1:],
                      duration=[min(max(0, d), _WEBP_MAX_DURATION_MS) for d in durations_ms],
                      loop=min(loop, _MAX_LOOP), quality=quality)
    return buf.getvalue()


def _gif_delays(durations_ms: Sequence[int]) -> list[int]:
    """Delays in ms, multiples of 10, whose running sums are the durations' rounded to
    10 ms: no drift however many frames."""
    ends = [0, *((end + 5) // 10 * 10 for end in accumulate(max(0, d) for d in durations_ms))]
    return [min(b - a, _GIF_MAX_DELAY_MS) for a, b in pairwise(ends)]


def _gif_palette(frames: Sequence[Image.Image]) -> Image.Image:
    """A palette image of at most 256 distinct colours for all of `frames` (RGB, one size).

    Quantised once from a mosaic of every frame (each subsampled so that the mosaic is at
    most PALETTE_SAMPLE_PIXELS; nearest-neighbour, so that the samples are real pixels,
    not averages), so that every frame maps a colour to the same index: a region that
    does not change between frames stays byte-identical, with no palette flicker. Frames
    are mapped to it without dithering. Measured on 48 frames of 512x288 (five pictures,
    a disc moving over each): with Floyd-Steinberg's error diffusion, 21-31% of the pixels
    that never change differ in some frame (the errors of the moving pixels crawl over
    them), every frame is stored whole (files 10x larger) and PSNR is 2 dB lower; without,
    none differ. Fast octree against median cut: PSNR within 0.7 dB either way, 2 dB
    better on a photo, and 10 ms to quantise the mosaic instead of 120 (maximum coverage
    was worst; libimagequant is not in every Pillow build).
    """
    width, height = frames[0].size
    scale = min(1.0, (PALETTE_SAMPLE_PIXELS / (len(frames) * width * height)) ** 0.5)
    w, h = max(1, round(width * scale)), max(1, round(height * scale))
    mosaic = Image.new("RGB", (w, h * len(frames)))
    for i, frame in enumerate(frames):
        mosaic.paste(frame.resize((w, h), Image.Resampling.NEAREST), (0, i * h))
    entries = mosaic.quantize(256, method=Image.Quantize.FASTOCTREE).getpalette("RGB") or []
    # Distinct: Pillow's GIF writer matches the frames' palette entries to the shared one
    # by colour, and would move a second entry of one colour to another index.
    colours = dict.fromkeys(tuple(entries[i:i + 3]) for i in range(0, len(entries), 3))
    palette = Image.new("P", (1, 1))
    palette.putpalette([c for colour in colours for c in colour] or [0, 0, 0], "RGB")
    return palette


def _encode_gif(buf: io.BytesIO, frames: Sequence[Image.Image], durations_ms: Sequence[int],
                loop: int) -> None:
    palette = _gif_palette(frames)
    mapped = [frame.quantize(palette=palette, dither=Image.Dither.NONE) for frame in frames]
    # `palette=`: one global colour table, no local ones, no per-frame palette reordering.
    # NETSCAPE2.0 counts the repeats after the first play; without the block, it plays once.
    extra = {} if loop == 1 else {"loop": min(loop - 1, _MAX_LOOP) if loop else 0}
    mapped[0].save(buf, "GIF", save_all=True, append_images=mapped[1:],
                   duration=_gif_delays(durations_ms), disposal=1, optimize=False,
                   palette=palette.getpalette("RGB"), **extra)


# -- the file a painting is written to ----------------------------------------------------

# What a painting can be written as, by the file's extension (Pillow's format names): a
# still in any of these (a GIF of one frame too), an animation only as GIF or WebP (an
# APNG would be a .png that most programs show as its first frame).
STILL_SUFFIXES = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".gif": "GIF"}
ANIMATION_SUFFIXES = {".gif": "GIF", ".webp": "WEBP"}


class OutputRefused(ValueError):
    """A file name that cannot hold the painting (`output_file`); the message is one line
    for the user."""


def painted_format(source_format: str) -> str:
    """What an animation is painted into unless asked otherwise: "WEBP" for a WebP photo
    (usually far smaller), "GIF" for the others (the format every program plays)."""
    return "WEBP" if source_format == "WEBP" else "GIF"


def painting_suffix(animation: str | None) -> str:
    """The extension a painting gets when none is asked for: ".png" for a still; for an
    animation (`animation`: the photo's format) ".webp" from a WebP, ".gif" otherwise."""
    return ".png" if animation is None else f".{painted_format(animation).lower()}"


def output_file(path: Path, animation: str | None) -> tuple[Path, str]:
    """Where a painting asked for as `path` is written, and in which format (Pillow's
    name): the format its extension says, and a name without one gets `painting_suffix`.
    `animation`: the photo's format when it is painted as an animation, None for a still.

    Raises `OutputRefused` for an extension that cannot hold the painting: one not in
    STILL_SUFFIXES, or for an animation not in ANIMATION_SUFFIXES.
    """
    suffix = path.suffix.lower()
    if not suffix:
        path = path.with_name(path.name + painting_suffix(animation))
        suffix = path.suffix
    formats = STILL_SUFFIXES if animation is None else ANIMATION_SUFFIXES
    fmt = formats.get(suffix)
    if fmt is None:
        *most, last = formats
        allowed = f"{', '.join(most)} or {last}"
        what = "a painting" if animation is None else "an animation"
        raise OutputRefused(f"cannot write {what} as {suffix}; use {allowed}")
    return path, fmt


def animation_format(painting: bytes) -> str | None:
    """Pillow's name of a painting's format ("GIF" or "WEBP") when it is an animation of
    more than one frame; None for a still. For paintings this program made (read without
    the limits put on uploads). Raises what `images.probe` raises for bytes that are not a
    picture."""
    info = images.probe(painting, max_bytes=len(painting), max_pixels=2**40)
    return info.format if info.frames > 1 else None


def convert_painting(painting: bytes, fmt: str) -> bytes:
    """A painting this program made (a still, or an animation: see `animation_format`) in
    `fmt` (Pillow's name: one of STILL_SUFFIXES' for a still, ANIMATION_SUFFIXES' for an
    animation), the bytes unchanged when it is in `fmt` already. An animation keeps every
    frame, its size, timing and loop count. Raises `ValueError` for a `fmt` that cannot
    hold the painting, and what `animation_format` raises."""
    info = images.probe(painting, max_bytes=len(painting), max_pixels=2**40)
    kind = fmt.upper()
    if info.format == kind:
        return painting
    side = max(info.width, info.height)
    if info.frames < 2:
        return images.encode(images.decode(painting, max_side=side, max_bytes=len(painting),
                                           max_pixels=info.width * info.height), kind)
    anim = decode_animation(painting, max_side=side, max_frames=info.frames,
                            max_bytes=len(painting), max_pixels=info.width * info.height,
                            max_decoded_pixels=2**62)
    return encode_animation(anim.frames, anim.durations_ms, anim.loop, kind)
