"""Colour maths on picture tensors, (B, 3, H, W) RGB in 0-255.

Two uses: the palette start (the photo moved to the painting's colour statistics before
painting, by the linear optimal transport between two Gaussians; Pitié & Kokaram 2007,
"The linear Monge-Kantorovitch linear colour mapping for example-based colour transfer")
and colour preservation (style transfer on the luminance only, the photo's chroma put
back afterwards; Gatys, Bethge, Hertzmann & Shechtman 2016, "Preserving color in neural
artistic style transfer", arXiv:1606.05897), in the NTSC YIQ space.
"""

from __future__ import annotations

import torch

# RGB -> YIQ (NTSC 1953; the FCC's rounded coefficients). Row 0 is the luma, Y.
_RGB2YIQ = torch.tensor([[0.299, 0.587, 0.114],
                         [0.596, -0.274, -0.322],
                         [0.211, -0.523, 0.312]])
_YIQ2RGB = torch.linalg.inv(_RGB2YIQ)


def colour_moments(img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per picture of a (B, 3, H, W) batch: its colours' mean (B, 3, 1), the colours less
    that mean (B, 3, H·W) and their covariance (B, 3, 3), in the units of `img`."""
    x = img.reshape(img.shape[0], 3, -1)
    mean = x.mean(2, keepdim=True)
    centred = x - mean
    return mean, centred, centred @ centred.transpose(1, 2) / x.shape[2]


def recolour_like(img: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) pictures in 0-255 moved to the colour mean (B, 3, 1) and covariance
    (B, 3, 3) given, by the affine map that changes them least (the optimal transport
    between the two Gaussians; Pitié & Kokaram 2007). Shapes, edges and shading stay the
    photo's. Returns (B, 3, H, W), clamped to 0-255."""
    _, xc, cx = colour_moments(img)
    # One unit of variance (pixel values are 0-255) keeps a flat or grey picture's
    # covariance invertible; it is far below any real picture's.
    eye = torch.eye(3, device=img.device)
    cx = cx + eye
    root, inv_root = _sqrtm(cx), _sqrtm(cx, -0.5)
    t = inv_root @ _sqrtm(root @ (cov + eye) @ root) @ inv_root
    return (t @ xc + mean).reshape(img.shape).clamp(0, 255)


def luminance(t: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB -> (B, 1, H, W) luma (YIQ's Y), in the units of `t`."""
    return torch.einsum("c,bchw->bhw", _RGB2YIQ[0].to(t.device), t).unsqueeze(1)


def luma_rgb(t: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB -> (B, 3, H, W): its luma in all three channels (an expanded view),
    the picture that luminance-only transfer paints and scores."""
    return luminance(t).expand(-1, 3, -1, -1)


def with_chroma_of(img: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """Colour preservation (Gatys et al. 2016, luminance-only transfer): `img`'s luma with
    `content`'s YIQ chroma. Both (B, 3, H, W) in 0-255; returns the same, clamped."""
    yiq = _yiq(content)
    yiq[:, :1] = luminance(img)
    return _rgb_from_yiq(yiq).clamp(0, 255)


def _sqrtm(c: torch.Tensor, power: float = 0.5) -> torch.Tensor:
    """A batch (..., n, n) of symmetric positive-definite matrices to the power `power`;
    eigenvalues are floored at 1e-6 so that negative powers stay finite."""
    e, v = torch.linalg.eigh(c)
    scaled = v * e.clamp_min(1e-6).pow(power).unsqueeze(-2)  # v @ diag(e^p)
    return torch.matmul(scaled, v.transpose(-1, -2))


def _yiq(t: torch.Tensor) -> torch.Tensor:
    return torch.einsum("dc,bchw->bdhw", _RGB2YIQ.to(t.device), t)


def _rgb_from_yiq(t: torch.Tensor) -> torch.Tensor:
    return torch.einsum("dc,bchw->bdhw", _YIQ2RGB.to(t.device), t)
