"""The style-transfer engine: `Stylizer.run(content, styles, params) -> Result`.

Pure: PIL images in, a PIL image out; progress through a callback; no prints, files or
globals. One `Stylizer` holds VGG19 on its device and is meant to live for a process.
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import torch
from PIL import Image

from stylizer import losses
from stylizer.canvas import PAINTED_MIN_SIDE, Frame, PyramidCanvas
from stylizer.config import PRECISIONS
from stylizer.errors import Cancelled, InvalidParams
from stylizer.optim import BatchLBFGS
from stylizer.params import StyleParams
from stylizer.vgg import CONTENT_LAYER, LAYERS, STYLE_LAYERS, VGGFeatures, load_vgg

log = logging.getLogger(__name__)

_STYLE_IDX = tuple(LAYERS[n] for n in STYLE_LAYERS)
_CONTENT_IDX = LAYERS[CONTENT_LAYER]
# Every layer the objective reads, in network order; the content layer sits between
# relu4_1 and relu5_1.
_ALL_IDX = tuple(sorted({*_STYLE_IDX, _CONTENT_IDX}))
_CONTENT_POS = _ALL_IDX.index(_CONTENT_IDX)
_STYLE_POS = tuple(_ALL_IDX.index(i) for i in _STYLE_IDX)
LBFGS_HISTORY = 20
# On the pyramid canvas, the first L-BFGS step moves no offset by more than this (0-255
# units): torch's rule, min(1, 1/|g|_1), barely moves a large picture and wastes the step.
FIRST_STEP = 4.0
GRAPH_WARMUP = 3  # eager steps before a step is captured (cuDNN picks its kernels)
MIN_LEVEL_SIDE = 64  # below this VGG's deeper layers see only a pixel or two
MAX_STYLE_SIDE = 2048
# The founding notes' two-phase schedule: style weight during the first phase.
TWO_PHASE_SPLIT = 0.4
# With 0.1 the style term still outweighed content ~100x and the photo never formed.
TWO_PHASE_STYLE = 1e-3
# With params.balance: the style term's weight against the content term's when both are
# measured from their reference points (see Stylizer._weights), at strength 1.
BALANCE = 5.0

# RGB <-> YIQ (NTSC), for colour preservation by luminance-only transfer.
_RGB2YIQ = torch.tensor([[0.299, 0.587, 0.114],
                         [0.596, -0.274, -0.322],
                         [0.211, -0.523, 0.312]])
_YIQ2RGB = torch.linalg.inv(_RGB2YIQ)


@dataclass(frozen=True)
class Progress:
    """One image's state at a step. `preview` is rendered on first access, from a copy of
    the pixels taken at that step: reports that nobody looks at cost no device transfer."""

    step: int
    total: int
    content_loss: float
    style_loss: float
    total_loss: float
    render: Callable[[], Image.Image] | None = field(default=None, repr=False, compare=False)

    @cached_property
    def preview(self) -> Image.Image | None:
        return self.render() if self.render is not None else None


@dataclass(frozen=True)
class Result:
    image: Image.Image
    steps: int
    seconds: float
    # The objective evaluated on the image as saved (rounded to 8 bits), with the same
    # network precision as the optimisation (bf16 convolutions on a GPU or a CPU with
    # native bf16, fp32 elsewhere); `Stylizer.evaluate` is the fp32 judge.
    content_loss: float
    style_loss: float
    total_loss: float
    bf16: bool = False  # whether the network ran bf16 convolutions

    def stats(self) -> dict[str, float | int]:
        return {"steps": self.steps, "seconds": round(self.seconds, 3),
                "content_loss": self.content_loss, "style_loss": self.style_loss,
                "total_loss": self.total_loss, "width": self.image.width,
                "height": self.image.height, "bf16": int(self.bf16)}


def cpu_has_native_bf16() -> bool:
    """Whether oneDNN runs bf16 convolutions natively on this CPU (AVX512-BF16 or AMX),
    where they take about 60% of the fp32 time; elsewhere bf16 would be emulated, slower."""
    try:
        return bool(torch.backends.mkldnn.is_available()  # type: ignore[no-untyped-call]
                    and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_device(name: str) -> torch.device:
    """"auto", "cpu", "cuda" or "cuda:N" to a device that exists here (or InvalidParams)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise InvalidParams(f"Unknown device '{name}'; use auto, cpu, cuda or cuda:N.") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InvalidParams("There is no CUDA GPU on this machine; use --device cpu.")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise InvalidParams(f"There is no {name} here; this machine has "
                                f"{torch.cuda.device_count()} GPU(s).")
    elif device.type != "cpu":
        raise InvalidParams(f"Unsupported device '{name}'; use auto, cpu, cuda or cuda:N.")
    return device


def level_sizes(width: int, height: int, size: int, scales: int) -> list[tuple[int, int]]:
    """Output sizes (w, h) of each coarse-to-fine level; the last has long side `size`."""
    out: list[tuple[int, int]] = []
    for i in range(scales):
        long_side = size / 2 ** (scales - 1 - i)
        if long_side < MIN_LEVEL_SIDE and i < scales - 1:
            continue
        k = long_side / max(width, height)
        out.append((max(1, round(width * k)), max(1, round(height * k))))
    return out


def split_steps(total: int, levels: int) -> list[int]:
    """Most steps at low resolution, where they are cheap: weights 2^(L-1-i), >= 1 each."""
    weights = [2.0 ** (levels - 1 - i) for i in range(levels)]
    raw = [total * w / sum(weights) for w in weights]
    steps = [max(1, math.floor(r)) for r in raw]
    steps[-1] += total - sum(steps)
    if steps[-1] < 1:  # fewer steps than levels: give each level one
        steps = [1] * levels
    return steps


def to_tensor(img: Image.Image, device: torch.device) -> torch.Tensor:
    """PIL RGB -> (1, 3, H, W) float32 in 0-255."""
    arr = np.asarray(img.convert("RGB"), dtype=np.float32)  # (H, W, 3)
    return torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0).contiguous().to(device)


def to_image(t: torch.Tensor) -> Image.Image:
    """(1, 3, H, W) in 0-255 -> PIL RGB, rounded as it will be saved."""
    return to_images(t)[0]


def to_images(t: torch.Tensor) -> list[Image.Image]:
    """(B, 3, H, W) in 0-255 -> B PIL RGB images, with one device-to-host copy."""
    arr = t.detach().float().clamp(0, 255).round().to(torch.uint8).permute(0, 2, 3, 1)
    pixels = arr.cpu().numpy()  # (B, H, W, 3)
    return [Image.fromarray(np.ascontiguousarray(p), "RGB") for p in pixels]


def batch_tensor(imgs: Sequence[Image.Image], device: torch.device) -> torch.Tensor:
    """Same-size PIL images -> (B, 3, H, W) float32 in 0-255, with one host-to-device copy
    (of bytes: a quarter of the floats)."""
    arr = np.stack([np.asarray(img.convert("RGB"), dtype=np.uint8) for img in imgs])
    return torch.from_numpy(arr).to(device).permute(0, 3, 1, 2).float().contiguous()


def _resize(img: Image.Image, wh: tuple[int, int]) -> Image.Image:
    return img if img.size == wh else img.resize(wh, Image.Resampling.LANCZOS)


def _style_size(style: Image.Image, area: float) -> tuple[int, int]:
    """(w, h) in pixels that `style` is scaled to: about `area` pixels, keeping its aspect,
    but at least PAINTED_MIN_SIDE on its short side (a small `style_scale` on a small photo
    asks for less than the network can see), and at most MAX_STYLE_SIDE on its long side.
    A painting too thin for both is then mirrored out to a `Frame` (see `_style_target`)."""
    w, h = style.size
    k = math.sqrt(area / (w * h))
    k = max(k, PAINTED_MIN_SIDE / min(w, h))
    k = min(k, MAX_STYLE_SIDE / max(w, h))
    return max(1, round(w * k)), max(1, round(h * k))


def _sqrtm(c: torch.Tensor, power: float = 0.5) -> torch.Tensor:
    """A batch of symmetric positive-definite matrices to the power `power`."""
    e, v = torch.linalg.eigh(c)
    scaled = v * e.clamp_min(1e-6).pow(power).unsqueeze(-2)  # v @ diag(e^p)
    return torch.matmul(scaled, v.transpose(-1, -2))


def _colour_moments(img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per (B, 3, H, W) picture: its colours' mean (B, 3, 1), the colours less that mean
    (B, 3, H*W) and their covariance (B, 3, 3)."""
    x = img.reshape(img.shape[0], 3, -1)
    mean = x.mean(2, keepdim=True)
    centred = x - mean
    return mean, centred, centred @ centred.transpose(1, 2) / x.shape[2]


def recolour_like(img: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) pictures moved to the colour mean (B, 3, 1) and covariance (B, 3, 3)
    given, by the affine map that changes them least (the optimal transport between the
    two Gaussians; Pitié & Kokaram 2007). Shapes, edges and shading stay the photo's."""
    _, xc, cx = _colour_moments(img)
    # One unit of variance (pixel values are 0-255) keeps a flat or grey picture's
    # covariance invertible; it is far below any real picture's.
    eye = torch.eye(3, device=img.device)
    cx = cx + eye
    root, inv_root = _sqrtm(cx), _sqrtm(cx, -0.5)
    t = inv_root @ _sqrtm(root @ (cov + eye) @ root) @ inv_root
    return (t @ xc + mean).reshape(img.shape).clamp(0, 255)


def _luminance(t: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB -> (B, 1, H, W) luma."""
    return torch.einsum("c,bchw->bhw", _RGB2YIQ[0].to(t.device), t).unsqueeze(1)


def _yiq(t: torch.Tensor) -> torch.Tensor:
    return torch.einsum("dc,bchw->bdhw", _RGB2YIQ.to(t.device), t)


def _rgb_from_yiq(t: torch.Tensor) -> torch.Tensor:
    return torch.einsum("dc,bchw->bdhw", _YIQ2RGB.to(t.device), t)


@dataclass(frozen=True)
class _StyleTarget:
    """One painting at one size: its Gram per style layer, each (1, C, C), and its colours'
    mean (3, 1) and covariance (3, 3), in 0-255 RGB."""

    grams: list[torch.Tensor]
    mean: torch.Tensor
    cov: torch.Tensor


@dataclass(frozen=True)
class Targets:
    """What a batch is painted towards: content features (B, C, H', W'), per style layer
    the Gram targets (B, C, C), and each job's palette: colour mean (B, 3, 1) and
    covariance (B, 3, 3)."""

    content: torch.Tensor
    grams: list[torch.Tensor]
    mean: torch.Tensor
    cov: torch.Tensor


class Stylizer:
    """Holds VGG19 on a device; paints with `run`."""

    def __init__(self, device: str = "auto", weights: str = "caffe", *,
                 cuda_graphs: bool = True, precision: str = "auto",
                 autotune: bool = True) -> None:
        """`precision`: "auto" (bf16 convolutions on a GPU or on a CPU with native bf16
        arithmetic, such as AVX512-BF16 or AMX; fp32 on other CPUs), "bf16" or "fp32".
        `autotune`: let cuDNN time its kernels for each new image size (faster steps, but
        the first job at every new size pays for the search)."""
        self.device = resolve_device(device)
        self.weights = weights
        self.cuda_graphs = cuda_graphs
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}")
        self.bf16 = precision == "bf16" or (precision == "auto" and (
            self.device.type == "cuda" or cpu_has_native_bf16()))
        # NHWC activations: what cuDNN's and oneDNN's fast bf16 kernels want.
        self.channels_last = self.device.type == "cuda" or self.bf16
        self.autotune = autotune  # only cuDNN has kernels to time: no effect on a CPU
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = autotune
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self._models: dict[str, VGGFeatures] = {"max": self._load("max")}
        self._style_cache: OrderedDict[tuple[object, ...], _StyleTarget] = OrderedDict()

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
            torch.backends.cudnn.benchmark = self.autotune

    def _load(self, pooling: str) -> VGGFeatures:
        model = load_vgg(self.weights, device=self.device, pooling=pooling)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        return model

    def model(self, pooling: str) -> VGGFeatures:
        if pooling not in self._models:
            self._models[pooling] = self._load(pooling)
        return self._models[pooling]

    def _autocast(self) -> AbstractContextManager[object]:
        # bf16 convolutions; Grams and losses stay fp32 (see losses.py).
        if self.bf16:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return nullcontext()

    def features(self, img: torch.Tensor, pooling: str) -> list[torch.Tensor]:
        with self._autocast():
            feats: list[torch.Tensor] = self.model(pooling)(img, _ALL_IDX)
        return feats

    # -- targets ---------------------------------------------------------------------------

    def _style_target(self, style: Image.Image, area: float, params: StyleParams,
                      key: str | None, lum_stats: tuple[float, float] | None) -> _StyleTarget:
        wh = _style_size(style, area)
        cache_key = (key, wh, params.pooling) if key is not None and lum_stats is None else None
        if cache_key is not None and cache_key in self._style_cache:
            self._style_cache.move_to_end(cache_key)
            return self._style_cache[cache_key]
        # (1, 3, H, W); only a painting over 64 times longer than wide gets margins
        t = Frame.around(*wh).pad(to_tensor(_resize(style, wh), self.device))
        if lum_stats is not None:
            # Luminance-only transfer: the style's luma, matched to the content's mean and
            # spread (Gatys et al. 2016, "Preserving colour in neural artistic style transfer").
            y = _luminance(t)
            y = (y - y.mean()) / (y.std() + 1e-5) * lum_stats[1] + lum_stats[0]
            t = y.expand(-1, 3, -1, -1)
        with torch.no_grad():
            feats = self.features(t, params.pooling)
            grams = [losses.gram(feats[p]) for p in _STYLE_POS]  # each (1, C, C)
        mean, _, cov = _colour_moments(t)  # the painting's colours, for the palette start
        target = _StyleTarget(grams, mean[0], cov[0])
        if cache_key is not None:
            self._style_cache[cache_key] = target
            while len(self._style_cache) > 64:
                self._style_cache.popitem(last=False)
        return target

    def _targets(self, content: torch.Tensor, styles: Sequence[Sequence[Image.Image]],
                 params: StyleParams, style_keys: Sequence[Sequence[str] | None] | None,
                 preserve: bool) -> Targets:
        """Content features of a (B, 3, H, W) batch in one forward pass, and each image's
        style targets: its Grams, and its painting's (or blend's) colour mean and
        covariance."""
        h, w = content.shape[-2:]
        area = h * w * params.style_scale**2
        per_image: list[list[torch.Tensor]] = []
        means, covs = [], []
        for i, job_styles in enumerate(styles):
            lum_stats = None
            if preserve:
                y = _luminance(content[i:i + 1])
                lum_stats = (float(y.mean()), float(y.std()))
            keys = style_keys[i] if style_keys is not None else None
            blend = _blend_weights(params, len(job_styles))
            mixed: list[torch.Tensor] | None = None
            # A blend's palette is the mixture of its paintings' colours: its mean and
            # second moment are the weighted sums (3 x 3, in float64: the second moments
            # are large and their difference is not).
            mean = torch.zeros(3, 1, device=self.device, dtype=torch.float64)
            second = torch.zeros(3, 3, device=self.device, dtype=torch.float64)
            for j, (style, weight) in enumerate(zip(job_styles, blend, strict=True)):
                key = keys[j] if keys is not None else None
                target = self._style_target(style, area, params, key, lum_stats)
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
            content_feat = self.features(content, params.pooling)[_CONTENT_POS].float()
        return Targets(content_feat, [torch.cat(layer) for layer in zip(*per_image, strict=True)],
                       torch.stack(means), torch.stack(covs))

    # -- the objective ---------------------------------------------------------------------

    def objective(self, img: torch.Tensor, content_feat: torch.Tensor,
                  grams: list[torch.Tensor], params: StyleParams, style_mult: float = 1.0,
                  style_weight: torch.Tensor | None = None,
                  content_weight: torch.Tensor | None = None,
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(total, content, style) for a (B, 3, H, W) batch, each of shape (B,).
        `style_weight` and `content_weight`, (B,), give each image its own weights (else
        the params')."""
        feats = self.features(img, params.pooling)
        c = losses.content_loss(feats[_CONTENT_POS], content_feat)
        s = losses.style_loss([feats[p] for p in _STYLE_POS], grams)
        sw = params.style_weight if style_weight is None else style_weight
        cw = params.content_weight if content_weight is None else content_weight
        total = cw * c + sw * style_mult * s
        if params.tv_weight > 0:
            total = total + params.tv_weight * losses.TV_SCALE * losses.tv_loss(img)
        return total, c, s

    # -- the public entry point ------------------------------------------------------------

    def run(self, content: Image.Image, styles: Sequence[Image.Image], params: StyleParams, *,
            on_progress: Callable[[Progress], None] | None = None,
            should_stop: Callable[[], bool] | None = None, progress_every: int = 10,
            preview_every: int = 0, preview_size: int = 256,
            style_keys: Sequence[str] | None = None) -> Result:
        """Paints `content` in the style of `styles` (blended by `params.style_blend`).

        Any picture of at least one pixel paints: a photo or painting whose short side
        comes out thinner than VGG19 can see (at its size, style scale or coarse-to-fine
        level) is painted mirrored out to a few more pixels and cropped back (see
        canvas.Frame). The result's image has `content`'s aspect at `params.size` on its
        long side (the photo is scaled up or down to it).

        `on_progress` is called every `progress_every` steps (and on the last one), with a
        preview image every `preview_every` steps when that is > 0. `should_stop` is polled
        before every step; when it returns True, `Cancelled` is raised. `style_keys`, one
        stable key per style image, lets repeated styles reuse their Gram matrices.
        Raises `InvalidParams` when `params.style_blend` does not give one weight per
        style, `Cancelled` when stopped.
        """
        report = None if on_progress is None else lambda batch: on_progress(batch[0])
        return self.run_batch([content], [styles], params, on_progress=report,
                              should_stop=should_stop, progress_every=progress_every,
                              preview_every=preview_every, preview_size=preview_size,
                              style_keys=[style_keys] if style_keys is not None else None)[0]

    def run_batch(self, contents: Sequence[Image.Image],
                  styles: Sequence[Sequence[Image.Image]], params: StyleParams, *,
                  on_progress: Callable[[Sequence[Progress]], None] | None = None,
                  should_stop: Callable[[], bool] | None = None, progress_every: int = 10,
                  preview_every: int = 0, preview_size: int = 256,
                  style_keys: Sequence[Sequence[str] | None] | None = None,
                  style_weights: Sequence[float] | None = None) -> list[Result]:
        """Paints several photos of the same size with the same parameters as one batch.

        Each image keeps its own styles, targets and optimiser history; only the VGG work
        is shared, so the GPU runs one large batch instead of many small ones.
        `style_weights`, one per photo, lets jobs that differ only in strength share a
        batch (each image's problem is separate, so each is painted as if alone).
        `on_progress` gets one `Progress` per image, in the order of `contents`.
        """
        if any(not s for s in styles) or len(styles) != len(contents):
            raise ValueError("each photo needs at least one style image")
        weights = list(style_weights or [params.style_weight] * len(contents))
        if len(weights) != len(contents):
            raise ValueError("give one style weight per photo")
        for weight in weights:
            params.replace(style_weight=weight)  # the same range check as a job's own
        if len({c.size for c in contents}) != 1:
            raise ValueError("a batch needs photos of one size")
        start = time.perf_counter()
        gen = torch.Generator().manual_seed(params.seed)
        torch.manual_seed(params.seed)
        cw, ch = contents[0].size
        levels = level_sizes(cw, ch, params.size, params.scales)
        steps_per_level = split_steps(params.steps, len(levels))
        total_steps = sum(steps_per_level)
        preserve = params.preserve_colors
        done = 0
        img = content_t = torch.empty(0)  # the canvas and the photo, margins included
        painted: torch.Tensor | None = None  # the last level's picture (B, 3, h, w)
        frame: Frame | None = None
        style_w = torch.tensor(weights, dtype=torch.float32, device=self.device)  # (B,)
        for (w, h), n_steps in zip(levels, steps_per_level, strict=True):
            # A side thinner than the network can see is painted mirrored out to
            # PAINTED_MIN_SIDE and cropped back (see canvas.Frame); most photos get no
            # margins. Everything below works on the canvas, margins included.
            frame = Frame.around(w, h)
            content_t = frame.pad(batch_tensor([_resize(c, (w, h)) for c in contents],
                                               self.device))  # (B, 3, H, W)
            work = _luminance(content_t).expand(-1, 3, -1, -1) if preserve else content_t
            targets = self._targets(work, styles, params, style_keys, preserve)
            content_feat, grams = targets.content, targets.grams
            content_w, level_style_w = self._weights(work, targets, params, style_w, gen)
            if painted is None:
                img = self._init(work, params, gen, targets)
            else:
                img = frame.pad(torch.nn.functional.interpolate(
                    painted, size=(h, w), mode="bicubic", align_corners=False).clamp(0, 255))
            img = self._optimise(img, content_feat, grams, level_style_w, content_w, weights,
                                 params, n_steps, done, total_steps, on_progress, should_stop,
                                 progress_every, preview_every, preview_size, preserve,
                                 content_t, frame)
            painted = frame.crop(img)
            done += n_steps
        assert frame is not None  # level_sizes gives at least one level
        final = (_recolour(img, content_t) if preserve else img).round()
        # Score the images as they will be saved (rounded to 8 bits) against the last
        # level's targets: one batched forward, no targets recomputed. A framed picture
        # is scored with its margins, as it was optimised: cropped, the network could
        # not see it.
        with torch.no_grad():
            scored = _luminance(final).expand(-1, 3, -1, -1) if preserve else final
            feats = self.features(scored, params.pooling)
            c_loss = losses.content_loss(feats[_CONTENT_POS], content_feat)
            s_loss = losses.style_loss([feats[p] for p in _STYLE_POS], grams)
            c_vals, s_vals = c_loss.tolist(), s_loss.tolist()
        seconds = time.perf_counter() - start
        scored_images = zip(to_images(frame.crop(final)), c_vals, s_vals, weights, strict=True)
        return [Result(image, total_steps, seconds, c, s, params.content_weight * c + sw * s,
                       self.bf16) for image, c, s, sw in scored_images]

    def _weights(self, content: torch.Tensor, targets: Targets, params: StyleParams,
                 style_w: torch.Tensor, gen: torch.Generator
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """The content and style weights, (B,) each, that a batch is optimised with.

        Without `params.balance`, the params' content weight and each job's style weight
        (pastiche's objective). With it, each term is first divided by its own value at a
        reference point of this job: the content term by its value for uniform noise (as
        far from the photo as a picture gets), the style term by its value for the photo
        itself (the distance the painting has to go). The balance between photo and
        painting then no longer depends on the picture's size or on how strong the
        painting's and the photo's features happen to be, and `style_weight` (strength)
        scales `BALANCE`, measured on the quality benchmark (README, "Choosing
        defaults").
        """
        b = content.shape[0]
        cw = torch.full((b,), params.content_weight, device=self.device)
        if not params.balance:
            return cw, style_w
        with torch.no_grad():
            # One noise picture for every image: each job's weights are those it would
            # have alone, whatever batch it is painted in.
            noise = torch.rand((1, *content.shape[1:]), generator=gen).to(self.device) * 255
            feats = self.features(torch.cat([noise.expand_as(content), content]),
                                  params.pooling)
            c_ref = losses.content_loss(feats[_CONTENT_POS][:b], targets.content)
            s_ref = losses.style_loss([feats[p][b:] for p in _STYLE_POS], targets.grams)
            # A photo that already has the painting's statistics has almost nothing to go:
            # a floor keeps its weight finite (a millionth of the Grams' own energy).
            energy = losses.style_loss([torch.zeros_like(feats[p][b:]) for p in _STYLE_POS],
                                       targets.grams)
            s_ref = torch.maximum(s_ref, 1e-6 * energy)
        return cw / c_ref.clamp_min(1e-12), style_w * BALANCE / s_ref

    def _init(self, content: torch.Tensor, params: StyleParams, gen: torch.Generator,
              targets: Targets) -> torch.Tensor:
        if params.init == "palette" and not params.preserve_colors:
            return recolour_like(content, targets.mean, targets.cov)
        if params.init in ("content", "palette"):
            return content.clone()
        noise = torch.randn(content.shape, generator=gen).to(self.device)
        if params.init == "noise":
            return (127.5 + 50.0 * noise).clamp(0, 255)
        # "blank": a mid-grey canvas; a trace of noise breaks the symmetry of flat regions.
        return (127.5 + 0.5 * noise).clamp(0, 255)

    def _optimise(self, img: torch.Tensor, content_feat: torch.Tensor, grams: list[torch.Tensor],
                  style_w: torch.Tensor, content_w: torch.Tensor, job_weights: list[float],
                  params: StyleParams, n_steps: int, done: int, total: int,
                  on_progress: Callable[[Sequence[Progress]], None] | None,
                  should_stop: Callable[[], bool] | None, progress_every: int,
                  preview_every: int, preview_size: int, preserve: bool,
                  content_t: torch.Tensor, frame: Frame) -> torch.Tensor:
        pyramid = (PyramidCanvas(img, channels_last=self.channels_last)
                   if params.optimizer == "lbfgs"
                   and params.canvas == "pyramid" else None)
        if pyramid is not None:
            var = pyramid.z  # the offsets are optimised; `picture()` is the image
        else:
            var = img.detach().clone()
            if self.channels_last:
                var = var.contiguous(memory_format=torch.channels_last)
        var.requires_grad_(True)

        def picture() -> torch.Tensor:
            return var if pyramid is None else pyramid.picture(var)

        lbfgs = None
        if params.optimizer == "lbfgs":
            lbfgs = (BatchLBFGS(var, history=LBFGS_HISTORY) if pyramid is None else
                     BatchLBFGS(var, history=LBFGS_HISTORY, first_step=FIRST_STEP,
                                project=pyramid.project_))
        adam = None if lbfgs else torch.optim.Adam([var], lr=params.lr,
                                                   fused=self.device.type == "cuda")

        def step(style_mult: float) -> tuple[torch.Tensor, ...]:
            out = self.objective(picture(), content_feat, grams, params, style_mult, style_w,
                                 content_w)
            if lbfgs is not None:
                (grad,) = torch.autograd.grad(out[0].sum(), var)
                lbfgs.step(var.data, grad, out[0])  # projects: what is optimised is saved
            else:
                assert adam is not None
                var.grad = None
                out[0].sum().backward()  # type: ignore[no-untyped-call]
                adam.step()
                with torch.no_grad():
                    var.clamp_(0, 255)
            return tuple(x.detach() for x in out)

        # On the GPU a step is ~100 small kernels; replaying them as one CUDA graph removes
        # the launch overhead that otherwise dominates at batch 1.
        graphable = (self.cuda_graphs and self.device.type == "cuda" and lbfgs is not None
                     and params.schedule == "constant" and n_steps > GRAPH_WARMUP + 2)
        graph: torch.cuda.CUDAGraph | None = None
        last: tuple[torch.Tensor, ...] = ()
        style_mult = 1.0
        for i in range(n_steps):
            if should_stop is not None and should_stop():
                raise Cancelled("cancelled")
            if graph is not None:
                graph.replay()
            else:
                style_mult = 1.0  # the schedule's weight on style at this step
                if params.schedule == "two-phase":
                    if i < TWO_PHASE_SPLIT * n_steps:
                        style_mult = TWO_PHASE_STYLE  # structure first, then style
                    elif lbfgs is not None and i - 1 < TWO_PHASE_SPLIT * n_steps:
                        lbfgs.forget_best()
                last = step(style_mult)
                if graphable and i == GRAPH_WARMUP - 1:
                    graph, captured = self._capture(lambda: step(1.0))
                    last = captured or last
            step_no = done + i + 1
            if on_progress is not None and (step_no % progress_every == 0 or step_no == total):
                snapshot = None
                if preview_every > 0 and (step_no % preview_every == 0 or step_no == total):
                    # A device-side copy: the pixels move on, the preview shows this step.
                    with torch.no_grad():
                        snapshot = frame.crop(picture()).clone()
                _, c, s = (x.tolist() for x in last)  # one host sync for the whole batch
                # Reported on pastiche's objective with the job's own weights (and the
                # schedule's), as the Result is: the balanced total that is optimised has no
                # unit a person could compare between jobs.
                t = [params.content_weight * cb + wb * style_mult * sb
                     for cb, sb, wb in zip(c, s, job_weights, strict=True)]
                on_progress([Progress(step_no, total, c[b], s[b], t[b],
                                      None if snapshot is None else _preview_renderer(
                                          snapshot, b, frame.crop(content_t), preserve,
                                          preview_size))
                             for b in range(len(t))])
        with torch.no_grad():
            if lbfgs is not None:
                lbfgs.keep_best(var.data, self.objective(picture(), content_feat, grams,
                                                         params, style_weight=style_w,
                                                         content_weight=content_w)[0])
            return picture().detach()  # the pixel canvas is the leaf itself

    def _capture(self, fn: Callable[[], tuple[torch.Tensor, ...]],
                 ) -> tuple[torch.cuda.CUDAGraph | None, tuple[torch.Tensor, ...] | None]:
        """Records one step as a CUDA graph (not run now: the next replay runs it)."""
        graph = torch.cuda.CUDAGraph()
        try:
            torch.cuda.synchronize(self.device)
            with torch.cuda.graph(graph):
                out = fn()
        except RuntimeError:
            log.warning("CUDA graph capture failed; continuing without graphs", exc_info=True)
            self.cuda_graphs = False
            torch.cuda.synchronize(self.device)
            return None, None
        return graph, out

    def evaluate(self, image: Image.Image, content: Image.Image, styles: Sequence[Image.Image],
                 params: StyleParams) -> dict[str, float]:
        """The objective (fp32) of an 8-bit image against `content` and `styles`, at the
        image's own size: how good a saved painting is, whoever made it."""
        frame = Frame.around(*image.size)  # a thin painting is judged framed, as painted
        img = frame.pad(to_tensor(image, self.device))
        content_t = frame.pad(to_tensor(_resize(content, image.size), self.device))
        preserve = params.preserve_colors
        if preserve:
            content_t = _luminance(content_t).expand(-1, 3, -1, -1)
            img = _luminance(img).expand(-1, 3, -1, -1)
        bf16, self.bf16 = self.bf16, False  # the evaluator is always fp32
        try:
            with torch.no_grad():
                targets = self._targets(content_t, [styles], params, None, preserve)
                content_feat, grams = targets.content, targets.grams
                feats = self.features(img, params.pooling)
                c = float(losses.content_loss(feats[_CONTENT_POS], content_feat).sum())
                s = float(losses.style_loss([feats[p] for p in _STYLE_POS], grams).sum())
        finally:
            self.bf16 = bf16
        total = params.content_weight * c + params.style_weight * s
        return {"content": c, "style": s, "total": total}


def _recolour(img: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """Colour preservation: `img`'s luminance with `content`'s chroma (both (B, 3, H, W))."""
    yiq = _yiq(content)
    yiq[:, :1] = _luminance(img)
    return _rgb_from_yiq(yiq).clamp(0, 255)


def _preview_renderer(snapshot: torch.Tensor, index: int, content: torch.Tensor,
                      preserve: bool, side: int) -> Callable[[], Image.Image]:
    def render() -> Image.Image:
        shown = snapshot[index:index + 1]
        if preserve:
            shown = _recolour(shown, content[index:index + 1])
        preview = to_image(shown)
        preview.thumbnail((side, side))
        return preview

    return render


def _blend_weights(params: StyleParams, n_styles: int) -> list[float]:
    """Each style's share of the style target, summing to 1."""
    blend = list(params.style_blend) or [1.0] * n_styles
    if len(blend) != n_styles:
        raise InvalidParams(f"{len(blend)} style weights were given for {n_styles} style "
                            "images; give one per style.")
    return [b / sum(blend) for b in blend]
