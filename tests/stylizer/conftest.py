"""Shared fixtures for the engine tests: one CPU engine per session, tiny test pictures."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from picture_checks import forbid_pixel_decoding
from PIL import Image, ImageDraw

from stylizer.config import EngineConfig

if TYPE_CHECKING:
    from stylizer.engine import Stylizer
    from stylizer.pool.supervisor import WorkerPool

REPO_ROOT = Path(__file__).resolve().parents[2]


def synthetic_photo(width: int = 64, height: int = 48) -> Image.Image:
    """A deterministic stand-in for a photo: sky gradient, sun, hills, houses, texture."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    sky = np.stack([90 + 80 * yy / height, 140 + 60 * yy / height,
                    230 - 40 * yy / height], -1)
    ripple = 12 * np.sin(xx / 3.0 + yy / 5.0)[..., None]  # fine detail for the style to eat
    img = Image.fromarray(np.clip(sky + ripple, 0, 255).astype(np.uint8), "RGB")
    d = ImageDraw.Draw(img)
    d.ellipse([width * 0.65, height * 0.08, width * 0.85, height * 0.35], fill=(250, 210, 80))
    d.polygon([(0, height * 0.7), (width * 0.4, height * 0.45), (width, height * 0.75),
               (width, height), (0, height)], fill=(60, 120, 50))
    for i in range(4):
        x0 = width * (0.08 + 0.2 * i)
        d.rectangle([x0, height * 0.55, x0 + width * 0.12, height * 0.85],
                    fill=(170 + 20 * i, 70 + 30 * i, 60))
        d.rectangle([x0 + 2, height * 0.62, x0 + 5, height * 0.68], fill=(30, 30, 40))
    return img


@pytest.fixture
def no_pixel_decoding(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records (and refuses, with `picture_checks.PixelsDecoded`) any attempt to decode
    pixel data."""
    return forbid_pixel_decoding(monkeypatch)


@pytest.fixture(scope="session")
def one_torch_thread() -> Iterator[None]:
    """Tiny images gain nothing from a second thread, and on shared cores two spinning
    OpenMP threads per process made runs ten times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def engine(one_torch_thread: None) -> Stylizer:
    """The real engine on the CPU with the Caffe weights; VGG19 loads once per session."""
    from stylizer.engine import Stylizer

    return Stylizer(EngineConfig(device="cpu"))


@pytest.fixture(scope="session")
def content_image() -> Image.Image:
    """A 64x48 photo-like picture."""
    return synthetic_photo(64, 48)


@pytest.fixture(scope="session")
def style_image() -> Image.Image:
    """A procedural style (needs no style pack), shrunk: the engine rescales it anyway."""
    from stylizer import procedural

    return procedural.brushstrokes().resize((128, 128), Image.Resampling.LANCZOS)


@pytest.fixture(scope="session")
def second_style_image() -> Image.Image:
    from stylizer import procedural

    return procedural.mosaic().resize((128, 128), Image.Resampling.LANCZOS)


@pytest.fixture(scope="session")
def styles_dir() -> Path:
    """The style pack the tests use: STYLEBOT_STYLES_DIR, else ../shared/styles."""
    path = Path(os.environ.get("STYLEBOT_STYLES_DIR") or REPO_ROOT.parent / "shared" / "styles")
    if not (path / "starry-night.jpg").is_file():
        pytest.skip(f"no style pack at {path}")
    return path


@pytest.fixture
async def pool_factory() -> AsyncIterator[Callable[..., Awaitable[WorkerPool]]]:
    """Starts CPU worker pools (previews unthrottled) and closes them after the test."""
    from stylizer.pool.supervisor import WorkerPool

    pools: list[WorkerPool] = []

    async def make(**kwargs: Any) -> WorkerPool:
        kwargs.setdefault("engine", EngineConfig(device="cpu"))
        kwargs.setdefault("preview_interval_s", 0.0)
        pool = WorkerPool(**kwargs)
        pools.append(pool)
        await pool.start()
        return pool

    yield make
    for pool in pools:
        await pool.close(grace_s=0)
