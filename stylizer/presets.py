"""Named preset styles: paintings from a style-pack directory, plus procedural styles.

The manifest (`presets.json`) holds the facts (title, artist, year) and recommended
parameters; the paintings themselves are read from a style pack (a directory holding
`<name>.jpg`, setting STYLEBOT_STYLES_DIR), never shipped in this package. Procedural
styles are drawn by `stylizer.procedural` and are always available.
"""

from __future__ import annotations

import difflib
import functools
import io
import json
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from PIL import Image

from stylizer import images, procedural
from stylizer.errors import UnknownStyle

PACK_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")
MISSING_OFFERS = 5  # styles named in place of a painting the pack lacks


@dataclass(frozen=True)
class Preset:
    """A named style: a painting in the style pack, or one our own code draws
    (`source` "procedural"), with the parameters recommended for it."""

    name: str
    title: str
    artist: str
    year: str
    params: dict[str, Any] = field(default_factory=dict)  # recommended StyleParams overrides
    source: str = "pack"  # "pack" (a painting in the style pack) or "procedural"

    @property
    def label(self) -> str:
        """What a person reads in a list: 'The Starry Night — Vincent van Gogh, 1889'."""
        return f"{self.title} — {self.artist}, {self.year}"


def normalise(name: str) -> str:
    """'Starry Night', 'starry_night' and 'STARRY-NIGHT' are the same preset."""
    return re.sub(r"[^a-z0-9]+", "-", name.strip().lower()).strip("-")


@functools.cache
def _manifest() -> tuple[Preset, ...]:
    raw = json.loads(resources.files("stylizer").joinpath("presets.json").read_text("utf-8"))
    return tuple(Preset(e["name"], e["title"], e["artist"], e["year"], dict(e["params"]),
                        "procedural" if e.get("procedural") else "pack") for e in raw)


def _pack_file(styles_dir: str | Path | None, name: str) -> Path | None:
    if styles_dir is None:
        return None
    for ext in PACK_EXTENSIONS:
        path = Path(styles_dir) / f"{name}{ext}"
        if path.is_file():
            return path
    return None


def find_style_pack(*candidates: Path) -> Path | None:
    """Where the paintings are when no directory was named: the first of `candidates`,
    then a `shared/styles` pack laid out beside the working directory, holding images."""
    for candidate in (*candidates, Path.cwd().parent / "shared" / "styles"):
        if candidate.is_dir() and any(p.suffix.lower() in PACK_EXTENSIONS
                                      for p in candidate.iterdir()):
            return candidate
    return None


def catalogue() -> list[Preset]:
    """Every preset the manifest names, whether its painting is installed or not."""
    return list(_manifest())


def list_presets(styles_dir: str | Path | None = None) -> list[Preset]:
    """Presets available now: pack paintings found in `styles_dir`, then procedural ones."""
    return [p for p in _manifest()
            if p.source == "procedural" or _pack_file(styles_dir, p.name) is not None]


def _called(preset: Preset, key: str) -> bool:
    title = normalise(preset.title)
    return key in (preset.name, title, title.removeprefix("the-"))


def get(name: str, styles_dir: str | Path | None = None) -> Preset:
    """The preset called `name` (case- and separator-insensitive), or `UnknownStyle`:
    with the closest names for a typo, or with what there is for a painting that the
    style pack lacks."""
    key = normalise(name)
    available = list_presets(styles_dir)
    for p in available:
        if _called(p, key):
            return p
    names = [p.name for p in available]
    for p in _manifest():
        if _called(p, key):
            raise UnknownStyle(name, names[:MISSING_OFFERS], missing=p.title)
    raise UnknownStyle(name, difflib.get_close_matches(key, names, n=3, cutoff=0.5))


def suggest(text: str, styles_dir: str | Path | None = None, limit: int = 25) -> list[Preset]:
    """Presets matching what a person has typed so far (for autocomplete), best first."""
    key = normalise(text)
    available = list_presets(styles_dir)
    if not key:
        return available[:limit]

    def score(p: Preset) -> tuple[int, float]:
        hay = f"{p.name} {normalise(p.title)} {normalise(p.artist)}"
        if p.name.startswith(key):
            return (0, 0.0)
        if key in hay:
            return (1, float(hay.index(key)))
        return (2, -difflib.SequenceMatcher(None, key, p.name).ratio())

    ranked = sorted(available, key=score)
    return [p for p in ranked if score(p)[0] < 2 or score(p)[1] < -0.5][:limit]


def load_image(preset: Preset, styles_dir: str | Path | None = None) -> Image.Image:
    """The preset's style image as RGB."""
    if preset.source == "procedural":
        return _procedural(preset.name).copy()
    path = _pack_file(styles_dir, preset.name)
    if path is None:
        raise UnknownStyle(preset.name, [])
    return images.load_path(str(path))


def image_bytes(preset: Preset, styles_dir: str | Path | None = None) -> bytes:
    """The preset's style image, encoded, to send to a worker process."""
    if preset.source == "procedural":
        return images.encode(_procedural(preset.name))
    path = _pack_file(styles_dir, preset.name)
    if path is None:
        raise UnknownStyle(preset.name, [])
    return path.read_bytes()


@functools.cache
def _procedural(name: str) -> Image.Image:
    return procedural.GENERATORS[name]()


def thumbnail(preset: Preset, styles_dir: str | Path | None = None, side: int = 256) -> bytes:
    """A small JPEG of the style, for galleries."""
    img = load_image(preset, styles_dir)
    img.thumbnail((side, side))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=85)
    return buf.getvalue()
