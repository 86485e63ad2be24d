"""Animation jobs through the worker pool: real processes and the real engine on the CPU,
tiny animations made here (a disc crossing a textured background)."""

from __future__ import annotations

import io
import multiprocessing
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from picture_checks import animation_timing
from PIL import Image, ImageDraw
from pool_testing import Events, PoolFactory, request

from stylizer.config import EngineConfig
from stylizer.params import StyleParams
from stylizer.pool.messages import (
    JobCancelled,
    JobFailed,
    JobProgress,
    JobRequest,
    JobStarted,
    JobSucceeded,
    WorkerMessage,
)
from stylizer.pool.progress import ProgressReporter
from stylizer.pool.spec import MAX_BATCH, WorkerSpec
from stylizer.pool.worker import Worker

if TYPE_CHECKING:
    from stylizer.engine import Stylizer

pytestmark = pytest.mark.timeout(120)


def moving_frames(n: int, width: int = 64, height: int = 48) -> list[Image.Image]:
    """`n` RGB frames: a red disc going left to right over a fixed sine texture."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    texture = np.stack([120 + 60 * np.sin(xx / 3), 140 + 50 * np.cos(yy / 4),
                        110 + 40 * np.sin((xx + yy) / 5)], axis=-1)
    background = Image.fromarray(texture.astype(np.uint8), "RGB")
    frames = []
    for i in range(n):
        frame = background.copy()
        x = 2 + i * (width - 20) // max(1, n - 1)
        ImageDraw.Draw(frame).ellipse([x, height // 3, x + 16, height // 3 + 16],
                                      fill=(230, 40, 40))
        frames.append(frame)
    return frames


def animated(fmt: str, durations_ms: Sequence[int], *, loop: int = 0) -> bytes:
    """An animation of `len(durations_ms)` moving frames, as Pillow writes `fmt`."""
    frames = moving_frames(len(durations_ms))
    buf = io.BytesIO()
    frames[0].save(buf, fmt, save_all=True, append_images=frames[1:],
                   duration=list(durations_ms), loop=loop)
    return buf.getvalue()


def animation_request(job_id: str, content: bytes, **params: Any) -> JobRequest:
    return request(job_id, content=content, **({"steps": 4} | params))


async def test_an_animated_gif_comes_back_animated_with_its_timing(
        pool_factory: PoolFactory) -> None:
    pool = await pool_factory(workers=1)
    events = Events(pool)
    durations = [60, 70, 80, 90, 100]
    # loop=2: two repeats after the first play, which a GIF says as such.
    await pool.submit(animation_request("gif", animated("GIF", durations, loop=2)))
    started, *progress, done = await events.until_end("gif")
    assert isinstance(started, JobStarted)
    assert all(isinstance(p, JobProgress) for p in progress)
    reports = [p for p in progress if isinstance(p, JobProgress)]
    assert {p.frames for p in reports} == {5}
    assert [p.frame for p in reports] == sorted(p.frame for p in reports)
    assert [p.step for p in reports] == sorted(p.step for p in reports)
    assert reports[0].frame == 0
    assert (reports[-1].frame, reports[-1].step) == (5, reports[-1].total)
    assert reports[-1].preview_jpeg is not None
    assert Image.open(io.BytesIO(reports[-1].preview_jpeg)).format == "JPEG"

    assert isinstance(done, JobSucceeded)
    fmt, size, got_durations, loop = animation_timing(done.png)
    assert (fmt, size, got_durations, loop) == ("GIF", (32, 24), durations, 2)
    assert done.stats["frames"] == done.stats["source_frames"] == 5
    assert (done.stats["format"], done.stats["size"], done.stats["batch"]) == ("gif", 32, 1)
    assert (done.stats["width"], done.stats["height"]) == size
    assert done.stats["steps"] == reports[-1].total
    assert done.stats["total_loss"] > 0

    # A still after it: a PNG, as ever.
    await pool.submit(request("still", steps=3))
    still = (await events.until_end("still"))[-1]
    assert isinstance(still, JobSucceeded)
    assert Image.open(io.BytesIO(still.png)).format == "PNG"
    assert "frames" not in still.stats


async def test_an_animated_webp_comes_back_as_webp_and_long_ones_are_sampled(
        pool_factory: PoolFactory) -> None:
    pool = await pool_factory(workers=1)
    events = Events(pool)
    # 10 frames of 40-130 ms; 4 painted (source frames 0, 2, 5 and 7), each shown for the
    # frames it stands for.
    durations = [40 + 10 * i for i in range(10)]
    await pool.submit(animation_request("webp", animated("WEBP", durations, loop=3),
                                        max_frames=4))
    done = (await events.until_end("webp"))[-1]
    assert isinstance(done, JobSucceeded)
    fmt, size, got_durations, loop = animation_timing(done.png)
    assert (fmt, size, loop) == ("WEBP", (32, 24), 3)
    assert got_durations == [90, 210, 190, 360]
    assert sum(got_durations) == sum(durations)
    assert (done.stats["frames"], done.stats["source_frames"]) == (4, 10)
    assert done.stats["format"] == "webp"
    reports = [e for e in events.seen["webp"] if isinstance(e, JobProgress)]
    assert {p.frames for p in reports} == {4}

    # max_frames 1 paints the first frame as a still.
    await pool.submit(animation_request("first", animated("GIF", durations), max_frames=1))
    first = (await events.until_end("first"))[-1]
    assert isinstance(first, JobSucceeded)
    assert Image.open(io.BytesIO(first.png)).format == "PNG"
    assert all(isinstance(e, JobProgress) and e.frames == 0
               for e in events.seen["first"][1:-1])


async def test_cancel_mid_animation_then_the_next_job(pool_factory: PoolFactory) -> None:
    pool = await pool_factory(workers=1)
    events = Events(pool)
    pid = pool.worker_pids()[0]
    # Cancelled once its first frame is painted: in the middle of the following frames
    # (10 steps for the first, and for each batch of 4 frames that follows).
    await pool.submit(animation_request("long", animated("GIF", [50] * 12), steps=10))
    await events.until(lambda e: isinstance(e, JobProgress) and e.frame >= 1)
    assert await pool.cancel("long")
    after = await events.until_end("long", within=30)
    assert isinstance(after[-1], JobCancelled)
    reports = [e for e in after if isinstance(e, JobProgress)]
    # The step under way, a batch's report of its frames if that step ended it, and one
    # report already in the pipe.
    assert len(reports) <= 3, reports
    assert all(e.frame < 12 for e in reports)

    # The worker goes on: a corrupt animation is refused with its message, and the next
    # animation is painted, by the same process.
    data = animated("GIF", [50] * 4)
    await pool.submit(animation_request("cut", data[: len(data) // 2]))
    failed = (await events.until_end("cut"))[-1]
    assert isinstance(failed, JobFailed)
    assert (failed.code, failed.retryable) == ("corrupt_image", False)
    assert failed.message == "The animation is damaged or cut short; try saving it again."
    await pool.submit(animation_request("next", data))
    done = (await events.until_end("next"))[-1]
    assert isinstance(done, JobSucceeded)
    assert done.stats["frames"] == 4
    assert pool.worker_pids()[0] == pid


# -- the worker in this process: out of memory, batches ------------------------------------


class Outbox:
    """A worker's outbox that keeps what it is sent."""

    def __init__(self) -> None:
        self.sent: list[WorkerMessage] = []

    def send(self, msg: WorkerMessage) -> None:
        self.sent.append(msg)


class SmallMemoryEngine:
    """The real engine, whose animations run out of memory above `fits` px."""

    def __init__(self, inner: Stylizer, fits: int) -> None:
        self.inner = inner
        self.fits = fits
        self.sizes: list[int] = []  # of every animation tried

    def run_batch(self, *args: Any, **kwargs: Any) -> Any:
        return self.inner.run_batch(*args, **kwargs)

    def run_animation(self, frames: Sequence[Image.Image], styles: Sequence[Image.Image],
                      params: StyleParams, *args: Any, **kwargs: Any) -> Any:
        import torch

        self.sizes.append(params.size)
        assert max(frames[0].size) <= params.size  # the frames shrink with the size
        if params.size > self.fits:
            raise torch.OutOfMemoryError(f"out of memory (simulated at {params.size})")
        return self.inner.run_animation(frames, styles, params, *args, **kwargs)


def in_process_worker(engine: Stylizer, fits: int) -> tuple[Worker, Outbox,
                                                              SmallMemoryEngine]:
    outbox = Outbox()
    # No inbox: the test hands the worker its batches.
    spec = WorkerSpec(worker_id=0, engine=EngineConfig(device="cpu"), preview_interval_s=0.0,
                      log_level=30, cpu_threads=1, inbox=None, outbox=outbox,  # type: ignore[arg-type]
                      cancel=multiprocessing.RawArray("q", MAX_BATCH), warm_up=False)
    worker = Worker(spec)
    small = SmallMemoryEngine(engine, fits)
    worker.engine = small
    return worker, outbox, small


def finals(outbox: Outbox) -> dict[str, WorkerMessage]:
    ends: dict[str, WorkerMessage] = {}
    for msg in outbox.sent:
        if isinstance(msg, JobSucceeded | JobFailed | JobCancelled):
            assert msg.job_id not in ends, f"{msg.job_id} ended twice"
            ends[msg.job_id] = msg
    return ends


def test_out_of_memory_paints_the_animation_smaller(engine: Stylizer) -> None:
    worker, outbox, small = in_process_worker(engine, fits=40)
    gif = animated("GIF", [50] * 3)
    assert worker.handle([(1, animation_request("oom", gif, size=64, steps=2))])
    assert small.sizes == [64, 48, 32]  # OOM_SCALES
    done = finals(outbox)["oom"]
    assert isinstance(done, JobSucceeded)
    assert done.stats["size"] == 32
    assert animation_timing(done.png)[:2] == ("GIF", (32, 24))

    worker, outbox, small = in_process_worker(engine, fits=16)
    assert worker.handle([(1, animation_request("never", gif, size=64, steps=2))])
    assert small.sizes == [64, 48, 32]
    failed = finals(outbox)["never"]
    assert isinstance(failed, JobFailed)
    assert (failed.code, failed.retryable) == ("out_of_memory", False)


def test_an_animation_in_a_batch_is_painted_apart(engine: Stylizer) -> None:
    worker, outbox, small = in_process_worker(engine, fits=64)
    gif = animated("GIF", [50] * 3)
    batch = [(1, request("still-1", steps=2)), (2, animation_request("anim", gif, steps=2)),
             (3, request("still-2", steps=2))]
    assert worker.handle(batch)
    ends = finals(outbox)
    assert set(ends) == {"still-1", "anim", "still-2"}
    assert all(isinstance(e, JobSucceeded) for e in ends.values())
    stats = {job_id: e.stats for job_id, e in ends.items()}  # type: ignore[union-attr]
    assert {job_id: s["batch"] for job_id, s in stats.items()} == {
        "still-1": 2, "anim": 1, "still-2": 2}
    assert stats["anim"]["frames"] == 3
    assert small.sizes == [32]


def test_progress_with_more_frames_finished_always_goes() -> None:
    sent: list[Any] = []
    report = ProgressReporter("j", sent.append, interval_s=3600)

    class P:
        def __init__(self, step: int) -> None:
            self.step, self.total, self.content_loss, self.style_loss = step, 20, 1.0, 2.0
            self.preview = None

    for step, frame in [(1, 0), (2, 0), (5, 1), (6, 1), (9, 3), (10, 3), (12, 5)]:
        report(P(step), frame=frame, frames=5)
    assert [(p.step, p.frame, p.frames) for p in sent] == [(1, 0, 5), (5, 1, 5), (9, 3, 5),
                                                           (12, 5, 5)]
