"""An animation painted steadily: each frame starts from the painting before it, moved
along the motion between their photos, and is held there where that motion is reliable
(Ruder, Dosovitskiy & Brox 2016, "Artistic style transfer for videos", GCPR: the
warm start of §3.2 and the short-term temporal loss of eq. 3).

Painted on its own, each frame would find its own brush pattern, and the animation
would flicker. Here the first frame is painted as a still; the others follow in batches
of consecutive frames, each batch painted at once through the engine's batched run (one
large GPU batch instead of many small ones). Every frame of a batch starts from the last
painted frame before the batch, moved to it along the optical flow (`stylizer.motion`),
and new paint goes only where that frame shows something the earlier one did not. With
a batch of one this is the paper's frame-by-frame scheme; larger batches trade a little
steadiness over long motions for throughput (README, "Animated pictures").
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import torch
from PIL import Image

from stylizer.levels import level_sizes, split_steps
from stylizer.motion import (
    FlowEstimator,
    flows_between,
    reliable,
    sampling_grid,
    warp,
    warp_along,
)
from stylizer.objective import Chain, Temporal
from stylizer.params import StyleParams
from stylizer.runs import AnimationResult, Progress, Result, RunOptions
from stylizer.tensors import batch_tensor, resize

if TYPE_CHECKING:
    from stylizer.engine import Stylizer

# A following frame starts from a painting that is nearly done: this fraction of a
# still's steps, at least MIN_FOLLOW_STEPS. Not tuned: with it the frames' judge scores
# are within 0.01 of stills' on the flicker benchmark's disc clip (README, "Animated
# pictures"), and 48 frames of 256 px take 3-4 s on an H200.
FOLLOW_FRACTION = 0.3
MIN_FOLLOW_STEPS = 10
# Frames painted as one batch: on a GPU a batch fills the device; on a CPU the network's
# work per frame is the same in a batch, but the per-step overhead is shared.
GPU_BATCH = 16
CPU_BATCH = 4


def following_steps(steps: int) -> int:
    """The steps each frame after the first gets when a still gets `steps`."""
    return min(steps, max(MIN_FOLLOW_STEPS, round(steps * FOLLOW_FRACTION)))


def default_batch(device: torch.device) -> int:
    """Frames painted at once on `device`."""
    return GPU_BATCH if device.type == "cuda" else CPU_BATCH


@dataclass
class _Counter:
    """The animation's progress, over all of its runs: steps and frames done."""

    options: RunOptions
    total: int  # steps in the whole animation
    frames: int
    steps_done: int = 0
    frames_done: int = 0

    def run_options(self) -> RunOptions:
        """Options for one engine run: its reports become the animation's."""
        on_progress = self.options.on_progress
        if on_progress is None:
            return self.options
        offset, done = self.steps_done, self.frames_done

        def report(batch: Sequence[Progress]) -> None:
            latest = batch[-1]  # the latest frame of the batch, with its preview
            on_progress([replace(
                latest, step=offset + latest.step, total=self.total,
                content_loss=sum(p.content_loss for p in batch) / len(batch),
                style_loss=sum(p.style_loss for p in batch) / len(batch),
                total_loss=sum(p.total_loss for p in batch) / len(batch),
                frame=done, frames=self.frames)])

        return replace(self.options, on_progress=report)


def paint_animation(engine: Stylizer, frames: Sequence[Image.Image],
                    styles: Sequence[Image.Image], params: StyleParams, options: RunOptions,
                    *, style_keys: Sequence[str] | None, batch: int | None,
                    follow_steps: int | None, temporal_weight: float) -> AnimationResult:
    """`Stylizer.run_animation`'s work (see there for the arguments and errors)."""
    if not frames:
        raise ValueError("an animation needs at least one frame")
    if len({f.size for f in frames}) != 1:
        raise ValueError("an animation's frames must all have one size")
    start_time = time.perf_counter()
    device = engine.device
    # Every frame at the size the first is painted at: the photos are scaled up or down
    # to `params.size`, as a still's photo is, before the motion between them is found.
    painted_size = level_sizes(*frames[0].size, params.size, 1)[-1]
    frames = [resize(f, painted_size) for f in frames]
    n = len(frames)
    per_batch = batch or default_batch(device)
    follow = params.replace(steps=follow_steps or following_steps(params.steps))
    chunks = [list(range(i, min(i + per_batch, n))) for i in range(1, n, per_batch)]
    key_steps = sum(split_steps(params.steps,
                                len(level_sizes(*frames[0].size, params.size, params.scales))))
    counter = _Counter(options, key_steps + len(chunks) * follow.steps, n)

    results, canvas = engine.paint_frames([frames[0]], [styles], params,
                                          counter.run_options(), style_keys=[style_keys],
                                          start=None, temporal=None)
    counter.steps_done, counter.frames_done = key_steps, 1
    anchor, anchor_photo = canvas[-1:], frames[0]  # (1, 3, h, w): the latest painting
    estimator = FlowEstimator()
    for chunk in chunks:
        photos = [frames[k] for k in chunk]
        start, held = _moved_here(engine, estimator, photos, anchor, anchor_photo, styles,
                                  params, style_keys, temporal_weight)
        painted, canvas = engine.paint_frames(
            photos, [styles] * len(photos), follow, counter.run_options(),
            style_keys=[style_keys] * len(photos), start=start, temporal=held)
        results += painted
        counter.steps_done += follow.steps
        counter.frames_done += len(photos)
        anchor, anchor_photo = canvas[-1:], photos[-1]
        _report_frames(counter, painted)
    seconds = time.perf_counter() - start_time
    return AnimationResult(
        [r.image for r in results], counter.total, seconds,
        sum(r.content_loss for r in results) / n, sum(r.style_loss for r in results) / n,
        sum(r.total_loss for r in results) / n, engine.bf16)


def _moved_here(engine: Stylizer, estimator: FlowEstimator, photos: list[Image.Image],
                anchor: torch.Tensor, anchor_photo: Image.Image,
                styles: Sequence[Image.Image], params: StyleParams,
                style_keys: Sequence[str] | None, weight: float,
                ) -> tuple[torch.Tensor, Temporal]:
    """Where a batch of frames starts, and what holds it there. Returns the starting
    pictures (B, 3, h, w) and the temporal term, whose target they are.

    Each frame starts from the anchor painting moved to it where that motion is
    reliable. Where it shows what the anchor does not (the new side of a pan, what a
    moving object uncovers), it starts from the start of the frame before it in the
    batch, moved along the motion between those two, so that new paint starts alike in
    every frame that shows it rather than afresh in each; where neither holds, from a
    fresh start (`params.init`). The temporal term holds each frame to the moved anchor
    where that is reliable (with a batch of one, Ruder et al.'s short-term loss), and
    what the anchor does not reliably show but the frame before it in the batch does to
    that frame's painting as it is being painted (`objective.Chain`). Measured with
    benchmarks/flicker.py on a pan, 48 frames in batches of 16: held to its unpainted
    start instead, that part got less paint (the towers coming into view dark and
    flat; gain 0.849 and keep 0.560 off the grid against 0.876 and 0.565 now) and
    flickered a little more (3.11 against 2.98 along the motion; README, "Animated
    pictures").
    """
    device = engine.device
    flows = [flows_between(estimator, photo, anchor_photo, device) for photo in photos]
    backward = torch.cat([b for b, _ in flows])  # (B, 2, h, w)
    forward = torch.cat([f for _, f in flows])
    here = batch_tensor(photos, device)  # (B, 3, h, w)
    there = batch_tensor([anchor_photo], device).expand_as(here)
    mask = reliable(forward, backward, here, there)  # (B, 1, h, w)
    moved = warp(anchor.expand(len(photos), -1, -1, -1), backward)
    fresh = engine.first_canvas(photos, styles, params, style_keys=style_keys)
    start = mask * moved + (1 - mask) * fresh
    if len(photos) > 1:
        steps = [flows_between(estimator, photos[k], photos[k - 1], device)
                 for k in range(1, len(photos))]
        back = torch.cat([b for b, _ in steps])  # (B - 1, 2, h, w)
        chained = reliable(torch.cat([f for _, f in steps]), back, here[1:], here[:-1])
        grid = sampling_grid(back)  # (B - 1, h, w, 2): for the starts and the chain
        for k in range(1, len(photos)):  # in order: each takes the start before it
            prev = warp_along(start[k - 1:k], grid[k - 1:k])
            fill = chained[k - 1:k] * prev + (1 - chained[k - 1:k]) * fresh[k:k + 1]
            start[k:k + 1] = mask[k:k + 1] * moved[k:k + 1] + (1 - mask[k:k + 1]) * fill
        # What the anchor does not show is held, where the motion is reliable, to the
        # frame before as it is painted, not to where it started: it gets paint in the
        # first frame that shows it, and the frames after follow.
        return start, Temporal(start, mask, weight, Chain(
            lambda x: warp_along(x, grid), (1 - mask[1:]) * chained))
    return start, Temporal(start, mask, weight)


def _report_frames(counter: _Counter, painted: Sequence[Result]) -> None:
    """One report after a batch of frames: the frames now done, their mean losses and
    the latest of them."""
    on_progress = counter.options.on_progress
    if on_progress is None:
        return
    n, latest = len(painted), painted[-1].image
    on_progress([Progress(
        counter.steps_done, counter.total, sum(r.content_loss for r in painted) / n,
        sum(r.style_loss for r in painted) / n, sum(r.total_loss for r in painted) / n,
        lambda: _thumbnail(latest, counter.options.preview_size),
        frame=counter.frames_done, frames=counter.frames)])


def _thumbnail(img: Image.Image, side: int) -> Image.Image:
    small = img.copy()
    small.thumbnail((side, side))
    return small
