"""Structure walks: bound the Python-level parsing of an untrusted image before any
reader sees it.

Pillow's PNG, JPEG and GIF readers walk a file's framing in Python, one chunk, segment
or block at a time, before the pixel data goes to C. A file of a million tiny metadata
blocks would keep them busy for seconds; these walks count the blocks in one pass over
the bytes, with nothing but `struct` and slicing, and refuse such a file in milliseconds
with `ImageTooLarge`. `count_gif_frames` walks a whole GIF the same way, to count its
frames without Pillow's walk over every sub-block of every frame. Real files stay far
below every limit here. They parse nothing else: a file these walks pass may still be
refused by Pillow (`stylizer.images` does the reading and turns its errors into ours).

WebP (RIFF) and BMP have no walk: Pillow hands a WebP file whole to libwebp, whose C
demuxer walks its RIFF chunks, and a BMP has a fixed header; their cost is bounded by
the pixel caps in `stylizer.images` instead.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from stylizer.errors import CorruptImage, ImageTooLarge

# Bounds on the framing that Pillow's readers walk in Python, block by block. Real files
# stay far below them; files made of thousands of tiny blocks would take seconds.
# JPEG segments and single bytes stepped over before the pixel data (Pillow steps over
# fill and junk bytes one at a time); GIF sub-blocks and stray bytes before the picture.
MAX_STEPS = 8192
# JPEG segments that Pillow parses in Python: frame headers, quantisation tables, EXIF,
# Photoshop resources, the MPO index. A photo has one EXIF segment of at most 64 KiB.
MAX_PARSED_JPEG_BYTES = 192 * 1024
# Pillow joins a JPEG's EXIF segments by repeated concatenation: quadratic in their count.
MAX_EXIF_SEGMENTS = 8
MAX_PNG_METADATA_CHUNKS = 64  # every chunk but pixel data; photos have a dozen
MAX_PNG_COMPRESSED_CHUNKS = 8  # iCCP, zTXt, iTXt: Pillow inflates each up to 1 MB
MAX_PNG_DATA_CHUNKS = 20_000  # IDAT, fdAT, fcTL: 25 MB in chunks of 1.3 KB or more
# Frames in one animated file. An APNG frame takes two pixel-data chunks (fcTL and fdAT), so
# MAX_PNG_DATA_CHUNKS allows no more; 10,000 frames are over three minutes at 50 fps.
# Pillow steps from frame to frame in Python: 10,000 tiny GIF frames take 0.2 s to decode.
MAX_SOURCE_FRAMES = 10_000
# Blocks of a whole GIF: extensions, image descriptors and every data sub-block of every
# frame (to reach frame n, Pillow reads frame n-1's LZW data in Python, one 255-byte
# sub-block per read). A 25 MB GIF written in full sub-blocks, as every encoder writes
# them, has 100,000 of them; 10,000 frames add a few each.
MAX_GIF_BLOCKS = 250_000


def _flood(what: str, limit: int) -> ImageTooLarge:
    """The error for a file of more than `limit` blocks of one kind (`what`, plural)."""
    return ImageTooLarge(f"The file holds more than {limit:,} {what}; save it again without "
                         "its metadata, or send a screenshot.")


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_CHUNK = struct.Struct(">I4s")
_PNG_DATA_CHUNKS = frozenset((b"IDAT", b"fdAT", b"fcTL"))
_PNG_COMPRESSED_CHUNKS = frozenset((b"iCCP", b"zTXt", b"iTXt"))


def check_png_chunks(data: bytes) -> None:
    """Counts the chunks of a PNG (or APNG) file up to IEND; Pillow reads them all in
    Python (those after the pixels when it loads them).

    Follows the PNG specification (W3C, 3rd edition; ISO/IEC 15948), 5.2 and 5.3: an
    8-byte signature, then chunks of a 4-byte big-endian data length in bytes, a 4-byte
    type, the data and a 4-byte CRC (not checked here). `data` is the whole file, from
    its signature. Pixel-data chunks (IDAT, APNG's fdAT and fcTL) are counted against
    MAX_PNG_DATA_CHUNKS, every other chunk against MAX_PNG_METADATA_CHUNKS, and the
    compressed text and profile chunks (iCCP, zTXt, iTXt) also against
    MAX_PNG_COMPRESSED_CHUNKS.

    Raises `ImageTooLarge` when a count passes its limit. A file that ends early or has
    no IEND passes: the walk stops at the end of `data` and Pillow judges the rest.
    """
    pos, pixel, metadata, compressed = len(_PNG_SIGNATURE), 0, 0, 0
    while pos + 8 <= len(data):
        length, kind = _PNG_CHUNK.unpack_from(data, pos)
        if kind == b"IEND":
            return
        if kind in _PNG_DATA_CHUNKS:
            pixel += 1
            if pixel > MAX_PNG_DATA_CHUNKS:
                raise _flood("chunks of pixel data", MAX_PNG_DATA_CHUNKS)
        else:
            metadata += 1
            compressed += kind in _PNG_COMPRESSED_CHUNKS
            if metadata > MAX_PNG_METADATA_CHUNKS:
                raise _flood("metadata chunks", MAX_PNG_METADATA_CHUNKS)
            if compressed > MAX_PNG_COMPRESSED_CHUNKS:
                raise _flood("compressed metadata chunks", MAX_PNG_COMPRESSED_CHUNKS)
        pos += 12 + length


# Markers Pillow reads no length for; segments whose contents it parses in Python.
_JPEG_BARE_MARKERS = frozenset((*range(0xD0, 0xDA), *range(0xF0, 0xFE)))
_JPEG_PARSED_MARKERS = frozenset((*range(0xC0, 0xD0), 0xDB)) - {0xC4, 0xC8, 0xCC}


def check_jpeg_segments(data: bytes) -> None:
    """Walks a JPEG's markers before its first scan the way Pillow's JPEG reader does;
    the scans themselves go to libjpeg, in C.

    Follows ITU-T T.81 (ISO/IEC 10918-1) Annex B: after SOI (FF D8), a marker is FF and
    a code byte; FF fill bytes may precede it; RSTn, SOI, EOI, a stuffed FF 00 and (as
    Pillow reads them) the JPGn codes F0-FD stand alone; every other segment has a 2-byte
    big-endian length in bytes that counts itself. SOS (FF DA) ends the walk, as does a
    code below C0 (TEM, reserved), where Pillow gives up. `data` is the whole file, from
    SOI. Markers, fill and junk bytes stepped over are counted against MAX_STEPS; APP1
    EXIF segments ("Exif\0\0", Exif 2.3 / CIPA DC-008) against MAX_EXIF_SEGMENTS; the
    bytes of the segments Pillow parses in Python (SOFn, DQT, EXIF, APP13 Photoshop
    resources, APP2 MPF index of CIPA DC-007) against MAX_PARSED_JPEG_BYTES.

    Raises `ImageTooLarge` when a count passes its limit. A file that ends early passes:
    the walk stops at the end of `data` and Pillow judges the rest.
    """
    pos, steps, parsed, exif = 2, 0, 0, 0
    while pos + 1 < len(data):
        steps += 1
        if steps > MAX_STEPS:
            raise _flood("blocks before its picture", MAX_STEPS)
        marker = data[pos + 1]
        if data[pos] != 0xFF or marker == 0xFF:
            pos += 1  # junk or a fill byte
            continue
        if marker == 0xDA or (marker < 0xC0 and marker != 0x00):
            return  # start of scan; or no marker, where Pillow gives up
        if marker == 0x00 or marker in _JPEG_BARE_MARKERS:
            pos += 2
            continue
        if pos + 4 > len(data):
            return
        length = max(2, int.from_bytes(data[pos + 2:pos + 4], "big"))
        body = pos + 4
        if marker == 0xE1 and data.startswith(b"Exif\0\0", body):
            exif += 1
            parsed += length
        elif (marker in _JPEG_PARSED_MARKERS
              or (marker == 0xED and data.startswith(b"Photoshop 3.0\0", body))
              or (marker == 0xE2 and data.startswith(b"MPF\0", body))):
            parsed += length
        if exif > MAX_EXIF_SEGMENTS:
            raise _flood("EXIF segments", MAX_EXIF_SEGMENTS)
        if parsed > MAX_PARSED_JPEG_BYTES:
            raise _flood("KB of EXIF, tables and Photoshop data", MAX_PARSED_JPEG_BYTES // 1024)
        pos += 2 + length


def check_gif_blocks(data: bytes) -> None:
    """Walks a GIF's blocks before its first picture (Pillow reads them in Python; the
    picture's LZW data goes to C).

    Follows the GIF89a specification (CompuServe, 1990; GIF87a is its subset): a 6-byte
    header, a 7-byte logical screen descriptor whose packed byte (offset 10) gives the
    global colour table (3 x 2^(n+1) bytes, if its top bit is set), then extensions
    (0x21, a label, data sub-blocks of a length byte and that many bytes, ending with a
    zero-length one) up to the first image descriptor (0x2C) or the trailer (0x3B).
    `data` is the whole file, from its header. Blocks, sub-blocks and stray bytes (which
    Pillow steps over) are counted against MAX_STEPS.

    Raises `ImageTooLarge` when the count passes MAX_STEPS, and `CorruptImage` for an
    extension that ends before the sub-blocks Pillow reads as data (a terminator where it
    expects one, or two for a NETSCAPE2.0 loop block). A file that ends early passes.
    """
    if len(data) < 13:
        return
    flags = data[10]
    pos = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)  # after the global palette
    steps = 0
    while pos < len(data) and data[pos] not in (0x2C, 0x3B):  # image descriptor, trailer
        steps += 1
        if data[pos] != 0x21:
            pos += 1  # a stray byte, which Pillow steps over
        else:
            label, pos = data[pos + 1:pos + 2], pos + 2
            # Pillow reads one sub-block (two for a NETSCAPE loop block) before looking
            # for the terminator; a terminator among those it would read past as data.
            read, explicit = 0, 0 if label == b"\xfe" else 1
            while pos < len(data) and steps <= MAX_STEPS:
                size = data[pos]
                steps += 1
                if size == 0:
                    if read < explicit:
                        raise CorruptImage("The GIF is damaged; try saving it again.")
                    pos += 1
                    break
                if read == 0 and label == b"\xff" and data.startswith(b"NETSCAPE2.0", pos + 1):
                    explicit = 2
                pos += 1 + size
                read += 1
        if steps > MAX_STEPS:
            raise _flood("blocks before its picture", MAX_STEPS)


@dataclass(frozen=True)
class GifFrames:
    """What `count_gif_frames` finds: the frames of a GIF and the canvas they need."""

    count: int  # image descriptors, as Pillow's reader finds them one frame after another
    width: int  # pixels: the logical screen, grown to hold every frame as Pillow grows it
    height: int


_GIF_SCREEN = struct.Struct("<HH")
_GIF_DESCRIPTOR = struct.Struct("<HHHHB")  # left, top, width, height, packed fields


def _frame_flood(limit: int) -> ImageTooLarge:
    return ImageTooLarge(f"The animation has more than {limit:,} frames, the limit: send a "
                         "shorter one.")


def count_gif_frames(data: bytes, limit: int = MAX_SOURCE_FRAMES) -> GifFrames:
    """Counts a GIF's frames (image descriptors) in one pass over its blocks, without
    decoding any; Pillow's `n_frames` would walk every data sub-block in Python (seconds
    for a 25 MB file of tiny frames).

    Follows the GIF89a specification (CompuServe, 1990), as Pillow's reader reads it:
    after the header, logical screen descriptor and global colour table (see
    `check_gif_blocks`), a sequence of extensions (0x21, a label, data sub-blocks up to a
    zero-length one), image descriptors (0x2C; left, top, width and height as 16-bit
    little-endian pixels; a packed byte whose top bit announces a local colour table of
    3 x 2^(n+1) bytes; the LZW minimum code size; data sub-blocks up to a zero-length one)
    and stray bytes, which Pillow steps over, ending at the trailer (0x3B) or the end of
    `data`. Where Pillow reads a sub-block whatever its length (an extension's first, a
    NETSCAPE2.0 block's second) this walk does too, so that both count the same frames.
    `data` is the whole file, from its header; a file that ends early counts the frames
    begun before its end (decoding them fails later). The canvas is the logical screen
    grown to the right and bottom edge of every frame, as Pillow grows it.

    Raises `ImageTooLarge` past `limit` frames, or past MAX_GIF_BLOCKS blocks and
    sub-blocks.
    """
    if len(data) < 13:
        return GifFrames(0, 0, 0)
    width, height = _GIF_SCREEN.unpack_from(data, 6)
    flags = data[10]
    pos = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)  # after the global palette
    end, frames, blocks = len(data), 0, 0
    while pos < end and data[pos] != 0x3B:  # the trailer
        blocks += 1
        if blocks > MAX_GIF_BLOCKS:
            raise _flood("blocks", MAX_GIF_BLOCKS)
        intro = data[pos]
        if intro == 0x2C:  # image descriptor
            frames += 1
            if frames > limit:
                raise _frame_flood(limit)
            if pos + 11 > end:
                break
            left, top, w, h, packed = _GIF_DESCRIPTOR.unpack_from(data, pos + 1)
            width, height = max(width, left + w), max(height, top + h)
            # the descriptor, its local palette, the LZW minimum code size
            pos += 10 + (3 << ((packed & 7) + 1) if packed & 0x80 else 0) + 1
        elif intro == 0x21:  # extension
            if pos + 2 >= end:
                break
            label, first = data[pos + 1], data[pos + 2]
            pos += 3 + first  # Pillow reads the first sub-block whatever its length
            if label == 0xFE and first == 0:
                continue  # an empty comment: that was its terminator
            if (label == 0xFF and frames == 0 and first
                    and data.startswith(b"NETSCAPE2.0", pos - first)):
                pos += 1 + (data[pos] if pos < end else 0)  # the loop count, ditto
        else:
            pos += 1  # a stray byte
            continue
        while pos < end:  # data sub-blocks, up to a zero-length one
            size = data[pos]
            pos += 1 + size
            if size == 0:
                break
            blocks += 1
            if blocks > MAX_GIF_BLOCKS:
                raise _flood("blocks", MAX_GIF_BLOCKS)
    return GifFrames(frames, width, height)


def check_structure(data: bytes) -> None:
    """Walks the framing of a PNG, JPEG or GIF file, chosen by its signature (see
    `check_png_chunks`, `check_jpeg_segments`, `check_gif_blocks`); any other bytes pass
    unread, WebP and BMP included (see the module docstring). `data` is the whole file.

    Raises `ImageTooLarge` for a file of too many blocks, `CorruptImage` for a GIF whose
    extension blocks Pillow would misread.
    """
    if data.startswith(_PNG_SIGNATURE):
        check_png_chunks(data)
    elif data.startswith(b"\xff\xd8"):
        check_jpeg_segments(data)
    elif data.startswith((b"GIF87a", b"GIF89a")):
        check_gif_blocks(data)
