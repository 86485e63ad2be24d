"""The objective of Gatys et al. (2015), as pure tensor functions.

Weights follow the original Caffe-weight recipe also used by pastiche, so that our
numbers are comparable with it: content = 0.01 * MSE at relu4_2 (MSE = squared error
normalised by H·W·C); style = sum over relu{1..5}_1 of (10 / C²) * MSE between Gram
matrices, each Gram normalised by H·W. Grams and losses are always computed in fp32
(bf16 or fp16 Grams of 512-channel activations lose the precision or overflow).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

CONTENT_LAYER_WEIGHT = 0.01
STYLE_LAYER_SCALE = 10.0
# Total variation is in squared 0-255 pixel units (~100-1000 for a painting) while the
# other terms run to 1e3-1e6; this scale makes tv_weight 1 a visible smoothing.
TV_SCALE = 10.0


def gram(features: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, C): channel-by-channel dot products over positions, / (H·W)."""
    b, c, h, w = features.shape
    flat = features.float().reshape(b, c, h * w)  # (B, C, H·W)
    return torch.bmm(flat, flat.transpose(1, 2)) / (h * w)


def content_loss(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image content loss, (B,): 0.01 * mean squared error over C·H·W."""
    diff = features.float() - target.float()
    return CONTENT_LAYER_WEIGHT * diff.square().flatten(1).mean(1)


def style_layer_loss(g: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image style loss at one layer, (B,), from (B, C, C) Grams and a target Gram."""
    c = g.shape[-1]
    return (STYLE_LAYER_SCALE / c**2) * (g - target).square().flatten(1).mean(1)


def style_loss(features: list[torch.Tensor], targets: list[torch.Tensor]) -> torch.Tensor:
    """Sum over layers of the style loss, (B,); equal weights per layer."""
    total = style_layer_loss(gram(features[0]), targets[0])
    for f, t in zip(features[1:], targets[1:], strict=True):
        total = total + style_layer_loss(gram(f), t)
    return total


def tv_loss(img: torch.Tensor) -> torch.Tensor:
    """Total variation, (B,): mean squared difference of neighbours, in 0-255 units.

    Squared rather than absolute differences (Mahendran & Vedaldi's beta = 2): smooth, so
    L-BFGS's curvature model fits it, where the absolute value's kink stalls it.
    """
    dx = (img[..., :, 1:] - img[..., :, :-1]).square().flatten(1).mean(1)
    dy = (img[..., 1:, :] - img[..., :-1, :]).square().flatten(1).mean(1)
    return 0.5 * (dx + dy)


def mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of two same-shaped tensors, in fp32: a scalar tensor."""
    return F.mse_loss(a.float(), b.float())
