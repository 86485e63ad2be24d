"""What a worker process is started with, and what it needs of the engine.

`WorkerSpec` is pickled once, when the supervisor starts the process. The protocols say
which parts of `stylizer.engine` a worker reads, so that tests can hand a worker a fake
engine and this module (like the supervisor) never imports torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Protocol

from PIL import Image

from stylizer.config import EngineConfig
from stylizer.params import StyleParams

if TYPE_CHECKING:
    from stylizer.engine import RunOptions

# The most jobs one batch can hold (the size of the shared cancel array).
MAX_BATCH = 64


class SharedInts(Protocol):
    """A `multiprocessing.RawArray("q", MAX_BATCH)`: integers both processes can see."""

    def __getitem__(self, index: int) -> int: ...
    def __setitem__(self, index: int, value: int) -> None: ...


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker process is started with (pickled once, at spawn)."""

    worker_id: int
    engine: EngineConfig  # the worker's `Stylizer`'s
    preview_interval_s: float
    log_level: int
    cpu_threads: int  # torch intra-op threads; 0 leaves torch's default
    inbox: Connection  # a list of (seq, JobRequest), or None, from the supervisor
    outbox: Connection  # WorkerMessage, to the supervisor
    # To cancel the job in position i of a batch the supervisor writes its seq to
    # cancel[i]. A number rather than a flag, so that a cancel arriving just as one
    # batch ends can never stop the next one.
    cancel: SharedInts
    warm_up: bool = True  # paint a tiny picture before reporting ready (see Stylizer.warm_up)


class ProgressLike(Protocol):
    """What a worker reads of `stylizer.engine.Progress`."""

    @property
    def step(self) -> int: ...
    @property
    def total(self) -> int: ...
    @property
    def content_loss(self) -> float: ...
    @property
    def style_loss(self) -> float: ...
    @property
    def preview(self) -> Image.Image | None: ...
    # An animation's frames finished, and its frames in all (both 0 for a still).
    @property
    def frame(self) -> int: ...
    @property
    def frames(self) -> int: ...


class ResultLike(Protocol):
    """What a worker reads of `stylizer.engine.Result`."""

    @property
    def image(self) -> Image.Image: ...
    def stats(self) -> dict[str, float | int]: ...


class AnimationResultLike(Protocol):
    """What a worker reads of `stylizer.engine.AnimationResult`."""

    @property
    def frames(self) -> Sequence[Image.Image]: ...
    def stats(self) -> dict[str, float | int]: ...


class Engine(Protocol):
    """What a worker needs of `stylizer.engine.Stylizer`."""

    def run_batch(self, contents: Sequence[Image.Image],
                  styles: Sequence[Sequence[Image.Image]], params: StyleParams,
                  options: RunOptions, *,
                  style_keys: Sequence[Sequence[str] | None] | None = None,
                  style_weights: Sequence[float] | None = None,
                  ) -> Sequence[ResultLike]:
        """Paints one batch; see `Stylizer.run_batch`."""

    def run_animation(self, frames: Sequence[Image.Image], styles: Sequence[Image.Image],
                      params: StyleParams, options: RunOptions, *,
                      style_keys: Sequence[str] | None = None) -> AnimationResultLike:
        """Paints an animation's frames steadily; see `Stylizer.run_animation`."""
