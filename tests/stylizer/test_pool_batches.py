"""Batches through the worker pool: real processes, the real engine on the CPU."""

from __future__ import annotations

import importlib
import io
import logging
import time

import numpy as np
import pytest
from PIL import Image
from pool_testing import (
    TERMINAL,
    Events,
    PoolFactory,
    request,
    tiny_png,
    wait_until,
)

from stylizer.config import EngineConfig
from stylizer.pool.messages import (
    JobCancelled,
    JobFailed,
    JobProgress,
    JobStarted,
    JobSucceeded,
    PoolEvent,
)

pool_helpers = importlib.import_module(
    f"{__package__}.pool_helpers" if __package__ else "pool_helpers")

pytestmark = pytest.mark.timeout(120)

CPU_FP32 = EngineConfig(device="cpu", precision="fp32")


async def _finals(events: Events, job_ids: set[str], within: float = 90.0,
                  ) -> dict[str, PoolEvent]:
    """Reads events until every job in `job_ids` has ended; job id -> its final event."""
    finals: dict[str, PoolEvent] = {}
    deadline = time.monotonic() + within
    while set(finals) != job_ids:
        event = await events.next(deadline - time.monotonic())
        if isinstance(event, TERMINAL):
            assert event.job_id not in finals, f"{event.job_id} ended twice"
            finals[event.job_id] = event
    return finals


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), np.int16)


async def test_compatible_jobs_paint_together_each_as_if_alone(
        pool_factory: PoolFactory) -> None:
    # fp32: bf16 rounds differently at each batch size, and 20 L-BFGS steps on a 32-px
    # picture amplify that to several levels (the engine's tests bound bf16's cost).
    # 48 px (48x36): a thinner picture is painted mirrored out (canvas.Frame), whose free
    # margins let L-BFGS drift further between batch sizes (14 % of the loss at 32 px,
    # where the pixels still agree).
    pool = await pool_factory(workers=1, max_batch=4, engine=CPU_FP32)
    assert pool.max_batch == 4
    events = Events(pool)
    tints = [(1.0, 0.3, 0.3), (0.3, 0.3, 1.0), (1.0, 1.0, 1.0)]
    reqs = [request(f"b{i}", tint=tint, steps=20, size=48) for i, tint in enumerate(tints)]
    await pool.submit_batch(reqs)
    assert pool.idle == 0  # one worker holds the whole batch
    finals = await _finals(events, {"b0", "b1", "b2"})
    assert pool.idle == 1
    for job_id in ("b0", "b1", "b2"):
        seen = events.seen[job_id]
        assert isinstance(seen[0], JobStarted)
        assert any(isinstance(e, JobProgress) and e.preview_jpeg for e in seen)
        done = finals[job_id]
        assert isinstance(done, JobSucceeded)
        assert done.stats["batch"] == 3
        assert done.stats["bf16"] == 0
    # Each job had its own style: three different paintings.
    pictures = [_pixels(finals[j].png) for j in ("b0", "b1", "b2")]  # type: ignore[union-attr]
    apart = np.abs(pictures[0] - pictures[1]).mean()
    assert apart > 10
    # The second one again, alone: the same painting.
    await pool.submit(request("alone", tint=tints[1], steps=20, size=48))
    alone = (await events.until_end("alone"))[-1]
    assert isinstance(alone, JobSucceeded)
    assert alone.stats["batch"] == 1
    # Float summation order differs between batch sizes and L-BFGS amplifies it over 20
    # steps (here ~2 levels on average); another style moves the pixels ~20 levels.
    assert np.abs(_pixels(alone.png) - pictures[1]).mean() < apart / 4
    batched = finals["b1"]
    assert isinstance(batched, JobSucceeded)
    # The same amplification in the loss, and each CPU's fp32 kernels block the batch
    # differently: within 5 % on the AMD EPYCs (AVX2, AVX512-BF16), 5.6 % on an Intel Xeon
    # with AMX (1,329,273 batched against 1,258,743 alone, every run).
    assert batched.stats["total_loss"] == pytest.approx(alone.stats["total_loss"], rel=0.1)


async def test_jobs_of_different_strengths_share_a_batch(pool_factory: PoolFactory) -> None:
    # fp32, as in the test above: bf16 convolutions round differently at each batch size
    # and on each CPU's kernels (AVX512-BF16, AMX), and 30 L-BFGS steps carry that on to
    # several percent of the loss; in fp32 only the summation order differs.
    pool = await pool_factory(workers=1, max_batch=2, engine=CPU_FP32)
    events = Events(pool)
    # Enough steps for the weight to show: on this 32-px noise painting the first few
    # L-BFGS steps of the two problems wander differently before they settle.
    await pool.submit_batch([request("mild", style_weight=0.01, steps=30),
                             request("bold", style_weight=5.0, steps=30)])
    finals = await _finals(events, {"mild", "bold"})
    mild, bold = finals["mild"], finals["bold"]
    assert isinstance(mild, JobSucceeded)
    assert isinstance(bold, JobSucceeded)
    assert mild.stats["batch"] == bold.stats["batch"] == 2
    assert bold.stats["style_loss"] < mild.stats["style_loss"]
    await pool.submit(request("bold-alone", style_weight=5.0, steps=30))
    alone = (await events.until_end("bold-alone"))[-1]
    assert isinstance(alone, JobSucceeded)
    assert bold.stats["bf16"] == alone.stats["bf16"] == 0
    # Measured on an AMX CPU over three style pictures: 0.005 %, 0.03 % and 0.9 % apart.
    assert bold.stats["total_loss"] == pytest.approx(alone.stats["total_loss"], rel=0.05)


async def test_a_job_cancelled_in_a_batch_ends_alone(pool_factory: PoolFactory) -> None:
    pool = await pool_factory(workers=1, max_batch=3)
    events = Events(pool)
    await pool.submit_batch([request("keep-1", steps=30), request("drop", steps=30),
                             request("keep-2", steps=30)])
    await events.until(lambda e: isinstance(e, JobProgress))
    assert await pool.cancel("drop")
    order: list[str] = []
    finals: dict[str, PoolEvent] = {}
    while len(finals) < 3:
        event = await events.next()
        if isinstance(event, TERMINAL):
            order.append(event.job_id)
            finals[event.job_id] = event
    assert isinstance(finals["drop"], JobCancelled)
    assert order[0] == "drop"  # reported at once, not when the batch ends
    assert isinstance(finals["keep-1"], JobSucceeded)
    assert isinstance(finals["keep-2"], JobSucceeded)
    assert not await pool.cancel("keep-1")  # finished: nothing to cancel
    assert pool.idle == 1


async def test_cancelling_every_job_stops_the_batch(pool_factory: PoolFactory) -> None:
    pool = await pool_factory(workers=1, max_batch=2)
    events = Events(pool)
    await pool.submit_batch([request("x", steps=2000), request("y", steps=2000)])
    await events.until(lambda e: isinstance(e, JobProgress))
    started = time.monotonic()
    assert await pool.cancel("x")
    assert await pool.cancel("y")
    finals = await _finals(events, {"x", "y"}, within=30)
    assert all(isinstance(e, JobCancelled) for e in finals.values())
    await wait_until(lambda: pool.idle == 1, within=10)
    assert time.monotonic() - started < 10  # 2000 steps would take minutes


async def test_bad_input_fails_only_its_own_job(pool_factory: PoolFactory) -> None:
    pool = await pool_factory(workers=1, max_batch=3)
    events = Events(pool)
    pid = pool.worker_pids()[0]
    await pool.submit_batch([request("good-1"), request("broken", content=b"not an image"),
                             request("good-2")])
    finals = await _finals(events, {"good-1", "broken", "good-2"})
    broken = finals["broken"]
    assert isinstance(broken, JobFailed)
    assert (broken.code, broken.retryable) == ("corrupt_image", False)
    for job_id in ("good-1", "good-2"):
        done = finals[job_id]
        assert isinstance(done, JobSucceeded)
        assert done.stats["batch"] == 2
    assert pool.worker_pids()[0] == pid


async def test_jobs_of_different_sizes_paint_in_separate_groups(
        pool_factory: PoolFactory) -> None:
    pool = await pool_factory(workers=1, max_batch=3)
    events = Events(pool)
    y, x = np.mgrid[0:64, 0:40]
    tall = tiny_png(np.stack([x * 6, y * 3, x + y], axis=-1))
    await pool.submit_batch([request("wide-1"), request("tall", content=tall),
                             request("wide-2", steps=3)])
    finals = await _finals(events, {"wide-1", "tall", "wide-2"})
    sizes = {j: (e.stats["width"], e.stats["height"], e.stats["batch"])  # type: ignore[union-attr]
             for j, e in finals.items()}
    assert sizes["tall"] == (20, 32, 1)
    # Other parameters (steps) make another group too.
    assert sizes["wide-1"] == (32, 24, 1)
    assert sizes["wide-2"] == (32, 24, 1)


async def test_out_of_memory_splits_the_batch_before_shrinking_a_job(
        pool_factory: PoolFactory) -> None:
    pool = await pool_factory(workers=1, max_batch=2, worker_target=pool_helpers.troubled_worker)
    events = Events(pool)
    # Together they run out of memory; apart, each fits at full size (see pool_helpers).
    await pool.submit_batch([request("tight-1", size=64, steps=3),
                             request("tight-2", size=64, steps=3)])
    finals = await _finals(events, {"tight-1", "tight-2"})
    for done in finals.values():
        assert isinstance(done, JobSucceeded)
        assert (done.stats["size"], done.stats["batch"]) == (64, 1)


async def test_a_batch_past_its_time_limit_fails_every_job_in_it(
        pool_factory: PoolFactory) -> None:
    pool = await pool_factory(workers=1, max_batch=2, job_timeout_s=1.0,
                              worker_target=pool_helpers.troubled_worker)
    events = Events(pool)
    started = time.monotonic()
    await pool.submit_batch([request("hang-1"), request("hang-2")])
    finals = await _finals(events, {"hang-1", "hang-2"}, within=30)
    # A batch of two gets two jobs' time.
    assert time.monotonic() - started >= 1.9
    for event in finals.values():
        assert isinstance(event, JobFailed)
        assert event.code == "timeout"
    await wait_until(lambda: pool.idle == 1, within=30)


async def test_the_batch_limit_is_one_on_a_cpu_unless_set(pool_factory: PoolFactory) -> None:
    pool = await pool_factory(workers=1)
    assert pool.max_batch == 1
    with pytest.raises(ValueError, match="1 to 1 jobs"):
        await pool.submit_batch([request("a"), request("b")])
    assert pool.idle == 1  # nothing was handed over


async def test_a_pool_that_found_no_gpu_says_so(pool_factory: PoolFactory,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    with caplog.at_level(logging.INFO, logger="stylizer.pool.supervisor"):
        await pool_factory(workers=1, engine=EngineConfig(device="auto"))
    (ready,) = [r for r in caplog.records if "worker pool ready" in r.getMessage()]
    assert ready.levelno == logging.WARNING
    assert "on the CPU, as no CUDA device was found" in ready.getMessage()


async def test_spawned_workers_work_where_there_is_no_forkserver(
        pool_factory: PoolFactory) -> None:
    pool = await pool_factory(workers=1, start_method="spawn")
    events = Events(pool)
    await pool.submit(request("spawned", steps=2))
    assert isinstance((await events.until_end("spawned"))[-1], JobSucceeded)


def test_workers_are_never_plain_forked() -> None:
    from stylizer.pool.supervisor import WorkerPool

    with pytest.raises(ValueError, match="never fork"):
        WorkerPool(start_method="fork")
