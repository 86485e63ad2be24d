"""A seeded mutation fuzzer over the decoders: whatever the bytes, `probe`, `decode` and
`animation.decode_animation` give a picture (or frames) or a typed error, in bounded time
and memory.

The seeds are small files from each allowed format's encoder (several modes each) and
the known faults of `image_faults.py`; each input is a seed with one to three mutations:
bit flips, special bytes, truncation, a chunk or segment duplicated, a header's width or
height edited (the checksum fixed where there is one), a span deleted, or two files
spliced. The campaign runs in a child process, so that its peak memory is its own and a
crash in a C decoder leaves the input that caused it in the test's temporary folder:

    python tests/stylizer/test_image_fuzz.py --seed 7 --count 20000 --out /tmp/fuzz
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import image_faults as faults
import numpy as np
from PIL import Image, PngImagePlugin

from stylizer import animation, images
from stylizer.errors import CorruptImage, ImageTooLarge, UnsupportedImage

SEED = 20_261_201
COUNT = 4000  # 5-10 s of CPU; under a minute on a loaded 2-core CPU
MAX_SIDE = 64  # decode as a small job would: the draft and reduce paths run too
MAX_FRAMES = 4  # an animation's frames kept: some are dropped, their time lent
TYPED = (CorruptImage, UnsupportedImage, ImageTooLarge)
# Generous: a call takes milliseconds, and a 40-megapixel header edit up to a few hundred;
# these catch the seconds-long stalls that the metadata floods took.
MAX_CALL_S = 2.5
MAX_PEAK_MB = 768


# -- seeds ---------------------------------------------------------------------------------

def _save(img: Image.Image, fmt: str, **kw: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def seeds() -> dict[str, bytes]:
    """Small files of every allowed format, in the modes and variants people send."""
    y, x = np.mgrid[0:24, 0:32]
    rgb = Image.fromarray(np.stack([x * 8, y * 10, (x + y) * 4], -1).astype(np.uint8), "RGB")
    rgba = rgb.copy()
    rgba.putalpha(Image.fromarray((x * 8).astype(np.uint8), "L"))
    grey = rgb.convert("L")
    pal = rgb.quantize(16)
    exif = Image.Exif()
    exif[0x0112] = 6
    text = Image.new("RGB", (8, 8))
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "hello")
    info.add_itxt("XML:com.adobe.xmp", '<x tiff:Orientation="3"/>', zip=True)
    frames = [rgb, rgb.transpose(Image.Transpose.ROTATE_180)]
    moving = [rgba.rotate(i * 40) for i in range(6)]  # transparent corners
    out = {
        "jpeg": _save(rgb, "JPEG"),
        "jpeg-progressive": _save(rgb, "JPEG", progressive=True),
        "jpeg-grey": _save(grey, "JPEG"),
        "jpeg-cmyk": _save(rgb.convert("CMYK"), "JPEG"),
        "jpeg-exif": _save(rgb, "JPEG", exif=exif, icc_profile=b"icc" * 50),
        "mpo": _save(rgb, "MPO", save_all=True, append_images=[frames[1]]),
        "png": _save(rgb, "PNG"),
        "png-rgba": _save(rgba, "PNG"),
        "png-palette-alpha": _save(pal, "PNG", transparency=3),
        "png-16": _save(Image.fromarray((x * y * 80).astype(np.uint16)), "PNG"),
        "png-la": _save(rgba.convert("LA"), "PNG"),
        "png-1bit": _save(grey.convert("1"), "PNG"),
        "png-metadata": _save(text, "PNG", pnginfo=info, exif=exif, icc_profile=b"i" * 300),
        "apng": _save(frames[0], "PNG", save_all=True, append_images=frames[1:]),
        "gif": _save(pal, "GIF"),
        "gif-animated": _save(frames[0], "GIF", save_all=True, append_images=frames[1:],
                              loop=0, comment=b"made by a test"),
        "gif-transparent": _save(pal, "GIF", transparency=2),
        "gif-disposal": _save(moving[0], "GIF", save_all=True, append_images=moving[1:],
                              disposal=[1, 2, 3, 1, 2, 1], duration=[0, 10, 30, 40, 50, 60]),
        "apng-dispose-blend": _save(moving[0], "PNG", save_all=True, append_images=moving[1:],
                                    disposal=[0, 1, 2, 0, 1, 2], blend=[0, 1, 1, 0, 1, 0],
                                    duration=40, loop=2),
        "bmp": _save(rgb, "BMP"),
        "bmp-palette": _save(pal, "BMP"),
        "bmp-1bit": _save(grey.convert("1"), "BMP"),
        "bmp-rle8": faults.bmp_rle(24, 8),
        "bmp-rle4": faults.bmp_rle(24, 4),
        "webp": _save(rgb, "WEBP", quality=50),
        "webp-lossless-alpha": _save(rgba, "WEBP", lossless=True),
        "webp-animated": _save(frames[0], "WEBP", save_all=True, append_images=frames[1:]),
        "webp-animated-alpha": _save(moving[0], "WEBP", save_all=True, append_images=moving[1:],
                                     duration=[20, 40, 60, 80, 100, 120], quality=40),
        "webp-exif": _save(rgb, "WEBP", exif=exif),
    }
    # The known faults, at sizes that keep each input small.
    out.update({
        "dds": faults.dds_unknown_fourcc(),
        "exif-segments": faults.jpeg_exif_flood(12, 200),
        "text-chunks": faults.png_text_flood(80),
        "fill-bytes": faults.jpeg_fill_flood(9000),
        "gif-junk": faults.gif_junk_flood(9000),
    })
    return out


# -- mutations -----------------------------------------------------------------------------

def _png_chunks(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of each chunk after the signature."""
    spans, pos = [], 8
    while pos + 12 <= len(data):
        length = struct.unpack_from(">I", data, pos)[0]
        spans.append((pos, min(len(data), pos + 12 + length)))
        pos += 12 + length
    return spans


def _jpeg_segments(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of each length-carrying segment before the first scan."""
    spans, pos = [], 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        length = struct.unpack_from(">H", data, pos + 2)[0]
        spans.append((pos, min(len(data), pos + 2 + length)))
        if marker == 0xDA:
            break
        pos += 2 + length
    return spans


def _dimension_offsets(data: bytes) -> list[tuple[int, str]]:
    """Where this file keeps its width and height: (offset, struct format)."""
    if data.startswith(b"\x89PNG"):
        return [(16, ">I"), (20, ">I")]
    if data.startswith(b"GIF8"):
        found = [(6, "<H"), (8, "<H")]
        at = data.find(b",", 13)
        if at > 0:
            found += [(at + 5, "<H"), (at + 7, "<H"), (at + 1, "<H")]
        return found
    if data.startswith(b"BM"):
        return [(18, "<i"), (22, "<i")]
    if data.startswith(b"RIFF"):
        return [(24, "<H"), (26, "<H"), (21, "<I"), (26, "<H"), (28, "<H")]
    if data.startswith(b"\xff\xd8"):
        return [(start + 5, ">H") for start, _ in _jpeg_segments(data)
                if 0xC0 <= data[start + 1] <= 0xCF and data[start + 1] not in (0xC4, 0xC8, 0xCC)
                ] + [(start + 7, ">H") for start, _ in _jpeg_segments(data)
                     if data[start + 1] in (0xC0, 0xC1, 0xC2)]
    if data.startswith(b"DDS "):
        return [(12, "<I"), (16, "<I")]
    return []


def _fix_png_crcs(data: bytearray) -> None:
    for start, end in _png_chunks(bytes(data)):
        if end - start >= 12 and end == start + 12 + struct.unpack_from(">I", data, start)[0]:
            crc = zlib.crc32(bytes(data[start + 4:end - 4])) & 0xFFFFFFFF
            data[end - 4:end] = struct.pack(">I", crc)


def _edit_dimension(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    spots = _dimension_offsets(data)
    if not spots:
        return _flip_bits(data, rng)
    offset, fmt = rng.choice(spots)
    size = struct.calcsize(fmt)
    if offset + size > len(data):
        return _flip_bits(data, rng)
    hi = 2 ** (8 * size - (1 if fmt[-1].islower() and fmt[-1] != "b" else 0)) - 1
    value = rng.choice([0, 1, 2, 255, 256, 6300, 6400, 16383, 16384, 65535, hi,
                        rng.randrange(hi + 1)])
    if fmt[-1] == "i" and rng.random() < 0.3:
        value = -rng.choice([1, 24, 6300])  # BMP: negative heights are top-down
    value = min(value, hi)
    out = bytearray(data)
    out[offset:offset + size] = struct.pack(fmt, value)
    if out.startswith(b"\x89PNG"):
        _fix_png_crcs(out)
    return f"dimension@{offset}={value}", bytes(out)


def _flip_bits(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    out = bytearray(data)
    n = rng.randint(1, 8)
    for _ in range(n):
        out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
    return f"flip{n}", bytes(out)


def _special_bytes(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    out = bytearray(data)
    # Mostly in the header, where the parsers branch.
    limit = min(len(out), 512) if rng.random() < 0.7 else len(out)
    for _ in range(rng.randint(1, 4)):
        out[rng.randrange(limit)] = rng.choice([0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF])
    return "special", bytes(out)


def _truncate(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    cut = rng.randint(1, max(1, len(data) - 1))
    return f"truncate@{cut}", data[:cut]


def _duplicate(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    spans = (_png_chunks(data) if data.startswith(b"\x89PNG")
             else _jpeg_segments(data) if data.startswith(b"\xff\xd8") else [])
    if spans and rng.random() < 0.8:
        start, end = rng.choice(spans)
        at = rng.choice(spans)[rng.randrange(2)]
    else:
        start = rng.randrange(len(data))
        end = min(len(data), start + rng.randint(1, 64))
        at = rng.randrange(len(data) + 1)
    times = rng.choice([1, 2, 5, 50, 500])
    return f"duplicate[{start}:{end}]x{times}@{at}", data[:at] + data[start:end] * times + data[at:]


def _delete(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    start = rng.randrange(len(data))
    end = min(len(data), start + rng.randint(1, 64))
    return f"delete[{start}:{end}]", data[:start] + data[end:]


MUTATIONS: list[Callable[[bytes, random.Random], tuple[str, bytes]]] = [
    _flip_bits, _special_bytes, _truncate, _duplicate, _edit_dimension, _delete]


def inputs(seed: int, count: int) -> list[tuple[str, bytes]]:
    """`count` inputs: every seed as it is, then mutants."""
    rng = random.Random(seed)
    base = seeds()
    made = [(f"{name} as made", data) for name, data in base.items()]
    names = sorted(base)
    while len(made) < count:
        name = rng.choice(names)
        data = base[name]
        steps = []
        for _ in range(rng.choice([1, 1, 1, 2, 3])):
            if rng.random() < 0.05:  # splice: this file's head, another's tail
                other = base[rng.choice(names)]
                cut = rng.randint(0, len(data))
                data = data[:cut] + other[rng.randrange(len(other)):]
                steps.append("splice")
            else:
                step, data = rng.choice(MUTATIONS)(data, rng)
                steps.append(step)
            if not data:
                data = b"\0"
        made.append((f"{name} {' '.join(steps)}", data))
    return made


# -- the campaign (child process) -------------------------------------------------------------

def _peak_mb() -> float:
    """This process's peak resident memory (VmHWM: `ru_maxrss` is inherited across fork
    and exec on Linux)."""
    import resource

    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status
                        if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def campaign(seed: int, count: int, out: Path) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    current = out / "current-input"
    failures: list[str] = []
    slowest = (0.0, "")
    outcomes: dict[str, int] = {}
    animation_outcomes: dict[str, int] = {}
    started = time.perf_counter()
    for index, (label, data) in enumerate(inputs(seed, count)):
        current.write_bytes(data)  # left behind if a C decoder takes the process down
        results: list[BaseException | object] = []
        for name, call in (("probe", images.probe),
                           ("decode", lambda d: images.decode(d, max_side=MAX_SIDE)),
                           ("decode_animation", lambda d: animation.decode_animation(
                               d, max_side=MAX_SIDE, max_frames=MAX_FRAMES))):
            t0 = time.perf_counter()
            try:
                result: BaseException | object = call(data)
            except TYPED as exc:
                result = exc
            except Exception as exc:  # noqa: BLE001 - exactly what the fuzzer looks for
                result = exc
                failures.append(f"#{index} {label}: {name} raised {exc!r}")
                (out / f"failure-{index}.bin").write_bytes(data)
            took = time.perf_counter() - t0
            if took > slowest[0]:
                slowest = (took, f"#{index} {label} {name}")
            if took > MAX_CALL_S:
                failures.append(f"#{index} {label}: {name} took {took:.2f} s")
            results.append(result)
        probed, decoded, animated = results
        key = " / ".join("picture" if isinstance(r, Image.Image) else type(r).__name__
                         for r in results[:2])
        outcomes[key] = outcomes.get(key, 0) + 1
        kind = type(animated).__name__
        animation_outcomes[kind] = animation_outcomes.get(kind, 0) + 1
        failures += _animation_failures(f"#{index} {label}", probed, decoded, animated)
        if isinstance(probed, images.ImageInfo) and isinstance(decoded, Image.Image):
            want = images.fitted_size(*probed.upright_size, MAX_SIDE)
            if decoded.size != want or decoded.mode != "RGB":
                failures.append(f"#{index} {label}: decoded {decoded.size} {decoded.mode}, "
                                f"probe says {want}")
        elif isinstance(probed, TYPED) and type(decoded) is not type(probed):
            failures.append(f"#{index} {label}: probe raised {probed!r} but decode gave "
                            f"{decoded!r}")
    current.unlink()
    return {"inputs": count, "seconds": time.perf_counter() - started, "peak_mb": _peak_mb(),
            "slowest_s": slowest[0], "slowest": slowest[1], "failures": failures,
            "outcomes": outcomes, "animation_outcomes": animation_outcomes}


def _animation_failures(label: str, probed: object, decoded: object,
                        animated: object) -> list[str]:
    """What is wrong with `decode_animation`'s result, given `probe`'s and `decode`'s: it
    opens a file as they do, so it refuses what they refuse (a damaged later frame may
    make it refuse more), and its frames are the size `decode` gives."""
    if isinstance(probed, TYPED):
        if type(animated) is not type(probed):
            return [f"{label}: probe raised {probed!r} but decode_animation gave {animated!r}"]
        return []
    if not isinstance(probed, images.ImageInfo) or not isinstance(animated,
                                                                  animation.Animation):
        return []
    want = images.fitted_size(*probed.upright_size, MAX_SIDE)
    frames = animated.frames
    if not 1 <= len(frames) <= MAX_FRAMES or animated.source_frames != probed.frames \
            or len(animated.durations_ms) != len(frames) \
            or any(f.size != want or f.mode != "RGB" for f in frames):
        return [f"{label}: decode_animation gave {len(frames)} frames of "
                f"{sorted({(f.size, f.mode) for f in frames})} of {animated.source_frames}; "
                f"probe says {want}, {probed.frames} frames"]
    if isinstance(decoded, Image.Image) and probed.frames == 1 \
            and frames[0].tobytes() != decoded.tobytes():
        return [f"{label}: decode_animation's still differs from decode's"]
    return []


def main() -> None:
    parser = argparse.ArgumentParser(description="Fuzz stylizer.images.probe and decode.")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--count", type=int, default=COUNT)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    report = campaign(args.seed, args.count, args.out)
    (args.out / "report.json").write_text(json.dumps(report, indent=1))
    summary = {k: v for k, v in report.items() if k != "failures"}
    sys.stdout.write(json.dumps(summary, indent=1) + "\n")
    sys.stdout.write("\n".join(report["failures"][:50]) or "no failures")
    sys.stdout.write("\n")


# -- the test --------------------------------------------------------------------------------

def test_mutated_files_give_a_picture_or_a_typed_error_in_bounded_time_and_memory(
        tmp_path: Path) -> None:
    here = Path(__file__).resolve().parent
    path = os.pathsep.join(filter(None, (str(here.parents[1]), os.environ.get("PYTHONPATH"))))
    proc = subprocess.run([sys.executable, str(here / "test_image_fuzz.py"), "--seed", str(SEED),
                           "--count", str(COUNT), "--out", str(tmp_path)], capture_output=True,
                          text=True, timeout=240, check=False, cwd=here,
                          env=os.environ | {"PYTHONPATH": path})
    leftover = tmp_path / "current-input"
    assert proc.returncode == 0, (
        f"the fuzzing process died ({proc.returncode}); its last input is {leftover}\n"
        f"{proc.stderr[-3000:]}")
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["failures"] == [], f"inputs kept in {tmp_path}"
    assert report["peak_mb"] < MAX_PEAK_MB
    # Every kind of outcome turns up: the mutants reach past the parsers' first checks.
    assert report["outcomes"].get("ImageInfo / picture", 0) > COUNT // 10
    assert report["animation_outcomes"].get("Animation", 0) > COUNT // 10


def test_the_mutants_are_the_same_for_a_seed() -> None:
    first, again = inputs(3, 200), inputs(3, 200)
    assert first == again
    assert len({data for _, data in first}) > 190


if __name__ == "__main__":
    main()
