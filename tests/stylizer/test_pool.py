"""The worker pool with real spawned processes and the real engine on the CPU."""

from __future__ import annotations

import asyncio
import importlib
import io
import os
import signal
import subprocess
import sys
import time
from typing import Any

import pytest
from PIL import Image
from pool_testing import (
    TERMINAL,
    Events,
    PoolFactory,
    gone,
    request,
    spawned_children,
    tiny_content,
    tiny_style,
    wait_until,
)

from stylizer.config import EngineConfig
from stylizer.pool.messages import (
    JobCancelled,
    JobFailed,
    JobProgress,
    JobRequest,
    JobStarted,
    JobSucceeded,
)
from stylizer.pool.progress import ProgressReporter
from stylizer.pool.supervisor import PoolBusy, PoolClosed, PoolStartError, WorkerPool

# Spawned workers import the test targets by module name, whichever way pytest found us.
pool_helpers = importlib.import_module(
    f"{__package__}.pool_helpers" if __package__ else "pool_helpers")


pytestmark = pytest.mark.timeout(120)


async def test_real_job_paints_a_png_with_progress(pool_factory: PoolFactory) -> None:
    pool = await pool_factory(workers=1)
    events = Events(pool)
    assert (pool.capacity, pool.idle) == (1, 1)
    await pool.submit(request("job-1", steps=6))
    assert pool.idle == 0
    with pytest.raises(PoolBusy):
        await pool.submit(request("job-2"))

    got = await events.until_end("job-1")
    started, *progress, done = got
    assert isinstance(started, JobStarted)
    assert started.pid == pool.worker_pids()[0]
    reports = [p for p in progress if isinstance(p, JobProgress)]
    assert reports
    assert reports == progress
    assert [p.step for p in reports] == sorted({p.step for p in reports})
    assert reports[-1].total == 6
    preview = reports[0].preview_jpeg
    assert preview is not None
    assert Image.open(io.BytesIO(preview)).format == "JPEG"

    assert isinstance(done, JobSucceeded)
    img = Image.open(io.BytesIO(done.png))
    assert img.format == "PNG"
    assert max(img.size) == 32
    assert done.stats["steps"] == 6
    assert (done.stats["width"], done.stats["height"], done.stats["size"]) == (*img.size, 32)
    assert done.stats["total_loss"] > 0
    assert pool.idle == 1


async def test_cancel_stops_a_running_job_within_a_step(pool_factory: PoolFactory) -> None:
    pool = await pool_factory(workers=1)
    events = Events(pool)
    await pool.submit(request("long", steps=400))
    assert isinstance(await events.next(), JobStarted)
    first = await events.next()
    assert isinstance(first, JobProgress)
    assert await pool.cancel("long")
    assert not await pool.cancel("no-such-job")
    after = await events.until_end("long", within=30)
    assert isinstance(after[-1], JobCancelled)
    steps_after = [e.step for e in after if isinstance(e, JobProgress)]
    # The step under way finishes, plus at most one report already in the pipe.
    assert len(steps_after) <= 2, steps_after
    assert not await pool.cancel("long")

    # The worker stays warm, and the old cancel does not touch the next job.
    pid = pool.worker_pids()[0]
    await pool.submit(request("next", steps=3))
    got = await events.until_end("next")
    assert isinstance(got[-1], JobSucceeded)
    assert pool.worker_pids()[0] == pid


async def test_kill_9_mid_job_is_reported_and_the_worker_replaced(
        pool_factory: PoolFactory) -> None:
    pool = await pool_factory(workers=2)
    events = Events(pool)
    await pool.submit(request("victim", steps=400))
    await pool.submit(request("bystander", steps=8))
    await events.until(lambda e: isinstance(e, JobProgress) and e.job_id == "victim")
    started = events.seen["victim"][0]
    assert isinstance(started, JobStarted)
    survivor = next(pid for pid in pool.worker_pids().values() if pid != started.pid)

    os.kill(started.pid, signal.SIGKILL)
    t0 = time.monotonic()
    failed = await events.until(lambda e: isinstance(e, TERMINAL) and e.job_id == "victim",
                                within=10)
    assert time.monotonic() - t0 < 2.0
    assert isinstance(failed, JobFailed)
    assert (failed.code, failed.retryable) == ("worker_died", True)
    assert gone(started.pid)

    # The other worker's job is untouched and the dead one is replaced.
    if not any(isinstance(e, TERMINAL) for e in events.seen["bystander"]):
        await events.until(lambda e: isinstance(e, TERMINAL) and e.job_id == "bystander")
    assert isinstance(events.seen["bystander"][-1], JobSucceeded)
    await wait_until(lambda: pool.idle == 2)
    new_pid = pool.worker_pids()[0 if pool.worker_pids()[1] == survivor else 1]
    assert new_pid not in (started.pid, survivor)
    assert not any(isinstance(e, JobFailed) for e in events.seen["bystander"])


async def test_hung_job_is_killed_at_its_time_limit(pool_factory: PoolFactory) -> None:
    pool = await pool_factory(workers=1, job_timeout_s=1.5,
                              worker_target=pool_helpers.troubled_worker)
    events = Events(pool)
    t0 = time.monotonic()
    await pool.submit(request("hang-1"))
    started = await events.next()
    assert isinstance(started, JobStarted)
    failed = await events.next(within=10)
    elapsed = time.monotonic() - t0
    assert isinstance(failed, JobFailed)
    assert (failed.job_id, failed.code, failed.retryable) == ("hang-1", "timeout", False)
    assert 1.5 <= elapsed < 4.0
    # The worker ignores SIGTERM: only the SIGKILL that follows can have ended it.
    await wait_until(lambda: gone(started.pid), within=5)

    # The replacement takes jobs. (One that returns at once: a painting could itself run
    # past this test's short limit on a busy CPU.)
    await wait_until(lambda: pool.idle == 1)
    await pool.submit(request("next", content=b"not an image"))
    got = await events.until_end("next")
    assert isinstance(got[0], JobStarted)
    assert got[0].pid not in (0, started.pid)
    assert isinstance(got[-1], JobFailed)
    assert got[-1].code == "corrupt_image"


async def test_bad_input_fails_with_its_typed_error(pool_factory: PoolFactory) -> None:
    pool = await pool_factory(workers=1)
    events = Events(pool)
    pid = pool.worker_pids()[0]

    await pool.submit(request("garbage", content=b"this is not an image"))
    failed = (await events.until_end("garbage"))[-1]
    assert isinstance(failed, JobFailed)
    assert (failed.code, failed.retryable) == ("corrupt_image", False)
    assert "not an image" in failed.message
    assert "Traceback" not in failed.message

    bad_params = request("tiny").params | {"size": 5}
    await pool.submit(JobRequest("tiny", tiny_content(), (tiny_style(),), ("k",), bad_params))
    failed = (await events.until_end("tiny"))[-1]
    assert isinstance(failed, JobFailed)
    assert (failed.code, failed.retryable) == ("invalid_params", False)
    assert "size" in failed.message

    assert pool.worker_pids()[0] == pid  # bad input does not cost a worker
    assert pool.idle == 1


async def test_out_of_memory_retries_smaller_then_gives_up(pool_factory: PoolFactory) -> None:
    pool = await pool_factory(workers=1, worker_target=pool_helpers.troubled_worker)
    events = Events(pool)
    # 64 px and 48 px run out of memory (see pool_helpers.OOM_ABOVE); half size fits.
    await pool.submit(request("oom-fits", size=64, steps=3))
    done = (await events.until_end("oom-fits"))[-1]
    assert isinstance(done, JobSucceeded)
    assert done.stats["size"] == 32
    assert max(Image.open(io.BytesIO(done.png)).size) == 32

    await pool.submit(request("oom-never", size=96, steps=3))  # 96, 72, 48: all too big
    failed = (await events.until_end("oom-never"))[-1]
    assert isinstance(failed, JobFailed)
    assert (failed.code, failed.retryable) == ("out_of_memory", False)
    assert "smaller size" in failed.message


async def test_unexpected_error_is_generic_and_the_worker_recycled(
        pool_factory: PoolFactory) -> None:
    pool = await pool_factory(workers=1, worker_target=pool_helpers.troubled_worker)
    events = Events(pool)
    old_pid = pool.worker_pids()[0]
    await pool.submit(request("bug-1"))
    failed = (await events.until_end("bug-1"))[-1]
    assert failed == JobFailed("bug-1", "internal", "Something went wrong while painting.",
                               retryable=True)
    await wait_until(lambda: gone(old_pid), within=10)
    await wait_until(lambda: pool.idle == 1)
    assert pool.worker_pids()[0] != old_pid


async def test_close_kills_what_outlives_the_grace_and_reaps_everything(
        pool_factory: PoolFactory) -> None:
    pool = await pool_factory(workers=2)
    events = Events(pool)
    pids = list(pool.worker_pids().values())
    assert len(pids) == 2
    assert spawned_children() == sorted(pids)
    await pool.submit(request("slow", steps=400))
    assert isinstance(await events.next(), JobStarted)

    killed = await pool.close(grace_s=0.5)
    assert killed == ["slow"]
    assert await pool.close() == ["slow"]  # a second call (e.g. a second signal) agrees
    assert all(gone(pid) for pid in pids)
    assert spawned_children() == []
    rest = [e async for e in events.it]  # the stream ends; no event for the killed job
    assert not any(isinstance(e, TERMINAL) for e in rest)
    with pytest.raises(PoolClosed):
        await pool.submit(request("late"))
    assert (pool.capacity, pool.idle) == (0, 0)


async def test_a_second_close_with_less_grace_cuts_the_first_short(
        pool_factory: PoolFactory) -> None:
    pool = await pool_factory(workers=1)
    events = Events(pool)
    await pool.submit(request("slow", steps=400))
    assert isinstance(await events.next(), JobStarted)
    first = asyncio.ensure_future(pool.close(grace_s=600))
    await asyncio.sleep(0.3)
    assert not first.done()  # the job has its grace
    # A second Ctrl-C: the job is killed now instead of finishing within its grace.
    assert await asyncio.wait_for(pool.close(grace_s=0), 30) == ["slow"]
    assert await first == ["slow"]


async def test_close_lets_a_job_finish_within_the_grace(pool_factory: PoolFactory) -> None:
    pool = await pool_factory(workers=1)
    events = Events(pool)
    pid = pool.worker_pids()[0]
    await pool.submit(request("quick", steps=3))
    assert await pool.close(grace_s=60) == []
    got = [e async for e in events.it]
    assert isinstance(got[-1], JobSucceeded)
    assert gone(pid)


async def test_a_worker_that_cannot_start_fails_start() -> None:
    pool = WorkerPool(engine=EngineConfig(device="cpu", weights="/nonexistent/vgg19.pth"))
    with pytest.raises(PoolStartError) as info:
        await pool.start()
    assert info.value.code == "weights_unavailable"
    assert "/nonexistent/vgg19.pth" in info.value.message
    assert spawned_children() == []


def test_importing_the_pool_does_not_import_torch() -> None:
    code = "import sys, stylizer.pool; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_what_the_forkserver_preloads_leaves_cuda_untouched() -> None:
    """Workers fork from the forkserver: had it initialised CUDA, none could use the GPU."""
    code = ("import sys, torch\n"
            "from stylizer.pool.supervisor import FORKSERVER_PRELOAD\n"
            "for name in FORKSERVER_PRELOAD: __import__(name)\n"
            "sys.exit(2 if torch.cuda.is_initialized() else 0)")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_progress_is_sent_at_most_once_per_interval() -> None:
    sent: list[Any] = []
    report = ProgressReporter("j", sent.append, interval_s=3600)
    preview = Image.new("RGB", (400, 300), (10, 20, 30))

    class P:
        def __init__(self, step: int) -> None:
            self.step, self.total, self.content_loss, self.style_loss = step, 9, 1.0, 2.0
            self.preview = preview

    for step in range(1, 10):
        report(P(step))
    assert [p.step for p in sent] == [1]  # the first always goes; the rest wait an hour
    small = Image.open(io.BytesIO(sent[0].preview_jpeg))
    assert (small.format, max(small.size)) == ("JPEG", 256)


async def test_close_during_start_stops_the_start() -> None:
    pool = WorkerPool(engine=EngineConfig(device="cpu"),
                      worker_target=pool_helpers.slow_starting_worker)
    starting = asyncio.ensure_future(pool.start())
    await asyncio.sleep(0.2)
    assert not starting.done()
    assert await pool.close(grace_s=0) == []
    with pytest.raises(PoolClosed):
        await starting
    assert spawned_children() == []


def test_a_worker_reports_the_device_its_engine_resolved() -> None:
    """The supervisor batches jobs only once a worker has said "cuda": a worker started
    with device "auto" must report what "auto" became, not the word "auto"."""
    import multiprocessing

    import torch

    from stylizer.pool.messages import WorkerReady
    from stylizer.pool.spec import MAX_BATCH, WorkerSpec
    from stylizer.pool.worker import Worker

    inbox_r, inbox_w = multiprocessing.Pipe(duplex=False)
    outbox_r, outbox_w = multiprocessing.Pipe(duplex=False)
    spec = WorkerSpec(worker_id=0, engine=EngineConfig(device="auto"), preview_interval_s=1.0,
                      log_level=30, cpu_threads=0, inbox=inbox_r, outbox=outbox_w,
                      cancel=multiprocessing.RawArray("q", MAX_BATCH), warm_up=False)
    inbox_w.send(None)  # no jobs: the worker leaves as soon as it is ready
    Worker(spec).load_then_serve()
    ready = outbox_r.recv()
    while not isinstance(ready, WorkerReady):
        ready = outbox_r.recv()
    assert ready.device == ("cuda:0" if torch.cuda.is_available() else "cpu")


def test_omp_num_threads_overrides_the_share_of_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    from stylizer.pool.supervisor import _usable_cpus, threads_per_worker

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert threads_per_worker(1) == _usable_cpus()
    assert threads_per_worker(10_000) == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert threads_per_worker(1) == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "garbage")
    assert threads_per_worker(1) == _usable_cpus()
