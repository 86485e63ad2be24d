"""Animations painted steadily: the motion between photos, the painting moved along it,
the temporal term, and `Stylizer.run_animation` on tiny clips."""

from __future__ import annotations

from itertools import pairwise
from typing import TYPE_CHECKING

import numpy as np
import pytest
import torch
from PIL import Image

from stylizer import motion, temporal
from stylizer.canvas import Frame
from stylizer.errors import Cancelled
from stylizer.objective import Chain, Objective, Temporal
from stylizer.params import StyleParams
from stylizer.runs import Progress, RunOptions
from stylizer.tensors import batch_tensor

if TYPE_CHECKING:
    from stylizer.engine import Stylizer


def synthetic_photo(width: int, height: int) -> Image.Image:
    """A photo-like picture with detail everywhere, for the flow to follow."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    r = 128 + 90 * np.sin(xx / 4.0) * np.cos(yy / 5.0)
    g = 128 + 80 * np.sin((xx + yy) / 6.0)
    b = 100 + 60 * np.cos(xx / 7.0 - yy / 3.0)
    return Image.fromarray(np.stack([r, g, b], -1).clip(0, 255).astype(np.uint8), "RGB")


def panned(width: int, height: int, n: int, step: int) -> list[Image.Image]:
    """`n` windows of `width` x `height` moving right by `step` px a frame over a larger
    synthetic photo."""
    big = synthetic_photo(width + step * n, height)
    return [big.crop((k * step, 0, k * step + width, height)) for k in range(n)]


def test_a_zero_flow_leaves_a_picture_as_it_is() -> None:
    img = torch.rand(2, 3, 5, 7) * 255
    assert torch.allclose(motion.warp(img, torch.zeros(2, 2, 5, 7)), img, atol=1e-3)


def test_a_whole_pixel_flow_moves_the_picture_by_that_many_pixels() -> None:
    img = torch.arange(30, dtype=torch.float32).reshape(1, 1, 5, 6)
    flow = torch.zeros(1, 2, 5, 6)
    flow[:, 0] = 2.0  # each pixel comes from two to its right
    moved = motion.warp(img, flow)
    assert torch.allclose(moved[..., :4], img[..., 2:], atol=1e-4)
    # Past the edge the edge pixel is repeated.
    assert torch.allclose(moved[..., 4:], img[..., 5:6].expand(-1, -1, -1, 2), atol=1e-4)


def test_the_flow_finds_a_pan_and_trusts_it_where_the_pictures_agree() -> None:
    a, b = panned(64, 48, 2, 3)
    back, fwd = motion.flows_between(motion.FlowEstimator(), b, a, torch.device("cpu"))
    # Frame b's pixel x shows what frame a showed at x + 3.
    inside = back[0, 0, 8:-8, 8:-8]
    assert abs(float(inside.median()) - 3.0) < 0.5
    mask = motion.reliable(fwd, back, batch_tensor([b], "cpu"), batch_tensor([a], "cpu"))
    assert float(mask.mean()) > 0.8


def test_motion_is_not_trusted_where_the_moved_photo_does_not_match() -> None:
    a = synthetic_photo(64, 48)
    b = a.copy()
    b.paste((255, 0, 255), (20, 10, 40, 30))  # something new appears
    back, fwd = motion.flows_between(motion.FlowEstimator(), b, a, torch.device("cpu"))
    mask = motion.reliable(fwd, back, batch_tensor([b], "cpu"), batch_tensor([a], "cpu"))
    assert float(mask[0, 0, 12:28, 22:38].mean()) == 0.0
    assert float(mask[0, 0, :, 45:].mean()) > 0.9


def test_the_temporal_term_is_the_masked_mean_square_in_0_to_1_units() -> None:
    img = torch.full((1, 3, 2, 2), 51.0)
    target = torch.zeros(1, 3, 2, 2)
    mask = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]]])
    params = StyleParams(tv_weight=0.0)

    def no_features(x: torch.Tensor, pooling: str) -> list[torch.Tensor]:
        return [x] * 6

    class Targets:
        content = img
        grams = [torch.zeros(1, 3, 3)] * 5

    plain = Objective(no_features, Targets(), params, 0.0, 0.0)  # type: ignore[arg-type]
    held = Objective(no_features, Targets(), params, 0.0, 0.0,  # type: ignore[arg-type]
                     Temporal(target, mask, 10.0))
    # Half the pixels differ by 51/255 = 0.2 in each channel: 10 * 0.5 * 0.04 = 0.2.
    extra = held(img)[0] - plain(img)[0]
    assert torch.allclose(extra, torch.tensor([0.2]), atol=1e-6)
    # The content and style terms are reported without it.
    assert torch.equal(held(img)[1], plain(img)[1])


def test_a_chained_frame_is_held_to_the_frame_before_it_as_that_frame_is_now() -> None:
    # Three frames; the first is 0, the second 51, the third 102 everywhere. Each frame
    # after the first is held, where the chain's mask says, to the one before it moved
    # one pixel to the right; nothing else holds them.
    img = torch.stack([torch.full((3, 2, 4), 51.0 * k) for k in range(3)]).requires_grad_()
    nowhere = torch.zeros(3, 1, 2, 4)
    left_half = torch.zeros(2, 1, 2, 4)
    left_half[..., :2] = 1.0

    def right_by_one(x: torch.Tensor) -> torch.Tensor:
        return motion.warp(x, torch.tensor([-1.0, 0.0]).view(1, 2, 1, 1).expand(
            x.shape[0], 2, *x.shape[-2:]))

    term = Temporal(torch.zeros(3, 3, 2, 4), nowhere, 10.0,
                    Chain(right_by_one, left_half))
    out = term(img)
    # Frames 1 and 2 differ from the frame before by 51/255 = 0.2 on half their pixels:
    # 10 * 0.5 * 0.04 = 0.2 each; the first frame follows nothing.
    assert torch.allclose(out, torch.tensor([0.0, 0.2, 0.2]), atol=1e-6)
    # The frame before leads: the chain pulls only the later frame.
    (grad,) = torch.autograd.grad(out.sum(), img)
    assert torch.equal(grad[0], torch.zeros_like(grad[0]))
    assert (grad[1, :, :, :2] > 0).all()
    assert (grad[1, :, :, 2:] == 0).all()
    # Framed for a thin picture, it means the same on the mirrored canvas.
    frame = Frame.around(4, 2, min_side=32)
    padded = frame.pad(img.detach())
    framed = term.framed(frame)
    assert framed.chain is not None
    assert framed.chain.mask.shape[-2:] == padded.shape[-2:]
    assert torch.equal(frame.crop(framed.chain.move(padded[:-1])), right_by_one(img[:-1]))
    assert torch.equal(frame.crop(framed.chain.mask), left_half)


@pytest.mark.parametrize("steps", [100, 200, 30, 5])
def test_following_frames_get_a_share_of_the_steps(steps: int) -> None:
    follow = temporal.following_steps(steps)
    assert 1 <= follow <= steps
    assert follow >= min(steps, temporal.MIN_FOLLOW_STEPS)


def noisy_copies(width: int, height: int, n: int) -> list[Image.Image]:
    """`n` photos of one still scene, each with its own camera noise (sigma 2 levels)."""
    rng = np.random.default_rng(1)
    base = np.asarray(synthetic_photo(width, height), dtype=np.float32)
    return [Image.fromarray(np.clip(base + rng.normal(0, 2, base.shape), 0, 255)
                            .astype(np.uint8)) for _ in range(n)]


def mean_change(frames: list[Image.Image]) -> float:
    arrays = [np.asarray(f, dtype=np.float32) for f in frames]
    return float(np.mean([np.abs(b - a).mean() for a, b in pairwise(arrays)]))


def test_an_animation_of_a_still_scene_keeps_its_brush_strokes(
        engine: Stylizer, style_image: Image.Image) -> None:
    """Five photos of one scene, each with its own camera noise: painted independently,
    each frame finds its own strokes; painted as an animation, the strokes stay."""
    photos = noisy_copies(48, 32, 5)
    params = StyleParams(size=48, steps=24)
    animated = engine.run_animation(photos, [style_image], params, batch=2).frames
    alone = [r.image for r in engine.run_batch(photos, [[style_image]] * 5, params)]
    assert [f.size for f in animated] == [(48, 32)] * 5
    # Measured with bf16 and fp32 networks, two noise seeds: 0.33-0.36 against 8.1-8.8
    # (levels 0-255); a broken warm start or temporal term gives the independent figure.
    assert mean_change(animated) < mean_change(alone) / 3


def test_progress_counts_steps_over_the_whole_animation_and_frames_done(
        engine: Stylizer, style_image: Image.Image) -> None:
    photos = panned(40, 32, 5, 2)
    seen: list[Progress] = []
    params = StyleParams(size=40, steps=12)
    result = engine.run_animation(photos, [style_image], params,
                                  RunOptions(on_progress=seen.extend, progress_every=1,
                                             preview_every=4, preview_size=16),
                                  batch=2)
    follow = temporal.following_steps(12)
    assert result.steps == 12 + 2 * follow  # the first frame, then two batches
    assert [p.step for p in seen] == sorted(p.step for p in seen)
    assert seen[-1].step == seen[-1].total == result.steps
    assert {p.frames for p in seen} == {5}
    assert [p.frame for p in seen] == sorted(p.frame for p in seen)
    assert seen[-1].frame == 5
    previews = [p.preview for p in seen if p.preview is not None]
    assert previews
    assert max(previews[-1].size) <= 16
    assert result.stats()["frames"] == 5


def test_a_cancelled_animation_stops(engine: Stylizer, style_image: Image.Image) -> None:
    photos = panned(40, 32, 4, 2)
    calls = []

    def stop() -> bool:
        calls.append(1)
        return len(calls) > 15  # during the frames after the first

    with pytest.raises(Cancelled):
        engine.run_animation(photos, [style_image], StyleParams(size=40, steps=10),
                             RunOptions(should_stop=stop), batch=2)


def test_an_animation_needs_frames_of_one_size(engine: Stylizer,
                                                style_image: Image.Image) -> None:
    with pytest.raises(ValueError, match="one size"):
        engine.run_animation([synthetic_photo(40, 32), synthetic_photo(32, 40)],
                             [style_image], StyleParams(size=40, steps=2))
    with pytest.raises(ValueError, match="at least one frame"):
        engine.run_animation([], [style_image], StyleParams(size=40, steps=2))


def test_a_thin_animation_paints(engine: Stylizer, style_image: Image.Image) -> None:
    """Frames thinner than the network can see are painted framed, as stills are."""
    photos = panned(40, 6, 3, 1)
    result = engine.run_animation(photos, [style_image], StyleParams(size=40, steps=4))
    assert [f.size for f in result.frames] == [(40, 6)] * 3


def test_frames_smaller_than_the_painting_are_painted_at_its_size(
        engine: Stylizer, style_image: Image.Image) -> None:
    """A 40x24 clip painted at 64 px: every frame comes out 64x38, as a still would."""
    photos = panned(40, 24, 3, 2)
    result = engine.run_animation(photos, [style_image], StyleParams(size=64, steps=4))
    assert [f.size for f in result.frames] == [(64, 38)] * 3


@pytest.mark.gpu
def test_on_the_gpu_an_animation_is_steady_and_repeatable(style_image: Image.Image) -> None:
    """On CUDA (graphs, bf16, batches of frames): as steady as on the CPU, and the same
    frames for the same seed."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    from stylizer.config import EngineConfig
    from stylizer.engine import Stylizer

    gpu = Stylizer(EngineConfig(device="cuda"))
    photos = noisy_copies(96, 64, 6)
    params = StyleParams(size=96, steps=40)
    first = gpu.run_animation(photos, [style_image], params, batch=3).frames
    again = gpu.run_animation(photos, [style_image], params, batch=3).frames
    alone = [r.image for r in gpu.run_batch(photos, [[style_image]] * 6, params)]
    assert [np.asarray(f).tobytes() for f in first] == [np.asarray(f).tobytes() for f in again]
    assert mean_change(first) < mean_change(alone) / 3
