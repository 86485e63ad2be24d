"""Compatible queued jobs go to a worker together; the rest keep their fair turn."""

from __future__ import annotations

import logging
import random
from datetime import UTC, datetime

import jobs_workers
import pytest
from jobs_helpers import FakeExecutor, ServiceFactory, png, until
from jobs_postgres import sqlite_only
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.jobs import db
from bot.jobs.executor import ExecutorStartError, LocalPoolExecutor
from bot.jobs.records import JobRecord
from bot.jobs.scheduling import QueuedJob, handovers_until, rides_alone
from bot.jobs.service import JobService
from bot.jobs.states import JobStatus
from bot.settings import Settings
from stylizer.batching import batch_limit
from stylizer.params import StyleParams
from stylizer.pool.messages import JobFailed, JobRequest, JobSucceeded

STYLE = png(99)


async def _submit(service: JobService, user: str, **kwargs: object) -> JobRecord:
    content = kwargs.pop("content", png(1))
    assert isinstance(content, bytes)
    params = kwargs.pop("params", {"steps": 9})
    assert isinstance(params, dict)
    return await service.submit(user_id=user, user_name=user, content=content,
                                style_image=STYLE, params=params)


def _finish(fake: FakeExecutor, *views: JobRecord) -> None:
    for view in views:
        fake.emit(JobSucceeded(view.id, png(7), {"steps": 9}))


async def test_compatible_jobs_ride_along_with_the_next_fair_job(
        make_service: ServiceFactory) -> None:
    fake = FakeExecutor(workers=1, max_batch=4)
    service = make_service(fake)
    await service.start()
    first = await _submit(service, "u1")
    await until(lambda: fake.batches == [[first.id]])
    # Queued while the worker is busy: three of the same size and settings, one of
    # another size, one with other settings.
    b = await _submit(service, "u2")
    c = await _submit(service, "u3", content=png(3))
    other_size = await _submit(service, "u4", content=png(4, width=40))
    other_params = await _submit(service, "u2", params={"steps": 5})
    f = await _submit(service, "u5", content=png(5))
    stronger = await _submit(service, "u6", content=png(6),
                             params={"steps": 9, "style_weight": 3.0})
    assert b.batch_key == c.batch_key == f.batch_key == stronger.batch_key
    assert len({b.batch_key, other_size.batch_key, other_params.batch_key}) == 3

    _finish(fake, first)
    await until(lambda: len(fake.batches) == 2)
    assert fake.batches[1] == [b.id, c.id, f.id, stronger.id]
    assert fake.running[stronger.id].params["style_weight"] == 3.0
    for view in (b, c, f):
        assert (await service.get(view.id)).status is JobStatus.running
    assert (await service.get(other_size.id)).status is JobStatus.queued
    _finish(fake, b, c, f, stronger)
    await until(lambda: len(fake.batches) == 3)
    _finish(fake, *[await service.get(i) for i in fake.batches[2]])
    await until(lambda: len(fake.batches) == 4)
    assert sorted(fake.batches[2] + fake.batches[3]) == sorted([other_size.id,
                                                                other_params.id])
    _finish(fake, *[await service.get(i) for i in fake.batches[3]])
    for view in (first, b, c, f, stronger, other_size, other_params):
        assert (await service.wait(view.id, timeout_s=5)).status is JobStatus.succeeded


async def test_a_batch_is_no_bigger_than_the_executor_takes(
        make_service: ServiceFactory) -> None:
    fake = FakeExecutor(workers=1, max_batch=2)
    service = make_service(fake)
    await service.start()
    first = await _submit(service, "u0")
    await until(lambda: fake.batches)
    rest = [await _submit(service, f"u{i}", content=png(i)) for i in range(1, 4)]
    _finish(fake, first)
    await until(lambda: len(fake.batches) == 2)
    assert fake.batches[1] == [rest[0].id, rest[1].id]
    _finish(fake, rest[0], rest[1])
    await until(lambda: len(fake.batches) == 3)
    assert fake.batches[2] == [rest[2].id]


async def test_jobs_without_a_key_or_after_a_crash_run_alone(
        make_service: ServiceFactory, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    fake = FakeExecutor(workers=1, max_batch=4)
    service = make_service(fake)
    await service.start()
    first = await _submit(service, "u0")
    await until(lambda: fake.batches)
    old = [await _submit(service, f"u{i}", content=png(i)) for i in (1, 2)]
    retried = [await _submit(service, f"u{i}", content=png(i)) for i in (3, 4)]
    async with sessionmaker.begin() as session:
        # As queued before batch keys existed, and as put back after a worker died.
        await session.execute(update(db.Job).where(db.Job.id.in_([v.id for v in old]))
                              .values(batch_key=None))
        await session.execute(update(db.Job).where(db.Job.id.in_([v.id for v in retried]))
                              .values(attempts=1))
    _finish(fake, first)
    for n, view in enumerate(old + retried, start=2):
        await until(lambda n=n: len(fake.batches) == n)  # type: ignore[misc]
        assert fake.batches[-1] == [view.id]
        _finish(fake, view)


async def test_jobs_the_executor_fails_to_take_go_back_to_the_queue(
        make_service: ServiceFactory, caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeExecutor(workers=1, max_batch=4)
    fake.fail_next = ValueError("a batch holds 1 to 1 jobs, not 2")
    service = make_service(fake)
    view = await _submit(service, "u0")
    await service.start()
    await until(lambda: fake.batches)  # the second try
    assert fake.batches == [[view.id]]
    assert "back to the queue" in caplog.text
    job = await service.get(view.id)
    assert (job.status, job.attempts) == (JobStatus.running, 1)  # the hand-over that failed
    # did not count
    _finish(fake, view)
    assert (await service.wait(view.id, timeout_s=5)).status is JobStatus.succeeded


def _riders(head: QueuedJob, rest: list[QueuedJob], max_batch: int) -> list[QueuedJob]:
    """The jobs that go with `head`: those with its key, in order, as many as fit."""
    if head.batch_key is None or rides_alone(head.attempts):
        return []
    limit = batch_limit(head.batch_key, max_batch)
    return [j for j in rest
            if j.batch_key == head.batch_key and not rides_alone(j.attempts)][:limit - 1]


def claims_until(order: list[QueuedJob], job_id: str, max_batch: int) -> int:
    return len(handovers_until(order, job_id, max_batch))


def _claims_until_by_the_rule(order: list[QueuedJob], job_id: str, max_batch: int) -> int:
    """The claim rule spelled out: take the first job and its riders, again and again."""
    pending, claims = list(order), 0
    while pending:
        head, rest = pending[0], pending[1:]
        taken = {head.id, *(j.id for j in _riders(head, rest, max_batch))}
        claims += 1
        if job_id in taken:
            break
        pending = [j for j in rest if j.id not in taken]
    return claims


def test_hand_overs_until_a_job_agree_with_the_rule_on_random_queues() -> None:
    rng = random.Random(7)
    t = datetime(2026, 1, 1, tzinfo=UTC)
    for _ in range(200):
        order = [QueuedJob(f"j{n}", f"u{rng.randrange(4)}", t,
                           rng.choice(["48x48:aa", "40x48:bb", None]),
                           attempts=int(rng.random() < 0.2))
                 for n in range(rng.randrange(1, 30))]
        max_batch = rng.choice([1, 2, 4, 16])
        for job in order:
            assert claims_until(order, job.id, max_batch) == _claims_until_by_the_rule(
                order, job.id, max_batch)


def test_hand_overs_until_a_job_follow_the_claim_rule() -> None:
    t = datetime(2026, 1, 1, tzinfo=UTC)
    key, other = "48x48:aa", "40x48:bb"
    order = [QueuedJob("a", "u1", t, key), QueuedJob("b", "u2", t, other),
             QueuedJob("c", "u3", t, key), QueuedJob("d", "u4", t, key, attempts=1),
             QueuedJob("e", "u5", t, None), QueuedJob("f", "u6", t, key)]
    # a takes c and f along (d is a retry: alone); then b; then d; then e.
    assert [claims_until(order, j, 16) for j in "abcdef"] == [1, 2, 1, 3, 4, 1]
    # Batches of two: a takes only c; f waits behind b, d and e.
    assert [claims_until(order, j, 2) for j in "abcdef"] == [1, 2, 1, 3, 4, 5]
    assert [claims_until(order, j, 1) for j in "abcdef"] == [1, 2, 3, 4, 5, 6]


async def test_the_eta_of_a_queued_job_counts_batches_not_jobs(
        make_service: ServiceFactory, settings: Settings) -> None:
    fake = FakeExecutor(workers=1, max_batch=4)
    service = make_service(fake, default_job_s=60.0)
    views = [await _submit(service, f"u{i}", content=png(i)) for i in range(5)]
    odd = await _submit(service, "u9", content=png(9, width=40))
    etas = [(await service.position_and_eta(v.id))[1] for v in views]
    # Four go in the first batch, the fifth in the second hand-over, the odd size (queued
    # last) in the third.
    assert etas == [60.0, 60.0, 60.0, 60.0, 120.0]
    assert (await service.position_and_eta(odd.id))[1] == 180.0
    assert [await service.queue_position(v.id) for v in views] == [1, 2, 3, 4, 5]


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_a_worker_killed_by_one_job_of_a_batch_costs_the_others_one_retry(
        make_service: ServiceFactory, settings: Settings,
        caplog: pytest.LogCaptureFixture) -> None:
    """Real worker processes: the poison kills the batch, its companions are retried
    alone and succeed, the poison dies alone."""
    caplog.set_level(logging.INFO, logger="bot.jobs.dispatch")
    settings = settings.replace(max_batch=4, max_attempts=3)
    executor = LocalPoolExecutor.from_settings(settings, preview_interval_s=0.2,
                                               worker_target=jobs_workers.quick_worker)
    service = make_service(executor, settings_=settings)
    await service.start()
    blocker = await _submit(service, "u0", params={"steps": 40})
    await until(lambda: executor.idle == 0)
    poison = await _submit(service, "u1", content=png(1, corner=jobs_workers.CRASH))
    good = [await _submit(service, f"u{i}", content=png(i)) for i in (2, 3)]
    assert poison.batch_key == good[0].batch_key
    assert (await service.wait(blocker.id, timeout_s=60)).status is JobStatus.succeeded
    for view in good:
        done = await service.wait(view.id, timeout_s=60)
        assert done.status is JobStatus.succeeded
        assert done.attempts == 2  # the batch the poison killed, and their own run
    dead = await service.wait(poison.id, timeout_s=60)
    assert (dead.status, dead.attempts) == (JobStatus.dead, 3)
    assert any("batch of 3" in r.getMessage() for r in caplog.records)


@sqlite_only  # the settings reach the engine; no job table is involved
@pytest.mark.timeout(120)
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
async def test_the_workers_paint_in_the_precision_the_settings_name(
        settings: Settings, precision: str) -> None:
    """STYLEBOT_PRECISION reaches the real worker processes' engine."""
    settings = settings.replace(precision=precision)
    executor = LocalPoolExecutor.from_settings(settings, preview_interval_s=0.0)
    await executor.start()
    try:
        events = executor.events()
        params = StyleParams(size=32, steps=2, scales=1).to_dict()
        await executor.submit_batch([JobRequest("p1", png(1), (STYLE,), ("s",), params)])
        async for event in events:
            if isinstance(event, (JobSucceeded, JobFailed)):
                break
        assert isinstance(event, JobSucceeded)
        assert event.stats["bf16"] == (precision == "bf16")
    finally:
        await executor.close()


@sqlite_only  # the settings reach the engine; no job table is involved
@pytest.mark.timeout(120)
@pytest.mark.parametrize("autotune", [True, False])
async def test_the_workers_engine_autotunes_as_the_settings_say(
        settings: Settings, autotune: bool) -> None:
    """STYLEBOT_AUTOTUNE reaches the engine a real worker process makes."""
    settings = settings.replace(autotune=autotune, precision="fp32")
    executor = LocalPoolExecutor.from_settings(
        settings, worker_target=jobs_workers.engine_reporter, warm_up=False)
    with pytest.raises(ExecutorStartError) as info:
        await executor.start()
    await executor.close()
    assert info.value.message == repr({"bf16": False, "autotune": autotune})
