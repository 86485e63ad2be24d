"""Untrusted bytes in, clean pictures out: formats, modes, orientation, limits, metadata."""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import image_faults as faults
import numpy as np
import pytest
from picture_checks import PixelsDecoded
from PIL import Image, PngImagePlugin

from stylizer import image_structure, images
from stylizer.errors import CorruptImage, ImageTooLarge, StylizerError, UnsupportedImage


def _save(img: Image.Image, fmt: str, **kw: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _rgb(img: Image.Image) -> list[list[list[int]]]:
    assert img.mode == "RGB"
    out: list[list[list[int]]] = np.asarray(img).tolist()
    return out


def _noise(w: int = 64, h: int = 64) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")


def _png_claiming_size(width: int, height: int) -> bytes:
    """A tiny valid PNG whose header is patched to claim width x height (a bomb's header)."""
    data = bytearray(_save(Image.new("L", (8, 8)), "PNG"))
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)




# -- bad input gets its typed error -----------------------------------------------------------

def test_zero_bytes_is_corrupt() -> None:
    with pytest.raises(CorruptImage, match="empty"):
        images.decode(b"")
    with pytest.raises(CorruptImage):
        images.probe(b"")


def test_text_renamed_to_png_is_corrupt() -> None:
    data = b"Dear bot, this is a text file wearing a .png name.\n" * 4
    with pytest.raises(CorruptImage) as info:
        images.decode(data)
    assert "PNG" in str(info.value)  # says what would be accepted
    with pytest.raises(CorruptImage):
        images.probe(data)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "BMP", "WEBP"])
def test_a_truncated_file_is_corrupt(fmt: str) -> None:
    data = _save(_noise(), fmt)
    with pytest.raises(CorruptImage):
        images.decode(data[: len(data) // 2])


@pytest.mark.parametrize("fmt", ["TIFF", "ICO", "PPM", "DDS"])
def test_a_valid_image_of_a_format_not_allowed_is_unsupported(fmt: str) -> None:
    data = _save(Image.new("RGB", (16, 16), (10, 20, 30)), fmt)
    with pytest.raises(UnsupportedImage) as info:
        images.decode(data)
    assert fmt in str(info.value)
    assert "JPEG" in str(info.value)
    with pytest.raises(UnsupportedImage):
        images.probe(data)


def test_a_format_without_a_signature_is_refused_unread() -> None:
    # TGA files have no signature: only running the TGA parser could name one, and no
    # parser but ours sees uploaded bytes.
    data = _save(Image.new("RGB", (16, 16), (10, 20, 30)), "TGA")
    with pytest.raises(CorruptImage, match="JPEG, PNG"):
        images.decode(data)


def test_an_iphone_heic_photo_is_named() -> None:
    data = b"\0\0\0\x18ftypheic\0\0\0\0mif1heic" + b"\0" * 64
    with pytest.raises(UnsupportedImage, match="HEIC images are not supported"):
        images.probe(data)


@pytest.mark.parametrize(("width", "height"), [(30000, 30000), (8000, 6000)])
def test_a_decompression_bomb_is_refused_from_its_header(
        width: int, height: int, no_pixel_decoding: list[str]) -> None:
    # 30000x30000 also trips Pillow's own guard; 8000x6000 (48 MP) only ours (40 MP).
    data = _png_claiming_size(width, height)
    assert len(data) < 200
    with pytest.raises(ImageTooLarge, match="megapixels"):
        images.decode(data)
    with pytest.raises(ImageTooLarge):
        images.probe(data)
    assert no_pixel_decoding == []


def test_the_pixel_decoding_spy_catches_a_real_decode(no_pixel_decoding: list[str]) -> None:
    # The control for the two tests above: an ordinary image does reach the decoder.
    with pytest.raises(PixelsDecoded, match="pixel data"):
        images.decode(_save(Image.new("RGB", (8, 8)), "PNG"))
    assert no_pixel_decoding == ["PNG"]


def test_the_pixel_limit_is_a_parameter() -> None:
    data = _save(Image.new("RGB", (100, 100)), "PNG")
    with pytest.raises(ImageTooLarge):
        images.decode(data, max_pixels=9999)
    assert images.decode(data, max_pixels=10000).size == (100, 100)


def test_too_many_bytes_is_too_large() -> None:
    data = _save(_noise(), "PNG")
    with pytest.raises(ImageTooLarge, match="MB"):
        images.decode(data, max_bytes=len(data) - 1)
    assert images.decode(data, max_bytes=len(data)).size == (64, 64)


def test_every_error_is_a_stylizer_error_with_a_code() -> None:
    for exc in (CorruptImage, UnsupportedImage, ImageTooLarge):
        assert issubclass(exc, StylizerError)
    assert {CorruptImage.code, UnsupportedImage.code, ImageTooLarge.code} == {
        "corrupt_image", "unsupported_image", "image_too_large"}


# -- what is accepted -------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "BMP", "WEBP"])
def test_each_allowed_format_decodes_to_rgb(fmt: str) -> None:
    data = _save(_noise(24, 16), fmt)
    info = images.probe(data)
    assert (info.format, info.width, info.height) == (fmt, 24, 16)
    img = images.decode(data)
    assert img.mode == "RGB"
    assert img.size == (24, 16)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "BMP"])
def test_probe_reads_only_the_header(fmt: str, no_pixel_decoding: list[str]) -> None:
    # Pillow's PNG reader decodes every pixel to look for EXIF after them: not here.
    info = images.probe(_save(_noise(40, 30), fmt))
    assert (info.format, info.width, info.height) == (fmt, 40, 30)
    assert no_pixel_decoding == []


def test_a_phone_jpeg_with_a_second_picture_decodes_to_the_first() -> None:
    # Many phones write JPEGs carrying extra pictures (MPO: depth maps, HDR gain maps);
    # Pillow names them "MPO". They are JPEG files and must be accepted.
    first = Image.new("RGB", (16, 8), (200, 30, 30))
    data = _save(first, "MPO", save_all=True,
                 append_images=[Image.new("RGB", (16, 8), (30, 30, 200))])
    img = images.decode(data)
    assert img.size == (16, 8)
    assert all(abs(a - b) < 8 for a, b in zip(_rgb(img)[4][8], (200, 30, 30), strict=True))


def test_gif_gives_its_first_frame() -> None:
    frames = [Image.new("RGB", (8, 8), c) for c in ((0, 0, 255), (255, 0, 0))]
    data = _save(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) == 2
    assert _rgb(images.decode(data))[0][0] == [0, 0, 255]


def test_apng_gives_its_first_frame() -> None:
    frames = [Image.new("RGB", (8, 8), c) for c in ((200, 30, 30), (30, 30, 200))]
    data = _save(frames[0], "PNG", save_all=True, append_images=frames[1:])
    assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) == 2
    assert images.probe(data).format == "PNG"
    assert _rgb(images.decode(data))[0][0] == [200, 30, 30]


# -- modes ------------------------------------------------------------------------------------

def test_palette_with_transparency_is_composited_on_white() -> None:
    p = Image.new("P", (2, 1))
    p.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    p.putpixel((0, 0), 0)
    p.putpixel((1, 0), 1)
    for fmt in ("PNG", "GIF"):
        assert _rgb(images.decode(_save(p, fmt, transparency=0))) == [
            [[255, 255, 255], [255, 0, 0]]], fmt


def test_palette_without_transparency_keeps_its_colours() -> None:
    p = Image.new("P", (1, 1))
    p.putpalette([12, 34, 56] + [0] * 765)
    assert _rgb(images.decode(_save(p, "PNG"))) == [[[12, 34, 56]]]


def test_la_is_composited_on_white() -> None:
    la = Image.new("LA", (3, 1))
    la.putpixel((0, 0), (0, 0))  # transparent black -> white
    la.putpixel((1, 0), (0, 255))  # opaque black
    la.putpixel((2, 0), (100, 255))
    assert _rgb(images.decode(_save(la, "PNG"))) == [
        [[255, 255, 255], [0, 0, 0], [100, 100, 100]]]


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_rgba_is_composited_on_white(fmt: str) -> None:
    rgba = Image.new("RGBA", (2, 1))
    rgba.putpixel((0, 0), (255, 0, 0, 128))  # half-transparent red over white
    rgba.putpixel((1, 0), (10, 20, 30, 0))  # fully transparent: white, whatever the colour
    got = _rgb(images.decode(_save(rgba, fmt, lossless=True) if fmt == "WEBP"
                             else _save(rgba, fmt)))
    assert got[0][1] == [255, 255, 255]
    assert got[0][0][0] == 255
    assert abs(got[0][0][1] - 127) <= 1
    assert abs(got[0][0][2] - 127) <= 1


def test_cmyk_jpeg_becomes_rgb() -> None:
    for cmyk, rgb in (((0, 0, 0, 0), (255, 255, 255)), ((0, 255, 255, 0), (255, 0, 0)),
                      ((0, 0, 0, 255), (0, 0, 0))):
        data = _save(Image.new("CMYK", (8, 8), cmyk), "JPEG", quality=95)
        assert Image.open(io.BytesIO(data)).mode == "CMYK"
        got = _rgb(images.decode(data))[4][4]
        assert all(abs(a - b) <= 3 for a, b in zip(got, rgb, strict=True)), (cmyk, got)


def test_16_bit_grey_is_scaled_to_8_bits() -> None:
    arr = np.array([[0, 257 * 100, 32768, 65535]], dtype=np.uint16)
    img16 = Image.fromarray(arr)
    assert img16.mode == "I;16"
    data = _save(img16, "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    assert _rgb(images.decode(data)) == [[[0] * 3, [100] * 3, [128] * 3, [255] * 3]]


def test_grey_becomes_three_equal_channels() -> None:
    grey = Image.fromarray(np.array([[0, 77, 255]], dtype=np.uint8), "L")
    assert _rgb(images.decode(_save(grey, "PNG"))) == [[[0] * 3, [77] * 3, [255] * 3]]


def test_one_bit_becomes_black_and_white() -> None:
    bw = Image.new("1", (2, 1))
    bw.putpixel((1, 0), 1)
    assert _rgb(images.decode(_save(bw, "PNG"))) == [[[0] * 3, [255] * 3]]


# -- orientation and size ---------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_exif_orientation_6_is_turned_upright(fmt: str) -> None:
    # Stored 40x20 with a red block top-left; orientation 6 means "rotate 90° clockwise
    # to display", which puts the block top-right of a 20x40 picture.
    stored = Image.new("RGB", (40, 20), (255, 255, 255))
    stored.paste((255, 0, 0), (0, 0, 8, 8))
    exif = Image.Exif()
    exif[0x0112] = 6
    img = images.decode(_save(stored, fmt, exif=exif))
    assert img.size == (20, 40)
    px = _rgb(img)
    assert px[3][16][0] > 200
    assert px[3][16][1] < 60
    assert min(px[3][3]) > 200  # top-left: white
    assert min(px[36][3]) > 200  # bottom-left: white


def test_decode_resizes_to_the_max_side_keeping_the_aspect() -> None:
    data = _save(_noise(200, 100), "PNG")
    assert images.decode(data, max_side=50).size == (50, 25)
    assert images.decode(data, max_side=500).size == (200, 100)  # never enlarged
    jpeg = _save(_noise(400, 300), "JPEG")
    assert images.decode(jpeg, max_side=100).size == (100, 75)


def test_resize_to_fit() -> None:
    img = Image.new("RGB", (30, 90))
    assert images.resize_to_fit(img, 45).size == (15, 45)
    assert images.resize_to_fit(img, 90) is img


# -- output -----------------------------------------------------------------------------------

def _tagged_png() -> bytes:
    """A PNG carrying text, EXIF and an ICC profile, all naming a secret."""
    text = PngImagePlugin.PngInfo()
    text.add_text("Author", "secret-name")
    text.add_itxt("Comment", "secret-comment")
    exif = Image.Exif()
    exif[0x010E] = "secret-description"
    exif[0x8825] = {2: (51.0, 30.0, 0.0)}  # a GPS latitude
    return _save(Image.new("RGB", (8, 8), (1, 2, 3)), "PNG", pnginfo=text, exif=exif,
                 icc_profile=b"secret-icc" * 20)


def test_encode_writes_no_metadata() -> None:
    src = _tagged_png()
    assert b"secret" in src
    img = images.decode(src)
    png = images.encode(img, "PNG")
    jpeg = images.encode(img, "JPEG")
    assert b"secret" not in png
    assert b"secret" not in jpeg
    for chunk in (b"tEXt", b"iTXt", b"zTXt", b"eXIf", b"iCCP", b"tIME"):
        assert chunk not in png, chunk
    assert b"Exif" not in jpeg
    assert b"ICC_PROFILE" not in jpeg
    for data in (png, jpeg):
        back = Image.open(io.BytesIO(data))
        assert not dict(back.getexif())
        assert not {"exif", "icc_profile", "Author", "Comment"} & set(back.info)


def test_encode_round_trips_the_pixels() -> None:
    img = _noise(20, 10)
    png = images.encode(img, "PNG")
    assert png.startswith(b"\x89PNG")
    assert _rgb(images.decode(png)) == _rgb(img)
    jpeg = images.encode(img, "JPEG", quality=95)
    assert jpeg.startswith(b"\xff\xd8")
    assert images.decode(jpeg).size == (20, 10)
    with pytest.raises(ValueError, match="TIFF"):
        images.encode(img, "TIFF")


def test_encode_writes_a_still_as_a_one_frame_gif() -> None:
    img = images.decode(_tagged_png())
    gif = images.encode(_noise(20, 10), "GIF")
    assert images.probe(gif) == images.ImageInfo("GIF", 20, 10, False, 1)
    assert images.decode(gif).size == (20, 10)
    tagged = images.encode(img, "gif")
    assert b"secret" not in tagged
    with Image.open(io.BytesIO(tagged)) as back:
        assert back.format == "GIF"
        assert not {"exif", "icc_profile", "comment"} & set(back.info)


def test_describe_allowed_names_every_format() -> None:
    text = images.describe_allowed()
    for name in ("JPEG", "PNG", "WebP", "GIF", "BMP"):
        assert name in text


# -- uploads decided by their bytes; only our five readers see them ---------------------------

READERS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "MPO")


@pytest.fixture
def foreign_readers(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records every call into a Pillow reader other than the ones for allowed formats."""
    Image.init()
    calls: list[str] = []
    for fmt, (factory, accept) in list(Image.OPEN.items()):
        if fmt in READERS:
            continue

        def spy(*args: Any, _fmt: str = fmt, _factory: Any = factory) -> Any:
            calls.append(_fmt)
            return _factory(*args)

        monkeypatch.setitem(Image.OPEN, fmt, (spy, accept))
    return calls


@pytest.mark.parametrize("name", [n for n in faults.REGRESSIONS if n.startswith("dds-")])
def test_a_dds_texture_named_png_is_unsupported_by_every_entry_point(
        name: str, foreign_readers: list[str]) -> None:
    # Pillow's DDS reader raised a bare NotImplementedError for these pixel formats.
    data = faults.REGRESSIONS[name]()
    with pytest.raises(UnsupportedImage, match="DDS images are not supported"):
        images.probe(data)
    for max_side in (None, 256):
        with pytest.raises(UnsupportedImage, match="DDS"):
            images.decode(data, max_side=max_side)
    assert foreign_readers == []  # named by its signature alone


@pytest.mark.parametrize("fmt", ["TIFF", "ICO", "PPM", "TGA", "DDS"])
def test_files_of_other_formats_never_reach_their_readers(fmt: str,
                                                          foreign_readers: list[str]) -> None:
    data = _save(Image.new("RGB", (16, 16), (10, 20, 30)), fmt)
    for entry in (images.probe, images.decode):
        with pytest.raises((UnsupportedImage, CorruptImage)):
            entry(data)
    assert foreign_readers == []


def test_a_png_named_jpeg_is_a_png() -> None:
    # Names are not looked at: the bytes decide (the bot's tests cover the names).
    data = _save(_noise(24, 16), "PNG")
    assert images.probe(data).format == "PNG"
    assert images.decode(data).size == (24, 16)


# -- known faults: a typed error, at once -----------------------------------------------------

EXPECTED_ERRORS: dict[str, type[StylizerError]] = {
    name: UnsupportedImage if name.startswith(("dds-", "rle")) else ImageTooLarge
    for name in faults.REGRESSIONS}


@pytest.mark.parametrize("name", list(faults.REGRESSIONS))
def test_each_known_fault_is_refused_quickly_with_a_typed_error(name: str) -> None:
    data = faults.REGRESSIONS[name]()
    for entry in (images.probe, lambda d: images.decode(d, max_side=256)):
        start = time.perf_counter()
        with pytest.raises(EXPECTED_ERRORS[name]) as info:
            entry(data)
        # Milliseconds alone (the first DDS imports Pillow's other plugins' signature
        # checks); generous for 2 shared cores. They took 0.4 to 5 s, or were accepted.
        assert time.perf_counter() - start < 1.0
        assert "save it again" in str(info.value) or "not supported" in str(info.value)


def test_files_within_the_metadata_bounds_are_read() -> None:
    within = {
        "text chunks": faults.png_text_flood(image_structure.MAX_PNG_METADATA_CHUNKS - 1),
        "ICC chunks": faults.png_iccp_flood(image_structure.MAX_PNG_COMPRESSED_CHUNKS),
        "IDAT chunks": faults.png_idat_flood(image_structure.MAX_PNG_DATA_CHUNKS - 2),
        "EXIF segments": faults.jpeg_exif_flood(image_structure.MAX_EXIF_SEGMENTS, 1000),
        "fill bytes": faults.jpeg_fill_flood(image_structure.MAX_STEPS - 10),
        "tables": faults.jpeg_dqt_flood(2),
        "GIF comment": faults.gif_comment_flood(image_structure.MAX_STEPS - 10),
        "GIF junk": faults.gif_junk_flood(image_structure.MAX_STEPS - 10),
        "RLE BMP": faults.bmp_rle(1024, 4),
    }
    for what, data in within.items():
        info = images.probe(data)
        assert images.decode(data, max_side=512).size == images.fitted_size(
            *info.upright_size, 512), what


def test_a_gif_extension_pillow_would_misread_is_corrupt() -> None:
    # An empty graphic-control extension: Pillow would take the next byte for a length.
    with pytest.raises(CorruptImage, match="GIF is damaged"):
        images.probe(faults.gif_with(b"!\xf9\x00"))


def test_webp_pictures_are_capped_lower() -> None:
    small = _save(Image.new("RGB", (64, 32), (1, 2, 3)), "WEBP")
    assert images.decode(small).size == (64, 32)
    big = _save(Image.new("RGB", (4097, 4096), (1, 2, 3)), "WEBP", quality=1, method=0)
    with pytest.raises(ImageTooLarge, match="WebP"):
        images.probe(big)


# -- orientation from the header alone, the same in probe and decode --------------------------

def _exif(orientation: int, entries: int = 0) -> bytes:
    """Big-endian TIFF/EXIF with the orientation first, then `entries` filler tags."""
    tags = [(0x0112, 3, 1, struct.pack(">HH", orientation, 0))]
    tags += [(0x0131, 2, 4, b"abc\0")] * entries
    ifd = struct.pack(">H", len(tags)) + b"".join(struct.pack(">HHI4s", *t) for t in tags)
    return b"MM\0*\0\0\0\x08" + ifd + b"\0\0\0\0"


def _png_with(chunk: bytes, after_pixels: bool = False) -> bytes:
    data = _save(Image.new("RGB", (40, 20), (255, 255, 255)), "PNG")
    at = data.index(b"IEND") - 4 if after_pixels else data.index(b"IDAT") - 4
    return data[:at] + faults.png_chunk(b"eXIf", chunk) + data[at:]


def test_an_exif_chunk_after_the_pixels_is_ignored_by_probe_and_decode_alike() -> None:
    data = _png_with(_exif(6), after_pixels=True)
    info = images.probe(data)
    assert images.decode(data).size == info.upright_size == (40, 20)
    turned = _png_with(_exif(6))
    info = images.probe(turned)
    assert images.decode(turned).size == info.upright_size == (20, 40)


def test_an_exif_of_65535_entries_still_gives_its_orientation() -> None:
    data = _png_with(_exif(6, entries=65534))
    assert len(data) > 700_000
    info = images.probe(data)
    assert info.rotated
    assert images.decode(data, max_side=30).size == (15, 30)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "BMP"])
@pytest.mark.parametrize(("width", "height", "max_side"),
                         [(2001, 1501, 256), (999, 1001, 500), (1200, 37, 64), (50, 40, 64)])
def test_decode_gives_exactly_the_fitted_size_probe_predicts(fmt: str, width: int,
                                                            height: int, max_side: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = 8
    kwargs = {"exif": exif} if fmt in ("JPEG", "PNG", "WEBP") else {}
    # A gradient: quick to encode at 3 MP (noise takes GIF's quantiser seconds).
    ramp = Image.linear_gradient("L").resize((width, height))
    data = _save(Image.merge("RGB", (ramp, ramp.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
                                     ramp)), fmt, **kwargs)
    info = images.probe(data)
    img = images.decode(data, max_side=max_side)
    assert img.mode == "RGB"
    assert img.size == images.fitted_size(*info.upright_size, max_side)


# -- 40 megapixels: time and memory in a fresh process ---------------------------------------

MEASURE = r"""
import json, resource, sys, time
from stylizer import images
data = open(sys.argv[1], "rb").read()
start = time.perf_counter()
info = images.probe(data)
probed = time.perf_counter() - start
start = time.perf_counter()
img = images.decode(data, max_side=1024)
decoded = time.perf_counter() - start
try:  # ru_maxrss is inherited from the parent on Linux; VmHWM is this process's own
    with open("/proc/self/status") as status:
        peak = next(int(l.split()[1]) for l in status if l.startswith("VmHWM:")) / 1024
except OSError:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
grey = img.convert("L")
print(json.dumps({"probe_s": probed, "decode_s": decoded, "peak_mb": peak,
                  "size": img.size, "top": grey.getpixel((512, 0)),
                  "middle": grey.getpixel((512, 512)), "bottom": grey.getpixel((512, 1023))}))
"""


@pytest.mark.parametrize("kind", ["png-grey16", "png-rgba"])
def test_a_40_megapixel_png_decodes_in_bounded_time_and_memory(kind: str,
                                                               tmp_path: Path) -> None:
    # The 16-bit one took 1 GB (float64 copies) and 1-4 s; probing any PNG decoded it.
    path = tmp_path / "big.png"
    path.write_bytes(faults.at_pixel_cap(kind))
    proc = subprocess.run([sys.executable, "-c", MEASURE, str(path)], capture_output=True,
                          text=True, timeout=120, check=True,
                          cwd=Path(__file__).resolve().parents[2])
    got = json.loads(proc.stdout)
    assert got["size"] == [1024, 1024]
    assert got["peak_mb"] < 512
    assert got["probe_s"] < 0.1
    assert got["decode_s"] < 5  # about 0.5 s alone; generous for 2 shared cores
    if kind == "png-grey16":  # black at the top to white at the bottom, scaled, not clipped
        assert got["top"] < 3
        assert 120 < got["middle"] < 136
        assert got["bottom"] > 252
