"""Worker process targets for the job tests (spawned workers import them by module name).

Both are the pool's real `Worker` in a real process; the photo's top-left pixel picks a
misbehaviour:
- `CRASH` (pure red): the worker kills itself with SIGKILL once the job has started;
- `HANG` (pure blue): the job never ends and the process ignores SIGTERM.
`marked_worker` paints everything else with the real engine; `quick_worker` uses a
stand-in engine that takes `QUICK_STEP_S` per step and never imports torch, so tests
about the pipeline's plumbing do not pay for VGG19 on a 2-core CPU. `engine_reporter`
makes the real engine as a worker does, then fails its start with a message naming the
engine's settings, so that a test can see what reached the worker process.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from PIL import Image

from stylizer import images
from stylizer.errors import Cancelled
from stylizer.params import StyleParams
from stylizer.pool.messages import JobRequest, JobStarted, WorkerStartFailed
from stylizer.pool.spec import Engine, WorkerSpec
from stylizer.pool.worker import Worker

if TYPE_CHECKING:
    from stylizer.engine import RunOptions

CRASH = (255, 0, 0)
HANG = (0, 0, 255)
QUICK_STEP_S = 0.02


def marker(content: bytes) -> tuple[int, int, int]:
    pixel = images.decode(content).getpixel((0, 0))
    assert isinstance(pixel, tuple)
    return (int(pixel[0]), int(pixel[1]), int(pixel[2]))


class MarkedWorker(Worker):
    def handle(self, batch: Sequence[tuple[int, JobRequest]]) -> bool:
        marks = {marker(req.content) for _, req in batch}
        if marks & {CRASH, HANG}:
            for _, req in batch:
                self.send(JobStarted(req.job_id, self.spec.worker_id, self.pid))
        if CRASH in marks:
            time.sleep(0.1)
            os.kill(os.getpid(), signal.SIGKILL)
        if HANG in marks:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            while True:
                time.sleep(1)
        return super().handle(batch)


@dataclass(frozen=True)
class _Progress:
    step: int
    total: int
    content_loss: float
    style_loss: float
    preview: Image.Image | None = None
    frame: int = 0  # a still's: no frames
    frames: int = 0


@dataclass(frozen=True)
class _Result:
    image: Image.Image
    steps: int

    def stats(self) -> dict[str, float | int]:
        return {"steps": self.steps, "seconds": self.steps * QUICK_STEP_S,
                "content_loss": 0.0, "style_loss": 0.0, "total_loss": 0.0}


class QuickEngine:
    """Stands in for `Stylizer`: honours steps, progress and cancellation, no torch."""

    def run_batch(self, contents: Sequence[Image.Image],
                  styles: Sequence[Sequence[Image.Image]], params: StyleParams,
                  options: RunOptions, **_: Any) -> list[_Result]:
        for step in range(1, params.steps + 1):
            if options.should_stop is not None and options.should_stop():
                raise Cancelled("stopped")
            time.sleep(QUICK_STEP_S)
            if options.on_progress is not None and (step % options.progress_every == 0
                                                    or step == 1):
                options.on_progress([_Progress(step, params.steps, 1.0, 1.0)] * len(contents))
        return [_Result(Image.blend(c, s[0].resize(c.size), 0.3), params.steps)
                for c, s in zip(contents, styles, strict=True)]


class QuickWorker(MarkedWorker):
    def make_engine(self) -> Engine:
        return QuickEngine()

    def style_image(self, data: bytes, key: str | None) -> Image.Image:
        return images.decode(data, max_side=256)


def marked_worker(spec: WorkerSpec) -> None:
    MarkedWorker(spec).serve()


def quick_worker(spec: WorkerSpec) -> None:
    QuickWorker(spec).serve()


class EngineReporter(Worker):
    def serve(self) -> None:
        from stylizer.engine import Stylizer

        engine = self.make_engine()
        assert isinstance(engine, Stylizer)
        settings = {"bf16": engine.bf16, "autotune": engine.config.autotune}
        self.send(WorkerStartFailed(self.spec.worker_id, "report", repr(settings)))


def engine_reporter(spec: WorkerSpec) -> None:
    EngineReporter(spec).serve()
