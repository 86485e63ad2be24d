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

A picture thinner than the network can see (VGG19's four poolings need 16 pixels on
each side) is painted in a `Frame`: mirrored outwards to a painted minimum, optimised
whole, and cropped back to its own size.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from stylizer.vgg import MIN_SIDE

# The coarsest level has about this many pixels along its long side: coarser than that,
# a level holds little more than the picture's mean colour.
COARSEST_SIDE = 8
# Each coarser level's offsets count this much less than the next finer one's. At 1 the
# coarse levels dominate the first steps and overshoot; 0.6-0.7 did best on six
# photo/painting pairs at 128 px (README, "Choosing defaults").
LEVEL_GAIN = 0.7
# A side shorter than this is mirrored out to it before painting (see `Frame`). VGG19
# needs MIN_SIDE; at that the deepest style layer is one pixel across and mostly sees the
# convolutions' zero padding, so the frame gives the network some more of the picture.
PAINTED_MIN_SIDE = 32
# The lobes of the Lanczos filter a finer level is seen through at the level before's size
# (`shrink`): Pillow's LANCZOS.
LANCZOS_LOBES = 3


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


@dataclass(frozen=True)
class Frame:
    """Where a `width` x `height` picture sits in the canvas that is painted: the picture
    itself, mirrored outwards by `left`, `top`, `right` and `bottom` pixels where a side
    is shorter than the network can see (no margins for any usual photo)."""

    width: int
    height: int
    left: int = 0
    top: int = 0
    right: int = 0
    bottom: int = 0

    @classmethod
    def around(cls, width: int, height: int, min_side: int = PAINTED_MIN_SIDE) -> Frame:
        """The frame of a `width` x `height` picture (pixels, each >= 1): each side shorter
        than `min_side` (>= MIN_SIDE) gets margins on both ends up to it, the picture
        in the middle. Raises ValueError for an empty picture or a `min_side` too small."""
        if width < 1 or height < 1:
            raise ValueError(f"a picture needs pixels, not {width}x{height}")
        if min_side < MIN_SIDE:
            raise ValueError(f"VGG19 needs sides of at least {MIN_SIDE}, not {min_side}")
        pad_w, pad_h = max(0, min_side - width), max(0, min_side - height)
        return cls(width, height, pad_w // 2, pad_h // 2, pad_w - pad_w // 2,
                   pad_h - pad_h // 2)

    @property
    def padded(self) -> bool:
        """Whether any side is mirrored out (the picture is thinner than PAINTED_MIN_SIDE)."""
        return (self.left, self.top, self.right, self.bottom) != (0, 0, 0, 0)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the painted canvas, margins included."""
        return self.left + self.width + self.right, self.top + self.height + self.bottom

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, height, width) -> (B, C, H, W) of `size`, mirrored about the picture's
        edges, the edge pixels repeated (numpy's "symmetric"): unlike F.pad's "reflect" it
        works for any margin, even around a picture one pixel wide. Differentiable."""
        if x.shape[-2:] != (self.height, self.width):
            raise ValueError(f"expected a {self.width}x{self.height} picture, got "
                             f"{x.shape[-1]}x{x.shape[-2]}")
        if not self.padded:
            return x
        rows = _mirrored(self.height, self.top, self.bottom, x.device)
        cols = _mirrored(self.width, self.left, self.right, x.device)
        return x.index_select(-2, rows).index_select(-1, cols)

    def crop(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) of `size` -> the picture's (B, C, height, width), a view."""
        return x[..., self.top:self.top + self.height, self.left:self.left + self.width]


def shrink(fine: Frame, coarse: Frame, img: torch.Tensor) -> torch.Tensor:
    """A canvas (B, C, H, W) framed in `fine` as a smaller picture framed in `coarse`: the
    picture resampled down to `coarse`'s size with a Lanczos-3 filter
    (`_lanczos_downsampling`), then mirrored out as `coarse.pad` does; differentiable.
    How a finer coarse-to-fine level is seen at the level before's size
    (`objective.CoarserView`).

    Lanczos rather than an area average because a picture is looked at shrunk that way
    (Pillow's LANCZOS, and the judge's `stylizer.judge`): an average hides fine texture
    that a sharper filter still shows, so a finer level held through it could cover the
    photo with brushwork the view did not see. On the six hardest pairs at 512 px (README,
    "Large paintings: coarse to fine") all gained, on both scores but one keep."""
    picture = fine.crop(img)
    rows = _lanczos_downsampling(picture.shape[-2], coarse.height, img.device)
    cols = _lanczos_downsampling(picture.shape[-1], coarse.width, img.device)
    return coarse.pad(rows @ picture @ cols.T)


@functools.lru_cache(maxsize=32)
def _lanczos_downsampling(n: int, size: int, device: torch.device) -> torch.Tensor:
    """(size, n): Lanczos-3 resampling of n samples down to `size`, as Pillow's
    `Image.resize(..., Resampling.LANCZOS)` does it (the kernel stretched by n / size so
    that it also filters out what `size` samples cannot hold; the taps that fall off an
    edge dropped and the rest renormalised), so that A @ v shrinks a column v. A matrix
    product, like the canvas's upsampling, so that its backward pass on a GPU is
    deterministic. Raises ValueError for a size of 0."""
    if n < 1 or size < 1:
        raise ValueError(f"cannot resample {n} samples to {size}")
    scale = n / size
    stretch = max(scale, 1.0)
    centres = (torch.arange(size, dtype=torch.float64) + 0.5) * scale  # (size,)
    x = (torch.arange(n, dtype=torch.float64) + 0.5 - centres[:, None]) / stretch  # (size, n)
    taps = torch.sinc(x) * torch.sinc(x / LANCZOS_LOBES) * (x.abs() < LANCZOS_LOBES)
    return (taps / taps.sum(dim=1, keepdim=True)).to(device=device, dtype=torch.float32)


def _mirrored(n: int, before: int, after: int, device: torch.device) -> torch.Tensor:
    """Indices into a side of n pixels that extend it by `before` and `after` pixels, by
    mirroring about its edges as often as needed (the pattern has period 2n)."""
    i = torch.arange(-before, n + after, device=device) % (2 * n)
    return torch.where(i < n, i, 2 * n - 1 - i)
