"""Images in and out: safe decoding of untrusted bytes, and clean encoding.

Decoding checks the format against an allow-list and the pixel count from the header
*before* any pixel data is decoded, so a decompression bomb is refused without
allocating its pixels.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from stylizer.errors import CorruptImage, ImageTooLarge, UnsupportedImage

# Pillow format names we accept. APNG is reported as "PNG"; GIF and APNG give frame one.
ALLOWED_FORMATS: dict[str, str] = {
    "JPEG": "JPEG", "PNG": "PNG", "WEBP": "WebP", "GIF": "GIF", "BMP": "BMP",
    # Many phone cameras write JPEGs with a second (depth or HDR) picture: Pillow calls
    # them MPO. The first frame is the photo.
    "MPO": "JPEG",
}
ALLOWED_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp")
ALLOWED_CONTENT_TYPES = ("image/jpeg", "image/png", "image/webp", "image/gif", "image/bmp",
                         "image/apng", "image/x-ms-bmp")
MAX_BYTES = 25 * 1024 * 1024
MAX_PIXELS = 40_000_000  # a 48 MP phone photo is 8000x6000 = 48 M; most are 12 MP


@dataclass(frozen=True)
class ImageInfo:
    format: str
    width: int  # as stored
    height: int
    rotated: bool = False  # EXIF says it is shown turned by 90 degrees

    @property
    def upright_size(self) -> tuple[int, int]:
        """(width, height) as `decode` returns it, after the EXIF orientation."""
        return (self.height, self.width) if self.rotated else (self.width, self.height)


def describe_allowed() -> str:
    """'JPEG, PNG, WebP, GIF or BMP'."""
    names = list(dict.fromkeys(ALLOWED_FORMATS.values()))
    return ", ".join(names[:-1]) + " or " + names[-1]


def _open(data: bytes, max_bytes: int, max_pixels: int) -> Image.Image:
    if len(data) == 0:
        raise CorruptImage("The file is empty.")
    if len(data) > max_bytes:
        raise ImageTooLarge(f"The file is {len(data) / 2**20:.1f} MB; the limit is "
                            f"{max_bytes / 2**20:.0f} MB.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=None)
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(f"The image has too many pixels; the limit is "
                            f"{max_pixels / 1e6:.0f} megapixels.") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise CorruptImage(f"That file is not an image I can read. Send a "
                           f"{describe_allowed()} file.") from exc
    if img.format not in ALLOWED_FORMATS:
        fmt = img.format or "unknown"
        img.close()
        raise UnsupportedImage(f"{fmt} images are not supported; send a "
                               f"{describe_allowed()} file.")
    w, h = img.size
    if w <= 0 or h <= 0:
        raise CorruptImage("The image has no pixels.")
    if w * h > max_pixels:
        img.close()
        raise ImageTooLarge(f"The image is {w}x{h} ({w * h / 1e6:.0f} megapixels); the limit is "
                            f"{max_pixels / 1e6:.0f} megapixels.")
    return img


def probe(data: bytes, *, max_bytes: int = MAX_BYTES, max_pixels: int = MAX_PIXELS) -> ImageInfo:
    """Checks bytes the way `decode` will, reading only the header, and says what they are."""
    img = _open(data, max_bytes, max_pixels)
    try:
        # EXIF orientations 5-8 turn the picture by 90 degrees (see ImageOps.exif_transpose).
        rotated = img.getexif().get(0x0112, 1) in (5, 6, 7, 8)
    except (OSError, ValueError, SyntaxError, KeyError, TypeError):  # damaged EXIF: ignored
        rotated = False
    info = ImageInfo(str(img.format), img.size[0], img.size[1], rotated)
    img.close()
    return info


def fitted_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """The size `resize_to_fit` gives a `width` x `height` image."""
    scale = max_side / max(width, height)
    if scale >= 1:
        return width, height
    return max(1, round(width * scale)), max(1, round(height * scale))


def _to_rgb(img: Image.Image) -> Image.Image:
    """Every Pillow mode to 8-bit RGB; transparency is composited onto white."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        arr = np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr, "L").convert("RGB")
    if (mode == "P" and "transparency" in img.info) or mode in ("LA", "PA", "La", "RGBa"):
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode == "RGBA":
        background = Image.new("RGB", img.size, (255, 255, 255))
        background.paste(img, mask=img.getchannel("A"))
        return background
    return img.convert("RGB")  # L, 1, P, CMYK, YCbCr, LAB, HSV


def resize_to_fit(img: Image.Image, max_side: int) -> Image.Image:
    """Downscales so that the long side is at most `max_side` (never upscales)."""
    size = fitted_size(*img.size, max_side)
    if size == img.size:
        return img
    return img.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def decode(data: bytes, *, max_side: int | None = None, max_bytes: int = MAX_BYTES,
           max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Untrusted bytes to an upright RGB image, at most `max_side` on its long side.

    Raises `CorruptImage`, `UnsupportedImage` or `ImageTooLarge`.
    """
    img = _open(data, max_bytes, max_pixels)
    try:
        if max_side is not None and img.format == "JPEG":
            # Let libjpeg decode at a reduced scale: far less memory for big photos.
            img.draft("RGB", (max_side, max_side))
        img.seek(0)  # GIF / APNG: first frame only
        img.load()
        img = ImageOps.exif_transpose(img) or img
        rgb = _to_rgb(img)
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise CorruptImage("The image is damaged or cut short; try saving it again.") from exc
    if max_side is not None:
        rgb = resize_to_fit(rgb, max_side)
    return rgb


def load_path(path: str, *, max_side: int | None = None) -> Image.Image:
    """Reads and decodes an image file with the same checks as uploaded bytes."""
    with open(path, "rb") as fh:
        return decode(fh.read(), max_side=max_side)


def encode(img: Image.Image, fmt: str = "PNG", *, quality: int = 92,
           compress_level: int = 6) -> bytes:
    """Encodes with no metadata (no EXIF, no text chunks, no ICC profile); `quality` is
    for JPEG and WebP, `compress_level` (zlib, 0-9) for PNG."""
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
    else:
        raise ValueError(f"cannot encode as {fmt}")
    return buf.getvalue()
