"""The canvas as a pyramid: what L-BFGS optimises instead of raw pixels.

A picture is `base + sum_k g^k up(z_k)`, where `z_0` is full size, each `z_k` is half the
size of `z_{k-1}`, `up` is bilinear upsampling back to full size and g = LEVEL_GAIN.
The pictures are the same kind of thing as before, but the optimiser's steps are not: a
step on `z_k` moves a whole 2^k-pixel neighbourhood at once, and the upsampling's
adjoint sums that neighbourhood's gradient into it. On raw pixels the objective's
gradient is dominated by fine texture, so the colours and large shapes of a painting
change only slowly; on the pyramid they settle early. In effect it is a multi-scale
preconditioner for L-BFGS, whose first guess of the inverse Hessian is a multiple of
the identity.

The upsampling is two small matrix products per level (bilinear interpolation is
separable) rather than `F.interpolate`, whose backward pass on a GPU accumulates with
atomics: the same job gives the same bytes.

The pixels are kept in [0, 255] by projection: after each optimiser step, whatever part
of a picture left the range is taken back out of the finest level, so that the picture
scored, previewed and saved is always the one optimised.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# The coarsest level has about this many pixels along its long side: coarser than that,
# a level holds little more than the picture's mean colour.
COARSEST_SIDE = 8
# Each coarser level's offsets count this much less than the next finer one's. At 1 the
# coarse levels dominate the first steps and overshoot; 0.6-0.7 did best on six
# photo/painting pairs at 128 px (README, "Choosing defaults").
LEVEL_GAIN = 0.7


def levels_for(height: int, width: int) -> int:
    """How many levels a (height, width) picture gets: halving down to ~COARSEST_SIDE."""
    return 1 + max(0, math.floor(math.log2(max(height, width) / COARSEST_SIDE)))


def _linear_upsampling(n: int, size: int, device: torch.device) -> torch.Tensor:
    """(size, n): linear interpolation from n samples to `size`, as F.interpolate does it
    (align_corners=False), so that A @ v upsamples a column v."""
    eye = torch.eye(n, device=device).unsqueeze(0)  # (1, n, n): n signals of length n
    return F.interpolate(eye, size=size, mode="linear", align_corners=False)[0].T


class PyramidCanvas:
    """A batch of pictures (B, 3, H, W) as `base` plus a pyramid of offsets, flattened
    per picture into `z` (B, N) for the optimiser; `z` starts at zero (the picture is
    `base`)."""

    def __init__(self, base: torch.Tensor, levels: int | None = None, *,
                 channels_last: bool = False) -> None:
        b, c, h, w = base.shape
        dev = base.device
        self.base = base.detach().float().contiguous()
        self.channels_last = channels_last
        n_levels = levels if levels is not None else levels_for(h, w)
        self.shapes = [(c, max(1, math.ceil(h / 2**k)), max(1, math.ceil(w / 2**k)))
                       for k in range(n_levels)]
        self.sizes = [math.prod(s) for s in self.shapes]
        # Per coarser level: rows (H, h_k) with the level's gain, columns (w_k, W).
        self.ups = [(LEVEL_GAIN**k * _linear_upsampling(hk, h, dev),
                     _linear_upsampling(wk, w, dev).T.contiguous())
                    for k, (_, hk, wk) in enumerate(self.shapes) if k > 0]
        self.z = torch.zeros(b, sum(self.sizes), device=dev)

    def picture(self, z: torch.Tensor | None = None) -> torch.Tensor:
        """The pictures (B, 3, H, W) for offsets `z` (default: the canvas's own);
        differentiable in `z`."""
        z = self.z if z is None else z
        b = z.shape[0]
        parts = torch.split(z, self.sizes, dim=1)
        out = self.base + parts[0].reshape(b, *self.shapes[0])
        for part, shape, (rows, cols) in zip(parts[1:], self.shapes[1:], self.ups, strict=True):
            out = out + rows @ part.reshape(b, *shape) @ cols
        if self.channels_last:
            out = out.contiguous(memory_format=torch.channels_last)
        return out

    @torch.no_grad()
    def project_(self, z: torch.Tensor) -> None:
        """Changes offsets `z` (B, N) in place so that their pictures lie in [0, 255]:
        the excess is taken out of the finest level, pixel by pixel."""
        x = self.picture(z)
        excess = (x.clamp(0.0, 255.0) - x).reshape(z.shape[0], -1)
        z[:, :self.sizes[0]] += excess
