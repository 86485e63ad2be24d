"""Preset styles: the style pack's paintings, procedural styles, and finding them by name."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stylizer import images, presets, procedural
from stylizer.errors import UnknownStyle
from stylizer.params import StyleParams

PAINTINGS = {"starry-night", "great-wave", "scream", "composition-vii", "city-rises",
             "harvesters", "the-kiss", "impression-sunrise", "shipwreck-minotaur",
             "grande-jatte"}
PROCEDURAL = {"mosaic", "brushstrokes", "pointillism"}


def test_with_the_style_pack_every_painting_and_procedural_style_is_listed(
        styles_dir: Path) -> None:
    listed = presets.list_presets(styles_dir)
    names = [p.name for p in listed]
    assert len(names) == len(set(names)) == 13
    assert set(names) == PAINTINGS | PROCEDURAL
    for p in listed:
        assert p.source == ("procedural" if p.name in PROCEDURAL else "pack")
        assert p.title
        assert p.artist
        assert p.year
        assert p.title in p.label
        assert p.artist in p.label


def test_without_a_style_pack_only_procedural_styles_are_listed(tmp_path: Path) -> None:
    assert {p.name for p in presets.list_presets()} == PROCEDURAL
    assert {p.name for p in presets.list_presets(tmp_path)} == PROCEDURAL  # an empty pack


def test_the_manifest_agrees_with_the_style_packs_readme(styles_dir: Path) -> None:
    readme = (styles_dir / "README.md").read_text("utf-8")
    rows = {line.split("`")[1].removesuffix(".jpg"): line for line in readme.splitlines()
            if line.startswith("| `")}
    assert set(rows) == PAINTINGS
    for p in presets.list_presets(styles_dir):
        if p.source == "pack":
            row = rows[p.name]
            assert p.year in row, p.name
            assert p.artist in row, p.name


def test_recommended_params_are_valid_style_params(styles_dir: Path) -> None:
    fields = {f.name for f in dataclasses.fields(StyleParams)}
    for p in presets.list_presets(styles_dir):
        assert set(p.params) <= fields, p.name
        StyleParams.from_dict(p.params)  # raises InvalidParams if a value is out of range


@pytest.mark.parametrize("spelling", ["starry-night", "Starry Night", "STARRY_NIGHT",
                                      "  starry   night ", "The Starry Night", "starry.night"])
def test_get_ignores_case_and_separators(styles_dir: Path, spelling: str) -> None:
    assert presets.get(spelling, styles_dir).name == "starry-night"


def test_get_finds_procedural_styles_without_a_pack() -> None:
    assert presets.get("Brush Strokes").name == "brushstrokes"
    assert presets.get("MOSAIC").source == "procedural"


def test_a_typo_raises_unknown_style_with_suggestions(styles_dir: Path) -> None:
    with pytest.raises(UnknownStyle) as info:
        presets.get("stary-nite", styles_dir)
    assert "starry-night" in info.value.suggestions
    assert len(info.value.suggestions) <= 3
    assert info.value.name == "stary-nite"
    assert "stary-nite" in str(info.value)
    assert "starry-night" in str(info.value)
    assert info.value.code == "unknown_style"


def test_nonsense_has_no_suggestions(styles_dir: Path) -> None:
    with pytest.raises(UnknownStyle) as info:
        presets.get("qqqqqqqqqqqq", styles_dir)
    assert info.value.suggestions == []
    assert "Did you mean" not in str(info.value)


def test_a_painting_missing_from_the_pack_says_so_and_offers_what_there_is() -> None:
    with pytest.raises(UnknownStyle) as info:
        presets.get("Starry Night")
    assert info.value.missing == "The Starry Night"
    assert info.value.suggestions == ["mosaic", "brushstrokes", "pointillism"]
    assert str(info.value) == ("The Starry Night is not installed here: its painting is not "
                               "in the style pack. Styles you can use: mosaic, brushstrokes, "
                               "pointillism.")


def test_a_pack_holding_some_paintings_names_them_for_one_it_lacks(tmp_path: Path,
                                                                   styles_dir: Path) -> None:
    (tmp_path / "scream.jpg").write_bytes((styles_dir / "scream.jpg").read_bytes())
    assert presets.get("the scream", tmp_path).name == "scream"
    with pytest.raises(UnknownStyle) as info:
        presets.get("great-wave", tmp_path)
    assert info.value.missing == "The Great Wave off Kanagawa"
    assert info.value.suggestions[0] == "scream"
    with pytest.raises(UnknownStyle) as typo:  # a typo is still a typo
        presets.get("screem", tmp_path)
    assert typo.value.missing is None
    assert typo.value.suggestions == ["scream"]


def test_the_catalogue_names_every_preset_installed_or_not(tmp_path: Path) -> None:
    names = [p.name for p in presets.catalogue()]
    assert {"starry-night", "great-wave", "mosaic"} <= set(names)
    assert len(names) == len(set(names)) > len(presets.list_presets(tmp_path))


def test_suggest_for_autocomplete(styles_dir: Path) -> None:
    assert "great-wave" in [p.name for p in presets.suggest("wa", styles_dir)]
    assert presets.suggest("star", styles_dir)[0].name == "starry-night"  # prefix first
    assert "starry-night" in [p.name for p in presets.suggest("van gogh", styles_dir)]
    assert "scream" in [p.name for p in presets.suggest("munch", styles_dir)]
    assert len(presets.suggest("", styles_dir)) == 13
    assert len(presets.suggest("", styles_dir, limit=5)) == 5
    assert presets.suggest("zzzzzzzz", styles_dir) == []


def test_a_painting_loads_from_the_pack(styles_dir: Path) -> None:
    p = presets.get("great-wave", styles_dir)
    img = presets.load_image(p, styles_dir)
    assert img.mode == "RGB"
    assert img.size == (1024, 706)
    data = presets.image_bytes(p, styles_dir)
    assert data == (styles_dir / "great-wave.jpg").read_bytes()
    thumb = Image.open(io.BytesIO(presets.thumbnail(p, styles_dir, side=64)))
    assert thumb.format == "JPEG"
    assert max(thumb.size) == 64


@pytest.mark.parametrize("name", sorted(PROCEDURAL))
def test_procedural_styles_are_deterministic_rgb_pictures(name: str) -> None:
    first = procedural.GENERATORS[name]()
    second = procedural.GENERATORS[name]()
    assert first.mode == "RGB"
    assert first.size == (512, 512)
    assert first.tobytes() == second.tobytes()
    # Not a flat colour: there is texture for the style loss to take.
    spread = np.ptp(np.asarray(first).reshape(-1, 3), axis=0)
    assert all(int(v) > 100 for v in spread)
    # What workers receive decodes to the same picture.
    p = presets.get(name)
    assert images.decode(presets.image_bytes(p)).tobytes() == first.tobytes()
    # load_image hands out a copy: changing it does not change the cached original.
    img = presets.load_image(p)
    img.paste((0, 0, 0), (0, 0, 512, 512))
    assert presets.load_image(p).tobytes() == first.tobytes()


def test_procedural_seeds_change_the_picture() -> None:
    assert procedural.mosaic(64, seed=1).tobytes() != procedural.mosaic(64, seed=2).tobytes()


def test_normalise() -> None:
    assert presets.normalise(" Impression, Sunrise ") == "impression-sunrise"
    assert presets.normalise("GRANDE__JATTE") == "grande-jatte"


def test_a_style_pack_beside_the_checkout_is_found_without_settings(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    checkout = tmp_path / "main"
    checkout.mkdir()
    monkeypatch.chdir(checkout)
    assert presets.find_style_pack() is None
    pack = tmp_path / "shared" / "styles"
    pack.mkdir(parents=True)
    (pack / "README.md").write_text("not a painting")
    assert presets.find_style_pack() is None
    (pack / "starry-night.jpg").write_bytes(b"")
    assert presets.find_style_pack() == pack
    named = tmp_path / "named"
    named.mkdir()
    (named / "scream.png").write_bytes(b"")
    assert presets.find_style_pack(named) == named
