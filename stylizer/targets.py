"""What a batch is painted towards: the photo's content features, each job's Gram matrices
(Gatys, Ecker & Bethge 2016, "Image style transfer using convolutional neural networks",
CVPR, eqs. 3-5) and each job's palette (colour mean and covariance, for the palette start).

A painting's targets depend on the size it is scaled to, the pooling and, with colour
preservation, on the photo; `StyleCache` keeps those that do not depend on the photo, by
the caller's stable key for the painting.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from PIL import Image

from stylizer import images, losses
from stylizer.canvas import PAINTED_MIN_SIDE, Frame
from stylizer.colour import colour_moments, luminance
from stylizer.errors import InvalidParams
from stylizer.params import StyleParams
from stylizer.tensors import resize, to_tensor
from stylizer.vgg import CONTENT_LAYER, LAYERS, STYLE_LAYERS

_STYLE_IDX = tuple(LAYERS[n] for n in STYLE_LAYERS)
_CONTENT_IDX = LAYERS[CONTENT_LAYER]
# Every layer the objective reads, in network order (the VGG's `layers` argument); the
# content layer sits between relu4_1 and relu5_1.
FEATURE_LAYERS = tuple(sorted({*_STYLE_IDX, _CONTENT_IDX}))
CONTENT_POS = FEATURE_LAYERS.index(_CONTENT_IDX)  # where relu4_2 is in a `Features` list
STYLE_POS = tuple(FEATURE_LAYERS.index(i) for i in _STYLE_IDX)  # relu1_1 ... relu5_1
STYLE_CACHE_SIZE = 64  # style targets kept by key (each a few MB of Grams)

# A picture batch (B, 3, H, W) in 0-255 and a pooling ("max" or "avg") -> the VGG19
# activations at FEATURE_LAYERS, each (B, C, H', W'), in the engine's precision.
Features = Callable[[torch.Tensor, str], list[torch.Tensor]]


@dataclass(frozen=True)
class StyleTarget:
    """One painting at one size: its Gram per style layer, each (1, C, C), and its colours'
    mean (3, 1) and covariance (3, 3), in 0-255 RGB."""

    grams: list[torch.Tensor]
    mean: torch.Tensor
    cov: torch.Tensor


@dataclass(frozen=True)
class Targets:
    """What a batch is painted towards: content features (B, C, H', W') at relu4_2, per
    style layer the Gram targets (B, C, C), and each job's palette: colour mean (B, 3, 1)
    and covariance (B, 3, 3) in 0-255 RGB."""

    content: torch.Tensor
    grams: list[torch.Tensor]
    mean: torch.Tensor
    cov: torch.Tensor


class StyleCache:
    """The last STYLE_CACHE_SIZE style targets, least recently used first out. Keyed by
    (the caller's key for the painting, its scaled (w, h), pooling): one engine's cache,
    so its network's weights and precision need no place in the key."""

    def __init__(self, size: int = STYLE_CACHE_SIZE) -> None:
        self._size = size
        self._items: OrderedDict[tuple[object, ...], StyleTarget] = OrderedDict()

    def get(self, key: tuple[object, ...]) -> StyleTarget | None:
        """The target kept under `key`, now the most recently used; None if none is."""
        target = self._items.get(key)
        if target is not None:
            self._items.move_to_end(key)
        return target

    def put(self, key: tuple[object, ...], target: StyleTarget) -> None:
        """Keeps `target` under `key`, dropping the least recently used beyond the size."""
        self._items[key] = target
        while len(self._items) > self._size:
            self._items.popitem(last=False)


def build_targets(features: Features, content: torch.Tensor,
                  styles: Sequence[Sequence[Image.Image]], params: StyleParams,
                  style_keys: Sequence[Sequence[str] | None] | None = None,
                  cache: StyleCache | None = None) -> Targets:
    """The targets of a batch: content features of `content`, (B, 3, H, W) in 0-255 (with
    `params.preserve_colors`, its luma repeated over 3 channels), in one forward pass;
    and for each image its styles' Grams, blended by `params.style_blend`, at
    `params.style_scale` times the photo's area, and their blend's palette.

    `style_keys`, one stable key per style image of each job (or None for a job), lets a
    `cache` give back the targets of paintings seen before. Raises `InvalidParams` when
    `params.style_blend` does not give one weight per style of a job.
    """
    cache = cache if cache is not None else StyleCache()  # then kept for this call only
    h, w = content.shape[-2:]
    area = h * w * params.style_scale**2
    per_image: list[list[torch.Tensor]] = []
    means, covs = [], []
    for i, job_styles in enumerate(styles):
        lum_stats = None
        if params.preserve_colors:
            y = luminance(content[i:i + 1])
            lum_stats = (float(y.mean()), float(y.std()))
        keys = style_keys[i] if style_keys is not None else None
        blend = blend_weights(params, len(job_styles))
        mixed: list[torch.Tensor] | None = None
        # A blend's palette is the mixture of its paintings' colours: its mean and
        # second moment are the weighted sums (3 x 3, in float64: the second moments
        # are large and their difference is not).
        mean = torch.zeros(3, 1, device=content.device, dtype=torch.float64)
        second = torch.zeros(3, 3, device=content.device, dtype=torch.float64)
        for j, (style, weight) in enumerate(zip(job_styles, blend, strict=True)):
            wh = style_size(style, area)
            key = keys[j] if keys is not None else None
            # With colour preservation a painting's target depends on the photo's luma.
            cache_key: tuple[object, ...] | None = None
            if key is not None and lum_stats is None:
                cache_key = (key, wh, params.pooling)
            target = cache.get(cache_key) if cache_key is not None else None
            if target is None:
                target = style_target(features, to_tensor(resize(style, wh), content.device),
                                      params.pooling, lum_stats)
                if cache_key is not None:
                    cache.put(cache_key, target)
            # A weighted sum of per-style losses equals, up to a constant, the loss
            # against the weighted mean Gram; one target is cheaper per step.
            scaled = [g * weight for g in target.grams]
            mixed = scaled if mixed is None else [m + s for m, s in
                                                  zip(mixed, scaled, strict=True)]
            m = target.mean.double()
            mean = mean + weight * m
            second = second + weight * (target.cov.double() + m @ m.T)
        assert mixed is not None
        per_image.append(mixed)
        means.append(mean.float())
        covs.append((second - mean @ mean.T).float())
    with torch.no_grad():
        content_feat = features(content, params.pooling)[CONTENT_POS].float()
    return Targets(content_feat, [torch.cat(layer) for layer in zip(*per_image, strict=True)],
                   torch.stack(means), torch.stack(covs))


def style_target(features: Features, style: torch.Tensor, pooling: str,
                 lum_stats: tuple[float, float] | None = None) -> StyleTarget:
    """The Grams (Gatys et al. 2016, eq. 3, as `losses.gram` normalises them) and palette
    of one painting, (1, 3, h, w) in 0-255 at the size it is painted at.

    A painting too thin for the network is mirrored out first (see `canvas.Frame`).
    `lum_stats`, the photo's luma (mean, standard deviation) in 0-255, asks for
    luminance-only transfer: the painting's luma, matched to the photo's mean and spread
    (Gatys et al. 2016, "Preserving color in neural artistic style transfer").
    """
    h, w = style.shape[-2:]
    # (1, 3, H, W); only a painting over 64 times longer than wide gets margins
    t = Frame.around(w, h).pad(style)
    if lum_stats is not None:
        y = luminance(t)
        y = (y - y.mean()) / (y.std() + 1e-5) * lum_stats[1] + lum_stats[0]
        t = y.expand(-1, 3, -1, -1)
    with torch.no_grad():
        feats = features(t, pooling)
        grams = [losses.gram(feats[p]) for p in STYLE_POS]  # each (1, C, C)
    mean, _, cov = colour_moments(t)  # the painting's colours, for the palette start
    return StyleTarget(grams, mean[0], cov[0])


def style_size(style: Image.Image, area: float) -> tuple[int, int]:
    """(w, h) in pixels that `style` is scaled to: about `area` pixels, keeping its aspect,
    but at least PAINTED_MIN_SIDE on its short side (a small `style_scale` on a small photo
    asks for less than the network can see), and at most images.MAX_STYLE_SIDE on its long side.
    A painting too thin for both is then mirrored out to a `Frame` (see `style_target`)."""
    w, h = style.size
    k = math.sqrt(area / (w * h))
    k = max(k, PAINTED_MIN_SIDE / min(w, h))
    k = min(k, images.MAX_STYLE_SIDE / max(w, h))
    return max(1, round(w * k)), max(1, round(h * k))


def blend_weights(params: StyleParams, n_styles: int) -> list[float]:
    """Each of `n_styles` styles' share of the style target, summing to 1: the params'
    `style_blend` normalised, or equal shares. Raises `InvalidParams` when `style_blend`
    does not give one weight per style."""
    blend = list(params.style_blend) or [1.0] * n_styles
    if len(blend) != n_styles:
        raise InvalidParams(f"{len(blend)} style weights were given for {n_styles} style "
                            "images; give one per style.")
    return [b / sum(blend) for b in blend]
