"""What a painting run reports and returns, and how it is told to report and stop: plain
data shared by the engine (`stylizer.engine`), the animation painter (`stylizer.temporal`)
and their callers."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property

from PIL import Image


@dataclass(frozen=True)
class Progress:
    """One image's state after a step. Losses as in `Result` (pastiche's objective with the
    job's own weights, times the schedule's weight on style at that step). `preview` is
    rendered on first access, from a copy of the pixels taken at that step: reports that
    nobody looks at cost no device transfer."""

    step: int  # 1-based, counted across the coarse-to-fine levels
    total: int  # steps in the whole run
    content_loss: float
    style_loss: float
    total_loss: float
    render: Callable[[], Image.Image] | None = field(default=None, repr=False, compare=False)
    # An animation's: frames finished, of `frames` (0 for a still).
    frame: int = 0
    frames: int = 0

    @cached_property
    def preview(self) -> Image.Image | None:
        """The picture at this step, RGB, at most `RunOptions.preview_size` pixels on its
        long side; None when no preview was due."""
        return self.render() if self.render is not None else None


@dataclass(frozen=True)
class Result:
    """A finished painting: the image (RGB, `params.size` on its long side), the steps
    taken, the run's wall-clock seconds, and its losses (unweighted content and style; the
    total with the params' content weight and the job's style weight, not the balance)."""

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
        """The numbers above, and the image's width and height, as plain JSON values."""
        return {"steps": self.steps, "seconds": round(self.seconds, 3),
                "content_loss": self.content_loss, "style_loss": self.style_loss,
                "total_loss": self.total_loss, "width": self.image.width,
                "height": self.image.height, "bf16": int(self.bf16)}


@dataclass(frozen=True)
class AnimationResult:
    """A finished animation: its frames (RGB, one size), the steps taken over all of them,
    the run's wall-clock seconds, and the mean of the frames' losses (as in `Result`)."""

    frames: list[Image.Image]
    steps: int
    seconds: float
    content_loss: float
    style_loss: float
    total_loss: float
    bf16: bool = False

    def stats(self) -> dict[str, float | int]:
        """As `Result.stats`, with the number of frames."""
        first = self.frames[0]
        return {"steps": self.steps, "seconds": round(self.seconds, 3),
                "content_loss": self.content_loss, "style_loss": self.style_loss,
                "total_loss": self.total_loss, "width": first.width, "height": first.height,
                "bf16": int(self.bf16), "frames": len(self.frames)}


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    """How a run reports and stops (`Stylizer.run`, `run_batch` and the pool's workers).

    on_progress: called every `progress_every` steps (and on the last one) with one
        `Progress` per image, in the order of the photos (one for `run`).
    should_stop: polled before every step; when it returns True the run raises `Cancelled`.
    preview_every: render a preview every this many steps (and on the last); 0: none.
    preview_size: the previews' long side, in pixels.
    """

    on_progress: Callable[[Sequence[Progress]], None] | None = None
    should_stop: Callable[[], bool] | None = None
    progress_every: int = 10
    preview_every: int = 0
    preview_size: int = 256
