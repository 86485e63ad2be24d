"""The structure walks on their own: each limit is a boundary, one block either side.

What they cost against Pillow, and that `probe` and `decode` apply them, is in
test_images.py and test_image_fuzz.py.
"""

from __future__ import annotations

from collections.abc import Callable

import image_faults as faults
import pytest

from stylizer import image_structure as walks
from stylizer.errors import CorruptImage, ImageTooLarge

# (what, the file at its limit, the file one block over it)
BOUNDARIES: dict[str, tuple[Callable[[], bytes], Callable[[], bytes]]] = {
    # The PNG's IHDR is a metadata chunk too.
    "PNG metadata chunks": (lambda: faults.png_text_flood(walks.MAX_PNG_METADATA_CHUNKS - 1),
                            lambda: faults.png_text_flood(walks.MAX_PNG_METADATA_CHUNKS)),
    "PNG compressed chunks": (lambda: faults.png_iccp_flood(walks.MAX_PNG_COMPRESSED_CHUNKS),
                              lambda: faults.png_iccp_flood(walks.MAX_PNG_COMPRESSED_CHUNKS + 1)),
    "PNG pixel-data chunks": (lambda: faults.png_idat_flood(walks.MAX_PNG_DATA_CHUNKS),
                              lambda: faults.png_idat_flood(walks.MAX_PNG_DATA_CHUNKS + 1)),
    "JPEG EXIF segments": (lambda: faults.jpeg_exif_flood(walks.MAX_EXIF_SEGMENTS, 100),
                           lambda: faults.jpeg_exif_flood(walks.MAX_EXIF_SEGMENTS + 1, 100)),
}


@pytest.mark.parametrize("what", BOUNDARIES)
def test_a_file_at_a_limit_passes_and_one_block_more_is_refused(what: str) -> None:
    at_limit, over = BOUNDARIES[what]
    walks.check_structure(at_limit())
    with pytest.raises(ImageTooLarge, match="save it again"):
        walks.check_structure(over())


def test_jpeg_segments_parsed_in_python_are_bounded_in_bytes() -> None:
    # The small JPEG's own tables and frame header (a few hundred bytes) count too.
    def tables(n: int, size: int) -> bytes:
        return faults.jpeg_after_soi(faults.jpeg_segment(0xFFDB, b"\0" * size) * n)

    walks.check_structure(tables(3, walks.MAX_PARSED_JPEG_BYTES // 3 - 2048))
    with pytest.raises(ImageTooLarge, match=f"{walks.MAX_PARSED_JPEG_BYTES // 1024} KB"):
        walks.check_structure(tables(4, walks.MAX_PARSED_JPEG_BYTES // 4 + 1))


@pytest.mark.parametrize("flood", [faults.jpeg_fill_flood, faults.gif_junk_flood,
                                   faults.gif_comment_flood])
def test_steps_before_the_picture_are_bounded(flood: Callable[[int], bytes]) -> None:
    walks.check_structure(flood(walks.MAX_STEPS - 10))
    with pytest.raises(ImageTooLarge, match=f"{walks.MAX_STEPS:,} blocks"):
        walks.check_structure(flood(walks.MAX_STEPS + 1))


def test_a_gif_extension_that_ends_before_its_data_is_damaged() -> None:
    # A graphic control extension (0x21 0xF9) whose first sub-block is the terminator:
    # Pillow would read the blocks after it as that extension's data.
    with pytest.raises(CorruptImage):
        walks.check_gif_blocks(faults.gif_with(b"!\xf9\x00"))
    walks.check_gif_blocks(faults.gif_with(b"!\xfe\x00"))  # an empty comment is fine


@pytest.mark.parametrize("data", [
    b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8", b"GIF89a", b"\xff\xd8\xff\xe1\xff",
    b"RIFF\x10\x00\x00\x00WEBPVP8 " + b"\0" * 100_000,  # WebP: libwebp walks it, in C
    b"BM" + b"\0" * 100, b"not an image at all",
])
def test_short_foreign_and_unwalked_files_pass_to_the_readers(data: bytes) -> None:
    walks.check_structure(data)


def test_real_pictures_pass() -> None:
    for data in (faults.png_text_flood(0), faults.jpeg(),
                 faults.gif_with(b"")):
        walks.check_structure(data)
