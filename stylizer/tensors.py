"""Devices and pictures as tensors: which device an engine runs on, and PIL <-> torch.

Every picture tensor in the engine is float32 RGB in 0-255 (not 0-1: the Caffe VGG19
weights were trained on 0-255 input; see `stylizer.vgg`), laid out (B, 3, H, W).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from stylizer.errors import InvalidParams


def cpu_has_native_bf16() -> bool:
    """Whether oneDNN runs bf16 convolutions natively on this CPU (AVX512-BF16 or AMX),
    where they take about 60% of the fp32 time; elsewhere bf16 would be emulated, slower.
    Never raises: a torch build without oneDNN answers False."""
    try:
        return bool(torch.backends.mkldnn.is_available()  # type: ignore[no-untyped-call]
                    and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_device(name: str) -> torch.device:
    """"auto" (the first GPU, else the CPU), "cpu", "cuda" or "cuda:N" to a device that
    exists on this machine.

    Raises `InvalidParams` for a name torch does not know, a device type other than CPU
    or CUDA, or a GPU this machine does not have.
    """
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


def to_tensor(img: Image.Image, device: torch.device) -> torch.Tensor:
    """A PIL image (any mode; converted to RGB) -> (1, 3, H, W) float32 in 0-255."""
    arr = np.asarray(img.convert("RGB"), dtype=np.float32)  # (H, W, 3)
    return torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0).contiguous().to(device)


def batch_tensor(imgs: Sequence[Image.Image], device: torch.device) -> torch.Tensor:
    """B PIL images of one size -> (B, 3, H, W) float32 in 0-255, with one host-to-device
    copy (of bytes: a quarter of the floats). numpy raises ValueError for mixed sizes."""
    arr = np.stack([np.asarray(img.convert("RGB"), dtype=np.uint8) for img in imgs])
    return torch.from_numpy(arr).to(device).permute(0, 3, 1, 2).float().contiguous()


def to_image(t: torch.Tensor) -> Image.Image:
    """(1, 3, H, W) in 0-255 (clamped) -> a PIL RGB image, rounded as it will be saved."""
    return to_images(t)[0]


def to_images(t: torch.Tensor) -> list[Image.Image]:
    """(B, 3, H, W) in 0-255 (clamped) -> B PIL RGB images, rounded to 8 bits, with one
    device-to-host copy."""
    arr = t.detach().float().clamp(0, 255).round().to(torch.uint8).permute(0, 2, 3, 1)
    pixels = arr.cpu().numpy()  # (B, H, W, 3)
    return [Image.fromarray(np.ascontiguousarray(p), "RGB") for p in pixels]


def resize(img: Image.Image, wh: tuple[int, int]) -> Image.Image:
    """`img` at (w, h) pixels (Lanczos), or `img` itself when it has that size already."""
    return img if img.size == wh else img.resize(wh, Image.Resampling.LANCZOS)
