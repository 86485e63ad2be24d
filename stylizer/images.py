"""Images in and out: safe decoding of untrusted bytes, and clean encoding.

Untrusted bytes meet only the readers of the formats we accept (Pillow's JPEG, PNG,
WebP, GIF and BMP plugins), and only after a walk over the file's framing
(`stylizer.image_structure`) has bounded the work those readers do in Python, one block
at a time: a file of a million tiny metadata blocks is refused in milliseconds instead of
parsed for seconds. A file of
another format is named from its signature, by no parser. Format and pixel count come
from the header *before* any pixel data is decoded, so a decompression bomb is refused
without allocating its pixels, and `probe` never decodes pixels at all (it counts an
animation's frames from its framing: `image_structure.count_gif_frames`, libwebp's
demuxer, APNG's acTL chunk). `decode`
shrinks early (JPEG's DCT scaling; otherwise at most one full-size conversion, then
Pillow's integer reduce) and never makes float copies: a picture at the pixel cap takes
well under a second and a few hundred MB (`benchmarks/decode.py`). Whatever the bytes,
`probe` and `decode` return, or raise `CorruptImage`, `UnsupportedImage` or
`ImageTooLarge`.

Long because every way from untrusted bytes to pixels passes through here (the checks,
the frame count, the mode conversions; `stylizer.animation` opens and converts with these
same functions): whoever asks what a hostile file can make us do reads one file.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

# The plugins of the formats we read, imported so that they are registered: with
# `formats=` naming only them, `Image.open` never loads (or tries) any other reader.
from PIL import (  # noqa: F401
    BmpImagePlugin,
    GifImagePlugin,
    Image,
    JpegImagePlugin,
    PngImagePlugin,
    UnidentifiedImageError,
    WebPImagePlugin,
)

from stylizer.errors import CorruptImage, ImageTooLarge, StylizerError, UnsupportedImage
from stylizer.image_structure import MAX_SOURCE_FRAMES, check_structure, count_gif_frames

# Pillow format names we accept. APNG is reported as "PNG"; `decode` gives frame one of
# an animated GIF, WebP or APNG (`stylizer.animation` decodes them all).
ALLOWED_FORMATS: dict[str, str] = {
    "JPEG": "JPEG", "PNG": "PNG", "WEBP": "WebP", "GIF": "GIF", "BMP": "BMP",
    # Many phone cameras write JPEGs with a second (depth or HDR) picture: Pillow calls
    # them MPO. The first frame is the photo. They come out of the JPEG reader.
    "MPO": "JPEG",
}
# The only Pillow readers that ever see an upload's bytes.
_READERS = ("JPEG", "PNG", "WEBP", "GIF", "BMP")
# What a file's name or declared type may say for it to be worth reading. Hints only:
# the decoded bytes decide (a PNG named .jpg is a PNG).
ALLOWED_EXTENSIONS = (".jpg", ".jpeg", ".jpe", ".jfif", ".pjpeg", ".pjp", ".mpo", ".png",
                      ".apng", ".webp", ".gif", ".bmp")
ALLOWED_CONTENT_TYPES = ("image/jpeg", "image/jpg", "image/pjpeg", "image/png", "image/apng",
                         "image/x-png", "image/webp", "image/gif", "image/bmp", "image/x-bmp",
                         "image/x-ms-bmp")
MAX_BYTES = 25 * 1024 * 1024
MAX_PIXELS = 40_000_000  # a 48 MP phone photo is 8000x6000 = 48 M; most are 12 MP
# libwebp takes about a second to decode 40 MP here, and Pillow holds three full-size
# copies of it meanwhile; WebP pictures are web images, rarely over 4K.
MAX_WEBP_PIXELS = 4096 * 4096
# Pillow decodes RLE-compressed BMPs in Python, a pixel at a time (seconds at 40 MP).
MAX_RLE_BMP_PIXELS = 1 << 20

# The EXIF read for the orientation: as much as one JPEG segment can hold. Pillow's EXIF
# parser reads up to 65,535 entries, a quarter of a second, wherever EXIF is longer.
MAX_EXIF_BYTES = 65_536
# The most a painting (a style image) is decoded to on its long side, in pixels: its Grams
# are taken at most this large (see `stylizer.targets.style_size`).
MAX_STYLE_SIDE = 2048
# Reduce by whole factors (box filter) down to this many times the target size before
# the final Lanczos resize: all but as sharp as Lanczos all the way, in a fraction of the
# time (Pillow's `reducing_gap`; 3.0 gains nothing visible and costs 0.2 s at 40 MP).
REDUCING_GAP = 2.0


@dataclass(frozen=True)
class ImageInfo:
    """What an image's header says, read without decoding its pixels (`probe`)."""

    format: str
    width: int  # pixels, as stored
    height: int
    rotated: bool = False  # EXIF says it is shown turned by 90 degrees
    frames: int = 1  # frames of its animation (GIF, WebP, APNG); 1 for a still

    @property
    def upright_size(self) -> tuple[int, int]:
        """(width, height) in pixels as `decode` returns it, after the EXIF orientation."""
        return (self.height, self.width) if self.rotated else (self.width, self.height)


def describe_allowed() -> str:
    """'JPEG, PNG, WebP, GIF or BMP'."""
    names = list(dict.fromkeys(ALLOWED_FORMATS.values()))
    return ", ".join(names[:-1]) + " or " + names[-1]


# -- opening ---------------------------------------------------------------------------------

def _not_readable() -> CorruptImage:
    return CorruptImage(f"That file is not an image I can read. Send a {describe_allowed()} "
                        "file.")


@contextmanager
def pillow_errors(failure: CorruptImage, max_pixels: int = MAX_PIXELS) -> Iterator[None]:
    """Pillow's errors as `failure` (a decompression bomb as `ImageTooLarge`, naming
    `max_pixels`), its warnings silenced; ours pass as they are. Its readers raise
    whatever their parsing meets (OSError, SyntaxError, ValueError, EOFError,
    struct.error, IndexError, NotImplementedError, AssertionError, MemoryError, ...), and
    its own fuzzers accept any Exception: so do we, around Pillow calls only."""
    try:
        with warnings.catch_warnings():
            # DecompressionBombWarning (our pixel cap is lower), damaged-EXIF warnings.
            warnings.simplefilter("ignore")
            yield
    except StylizerError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(f"The image has too many pixels; the limit is "
                            f"{max_pixels / 1e6:g} megapixels: send a smaller one.") from exc
    except Exception as exc:  # see the docstring
        raise failure from exc


# Formats named when refused, recognised by the signature checks of Pillow's plugins
# (none of their parsers runs). TGA has no signature, and CUR's is a TGA header's: those
# two, and the rest, are refused as unreadable.
_NAMED_FORMATS = ("TIFF", "ICO", "PPM", "PSD", "JPEG2000", "AVIF", "DDS", "QOI", "ICNS",
                  "EPS", "BLP")
_HEIF_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs")


def _foreign_format(prefix: bytes) -> str | None:
    """The format of a file our readers refused, from its first 16 bytes, if we know it."""
    prefix = prefix.ljust(16, b"\0")
    if prefix[4:8] == b"ftyp" and prefix[8:12] in _HEIF_BRANDS:
        return "HEIC"  # iPhone photos; Pillow has no reader for them
    Image.init()  # registers the other plugins' signature checks
    for fmt in _NAMED_FORMATS:
        accept = Image.OPEN.get(fmt, (None, None))[1]
        if accept is not None and accept(prefix):
            return fmt
    return None


def open_image(data: bytes, *, max_bytes: int = MAX_BYTES,
               max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Untrusted bytes opened by the reader of their format after `decode`'s checks (size,
    framing, format, pixel count), the header read and no pixel decoded; the caller
    closes it, and decodes inside `pillow_errors`. Raises what `probe` raises."""
    if len(data) == 0:
        raise CorruptImage("The file is empty; send the picture again.")
    if len(data) > max_bytes:
        raise ImageTooLarge(f"The file is {len(data) / 2**20:.1f} MB; the limit is "
                            f"{max_bytes / 2**20:.0f} MB: send a smaller one.")
    check_structure(data)
    try:
        with pillow_errors(_not_readable(), max_pixels):
            img = Image.open(io.BytesIO(data), formats=_READERS)
    except CorruptImage as exc:
        if isinstance(exc.__cause__, UnidentifiedImageError):
            fmt = _foreign_format(data[:16])
            if fmt is not None:
                raise UnsupportedImage(f"{fmt} images are not supported; send a "
                                       f"{describe_allowed()} file.") from exc
        raise
    w, h = img.size
    if w <= 0 or h <= 0:
        img.close()
        raise CorruptImage("The image has no pixels.")
    if w * h > max_pixels:
        img.close()
        raise ImageTooLarge(f"The image is {w}x{h} pixels, over the limit of "
                            f"{max_pixels:,} ({max_pixels / 1e6:g} megapixels): send a smaller "
                            "one.")
    if img.format == "WEBP" and w * h > MAX_WEBP_PIXELS:
        img.close()
        raise ImageTooLarge(f"The WebP image is {w}x{h}; the limit for WebP is "
                            f"{MAX_WEBP_PIXELS / 1e6:.1f} megapixels (send a JPEG or PNG).")
    if img.format == "BMP" and img.info.get("compression") in (1, 2) \
            and w * h > MAX_RLE_BMP_PIXELS:
        img.close()
        raise UnsupportedImage(f"Compressed (RLE) BMP files over {MAX_RLE_BMP_PIXELS / 1e6:.0f} "
                               "megapixel are not supported; send it as a PNG or JPEG.")
    return img


_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_90,
}


def exif_orientation(img: Image.Image) -> int:
    """The EXIF (or XMP) orientation, 1-8 (EXIF 2.3 tag 0x0112), from the metadata read
    with the header of an opened image; 1 when there is none or it is damaged. A PNG's
    eXIf chunk after the pixel data is not seen (Pillow would decode the whole picture to
    find it); `probe` and `decode` agree."""
    info = img.info
    exif = info.get("exif")
    if isinstance(exif, bytes) and len(exif) > MAX_EXIF_BYTES:
        info["exif"] = exif[:MAX_EXIF_BYTES]  # IFD0, with the orientation, comes first
    raw = info.get("Raw profile type exif")  # EXIF as hex in PNG text (ImageMagick)
    if isinstance(raw, str) and len(raw) > 3 * MAX_EXIF_BYTES:
        del info["Raw profile type exif"]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # The base class's getexif reads `info` only: PngImageFile's own would load
            # every pixel first.
            value = Image.Image.getexif(img).get(0x0112, 1)
    except Exception:  # noqa: BLE001 - damaged EXIF is ignored, as by any viewer
        return 1
    return value if isinstance(value, int) and value in _TRANSPOSE else 1


def probe(data: bytes, *, max_bytes: int = MAX_BYTES, max_pixels: int = MAX_PIXELS) -> ImageInfo:
    """Checks bytes the way `decode` will, reading only the header, and says what they
    are (sizes in pixels) and how many frames they animate (see `frame_layout`). Raises
    `CorruptImage`, `UnsupportedImage` or `ImageTooLarge` (`max_bytes` in bytes,
    `max_pixels` in pixels; `ImageTooLarge` too for an animation of more than
    MAX_SOURCE_FRAMES frames)."""
    img = open_image(data, max_bytes=max_bytes, max_pixels=max_pixels)
    with img:
        rotated = exif_orientation(img) in (5, 6, 7, 8)  # turned by 90 degrees
        frames = frame_layout(img, data).count
        return ImageInfo(str(img.format), img.size[0], img.size[1], rotated, frames)


@dataclass(frozen=True)
class FrameLayout:
    """Where the animation of an opened file lies among the frames its Pillow reader gives
    (`frame_layout`)."""

    first: int  # Pillow's index of its first frame: 1 for an APNG whose default image is apart
    count: int  # its frames; 1 for a still
    canvas: tuple[int, int]  # (width, height) in pixels that Pillow decodes every frame on


def frame_layout(img: Image.Image, data: bytes) -> FrameLayout:
    """The frames of `img`, opened by `open_image` from `data`, counted without decoding
    pixels: a GIF's by `image_structure.count_gif_frames` (its canvas grows with frames
    that reach past the logical screen, as Pillow's does), a WebP's by libwebp's demuxer
    (WebP container specification: the ANMF chunks), an APNG's from its acTL chunk (APNG
    specification, W3C PNG 3rd edition: num_frames; an IDAT image without an fcTL before
    it is a default image, not part of the animation). JPEG (MPO too) and BMP: one frame.

    Raises `ImageTooLarge` for more than MAX_SOURCE_FRAMES frames; no other error.
    """
    if img.format == "GIF":
        gif = count_gif_frames(data, MAX_SOURCE_FRAMES)
        return FrameLayout(0, max(1, gif.count), (gif.width, gif.height))
    first, count = 0, 1
    if img.format in ("WEBP", "PNG"):
        count = int(getattr(img, "n_frames", 1))
        if img.format == "PNG" and count > 1 and getattr(img, "default_image", False):
            first, count = 1, count - 1
    if count > MAX_SOURCE_FRAMES:
        raise ImageTooLarge(f"The animation has {count:,} frames; the limit is "
                            f"{MAX_SOURCE_FRAMES:,}: send a shorter one.")
    return FrameLayout(first, count, img.size)


def fitted_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """The size `resize_to_fit` gives a `width` x `height` image (pixels)."""
    scale = max_side / max(width, height)
    if scale >= 1:
        return width, height
    return max(1, round(width * scale)), max(1, round(height * scale))


# Modes that resize() takes and that become RGB without a full-size copy.
_RESIZABLE = ("RGB", "RGBA", "L", "LA")


def _resizable(img: Image.Image) -> Image.Image:
    """Any mode our readers give, as one of `_RESIZABLE`, at full size."""
    mode = img.mode
    if mode in _RESIZABLE:
        return img
    if mode.startswith("I;16") or mode in ("I", "F"):
        # 16- or 32-bit grey: scale to 8 bits with point(), which keeps the pixel size
        # (no float64 copies of a 40-megapixel picture). Pillow's own convert clips.
        sixteen = mode.startswith("I;16")
        if mode not in ("I;16", "I", "F"):
            img = img.convert("I")
        hi = 65535 if sixteen else img.getextrema()[1]
        scale = 255 / 65535 if isinstance(hi, (int, float)) and hi > 255 else 1.0
        return img.point(lambda v: v * scale + 0.5).convert("L")
    if mode == "P" and "transparency" in img.info:
        return _palette_on_white(img)
    if mode == "PA":
        return img.convert("RGBA")
    if mode == "1":
        return img.convert("L")
    return img.convert("RGB")  # CMYK, YCbCr, LAB, HSV, RGBX, La, RGBa...


def _palette_on_white(img: Image.Image) -> Image.Image:
    """A palette image with transparent entries, as RGB on white: the palette's colours
    are blended with white by their alpha, so only one full-size conversion is made."""
    palette = img.getpalette("RGB") or []
    alphas = [255] * (len(palette) // 3)
    transparency = img.info.pop("transparency")
    if isinstance(transparency, int) and 0 <= transparency < len(alphas):
        alphas[transparency] = 0
    elif isinstance(transparency, bytes):
        alphas[:len(transparency)] = transparency[:len(alphas)]
    img.putpalette([(c * alphas[i // 3] + 255 * (255 - alphas[i // 3]) + 127) // 255
                    for i, c in enumerate(palette)], "RGB")
    return img.convert("RGB")


def _to_rgb(img: Image.Image) -> Image.Image:
    """An image of a `_RESIZABLE` mode as 8-bit RGB; transparency on white."""
    if img.mode == "RGB":
        return img
    if img.mode in ("RGBA", "LA"):
        background = Image.new("RGB", img.size, (255, 255, 255))
        background.paste(img.convert("RGBA") if img.mode == "LA" else img,
                         mask=img.getchannel("A"))
        return background
    return img.convert("RGB")


def resize_to_fit(img: Image.Image, max_side: int) -> Image.Image:
    """Downscales so that the long side is at most `max_side` pixels (never upscales)."""
    size = fitted_size(*img.size, max_side)
    if size == img.size:
        return img
    return img.resize(size, Image.Resampling.LANCZOS, reducing_gap=REDUCING_GAP)


def upright_rgb(img: Image.Image, size: tuple[int, int], orientation: int) -> Image.Image:
    """A loaded image (any mode our readers give) as RGB of `size` pixels as stored, then
    turned upright by the EXIF `orientation` (1-8); transparency on white. A palette image
    with transparency is changed in place: pass a copy of one still in use."""
    pic = _resizable(img)
    if pic.size != size:
        pic = pic.resize(size, Image.Resampling.LANCZOS, reducing_gap=REDUCING_GAP)
    if orientation != 1:
        pic = pic.transpose(_TRANSPOSE[orientation])
    return _to_rgb(pic)


def decode(data: bytes, *, max_side: int | None = None, max_bytes: int = MAX_BYTES,
           max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Untrusted bytes to an upright RGB image, at most `max_side` pixels on its long side
    (exactly `fitted_size` of the upright size `probe` reports).

    Raises `CorruptImage`, `UnsupportedImage` or `ImageTooLarge` (`max_bytes` in bytes,
    `max_pixels` in pixels).
    """
    img = open_image(data, max_bytes=max_bytes, max_pixels=max_pixels)
    rgb = None
    try:
        damaged = CorruptImage("The image is damaged or cut short; try saving it again.")
        with pillow_errors(damaged):
            orientation = exif_orientation(img)
            # As stored; the long side is the same either way up.
            target = fitted_size(*img.size, max_side) if max_side is not None else img.size
            if img.format in ("JPEG", "MPO") and target != img.size:
                # libjpeg decodes at 1/2, 1/4 or 1/8 scale, no smaller than the target:
                # far less time and memory for big photos.
                img.draft(img.mode, target)
            img.load()  # frame one of a GIF or APNG
            rgb = upright_rgb(img, target, orientation)
            return rgb
    finally:
        if rgb is not img:
            img.close()


def decode_photo(data: bytes, size: int) -> Image.Image:
    """The photo of a painting of `size` px, decoded as every route paints it (the CLI, the
    worker): shrunk while decoding to no more than `size` on its long side. Raises what
    `decode` raises."""
    return decode(data, max_side=size)


def decode_style(data: bytes) -> Image.Image:
    """A style image, decoded as every route paints it: at most MAX_STYLE_SIDE on its long
    side. Raises what `decode` raises."""
    return decode(data, max_side=MAX_STYLE_SIDE)


def load_path(path: str, *, max_side: int | None = None) -> Image.Image:
    """Reads and decodes an image file with the same checks as uploaded bytes (see
    `decode`); `OSError` if the file cannot be read."""
    return decode(read_path(path), max_side=max_side)


def read_path(path: str, max_bytes: int = MAX_BYTES) -> bytes:
    """A file's bytes, read no further than `max_bytes` + 1 (a device such as /dev/zero,
    or a huge file, is refused by its size without being held in memory); `OSError` if
    the file cannot be read, `ImageTooLarge` if it is over `max_bytes`."""
    with open(path, "rb") as fh:
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ImageTooLarge(f"The file is over {max_bytes / 2**20:.0f} MB, the limit; send a "
                            "smaller one.")
    return data


def encode(img: Image.Image, fmt: str = "PNG", *, quality: int = 92,
           compress_level: int = 6) -> bytes:
    """Encodes with no metadata (no EXIF, no text chunks, no ICC profile); `quality` is
    for JPEG and WebP, `compress_level` (zlib, 0-9) for PNG. A GIF is one frame of at most
    256 colours: a fast-octree palette, as for an animation (`stylizer.animation`), but
    mapped with Floyd-Steinberg dithering, whose moving errors only an animation's
    unchanging pixels suffer from. `ValueError` for another format."""
    clean = img.convert("RGB")
    clean.info = {}
    buf = io.BytesIO()
    if fmt.upper() in ("JPG", "JPEG"):
        clean.save(buf, "JPEG", quality=quality, optimize=True, subsampling=0 if quality >= 90
                   else 2)
    elif fmt.upper() == "PNG":
        clean.save(buf, "PNG", optimize=False, compress_level=compress_level)
    elif fmt.upper() == "WEBP":
        clean.save(buf, "WEBP", quality=quality)
    elif fmt.upper() == "GIF":
        palette = clean.quantize(256, method=Image.Quantize.FASTOCTREE)
        clean.quantize(palette=palette, dither=Image.Dither.FLOYDSTEINBERG).save(
            buf, "GIF", optimize=False)
    else:
        raise ValueError(f"cannot encode as {fmt}")
    return buf.getvalue()
