"""Style images drawn by code, so a fresh install has presets with no style pack at all.

Each is deterministic (fixed seed) and drawn at 512x512 in well under a second.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SIZE = 512


def mosaic(size: int = SIZE, seed: int = 7) -> Image.Image:
    """Voronoi tiles in saturated colours with dark grout, like a Roman floor."""
    rng = np.random.default_rng(seed)
    cells = 18
    step = size / cells
    # One jittered seed point per grid cell; each pixel takes the nearest of the 3x3
    # neighbouring cells' points (an exact Voronoi diagram for this jitter range).
    pts = (np.stack(np.meshgrid(np.arange(cells), np.arange(cells), indexing="ij"), -1)
           + rng.uniform(0.1, 0.9, (cells, cells, 2))) * step  # (cells, cells, 2) as (y, x)
    palette = np.array([[176, 48, 38], [222, 164, 52], [38, 84, 140], [236, 226, 200],
                        [70, 120, 72], [30, 30, 36], [196, 110, 60], [120, 160, 190]], np.float32)
    colours = palette[rng.integers(0, len(palette), (cells, cells))]
    colours = (colours + rng.normal(0, 12, colours.shape)).astype(np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    cy, cx = (yy // step).astype(int), (xx // step).astype(int)
    best = np.full((size, size), np.inf, np.float32)
    second = np.full((size, size), np.inf, np.float32)
    out = np.zeros((size, size, 3), np.float32)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            ny, nx = np.clip(cy + dy, 0, cells - 1), np.clip(cx + dx, 0, cells - 1)
            p = pts[ny, nx]
            inside = (cy + dy == ny) & (cx + dx == nx)  # clipped duplicates are no neighbours
            d = np.where(inside, np.hypot(yy - p[..., 0], xx - p[..., 1]), np.inf)
            closer = d < best
            second = np.where(closer, best, np.minimum(second, d))
            best = np.where(closer, d, best)
            out[closer] = colours[ny, nx][closer]
    grout = (second - best) < 2.5  # near the border between two tiles
    out[grout] = (40, 36, 32)
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8), "RGB")


def brushstrokes(size: int = SIZE, seed: int = 11) -> Image.Image:
    """Thick, short strokes following a swirling flow field, in night blues and yellows."""
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", (size, size), (24, 44, 92))
    draw = ImageDraw.Draw(img)
    palette = [(30, 60, 130), (60, 100, 170), (110, 150, 200), (230, 200, 80),
               (245, 230, 150), (20, 32, 70), (90, 130, 110)]
    for _ in range(4200):
        x, y = rng.uniform(0, size, 2)
        # Flow direction: two vortices plus a gentle drift.
        angle = (math.sin(x / 70.0) + math.cos(y / 55.0)) * math.pi * 0.8
        length = rng.uniform(10, 26)
        dx, dy = math.cos(angle) * length, math.sin(angle) * length
        colour = palette[int(rng.integers(0, len(palette)))]
        jitter = rng.integers(-18, 18, 3)
        c = tuple(int(np.clip(v + j, 0, 255)) for v, j in zip(colour, jitter, strict=True))
        draw.line([(x - dx / 2, y - dy / 2), (x + dx / 2, y + dy / 2)], fill=c,
                  width=int(rng.integers(3, 7)))
    return img.filter(ImageFilter.SMOOTH)


def pointillism(size: int = SIZE, seed: int = 3) -> Image.Image:
    """Dense dots of pure colour on a warm ground, after Seurat."""
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", (size, size), (236, 228, 206))
    draw = ImageDraw.Draw(img)
    palette = [(214, 64, 48), (246, 178, 46), (64, 132, 78), (52, 96, 168), (236, 120, 160),
               (250, 232, 110), (120, 186, 214), (160, 92, 60)]
    yy = np.linspace(0, 1, 8)
    for _ in range(9000):
        x, y = rng.uniform(0, size, 2)
        # Cooler colours low in the picture, warmer high up: a landscape's hint.
        band = int(np.clip(np.searchsorted(yy, y / size) + rng.integers(-2, 3), 0, 7))
        colour = palette[(band + int(rng.integers(0, 3))) % len(palette)]
        r = rng.uniform(1.8, 3.6)
        draw.ellipse([x - r, y - r, x + r, y + r], fill=colour)
    return img


GENERATORS: dict[str, Callable[[], Image.Image]] = {
    "mosaic": mosaic, "brushstrokes": brushstrokes, "pointillism": pointillism,
}
