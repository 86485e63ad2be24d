"""A fixed judge of a saved painting: how much of the painting's style it took on, and how
much of the photo it kept. Independent of the engine's settings and precision.

Both scores compare VGG19 activations (the original Caffe weights, max pooling, fp32) of
8-bit pictures at one judged size: the painting's own up to `JUDGE_SIDE` pixels on its
long side, `JUDGE_SIDE` for larger paintings. The photo is resized to the judged picture's
size, the style image to the same long side (keeping its aspect).

- style gain = 1 − D(painting, style) / D(photo, style), where D sums, over relu1_1,
  relu2_1, relu3_1, relu4_1 and relu5_1, the mean squared difference of the Gram matrices
  (Gram = F·Fᵀ / (H·W)). 0: no closer to the style than the photo was; 1: the style's
  Grams exactly.
- content keep = 1 − MSE(relu4_2(painting), relu4_2(photo)) / MSE(relu4_2(noise),
  relu4_2(photo)), with uniform noise from a fixed seed. 1: the photo's content exactly;
  0: as far from it as noise; below 0: further.

The scores are a guide for comparing settings, not a goal in themselves: a painting that
copies a shrunk painting (its layout included) scores a high gain. Look at the pictures.

A painting made through the same network is also partly fit to its pooling grid: relu4_2
sees the picture every 8 pixels, and a painting optimised against it matches the photo a
little better at that one alignment. Cropped together with its photo by a few pixels,
a 128-px still scored keep 0.01-0.03 and gain up to 0.01 lower (README, "Animated
pictures"). `score_off_grid` averages over the grid's alignments, for comparing
paintings that cannot all be aligned alike (an animation's frames, held where the
painting before them moved).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from stylizer.canvas import Frame
from stylizer.vgg import CONTENT_LAYER, LAYERS, MIN_SIDE, STYLE_LAYERS, VGGFeatures, load_vgg

JUDGE_SIDE = 256  # larger paintings are judged at this long side
GRID = 8  # pixels: relu4_2's stride (three 2x2 poolings)
GRID_STEP = 2  # pixels between the alignments `score_off_grid` averages over
NOISE_SEED = 1234
_STYLE_IDX = tuple(LAYERS[n] for n in STYLE_LAYERS)
_CONTENT_IDX = LAYERS[CONTENT_LAYER]
_ALL_IDX = tuple(sorted({*_STYLE_IDX, _CONTENT_IDX}))


@dataclass(frozen=True)
class Score:
    """`gain` and `keep` as defined in the module docstring (unitless, 1 at best)."""

    gain: float
    keep: float


def judged_size(width: int, height: int, side: int = JUDGE_SIDE) -> tuple[int, int]:
    """The (w, h) a painting of `width` x `height` is judged at: its own up to `side`."""
    if max(width, height) <= side:
        return width, height
    k = side / max(width, height)
    return max(1, round(width * k)), max(1, round(height * k))


def gram(features: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, C): F·Fᵀ / (H·W), in float64."""
    b, c, h, w = features.shape
    flat = features.double().reshape(b, c, h * w)
    return flat @ flat.transpose(1, 2) / (h * w)


def style_distance(features: list[torch.Tensor], targets: list[torch.Tensor]) -> torch.Tensor:
    """D: the sum over layers of the mean squared difference between the Grams of
    `features` (each (B, C, H, W)) and of `targets` (each (1, C, H', W')). Returns (B,)."""
    total = torch.zeros(features[0].shape[0], dtype=torch.float64, device=features[0].device)
    for f, t in zip(features, targets, strict=True):
        total = total + (gram(f) - gram(t)).square().flatten(1).mean(1)
    return total


def style_gain(d_painting: float, d_photo: float) -> float:
    """1 − D(painting, style) / D(photo, style)."""
    return 1.0 - d_painting / d_photo if d_photo > 0 else 0.0


def content_keep(mse_painting: float, mse_noise: float) -> float:
    """1 − MSE(painting, photo) / MSE(noise, photo) at relu4_2."""
    return 1.0 - mse_painting / mse_noise if mse_noise > 0 else 1.0


def _resize(img: Image.Image, wh: tuple[int, int]) -> Image.Image:
    img = img.convert("RGB")
    return img if img.size == wh else img.resize(wh, Image.Resampling.LANCZOS)


def _tensor(imgs: list[Image.Image], device: torch.device) -> torch.Tensor:
    """Same-size PIL images -> (B, 3, H, W) float32 in 0-255."""
    arr = np.stack([np.asarray(img, dtype=np.float32) for img in imgs])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous().to(device)


class Judge:
    """Holds the fp32 VGG19 once; `score` judges saved paintings."""

    def __init__(self, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.model: VGGFeatures = load_vgg("caffe", device=self.device, pooling="max")

    def _features(self, batch: torch.Tensor) -> list[torch.Tensor]:
        with torch.no_grad():
            return self.model(batch.float(), _ALL_IDX)  # type: ignore[no-any-return]

    def score(self, painting: Image.Image, photo: Image.Image, style: Image.Image
              ) -> Score:
        """Judges one 8-bit painting of `photo` in the style of `style` (see module)."""
        return self.score_many([painting], photo, style)[0]

    def score_many(self, paintings: list[Image.Image], photo: Image.Image,
                   style: Image.Image) -> list[Score]:
        """Judges several paintings of the same photo and style (of one size) at once."""
        if len({p.size for p in paintings}) != 1:
            raise ValueError("judge paintings of one size at a time")
        wh = judged_size(*paintings[0].size)
        sw, sh = style.size
        k = max(wh) / max(sw, sh)
        style_wh = (max(1, round(sw * k)), max(1, round(sh * k)))
        photo_i = _resize(photo, wh)
        rng = np.random.default_rng(NOISE_SEED)
        noise = Image.fromarray(
            (rng.uniform(0, 1, (wh[1], wh[0], 3)) * 255).round().astype(np.uint8), "RGB")
        # A picture thinner than the network can see is judged mirrored out to MIN_SIDE,
        # as the engine paints it; anything thicker is judged as it is.
        batch = Frame.around(*wh, min_side=MIN_SIDE).pad(
            _tensor([_resize(p, wh) for p in paintings] + [photo_i, noise], self.device))
        feats = self._features(batch)
        style_feats = self._features(Frame.around(*style_wh, min_side=MIN_SIDE).pad(
            _tensor([_resize(style, style_wh)], self.device)))
        pos = {idx: i for i, idx in enumerate(_ALL_IDX)}
        style_layers = [feats[pos[i]] for i in _STYLE_IDX]
        d = style_distance(style_layers, [style_feats[pos[i]] for i in _STYLE_IDX]).tolist()
        content = feats[pos[_CONTENT_IDX]].double()  # (N + 2, C, H', W')
        mse = (content - content[-2:-1]).square().flatten(1).mean(1).tolist()
        n = len(paintings)
        d_photo, mse_noise = d[n], mse[n + 1]
        return [Score(style_gain(d[i], d_photo), content_keep(mse[i], mse_noise))
                for i in range(n)]

    def score_off_grid(self, painting: Image.Image, photo: Image.Image, style: Image.Image,
                       *, period: int = GRID, step: int = GRID_STEP) -> Score:
        """The mean `score` over the network grid's alignments: painting and photo, at
        the judged size (w, h), are cropped together to (w - period, h - period) at
        offsets 0, step, ... below `period` across and down (⌈period / step⌉² crops), and
        each crop is judged. Scores off the grid compare with each other only: each crop
        is a smaller picture than the whole. Raises ValueError for a painting whose
        judged size is not larger than `period` on either side."""
        w, h = judged_size(*painting.size)
        if min(w, h) <= period:
            raise ValueError(f"a painting judged off the grid must be judged at over {period} "
                             f"px a side (it is judged at {w}x{h})")
        painting, photo = _resize(painting, (w, h)), _resize(photo, (w, h))
        scores = []
        for dx in range(0, period, step):
            for dy in range(0, period, step):
                box = (dx, dy, dx + w - period, dy + h - period)
                scores.append(self.score(painting.crop(box), photo.crop(box), style))
        return Score(sum(s.gain for s in scores) / len(scores),
                     sum(s.keep for s in scores) / len(scores))
