"""Files that broke or stalled the image decoder, built by code (no binary fixtures).

`REGRESSIONS` holds the small reproducers (the tests' regression cases and the fuzzer's
seeds); `at_pixel_cap` and the `png_*(side)` generators build pictures of every allowed
format up to the pixel cap, for the time and memory bounds and `benchmarks/decode.py`.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable, Iterator

import numpy as np
from PIL import Image

# -- DDS textures wearing a .png name --------------------------------------------------------
# Pillow's DDS reader raised NotImplementedError (not an OSError) for pixel formats it does
# not implement: minimal headers of the three kinds among Pillow's own test images.

DDSD_CAPS, DDSD_HEIGHT, DDSD_WIDTH, DDSD_PIXELFORMAT = 0x1, 0x2, 0x4, 0x1000
DDPF_FOURCC = 0x4


def _dds(*, pf_flags: int, fourcc: bytes = b"\0\0\0\0", extra: bytes = b"") -> bytes:
    flags = DDSD_CAPS | DDSD_HEIGHT | DDSD_WIDTH | DDSD_PIXELFORMAT
    header = struct.pack("<6I", flags, 4, 4, 0, 0, 0) + b"\0" * 44  # 4x4; reserved
    pixel_format = struct.pack("<2I4s5I", 32, pf_flags, fourcc, 0, 0, 0, 0, 0)
    caps = struct.pack("<5I", 0x1000, 0, 0, 0, 0)
    return b"DDS " + struct.pack("<I", 124) + header + pixel_format + caps + extra + b"\0" * 64


def dds_unknown_fourcc() -> bytes:
    """A DDS whose FourCC ("ZZZZ") Pillow does not implement."""
    return _dds(pf_flags=DDPF_FOURCC, fourcc=b"ZZZZ")


def dds_unknown_dxgi_format() -> bytes:
    """A DX10 DDS with a DXGI format Pillow does not implement (R32G32B32A32_FLOAT, 2)."""
    return _dds(pf_flags=DDPF_FOURCC, fourcc=b"DX10", extra=struct.pack("<5I", 2, 3, 0, 1, 0))


def dds_unknown_pixel_flags() -> bytes:
    """A DDS whose pixel-format flags name no kind of pixel Pillow knows (YUV, 0x200)."""
    return _dds(pf_flags=0x200)


# -- PNG ---------------------------------------------------------------------------------------

def png_chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def png(width: int, height: int, bit_depth: int, colour_type: int, rows: Iterator[bytes],
        extra: bytes = b"") -> bytes:
    """A PNG from unfiltered rows, compressed row by row; `extra` chunks before IDAT."""
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(b"\0" + row) for row in rows) + packer.flush()
    return (b"\x89PNG\r\n\x1a\n"
            + png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth,
                                             colour_type, 0, 0, 0))
            + extra + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b""))


def _grey_rows(side: int) -> Iterator[bytes]:
    return iter([b"\x80" * side] * side)


def png_grey16(side: int = 6300) -> bytes:
    """A 16-bit greyscale PNG of side x side (40 MP at 6300, just under the 40 MP cap) in
    about 80 KB: each row one shade, black at the top to white at the bottom."""
    def rows() -> Iterator[bytes]:
        for y in range(side):
            yield struct.pack(">H", y * 65535 // max(1, side - 1)) * side
    return png(side, side, 16, 0, rows())


def png_rgb(side: int = 6000) -> bytes:
    """An 8-bit RGB PNG of side x side in about 130 KB (each row one colour)."""
    def rows() -> Iterator[bytes]:
        for y in range(side):
            yield bytes((y % 256, 128, 255 - y % 256)) * side
    return png(side, side, 8, 2, rows())


def png_rgba(side: int = 6300) -> bytes:
    """An 8-bit RGBA PNG of side x side, half transparent: the costliest mode to flatten."""
    def rows() -> Iterator[bytes]:
        for y in range(side):
            yield bytes((y % 256, 40, 200, 128)) * side
    return png(side, side, 8, 6, rows())


def png_text_flood(chunks: int = 200_000) -> bytes:
    """A 16x16 PNG with `chunks` tiny text chunks before its pixels (3.8 MB at 200,000)."""
    return png(16, 16, 8, 0, _grey_rows(16), extra=png_chunk(b"tEXt", b"key\0val") * chunks)


def png_iccp_flood(chunks: int = 300) -> bytes:
    """`chunks` ICC-profile chunks of 1 KB that each inflate to just under 1 MB."""
    bomb = png_chunk(b"iCCP", b"icc\0\0" + zlib.compress(b"\0" * ((1 << 20) - 1), 9))
    return png(16, 16, 8, 0, _grey_rows(16), extra=bomb * chunks)


def png_idat_flood(chunks: int = 200_000) -> bytes:
    """A 16x16 PNG whose compressed pixels come in `chunks` one-byte IDAT chunks."""
    plain = png(16, 16, 8, 0, _grey_rows(16))
    idat = zlib.compress(b"".join(b"\0" + row for row in _grey_rows(16)), 9)
    idat += b"\0" * max(0, chunks - len(idat))  # bytes after the zlib stream are ignored
    head = plain[:plain.index(b"IDAT") - 4]
    return (head + b"".join(png_chunk(b"IDAT", idat[i:i + 1]) for i in range(len(idat)))
            + png_chunk(b"IEND", b""))


# -- JPEG --------------------------------------------------------------------------------------

def jpeg(width: int = 64, height: int = 48, quality: int = 90) -> bytes:
    """A small JPEG of a gradient."""
    y, x = np.mgrid[0:height, 0:width]
    arr = np.stack([x * 255 // max(1, width - 1), y * 255 // max(1, height - 1),
                    np.full_like(x, 128)], -1).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr, "RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def jpeg_segment(marker: int, data: bytes) -> bytes:
    return struct.pack(">HH", marker, len(data) + 2) + data


def jpeg_after_soi(segments: bytes) -> bytes:
    """The small JPEG with `segments` (or any bytes) right after its first marker."""
    body = jpeg()
    return body[:2] + segments + body[2:]


def jpeg_exif_flood(segments: int = 300, segment_bytes: int = 60_000) -> bytes:
    """`segments` EXIF (APP1) segments of `segment_bytes` each (18 MB at the defaults).
    Pillow joined them by repeated concatenation: quadratic in their count."""
    exif = b"Exif\0\0MM\0*\0\0\0\x08" + struct.pack(">H", 0) + b"\0\0\0\0"  # an empty IFD0
    return jpeg_after_soi(jpeg_segment(0xFFE1, exif.ljust(segment_bytes, b"\0")) * segments)


def jpeg_fill_flood(n: int = 5_000_000) -> bytes:
    """`n` fill bytes (0xFF) before the first segment: Pillow steps over each in Python."""
    return jpeg_after_soi(b"\xff" * n)


def jpeg_dqt_flood(segments: int = 300) -> bytes:
    """`segments` quantisation-table segments of 1000 tables each (Pillow: quadratic)."""
    table = b"\x00" + bytes(range(1, 65))
    return jpeg_after_soi(jpeg_segment(0xFFDB, table * 1000) * segments)


def jpeg_sof_flood(segments: int = 300) -> bytes:
    """`segments` frame headers of 21,000 components each, all parsed in Python."""
    sof = struct.pack(">BHHB", 8, 48, 64, 3) + b"\x01\x11\x00" * 21000
    return jpeg_after_soi(jpeg_segment(0xFFC0, sof) * segments)


def jpeg_photoshop_flood(segments: int = 300) -> bytes:
    """`segments` Photoshop (APP13) segments of 5,000 empty resources each."""
    resources = (b"8BIM" + struct.pack(">HBBI", 0x0404, 0, 0, 0)) * 5000
    return jpeg_after_soi(jpeg_segment(0xFFED, b"Photoshop 3.0\0" + resources) * segments)


# -- GIF and BMP -------------------------------------------------------------------------------

def gif_with(before_picture: bytes) -> bytes:
    """A 16x16 GIF with `before_picture` between its palette and its picture."""
    buf = io.BytesIO()
    Image.new("P", (16, 16), 1).save(buf, "GIF")
    data = buf.getvalue()
    palette_end = 13 + (3 << ((data[10] & 7) + 1) if data[10] & 0x80 else 0)
    return data[:palette_end] + before_picture + data[palette_end:]


def gif_junk_flood(n: int = 5_000_000) -> bytes:
    """`n` stray bytes before the picture: Pillow steps over each in Python."""
    return gif_with(b"\x00" * n)


def gif_comment_flood(n: int = 2_000_000) -> bytes:
    """One comment of `n` one-byte sub-blocks."""
    return gif_with(b"!\xfe" + b"\x01c" * n + b"\x00")


def _bmp(side: int, bits: int, compression: int, palette: bytes, pixels: bytes) -> bytes:
    info = struct.pack("<IiiHHIIiiII", 40, side, side, 1, bits, compression, len(pixels), 2835,
                       2835, len(palette) // 4, 0)
    offset = 14 + len(info) + len(palette)
    return (b"BM" + struct.pack("<IHHI", offset + len(pixels), 0, 0, offset) + info + palette
            + pixels)


def bmp_rle(side: int = 6300, bits: int = 8) -> bytes:
    """An RLE8 (or RLE4) BMP of side x side in runs of 255 pixels: a few hundred KB that
    Pillow decodes in Python (a pixel at a time for RLE4)."""
    row = bytearray()
    for start in range(0, side, 255):
        row += bytes((min(255, side - start), 0x12))
    pixels = (bytes(row) + b"\0\0") * side + b"\0\1"  # end of each line, end of bitmap
    colours = 256 if bits == 8 else 16
    palette = b"".join(bytes((i * 256 // colours,) * 3 + (0,)) for i in range(colours))
    return _bmp(side, bits, 1 if bits == 8 else 2, palette, pixels)


def bmp_4bit(side: int = 6300) -> bytes:
    """An uncompressed 16-colour BMP of side x side (about 20 MB at 6300)."""
    stride = (side * 4 + 31) // 32 * 4
    palette = b"".join(bytes((i * 16,) * 3 + (0,)) for i in range(16))
    return _bmp(side, 4, 0, palette, bytes(i * 17 & 0xFF for i in range(stride)) * side)


# -- every allowed format at the pixel cap -----------------------------------------------------

def _smooth(side: int) -> Image.Image:
    """A smooth side x side RGB picture: compresses well, decodes like any photo."""
    ramp = np.linspace(0, 255, side, dtype=np.float32)
    arr = np.empty((side, side, 3), np.uint8)
    arr[..., 0] = ramp
    arr[..., 1] = ramp[:, None]
    arr[..., 2] = (ramp + ramp[:, None]) / 2
    return Image.fromarray(arr, "RGB")


def at_pixel_cap(kind: str, side: int = 6300) -> bytes:
    """A side x side picture (40 MP at 6300): kind is "jpeg", "progressive-jpeg", "webp",
    "gif", "png-grey16", "png-rgb", "png-rgba" or "bmp-4bit"."""
    if kind.startswith("png-") or kind == "bmp-4bit":
        made: bytes = {"png-grey16": png_grey16, "png-rgb": png_rgb, "png-rgba": png_rgba,
                       "bmp-4bit": bmp_4bit}[kind](side)
        return made
    img = _smooth(side)
    buf = io.BytesIO()
    if kind == "jpeg":
        img.save(buf, "JPEG", quality=85)
    elif kind == "progressive-jpeg":
        img.save(buf, "JPEG", quality=85, progressive=True)
    elif kind == "webp":
        img.save(buf, "WEBP", quality=80, method=0)
    elif kind == "gif":
        img.quantize(16).save(buf, "GIF")
    else:
        raise ValueError(kind)
    return buf.getvalue()


REGRESSIONS: dict[str, Callable[[], bytes]] = {
    "dds-unknown-fourcc.png": dds_unknown_fourcc,
    "dds-unknown-dxgi-format.png": dds_unknown_dxgi_format,
    "dds-unknown-pixel-flags.png": dds_unknown_pixel_flags,
    "exif-flood.jpg": jpeg_exif_flood,
    "fill-flood.jpg": jpeg_fill_flood,
    "table-flood.jpg": jpeg_dqt_flood,
    "frame-header-flood.jpg": jpeg_sof_flood,
    "photoshop-flood.jpg": jpeg_photoshop_flood,
    "text-flood.png": png_text_flood,
    "icc-bomb-flood.png": png_iccp_flood,
    "idat-flood.png": png_idat_flood,
    "junk-flood.gif": gif_junk_flood,
    "comment-flood.gif": gif_comment_flood,
    "rle4-6300.bmp": lambda: bmp_rle(bits=4),
    "rle8-6300.bmp": bmp_rle,
}
