"""The pure checks and image helpers behind the commands; then uploads of every name and
kind through the real client and the emulated Discord."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
import pytest_asyncio
from bot_helpers import FAST_PARAMS, PRESET, ephemeral_text, make_settings, noise_png, photo_png
from emulator import DiscordEmulator, Upload
from PIL import Image

from bot.app import App, push_commands, running
from bot.discord import pictures
from bot.discord.validation import (
    AttachmentInfo,
    build_params,
    check_attachment,
    check_host,
    check_image_bytes,
    check_style_choice,
    could_be_image,
    derive_params,
)
from bot.jobs.errors import InvalidRequest, UserError
from bot.jobs.executor import OfflineExecutor
from stylizer.params import limits

MB = 2**20


def info(name: str = "a.png", ctype: str | None = "image/png", size: int = 1000,
         width: int | None = 64, height: int | None = 48) -> AttachmentInfo:
    return AttachmentInfo(name, ctype, size, width, height)


@pytest.mark.parametrize(("attachment", "words"), [
    (info("a.txt", "text/plain"), "not an image I accept"),
    (info("a.pdf", "application/pdf"), "application/pdf"),
    (info("IMG_0001.HEIC", "image/heic"), "not an image I accept; send a JPEG"),
    (info(size=0), "empty"),
    (info(size=3 * MB), "3.0 MB; the limit is 2 MB"),
    (info(width=10_000, height=10_000), "10000x10000; the limit is 40 megapixels"),
])
def test_attachment_metadata_is_refused_with_what_is_allowed(attachment: AttachmentInfo,
                                                             words: str) -> None:
    with pytest.raises(InvalidRequest, match=words):
        check_attachment(attachment, what="photo", max_bytes=2 * MB, max_pixels=40_000_000)


def test_good_attachment_metadata_passes() -> None:
    check_attachment(info("Photo.JPG", "image/jpeg; charset=binary"), what="photo",
                     max_bytes=2 * MB, max_pixels=40_000_000)
    check_attachment(info(ctype=None, width=None, height=None), what="photo",
                     max_bytes=2 * MB, max_pixels=40_000_000)


# Names people's files carry. Name and type are hints: a file is refused before it is
# downloaded only when neither could be an image we read; the bytes decide after.
COULD_BE_IMAGES = [
    ("photo.jfif", "image/jpeg"), ("photo.jpe", "image/jpeg"), ("photo.pjpeg", "image/pjpeg"),
    ("photo.pjp", "image/jpeg"), ("moving.apng", "image/apng"), ("PHOTO.JFIF", "IMAGE/JPEG"),
    ("photo", None), ("photo", "application/octet-stream"), ("IMG_1234", "image/jpeg"),
    ("shot.jpg", "image/png"), ("a.PNG", "application/pdf"), ("render.php", "image/png"),
    ("scan.mpo", "image/jpeg"), ("old.jfif", None),
]


@pytest.mark.parametrize(("name", "ctype"), COULD_BE_IMAGES)
def test_a_name_or_a_type_that_could_be_an_image_is_fetched(name: str,
                                                            ctype: str | None) -> None:
    assert could_be_image(name, ctype)
    check_attachment(info(name, ctype), what="photo", max_bytes=2 * MB, max_pixels=40_000_000)


@pytest.mark.parametrize(("name", "ctype"), [
    ("notes.txt", "text/plain"), ("clip.mp4", "video/mp4"), ("IMG_1.heic", "image/heic"),
    ("archive.zip", "application/zip"), ("doc.pdf", "application/pdf; q=1"),
])
def test_a_file_neither_named_nor_typed_as_an_image_is_not(name: str, ctype: str) -> None:
    assert not could_be_image(name, ctype)


def _dds_texture() -> bytes:
    """A 4x4 DDS with a FourCC Pillow's DDS reader does not implement (it raised
    NotImplementedError, through every entry point)."""
    header = struct.pack("<6I", 0x1007, 4, 4, 0, 0, 0) + b"\0" * 44
    pixel_format = struct.pack("<2I4s5I", 32, 0x4, b"ZZZZ", 0, 0, 0, 0, 0)
    return (b"DDS " + struct.pack("<I", 124) + header + pixel_format
            + struct.pack("<5I", 0x1000, 0, 0, 0, 0) + b"\0" * 64)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def _text_flood_png(chunks: int = 200_000) -> bytes:
    """A small PNG with `chunks` tiny text chunks before its pixels: Pillow took 1-3 s on
    them, on the bot's event loop when the job service probed it."""
    png = photo_png()
    at = png.index(b"IDAT") - 4
    return png[:at] + _png_chunk(b"tEXt", b"key\0val") * chunks + png[at:]


def _animated_gif() -> bytes:
    """Six 64x48 frames of noise: a frame cut short is one the whole file needs."""
    rng = np.random.default_rng(0)
    frames = [Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
              for _ in range(6)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=80)
    return buf.getvalue()


@pytest.mark.parametrize(("data", "code", "words"), [
    pytest.param(_dds_texture(), "unsupported_image", "DDS images are not supported", id="dds"),
    pytest.param(_text_flood_png(), "image_too_large", "metadata", id="text-flood"),
    pytest.param(photo_png()[:300], "corrupt_image", "damaged or cut short", id="cut-short"),
    pytest.param(b"GIF89a" + b"\0" * 40, "corrupt_image", "not an image I can read",
                 id="gif-header-only"),
    pytest.param(_animated_gif()[:-60], "corrupt_image", "animation is damaged or cut short",
                 id="animation-cut-short"),
    # Cut in half, inside frame 3: its framing counts 3 whole frames, which a header
    # check (`images.probe`, the job service's intake) accepts; decoding them does not.
    pytest.param(_animated_gif()[:len(_animated_gif()) // 2], "corrupt_image",
                 "animation is damaged or cut short", id="animation-cut-in-half"),
])
def test_the_downloaded_bytes_decide(data: bytes, code: str, words: str) -> None:
    with pytest.raises(InvalidRequest, match=words) as err:
        check_image_bytes(data, what="photo", max_bytes=25 * MB, max_pixels=40_000_000)
    assert err.value.code == code


@pytest.mark.parametrize("url", [
    "https://cdn.discordapp.com/attachments/1/2/a.png?ex=1",
    "https://media.discordapp.net/attachments/1/2/a.png",
    "http://127.0.0.1:8123/cdn/a.png",
])
def test_allowed_hosts(url: str) -> None:
    check_host(url, ("cdn.discordapp.com", "media.discordapp.net", "127.0.0.1:8123"))


@pytest.mark.parametrize("url", [
    "https://evil.example/a.png", "https://cdn.discordapp.com.evil.example/a.png",
    "https://cdn.discordapp.com:8443/a.png", "http://127.0.0.1:9999/a.png",
    "http://127.0.0.1/a.png", "file:///etc/passwd", "not a url",
])
def test_other_hosts_are_refused(url: str) -> None:
    with pytest.raises(UserError):
        check_host(url, ("cdn.discordapp.com", "127.0.0.1:8123"))


def test_exactly_one_style() -> None:
    check_style_choice("scream", False)
    check_style_choice(None, True)
    with pytest.raises(InvalidRequest, match="not both"):
        check_style_choice("scream", True)
    with pytest.raises(InvalidRequest, match="Pick a preset"):
        check_style_choice(None, False)


def test_build_params_layers_defaults_and_options() -> None:
    params = build_params({"steps": 6}, strength=2.0, size=None, preserve_colors=True,
                          max_size=512)
    assert params == {"steps": 6, "style_weight": 2.0, "preserve_colors": True}
    assert build_params({}, strength=None, size=300, preserve_colors=None,
                        max_size=512) == {"size": 300}
    with pytest.raises(InvalidRequest, match="largest size here is 512"):
        build_params({}, strength=None, size=1024, preserve_colors=None, max_size=512)
    with pytest.raises(InvalidRequest, match="style_weight"):
        build_params({}, strength=1000.0, size=None, preserve_colors=None, max_size=512)


def test_derive_params() -> None:
    parent = {"size": 64, "style_weight": 1.0, "seed": 0}
    assert derive_params(parent, "again", new_seed=7)["seed"] == 7
    assert derive_params(parent, "more", new_seed=7)["style_weight"] == 2.0
    assert derive_params(parent, "less", new_seed=7)["style_weight"] == 0.5
    top = limits()["style_weight"].max
    assert top is not None
    assert derive_params({"style_weight": top * 0.75}, "more", new_seed=0)["style_weight"] == top
    with pytest.raises(InvalidRequest, match="strongest"):
        derive_params({"style_weight": top}, "more", new_seed=0)


def test_fit_keeps_a_png_that_fits() -> None:
    png = photo_png()
    fitted = pictures.fit_to_limit(png, len(png))
    assert (fitted.data, fitted.ext, fitted.note) == (png, "png", None)


@pytest.mark.parametrize("limit", [20_000, 4000, 800])
def test_fit_goes_to_jpeg_then_smaller(limit: int) -> None:
    png = noise_png(160, 120)
    assert len(png) > limit
    fitted = pictures.fit_to_limit(png, limit)
    assert len(fitted.data) <= limit
    assert fitted.ext == "jpg"
    assert fitted.note
    img = Image.open(io.BytesIO(fitted.data))
    assert img.format == "JPEG"
    assert img.size == (fitted.width, fitted.height)
    assert img.size[0] / img.size[1] == pytest.approx(160 / 120, rel=0.1)


def test_fit_gives_up_on_an_impossible_limit() -> None:
    with pytest.raises(ValueError, match="cannot fit"):
        pictures.fit_to_limit(noise_png(64, 64), 10)


# -- end to end: the real client, the emulated Discord, a job service with no workers -----

def _jpeg() -> bytes:
    buf = io.BytesIO()
    Image.open(io.BytesIO(photo_png())).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _apng() -> bytes:
    first = Image.open(io.BytesIO(photo_png()))
    buf = io.BytesIO()
    first.save(buf, "PNG", save_all=True, append_images=[first.rotate(180)])
    return buf.getvalue()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def app(emu: DiscordEmulator, tmp_path_factory: pytest.TempPathFactory
              ) -> AsyncIterator[App]:
    # Accepted jobs stay queued: these tests are about what is accepted, not painted.
    settings = make_settings(emu, tmp_path_factory.mktemp("bot"), max_jobs_per_user=50)
    await push_commands(settings)
    async with running(settings, executor=OfflineExecutor(), default_params=FAST_PARAMS,
                       grace_s=5) as running_app:
        await running_app.client.wait_until_ready()
        yield running_app


async def _jobs_of(app: App, user: Any) -> int:
    return await app.service.count_for_user(str(user.id))


UPLOADS = {
    "photo.jfif": Upload("photo.jfif", _jpeg(), "image/jpeg"),
    "photo.jpe": Upload("photo.jpe", _jpeg(), "image/jpeg"),
    "photo.pjpeg": Upload("photo.pjpeg", _jpeg(), "image/pjpeg"),
    "photo.pjp": Upload("photo.pjp", _jpeg()),  # no declared type
    "moving.apng": Upload("moving.apng", _apng(), "image/apng"),
    "upper case": Upload("PHOTO.JPEG", _jpeg(), "image/jpeg"),
    "no extension": Upload("photo", _jpeg()),
    "a PNG named .jpg": Upload("photo.jpg", photo_png(), "image/jpeg"),
}


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("case", list(UPLOADS))
async def test_an_image_is_accepted_whatever_its_name(emu: DiscordEmulator, app: App,
                                                      case: str) -> None:
    before = await _jobs_of(app, emu.alice)
    ix = await emu.slash("stylize", emu.alice, image=UPLOADS[case], style=PRESET)
    await emu.wait_for(lambda: ix.followup_ids, 20)  # the job's public progress message
    assert await _jobs_of(app, emu.alice) == before + 1


REFUSED = {
    "a DDS texture named .png": (Upload("texture.png", _dds_texture(), "image/png"),
                                 "DDS images are not supported"),
    "a flood of text chunks": (Upload("flood.png", _text_flood_png(40_000), "image/png"),
                               "metadata"),
    "a HEIC photo": (Upload("IMG_0001.HEIC", b"\0\0\0\x18ftypheic" + b"\0" * 64,
                            "image/heic"), "not an image I accept"),
}


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("case", list(REFUSED))
async def test_a_file_that_is_not_an_image_we_read_is_refused_by_what_it_is(
        emu: DiscordEmulator, app: App, case: str) -> None:
    upload, words = REFUSED[case]
    before = await _jobs_of(app, emu.bob)
    ix = await emu.slash("stylize", emu.bob, image=upload, style=PRESET)
    text = await emu.wait_for(lambda: ephemeral_text(emu, ix))
    assert words in text
    assert "went wrong" not in text
    assert not ix.followup_ids
    assert await _jobs_of(app, emu.bob) == before
