"""`StyleParams`: the single source of truth for what a painting job can ask for.

The CLI flags (`python -m stylizer`, `stylebot stylize`) and the Discord slash-command
ranges are built from the field metadata below, so a default or a limit is changed
here and nowhere else.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal

from stylizer.errors import InvalidParams

Optimizer = Literal["adam", "lbfgs"]
Init = Literal["palette", "content", "noise", "blank"]
Schedule = Literal["constant", "two-phase"]
Pooling = Literal["max", "avg"]
Canvas = Literal["pyramid", "pixels"]
def _f(default: Any, help: str, lo: float | None = None, hi: float | None = None,
       choices: tuple[str, ...] | None = None) -> Any:
    return field(default=default, metadata={"help": help, "min": lo, "max": hi,
                                            "choices": choices})


@dataclass(frozen=True, kw_only=True)
class StyleParams:
    """Everything that decides how a painting looks.

    Defaults were chosen on the 2-core CPU and the H200 by looking at the output grid
    and the objective's value on the saved 8-bit image (see README, "Choosing defaults").
    """

    # Long side of the painting in pixels; the content photo is resized to it.
    size: int = _f(512, "long side of the output in pixels", 32, 2048)
    # Optimisation steps in all, spread over the coarse-to-fine scales. With the balance,
    # every pair of the quality benchmark at 256 px was within 0.01 of its 150-step scores
    # by 100 steps, and within 0.03 by 60 (README, "Choosing defaults").
    steps: int = _f(100, "optimisation steps in all", 1, 5000)
    # "Strength": multiplies the style term. 2 = twice as much style, 0.5 = half.
    style_weight: float = _f(1.0, "strength of the style (multiplies the style loss)", 0.01, 100.0)
    # Weigh the content and style terms by their own values on this job (content: for
    # noise; style: for the photo), so that a strength means the same balance at every
    # size and for every painting. Off: pastiche's fixed weights (the loss of the paper's
    # Caffe recipe), under which small pictures and strong paintings lose the photo.
    balance: bool = _f(True, "balance photo and painting per job, the same at every size")
    # Multiplies the content term (conv4_2); lower lets the style wash over the photo.
    content_weight: float = _f(1.0, "weight of the photo's content", 0.0, 100.0)
    # Total-variation smoothing; 0 leaves brush texture untouched.
    tv_weight: float = _f(0.0, "total-variation smoothing", 0.0, 100.0)
    # L-BFGS (our batched, projected variant) reaches a given loss in far fewer steps than
    # Adam on this objective; Adam is kept for the founding recipe.
    optimizer: Optimizer = _f("lbfgs", "optimiser", choices=("adam", "lbfgs"))
    # Adam step size in 0-255 pixel units (ignored by L-BFGS, which uses a unit step).
    lr: float = _f(4.0, "Adam step size, in 0-255 pixel units", 0.01, 64.0)
    # What L-BFGS optimises: a multi-scale pyramid of offsets (colours and large shapes
    # settle in fewer steps; see canvas.py) or the raw pixels. Adam always uses pixels.
    canvas: Canvas = _f("pyramid", "what L-BFGS optimises: a multi-scale pyramid or raw pixels",
                        choices=("pyramid", "pixels"))
    # Where the canvas starts: the photo in the painting's colours (its colour mean and
    # covariance, by the least change to the photo that gives it them), the photo as it
    # is, noise, or mid-grey (the founding notes). The palette start reaches a given loss
    # in about a fifth fewer steps than the photo and ends at the same picture (README,
    # "Choosing defaults"); with preserve_colors it is the photo.
    init: Init = _f("palette", "starting canvas: the photo in the painting's colours, "
                    "the photo, noise or grey", choices=("palette", "content", "noise", "blank"))
    # "two-phase": content-heavy for the first 40 % of each scale's steps, then style-heavy.
    schedule: Schedule = _f("constant", "loss-weight schedule", choices=("constant", "two-phase"))
    # Coarse-to-fine levels, each twice the size of the previous; 1 = a single scale. 0
    # (auto): as many as bring the first level to about 256 px (levels.COARSE_SIDE), so
    # that a large painting has the look of a 256-px one, seen from afar, with finer
    # brushwork on top (README, "Choosing defaults"); a single scale up to about 360 px.
    scales: int = _f(0, "coarse-to-fine levels (0 = auto: the first at about 256 px)", 0, 5)
    # Size of the style's brush work: the style image is resized to this multiple of the
    # content's pixel area (square root taken per side) before its Gram matrices are taken.
    style_scale: float = _f(1.0, "size of the style's features relative to the photo", 0.25, 4.0)
    # Relative weights for several style images (normalised to sum 1); empty = equal.
    style_blend: tuple[float, ...] = field(default=(), metadata={
        "help": "relative weights of several styles", "min": 0.0, "max": None, "choices": None})
    # Keep the photo's colours: luminance-only transfer (YIQ), chroma from the content.
    preserve_colors: bool = _f(False, "keep the photo's colours")
    # VGG pooling: max as trained; avg gives slightly smoother gradients (Gatys et al.).
    pooling: Pooling = _f("max", "VGG pooling", choices=("max", "avg"))
    # Same seed, inputs and device -> the same bytes.
    seed: int = _f(0, "random seed", 0, 2**31 - 1)
    # An animated photo (GIF, WebP, APNG): at most this many of its frames are painted,
    # evenly spaced, each shown for as long as the frames it stands for (see
    # `stylizer.animation`); 1 paints its first frame as a still.
    max_frames: int = _f(48, "most frames of an animation painted (more are dropped evenly)",
                         1, 480)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "style_blend":
                continue
            kind = type(f.default)
            # Types first: JSON and slash commands hand us strings and bools that Python
            # would otherwise compare happily with numbers.
            if kind is bool and not isinstance(value, bool):
                raise InvalidParams(f"{f.name} must be true or false, not {value!r}.")
            if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
                raise InvalidParams(f"{f.name} must be a whole number, not {value!r}.")
            if kind is float:
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise InvalidParams(f"{f.name} must be a number, not {value!r}.")
                object.__setattr__(self, f.name, float(value))
                value = float(value)
            if kind is str and not isinstance(value, str):
                raise InvalidParams(f"{f.name} must be text, not {value!r}.")
            lo, hi = f.metadata.get("min"), f.metadata.get("max")
            choices = f.metadata.get("choices")
            if choices is not None and value not in choices:
                raise InvalidParams(f"{f.name} must be one of {', '.join(choices)}, not {value!r}.")
            if isinstance(value, float) and not math.isfinite(value):
                raise InvalidParams(f"{f.name} must be a finite number.")
            if kind in (int, float) and (
                    (lo is not None and value < lo) or (hi is not None and value > hi)):
                raise InvalidParams(f"{f.name} must be between {lo:g} and {hi:g}, not {value}.")
        self._check_blend()

    def _check_blend(self) -> None:
        blend = self.style_blend
        if not isinstance(blend, tuple | list) or any(
                isinstance(w, bool) or not isinstance(w, int | float) for w in blend):
            raise InvalidParams("style weights must be a list of numbers.")
        blend = tuple(float(w) for w in blend)
        object.__setattr__(self, "style_blend", blend)
        if any(w < 0 or not math.isfinite(w) for w in blend):
            raise InvalidParams("style weights must be non-negative numbers.")
        if blend and sum(blend) <= 0:
            raise InvalidParams("style weights must not all be zero.")

    def replace(self, **changes: Any) -> StyleParams:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (tuples become lists); `from_dict` reads it back."""
        d = dataclasses.asdict(self)
        d["style_blend"] = list(self.style_blend)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StyleParams:
        """Builds params from plain data (JSON), ignoring unknown keys."""
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in names}
        try:
            return cls(**kwargs)
        except TypeError as exc:  # a wrong type for a field
            raise InvalidParams(str(exc)) from exc

    @classmethod
    def founding_recipe(cls, **overrides: Any) -> StyleParams:
        """The founding notes' recipe: Adam from a blank canvas, content first, style later."""
        base: dict[str, Any] = {"optimizer": "adam", "init": "blank", "schedule": "two-phase",
                                "scales": 1, "steps": 500, "lr": 8.0, "balance": False}
        base.update(overrides)
        return cls(**base)


@dataclass(frozen=True)
class Limit:
    """A field's default and range, for building CLI flags and slash-command options."""

    name: str
    default: Any
    help: str
    min: float | None
    max: float | None
    choices: tuple[str, ...] | None


def limits() -> dict[str, Limit]:
    """Every field's default, range and help text, keyed by field name."""
    out: dict[str, Limit] = {}
    for f in dataclasses.fields(StyleParams):
        default = f.default if f.default is not dataclasses.MISSING else ()
        out[f.name] = Limit(f.name, default, f.metadata["help"], f.metadata.get("min"),
                            f.metadata.get("max"), f.metadata.get("choices"))
    return out
