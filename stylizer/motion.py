"""Motion between the photos of an animation, and a painting moved along it.

An animation's frames are painted so that the brush strokes stay put where the photo
did not change and move with it where it did: each frame starts from an earlier frame's
painting moved along the optical flow between the two photos, and is held there by a
temporal loss wherever that motion is reliable (Ruder, Dosovitskiy & Brox 2016,
"Artistic style transfer for videos", GCPR, eqs. 1-3). The flow is OpenCV's DIS
(Kroeger et al. 2016, "Fast optical flow using dense inverse search", ECCV), computed
on the CPU; the warp is `grid_sample` on the engine's device.

Reliability follows Ruder et al. §3.1: a pixel is trusted where the forward and
backward flows agree and where the earlier photo, moved along the flow, matches the new
one; elsewhere (disocclusions, motion boundaries, flow failures) the frame is painted
afresh.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

# Ruder et al.'s forward-backward test: |w + w^|^2 <= FB_RATIO * (|w|^2 + |w^|^2) + FB_SLACK
# (pixels squared).
FB_RATIO = 0.01
FB_SLACK = 0.5
# The earlier photo, moved along the flow, must match the new one to within this much
# (mean absolute difference over RGB, 0-255 units) for a pixel to be trusted: more than
# JPEG or GIF noise, less than an object's edge.
PHOTO_TOLERANCE = 12.0
# DIS refuses pictures under 12 px on both sides; thinner ones are padded (edges repeated)
# to this on each side and the flow cropped back.
MIN_FLOW_SIDE = 16


def _grey(img: Image.Image) -> np.ndarray:
    """(H, W) uint8 luma of an RGB picture, as DIS wants it."""
    return np.asarray(img.convert("L"), dtype=np.uint8)


class FlowEstimator:
    """Dense optical flow between pictures of one size (OpenCV's DIS, "medium" preset:
    about a millisecond at 256 x 144 here). One per thread: OpenCV's algorithm objects
    are not thread-safe."""

    def __init__(self) -> None:
        self._dis = cv2.DISOpticalFlow_create(  # type: ignore[attr-defined]
            cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)

    def flow(self, target: Image.Image, source: Image.Image) -> np.ndarray:
        """(H, W, 2) float32 pixel offsets (dx, dy): for each pixel x of `target`, where
        the same point is in `source` (target(x) ~ source(x + flow(x))). Both pictures
        must have the same size; OpenCV raises cv2.error otherwise."""
        a, b = _grey(target), _grey(source)
        h, w = a.shape
        pad = ((0, max(0, MIN_FLOW_SIDE - h)), (0, max(0, MIN_FLOW_SIDE - w)))
        if pad != ((0, 0), (0, 0)):
            a, b = np.pad(a, pad, mode="edge"), np.pad(b, pad, mode="edge")
        out: np.ndarray = self._dis.calc(a, b, None)
        return np.ascontiguousarray(out[:h, :w])


def warp(img: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Backward warp: (B, C, H, W) pictures and (B, 2, H, W) flows in pixels (as
    `FlowEstimator.flow` gives them, channels first) -> (B, C, H, W) with
    out(x) = img(x + flow(x)), bilinear, edges repeated outside the picture."""
    return warp_along(img, sampling_grid(flow))


def sampling_grid(flow: torch.Tensor) -> torch.Tensor:
    """(B, 2, H, W) flows in pixels -> the (B, H, W, 2) grid `warp_along` samples at, in
    grid_sample's coordinates: once for a flow that many pictures are moved along."""
    h, w = flow.shape[-2:]
    ys, xs = torch.meshgrid(torch.arange(h, device=flow.device, dtype=torch.float32),
                            torch.arange(w, device=flow.device, dtype=torch.float32),
                            indexing="ij")
    x = xs + flow[:, 0]  # (B, H, W)
    y = ys + flow[:, 1]
    # grid_sample's coordinates run from -1 to 1 across the pixel centres' span
    # (align_corners=True).
    return torch.stack([2 * x / max(w - 1, 1) - 1, 2 * y / max(h - 1, 1) - 1], dim=-1)


def warp_along(img: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """`warp` with the grid of `sampling_grid`: (B, C, H, W) -> (B, C, H, W),
    differentiable in `img`."""
    return F.grid_sample(img, grid, mode="bilinear", padding_mode="border",
                         align_corners=True)


def reliable(forward: torch.Tensor, backward: torch.Tensor, target: torch.Tensor,
             source: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) in {0, 1}: where the motion from `source` to `target` can be trusted.

    `backward`: (B, 2, H, W), for each pixel of `target` its place in `source`; `forward`:
    the other way round. `target`, `source`: (B, 3, H, W) photos in 0-255. A pixel is
    trusted when the two flows agree (Ruder et al. 2016, eq. 5's test) and the source
    photo moved along the flow matches the target within PHOTO_TOLERANCE.
    """
    there = warp(forward, backward)  # the forward flow where each target pixel lands
    mismatch = (backward + there).square().sum(1, keepdim=True)
    scale = backward.square().sum(1, keepdim=True) + there.square().sum(1, keepdim=True)
    agree = mismatch <= FB_RATIO * scale + FB_SLACK
    moved = warp(source, backward)
    matches = (moved - target).abs().mean(1, keepdim=True) <= PHOTO_TOLERANCE
    return (agree & matches).float()


def flows_between(estimator: FlowEstimator, target: Image.Image, source: Image.Image,
                  device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(backward, forward), each (1, 2, H, W) on `device`: `backward` takes each pixel of
    `target` to its place in `source`, `forward` the other way."""
    back = estimator.flow(target, source)
    fwd = estimator.flow(source, target)
    as_tensor = [torch.from_numpy(f).permute(2, 0, 1).unsqueeze(0).to(device)
                 for f in (back, fwd)]
    return as_tensor[0], as_tensor[1]
