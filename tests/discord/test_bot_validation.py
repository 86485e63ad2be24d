"""The pure checks and image helpers behind the commands."""

from __future__ import annotations

import io

import pytest
from bot_helpers import noise_png, photo_png
from PIL import Image

from bot.discord import pictures
from bot.discord.validation import (
    AttachmentInfo,
    build_params,
    check_attachment,
    check_host,
    check_style_choice,
    derive_params,
)
from bot.jobs.errors import InvalidRequest, UserError
from stylizer.params import limits

MB = 2**20


def info(name: str = "a.png", ctype: str | None = "image/png", size: int = 1000,
         width: int | None = 64, height: int | None = 48) -> AttachmentInfo:
    return AttachmentInfo(name, ctype, size, width, height)


@pytest.mark.parametrize(("attachment", "words"), [
    (info("a.txt", "text/plain"), "not an image I accept"),
    (info("a.PNG", "application/pdf"), "application/pdf"),
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
