"""Animations in and out: sampling and timing, compositing against Pillow's own, limits
checked before decoding, damaged files, and encoding that keeps still regions still."""

from __future__ import annotations

import io
import itertools
import struct
import time
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from picture_checks import PixelsDecoded
from PIL import Image, ImageDraw

from stylizer import animation, image_structure, images
from stylizer.errors import CorruptImage, ImageTooLarge

# -- files made here ------------------------------------------------------------------------


def _save(frames: Sequence[Image.Image], fmt: str, **kw: Any) -> bytes:
    buf = io.BytesIO()
    frames[0].save(buf, fmt, save_all=len(frames) > 1, append_images=list(frames[1:]), **kw)
    return buf.getvalue()


def _frames(n: int, width: int = 48, height: int = 32) -> list[Image.Image]:
    """n RGB frames, each different: gradients shifted a little per frame."""
    y, x = np.mgrid[0:height, 0:width]
    return [Image.fromarray(np.stack([(x * 5 + i * 7) % 256, (y * 7 + i * 3) % 256,
                                      (x + y + i * 11) % 256], -1).astype(np.uint8), "RGB")
            for i in range(n)]


def _lzw(indices: Sequence[int], *, bad_code: bool = False) -> bytes:
    """GIF LZW data (minimum code size 8) of palette `indices`, uncompressed: a clear code
    every 128 pixels keeps every code 9 bits wide. `bad_code`: a code the decoder's table
    does not hold yet, where a picture's data should be (a damaged frame)."""
    clear, end = 256, 257
    codes = []
    for i, index in enumerate(indices):
        if i % 128 == 0:
            codes.append(clear)
        codes.append(index)
    if bad_code:
        codes[1:1] = [400]
    codes.append(end)
    bits = sum(code << (9 * i) for i, code in enumerate(codes))
    data = bits.to_bytes((9 * len(codes) + 7) // 8, "little")
    blocks = b"".join(bytes((len(data[i:i + 255]),)) + data[i:i + 255]
                      for i in range(0, len(data), 255))
    return b"\x08" + blocks + b"\x00"


def _gif(width: int, height: int, palette: Sequence[tuple[int, int, int]],
         frames: Sequence[dict[str, Any]], *, loop: int | None = 0) -> bytes:
    """A GIF89a written block by block: each frame a dict of box (left, top, width,
    height), pixels (palette indices, row by row), and optionally disposal (0-3),
    transparent (an index), delay (in 10 ms units) and bad_code (see `_lzw`)."""
    colours = list(palette) + [(0, 0, 0)] * (256 - len(palette))
    out = bytearray(b"GIF89a" + struct.pack("<HHBBB", width, height, 0xF7, 0, 0))
    out += bytes(c for colour in colours for c in colour)
    if loop is not None:
        out += b"!\xff\x0bNETSCAPE2.0\x03\x01" + struct.pack("<H", loop) + b"\x00"
    for frame in frames:
        transparent = frame.get("transparent")
        packed = (frame.get("disposal", 1) << 2) | (transparent is not None)
        out += b"!\xf9\x04" + struct.pack("<BHB", packed, frame.get("delay", 5),
                                          transparent or 0) + b"\x00"
        left, top, w, h = frame["box"]
        out += b"," + struct.pack("<HHHHB", left, top, w, h, 0)
        out += _lzw(frame["pixels"], bad_code=frame.get("bad_code", False))
    return bytes(out + b";")


def _tiny_gif(n: int, delay: int = 4) -> bytes:
    """A 1x1 GIF of n frames of 24 bytes each, the smallest a frame can be."""
    head = b"GIF89a" + struct.pack("<HHBBB", 1, 1, 0x80, 0, 0) + b"\0\0\0\xff\xff\xff"
    loop = b"!\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"
    frame = (b"!\xf9\x04\x04" + struct.pack("<H", delay) + b"\x00\x00"
             + b"," + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02\x44\x01\x00")
    return head + loop + frame * n + b";"


def _png_chunks(data: bytes) -> list[tuple[int, bytes]]:
    """(offset, type) of each chunk of a PNG."""
    found, pos = [], 8
    while pos + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        found.append((pos, kind))
        pos += 12 + length
    return found


def _patch_chunk(data: bytes, at: int, offset: int, new: bytes) -> bytes:
    """`data` with `new` written `offset` bytes into the data of the chunk at `at`, its
    CRC fixed."""
    out = bytearray(data)
    length = struct.unpack_from(">I", out, at)[0]
    out[at + 8 + offset:at + 8 + offset + len(new)] = new
    crc = zlib.crc32(bytes(out[at + 4:at + 8 + length]))
    out[at + 8 + length:at + 12 + length] = struct.pack(">I", crc)
    return bytes(out)


def _descriptors(data: bytes) -> list[int]:
    """Where the image descriptors of a well-formed GIF are."""
    found, pos = [], 13 + (3 << ((data[10] & 7) + 1) if data[10] & 0x80 else 0)
    while data[pos] != 0x3B:
        if data[pos] == 0x2C:
            packed = data[pos + 9]
            found.append(pos)
            pos += 10 + (3 << ((packed & 7) + 1) if packed & 0x80 else 0) + 1
        else:
            pos += 2  # an extension's introducer and label
        while data[pos]:
            pos += 1 + data[pos]
        pos += 1
    return found


def _local_colour_tables(data: bytes) -> list[bool]:
    """For each frame of a well-formed GIF: whether it has a palette of its own."""
    return [bool(data[at + 9] & 0x80) for at in _descriptors(data)]


def _pillow_frames(data: bytes) -> list[np.ndarray]:
    """Every frame as Pillow composites it, transparency on white."""
    out = []
    with Image.open(io.BytesIO(data)) as img:
        for i in range(getattr(img, "n_frames", 1)):
            img.seek(i)
            rgba = img.convert("RGBA")
            white = Image.new("RGB", rgba.size, (255, 255, 255))
            white.paste(rgba, mask=rgba.getchannel("A"))
            out.append(np.asarray(white))
    return out


def _decoded(data: bytes) -> list[np.ndarray]:
    return [np.asarray(f) for f in
            animation.decode_animation(data, max_side=4096, max_frames=1000).frames]




# -- sampling and timing -----------------------------------------------------------------------

@pytest.mark.parametrize(("n", "k"), [(1, 48), (47, 48), (48, 48), (49, 48), (100, 48),
                                      (5000, 48), (10, 3), (7, 1), (97, 10)])
def test_samples_are_evenly_spaced_from_frame_zero(n: int, k: int) -> None:
    kept = animation.sample_indices(n, k)
    assert len(kept) == min(n, k)
    assert kept[0] == 0
    assert all(b > a for a, b in itertools.pairwise(kept))
    assert kept[-1] < n
    gaps = {b - a for a, b in zip(kept, [*kept[1:], n], strict=True)}
    assert max(gaps) - min(gaps) <= 1  # even: every gap n // k or one more
    if n <= k:
        assert kept == list(range(n))


def test_sampling_edge_cases() -> None:
    assert animation.sample_indices(0, 48) == []
    with pytest.raises(ValueError, match="cannot sample"):
        animation.sample_indices(10, 0)
    with pytest.raises(ValueError, match="cannot sample"):
        animation.sample_indices(-1, 5)


def test_durations_keep_the_whole_time_and_follow_the_browsers_for_short_delays() -> None:
    assert animation.MIN_FRAME_MS == 20
    assert [animation.shown_ms(d) for d in (0, 10, 19, 20, 30)] == [100, 100, 100, 20, 30]
    durations = [0, 10, 20, 30, 40, 50, 60, 70, 80, 90]
    shown = [100, 100, 20, 30, 40, 50, 60, 70, 80, 90]
    kept = animation.sample_indices(len(durations), 4)  # 0, 2, 5, 7
    assert animation.sample_durations(durations, kept) == [200, 90, 110, 240]
    assert sum(animation.sample_durations(durations, kept)) == sum(shown)
    assert animation.sample_durations(durations, range(10)) == shown
    assert animation.sample_durations(durations, [0]) == [sum(shown)]
    assert animation.sample_durations([], []) == []
    for bad in ([1, 2], [0, 0], [0, 5, 3], [0, 10]):
        with pytest.raises(ValueError, match="not increasing"):
            animation.sample_durations(durations, bad)


def test_decoded_timing_is_sampled_from_the_file() -> None:
    delays = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]  # 10 ms units
    data = _save(_frames(10), "GIF", duration=[d * 10 for d in delays], loop=0)
    anim = animation.decode_animation(data, max_side=64, max_frames=4)
    assert anim.durations_ms == (200, 90, 110, 240)
    assert (anim.source_frames, anim.dropped, anim.format) == (10, 6, "GIF")


@pytest.mark.parametrize(("fmt", "kw", "plays"), [
    ("GIF", {"loop": 0}, 0), ("GIF", {}, 1), ("GIF", {"loop": 2}, 3),
    ("WEBP", {"loop": 0, "lossless": True}, 0), ("WEBP", {"loop": 3, "lossless": True}, 3),
    ("PNG", {"loop": 0}, 0), ("PNG", {"loop": 2}, 2),
])
def test_loop_counts_as_times_played(fmt: str, kw: dict[str, Any], plays: int) -> None:
    data = _save(_frames(3), fmt, duration=50, **kw)
    assert animation.decode_animation(data, max_side=64).loop == plays


# -- compositing --------------------------------------------------------------------------------

def test_gif_disposal_and_transparency_match_pillows_compositing() -> None:
    palette = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (250, 250, 0)]
    full = [(x + y) % 3 for y in range(12) for x in range(16)]
    frames = [
        # frame one: a transparent band over the canvas
        {"box": (0, 0, 16, 12), "pixels": [3 if y < 3 else p for y, p in
                                           ((i // 16, p) for i, p in enumerate(full))],
         "transparent": 3, "disposal": 1},
        # drawn over frame one, then restored to the background (disposal 2)
        {"box": (2, 2, 6, 5), "pixels": [1] * 30, "disposal": 2},
        # with holes (transparent) that show what disposal left
        {"box": (0, 0, 8, 8), "pixels": [3 if i % 3 == 0 else 2 for i in range(64)],
         "transparent": 3, "disposal": 1},
        {"box": (8, 4, 8, 8), "pixels": [0] * 64, "disposal": 3},  # restore to previous
        {"box": (10, 1, 4, 4), "pixels": [1, 3] * 8, "transparent": 3, "disposal": 1},
    ]
    data = _gif(16, 12, palette, frames)
    ours, pillows = _decoded(data), _pillow_frames(data)
    assert len(ours) == len(pillows) == 5
    for mine, theirs in zip(ours, pillows, strict=True):
        np.testing.assert_array_equal(mine, theirs)
    # The transparent band of frame one is white; disposal 2 cleared frame two's box.
    assert (ours[0][:3] == 255).all()
    assert (ours[1][2:7, 2:8] == (30, 200, 30)).all()
    assert not (ours[2][2:7, 2:8] == (30, 200, 30)).all(-1).any()


@pytest.mark.parametrize("kw", [
    {"disposal": [0, 1, 2, 0], "blend": [0, 1, 1, 0]},
    {"disposal": 2, "blend": 1},
])
def test_apng_dispose_and_blend_match_pillows_compositing(kw: dict[str, Any]) -> None:
    frames = []
    for i in range(4):
        img = Image.new("RGBA", (24, 16), (0, 0, 0, 0))
        ImageDraw.Draw(img).rectangle([i * 4, i * 2, i * 4 + 9, i * 2 + 7],
                                      fill=(60 * i, 255 - 60 * i, 90, 255 - 40 * i))
        frames.append(img)
    data = _save(frames, "PNG", duration=40, **kw)
    ours, pillows = _decoded(data), _pillow_frames(data)
    assert len(ours) == 4
    for mine, theirs in zip(ours, pillows, strict=True):
        assert np.abs(mine.astype(int) - theirs.astype(int)).max() <= 1  # alpha rounding


def test_animated_webp_and_apng_round_trip() -> None:
    frames = _frames(6)
    for fmt, kw in (("WEBP", {"lossless": True}), ("PNG", {})):
        data = _save(frames, fmt, duration=[40, 50, 60, 70, 80, 90], loop=0, **kw)
        anim = animation.decode_animation(data, max_side=64)
        assert (anim.format, anim.source_frames, anim.loop) == (fmt, 6, 0)
        assert anim.durations_ms == (40, 50, 60, 70, 80, 90)
        for mine, source in zip(anim.frames, frames, strict=True):
            assert mine.mode == "RGB"
            np.testing.assert_array_equal(np.asarray(mine), np.asarray(source))


def test_an_apng_default_image_is_not_a_frame() -> None:
    frames = _frames(4)
    data = _save(frames, "PNG", duration=40, default_image=True)
    assert images.probe(data).frames == 3
    anim = animation.decode_animation(data, max_side=64)
    assert anim.source_frames == 3
    for mine, source in zip(anim.frames, frames[1:], strict=True):
        np.testing.assert_array_equal(np.asarray(mine), np.asarray(source))


def test_frames_are_shrunk_to_the_size_decode_gives() -> None:
    frames = _frames(5, 300, 200)
    for fmt, kw in (("GIF", {}), ("WEBP", {"quality": 80}), ("PNG", {})):
        data = _save(frames, fmt, duration=40, **kw)
        anim = animation.decode_animation(data, max_side=64)
        still = images.decode(data, max_side=64)
        assert {f.size for f in anim.frames} == {still.size} == {(64, 43)}
        assert anim.frames[0].tobytes() == still.tobytes()  # frame one as `decode` has it


@pytest.mark.parametrize("fmt", ["WEBP", "PNG"])
def test_the_exif_orientation_turns_every_frame(fmt: str) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned by 90 degrees clockwise
    frames = _frames(3, 40, 20)
    kw = {"lossless": True} if fmt == "WEBP" else {}
    data = _save(frames, fmt, duration=40, exif=exif.tobytes(), **kw)
    assert images.probe(data).upright_size == (20, 40)
    anim = animation.decode_animation(data, max_side=64)
    for mine, source in zip(anim.frames, frames, strict=True):
        assert mine.size == (20, 40)
        turned = source.transpose(Image.Transpose.ROTATE_270)
        np.testing.assert_array_equal(np.asarray(mine), np.asarray(turned))


def test_a_gif_frame_past_the_screen_is_clipped() -> None:
    frames = [{"box": (0, 0, 8, 8), "pixels": [0] * 64},
              {"box": (4, 4, 8, 8), "pixels": [1] * 64}]  # reaches 12x12
    data = _gif(8, 8, [(255, 0, 0), (0, 0, 255)], frames)
    assert images.probe(data).upright_size == (8, 8)
    anim = animation.decode_animation(data, max_side=64)
    assert [f.size for f in anim.frames] == [(8, 8), (8, 8)]
    assert np.asarray(anim.frames[1])[7, 7].tolist() == [0, 0, 255]


def test_a_still_is_one_frame_as_decode_gives_it() -> None:
    for fmt in ("JPEG", "PNG", "GIF", "WEBP", "BMP"):
        data = _save(_frames(1, 80, 60), fmt)
        anim = animation.decode_animation(data, max_side=40)
        assert (len(anim.frames), anim.source_frames, anim.dropped) == (1, 1, 0)
        assert anim.durations_ms == (0,)
        assert anim.frames[0].tobytes() == images.decode(data, max_side=40).tobytes()
        assert animation.frame_count(data) == 1


def test_probe_counts_frames_without_decoding_them(no_pixel_decoding: list[str]) -> None:
    frames = _frames(7)
    assert images.probe(_save(frames, "GIF", duration=40)).frames == 7
    assert images.probe(_save(frames, "PNG", duration=40)).frames == 7
    assert images.probe(_save(frames, "WEBP", duration=40, lossless=True)).frames == 7
    assert images.probe(_save(frames[:1], "PNG")).frames == 1
    assert images.probe(_save(frames[:1], "JPEG")).frames == 1
    assert images.probe(_save(frames[:2], "MPO")).frames == 1  # a JPEG's second picture
    assert animation.frame_count(_tiny_gif(500)) == 500
    assert no_pixel_decoding == []


# -- GIF frame counting -------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["plain", "comments", "application", "stray", "no trailer",
                                  "empty comment", "cut"])
def test_gif_frames_are_counted_as_pillow_counts_them(name: str) -> None:
    data = _save(_frames(5), "GIF", duration=40, loop=0, comment=b"a comment")
    at, third = _descriptors(data)[1:3]
    made = {
        "plain": data,
        "comments": data[:at] + b"!\xfe\x05hello\x03abc\x00" + data[at:],
        "application": data[:at] + b"!\xff\x0bXMP DataXMP\x02ab\x00" + data[at:],
        "stray": data[:at] + b"\x00\x07\x00" + data[at:],
        "no trailer": data[:-1],
        "empty comment": data[:at] + b"!\xfe\x00" + data[at:],
        "cut": data[:third - 30],  # in the second frame's picture
    }[name]
    with Image.open(io.BytesIO(made)) as img:
        theirs = getattr(img, "n_frames", 1)
    assert image_structure.count_gif_frames(made).count == theirs


def test_gif_canvas_grows_with_its_frames() -> None:
    frames = [{"box": (0, 0, 8, 8), "pixels": [0] * 64},
              {"box": (30, 2, 4, 20), "pixels": [1] * 80}]
    found = image_structure.count_gif_frames(_gif(8, 8, [(0, 0, 0), (9, 9, 9)], frames))
    assert (found.count, found.width, found.height) == (2, 34, 22)


# -- limits --------------------------------------------------------------------------------

def test_frames_times_pixels_over_the_budget_are_refused_before_decoding(
        no_pixel_decoding: list[str]) -> None:
    # Frames of 4000x3000 whose LZW data is one pixel each: a tiny file, one frame more
    # than the budget takes.
    n = animation.MAX_DECODED_PIXELS // 12_000_000 + 1
    frames = [{"box": (0, 0, 4000, 3000), "pixels": [i % 2]} for i in range(n)]
    data = _gif(4000, 3000, [(0, 0, 0), (255, 255, 255)], frames)
    assert len(data) < 3000
    started = time.perf_counter()
    limit = f"{animation.MAX_DECODED_PIXELS / 1e6:g}"
    with pytest.raises(ImageTooLarge, match=rf"{n} frames of 4000x3000 .* {12 * n} megapixels"
                                            rf" .* {limit}"):
        animation.decode_animation(data, max_side=512)
    assert time.perf_counter() - started < 0.5
    assert no_pixel_decoding == []
    # The same file under a budget it fits passes the check (and reaches the decoding).
    with pytest.raises(PixelsDecoded):
        animation.decode_animation(data, max_side=512, max_decoded_pixels=12_000_000 * n)


def test_a_gif_frame_growing_the_canvas_past_the_pixel_cap_is_refused(
        no_pixel_decoding: list[str]) -> None:
    frames = [{"box": (0, 0, 8, 8), "pixels": [0]}, {"box": (0, 0, 65535, 65535), "pixels": [1]}]
    data = _gif(8, 8, [(0, 0, 0), (255, 255, 255)], frames)
    with pytest.raises(ImageTooLarge, match="65535x65535"):
        animation.decode_animation(data, max_side=512)
    assert no_pixel_decoding == []


def test_thousands_of_tiny_frames_are_sampled_in_bounded_time() -> None:
    data = _tiny_gif(5000, delay=4)
    started = time.perf_counter()
    anim = animation.decode_animation(data, max_side=64)
    took = time.perf_counter() - started
    assert (len(anim.frames), anim.source_frames, anim.dropped) == (48, 5000, 4952)
    assert sum(anim.durations_ms) == 5000 * 40
    assert took < 3.0  # 0.1 s on an idle 2-core CPU


def test_a_frame_flood_is_refused_fast() -> None:
    data = _tiny_gif(1_000_000)  # 23 MB of 1x1 frames
    assert len(data) < images.MAX_BYTES
    for call in (images.probe, animation.frame_count,
                 lambda d: animation.decode_animation(d, max_side=64)):
        started = time.perf_counter()
        with pytest.raises(ImageTooLarge, match="more than 10,000 frames"):
            call(data)
        assert time.perf_counter() - started < 0.5  # 15 ms: the walk stops at 10,001
    animation.frame_count(_tiny_gif(animation.MAX_SOURCE_FRAMES))


def test_a_gif_of_countless_data_blocks_is_refused_fast() -> None:
    one_pixel = b"," + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02\x44\x01"
    head = b"GIF89a" + struct.pack("<HHBBB", 1, 1, 0x80, 0, 0) + b"\0\0\0\xff\xff\xff"
    data = head + one_pixel + b"\x01\x00" * 12_000_000 + b"\x00;"
    started = time.perf_counter()
    with pytest.raises(ImageTooLarge, match="250,000 blocks"):
        animation.frame_count(data)
    assert time.perf_counter() - started < 0.5
    limit = image_structure.MAX_GIF_BLOCKS
    at_limit = head + one_pixel + b"\x01\x00" * (limit - 2) + b"\x00;"  # with the descriptor
    assert image_structure.count_gif_frames(at_limit).count == 1
    with pytest.raises(ImageTooLarge):
        image_structure.count_gif_frames(at_limit[:-2] + b"\x01\x00\x00;")


def test_an_apng_claiming_too_many_frames_is_refused() -> None:
    data = _save(_frames(2), "PNG", duration=40)
    actl = next(at for at, kind in _png_chunks(data) if kind == b"acTL")
    claims = _patch_chunk(data, actl, 0, struct.pack(">I", 20_000))
    with pytest.raises(ImageTooLarge, match="20,000 frames"):
        images.probe(claims)
    with pytest.raises(ImageTooLarge, match="20,000 frames"):
        animation.decode_animation(claims, max_side=64)


# -- damaged files --------------------------------------------------------------------------

def test_a_damaged_gif_frame_in_the_middle_is_corrupt() -> None:
    frames = [{"box": (0, 0, 8, 8), "pixels": [i % 2] * 64, "bad_code": i == 3}
              for i in range(6)]
    data = _gif(8, 8, [(0, 0, 0), (255, 255, 255)], frames)
    images.decode(data)  # frame one is fine
    with pytest.raises(CorruptImage, match="animation is damaged"):
        animation.decode_animation(data, max_side=64)


def test_a_damaged_apng_frame_in_the_middle_is_corrupt() -> None:
    data = _save(_frames(6), "PNG", duration=40)
    fdat = [at for at, kind in _png_chunks(data) if kind == b"fdAT"][2]
    broken = _patch_chunk(data, fdat, 4, b"\xff" * 8)  # after its sequence number
    images.decode(broken)
    with pytest.raises(CorruptImage):
        animation.decode_animation(broken, max_side=64)


@pytest.mark.parametrize("fmt", ["GIF", "PNG", "WEBP"])
def test_a_truncated_animation_is_corrupt(fmt: str) -> None:
    rng = np.random.default_rng(3)
    frames = [Image.fromarray(rng.integers(0, 256, (32, 48, 3), dtype=np.uint8))
              for _ in range(6)]
    data = _save(frames, fmt, duration=40, **({"lossless": True} if fmt == "WEBP" else {}))
    for fraction in (0.5, 0.7, 0.9):
        with pytest.raises(CorruptImage):
            animation.decode_animation(data[:int(len(data) * fraction)], max_side=64)


# -- encoding -------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
@pytest.mark.parametrize("loop", [0, 1, 3])
def test_encoded_animations_round_trip(fmt: str, loop: int) -> None:
    # (Frames of every colour: 256 of them in a GIF are ~40 levels apart on each channel.)
    frames = _frames(5, 64, 40)
    durations = [40, 50, 60, 100, 250]
    data = animation.encode_animation(frames, durations, loop, fmt)
    assert images.probe(data).format == fmt
    anim = animation.decode_animation(data, max_side=64)
    assert (anim.source_frames, anim.loop) == (5, loop)
    assert anim.durations_ms == tuple(durations)
    for mine, source in zip(anim.frames, frames, strict=True):
        error = np.abs(np.asarray(mine).astype(int) - np.asarray(source).astype(int))
        assert error.mean() < (10 if fmt == "GIF" else 8)


def test_gif_delays_are_rounded_without_drift() -> None:
    data = animation.encode_animation(_frames(6), [33, 33, 34, 33, 33, 34], 0, "GIF")
    anim = animation.decode_animation(data, max_side=64)
    assert anim.durations_ms == (30, 40, 30, 30, 40, 30)


def test_gif_frames_share_one_palette_and_still_regions_stay_identical() -> None:
    rng = np.random.default_rng(5)
    background = Image.fromarray(rng.integers(0, 256, (72, 96, 3), dtype=np.uint8))
    frames = []
    for i in range(12):
        frame = background.copy()
        ImageDraw.Draw(frame).ellipse([4 + i * 5, 20, 24 + i * 5, 40], fill=(250, 90, 20))
        frames.append(frame)
    still = np.ones((72, 96), bool)
    still[20:41, 4:80] = False  # everywhere the disc goes
    data = animation.encode_animation(frames, [50] * 12, 0, "GIF")
    assert data[10] & 0x80  # a global colour table
    decoded = _pillow_frames(data)
    assert len(decoded) == 12
    assert _local_colour_tables(data) == [False] * 12  # ... and no local ones
    for pixels in decoded[1:]:
        np.testing.assert_array_equal(pixels[still], decoded[0][still])
    assert all(not (pixels[~still] == decoded[0][~still]).all() for pixels in decoded[1:])


def test_encoded_animations_carry_no_metadata() -> None:
    frames = _frames(3)
    exif = Image.Exif()
    exif[0x0112] = 6
    for frame in frames:
        frame.info.update({"exif": exif.tobytes(), "icc_profile": b"icc" * 40,
                           "comment": b"secret"})
    for fmt in ("GIF", "WEBP"):
        data = animation.encode_animation(frames, [40] * 3, 0, fmt)
        for marker in (b"Exif", b"EXIF", b"ICCP", b"icc", b"secret", b"XMP"):
            assert marker not in data
        with Image.open(io.BytesIO(data)) as img:
            assert not {"exif", "icc_profile", "comment"} & set(img.info)


def test_encode_refuses_what_it_cannot_write() -> None:
    frames = _frames(2)
    with pytest.raises(ValueError, match="cannot encode"):
        animation.encode_animation(frames, [40, 40], 0, "PNG")
    with pytest.raises(ValueError, match="durations"):
        animation.encode_animation(frames, [40], 0)
    with pytest.raises(ValueError, match="one size"):
        animation.encode_animation([frames[0], _frames(1, 10, 10)[0]], [40, 40], 0)
    with pytest.raises(ValueError, match="durations"):
        animation.encode_animation([], [], 0)
    with pytest.raises(ValueError, match="loop"):
        animation.encode_animation(frames, [40, 40], -1)


def test_identical_frames_are_merged_with_their_time() -> None:
    red, blue = Image.new("RGB", (8, 8), (255, 0, 0)), Image.new("RGB", (8, 8), (0, 0, 255))
    for fmt in ("GIF", "WEBP"):
        data = animation.encode_animation([red, red, blue], [40, 50, 60], 0, fmt)
        anim = animation.decode_animation(data, max_side=8)
        assert (anim.source_frames, anim.durations_ms) == (2, (90, 60))


# -- the file a painting is written to --------------------------------------------------------

@pytest.mark.parametrize(("asked", "source", "written", "fmt"), [
    ("out.png", None, "out.png", "PNG"),
    ("out.JPG", None, "out.JPG", "JPEG"),
    ("out.gif", None, "out.gif", "GIF"),  # a still as a one-frame GIF
    ("out.webp", None, "out.webp", "WEBP"),
    ("dir/out", None, "dir/out.png", "PNG"),  # no extension: the painting's own
    ("out.gif", "GIF", "out.gif", "GIF"),
    ("out.webp", "GIF", "out.webp", "WEBP"),  # the extension asked for, not the photo's
    ("out.gif", "WEBP", "out.gif", "GIF"),
    ("out", "GIF", "out.gif", "GIF"),
    ("out", "PNG", "out.gif", "GIF"),  # an APNG is painted into a GIF
    ("out", "WEBP", "out.webp", "WEBP"),
])
def test_the_output_is_in_the_format_its_name_says(asked: str, source: str | None,
                                                   written: str, fmt: str) -> None:
    assert animation.output_file(Path(asked), source) == (Path(written), fmt)


@pytest.mark.parametrize(("asked", "source", "message"), [
    ("out.png", "GIF", "cannot write an animation as .png; use .gif or .webp"),
    ("out.jpg", "WEBP", "cannot write an animation as .jpg; use .gif or .webp"),
    ("out.bmp", None, "cannot write a painting as .bmp; use .png, .jpg, .jpeg, .webp or .gif"),
    ("out.final", None, "cannot write a painting as .final;"),
])
def test_an_output_that_cannot_hold_the_painting_is_refused(asked: str, source: str | None,
                                                            message: str) -> None:
    with pytest.raises(animation.OutputRefused) as refused:
        animation.output_file(Path(asked), source)
    assert str(refused.value).startswith(message)


def test_a_painting_is_converted_to_the_format_asked_with_its_timing() -> None:
    gif = animation.encode_animation(_frames(4, 40, 24), [40, 60, 80, 100], 3, "GIF")
    assert animation.animation_format(gif) == "GIF"
    assert animation.convert_painting(gif, "GIF") is gif  # already so: untouched
    webp = animation.convert_painting(gif, "WEBP")
    assert animation.animation_format(webp) == "WEBP"
    anim = animation.decode_animation(webp, max_side=64)
    assert (anim.frames[0].size, anim.durations_ms, anim.loop) == (
        (40, 24), (40, 60, 80, 100), 3)
    back = animation.decode_animation(animation.convert_painting(webp, "GIF"), max_side=64)
    assert (back.durations_ms, back.loop) == ((40, 60, 80, 100), 3)
    png = images.encode(_frames(1, 40, 24)[0], "PNG")
    assert animation.animation_format(png) is None
    for fmt in ("GIF", "JPEG", "WEBP"):
        still = animation.convert_painting(png, fmt)
        assert images.probe(still) == images.ImageInfo(fmt, 40, 24, False, 1)
    with pytest.raises(ValueError, match="cannot encode an animation as PNG"):
        animation.convert_painting(gif, "PNG")
