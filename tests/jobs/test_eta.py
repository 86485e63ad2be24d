"""Time estimates: one model of the queue (`bot.jobs.scheduling.eta_queued`), the time of
a hand-over at a size (`seconds_at`), and what a queued job is told through the service."""

from __future__ import annotations

import functools

import pytest
from jobs_helpers import FakeExecutor, ServiceFactory, TickingClock, png, until
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.jobs import queue
from bot.jobs.scheduling import ANIMATION_FRAME_SHARE, eta_queued, seconds_at, work
from bot.jobs.states import JobStatus
from bot.settings import Settings
from stylizer.pool.messages import JobSucceeded

STYLE = png(99)


def test_hand_overs_go_to_the_worker_free_first() -> None:
    # Two workers, busy for 5 and 20 s more; three hand-overs of 10 s: the first two go
    # to the first worker (at 5 and 15 s), the third to the second (at 20 s).
    assert eta_queued([5.0, 20.0], [10.0], 2) == 15.0
    assert eta_queued([5.0, 20.0], [10.0, 10.0], 2) == 25.0
    assert eta_queued([5.0, 20.0], [10.0, 10.0, 10.0], 2) == 30.0
    # Idle workers start at once; with none running, rounds of `workers` hand-overs.
    assert [eta_queued([], [30.0] * n, 2) for n in range(1, 6)] == [30, 30, 60, 60, 90]
    # Longer jobs ahead hold their worker longer.
    assert eta_queued([], [100.0, 10.0, 10.0], 2) == 20.0


def test_a_hand_over_lasts_what_the_latest_jobs_of_its_size_took() -> None:
    # One 64-px job was slowed (30 s): the median does not follow it.
    recent = [(64, 10.0, 0), (64, 12.0, 0), (64, 30.0, 0), (128, 40.0, 0)]
    assert seconds_at(64, recent, 99.0) == 12.0
    assert seconds_at(128, recent, 99.0) == 40.0
    # No job of that size yet: the median of all (21 s), scaled by the area from the
    # median size (64 px).
    assert seconds_at(256, recent, 99.0) == pytest.approx(21.0 * (256 / 64) ** 2)
    assert seconds_at(64, [], 99.0) == 99.0  # nothing to go by


def test_an_animation_takes_what_animations_of_its_size_took_per_frame_of_work() -> None:
    # A 256-px still took 10 s; an 11-frame animation 40 s: 10 s of work a still.
    recent = [(256, 10.0, 0), (256, 40.0, 11)]
    assert work(11) == pytest.approx(1 + 10 * ANIMATION_FRAME_SHARE)
    assert seconds_at(256, recent, 99.0) == 10.0  # a still goes by stills
    assert seconds_at(256, recent, 99.0, frames=11) == 40.0
    # 21 frames: the 11-frame animation's time scaled by the work.
    assert seconds_at(256, recent, 99.0, frames=21) == pytest.approx(40.0 * work(21) / work(11))
    # No animation yet: stills of its size, scaled; no history: the default, scaled.
    assert seconds_at(256, recent[:1], 99.0, frames=11) == pytest.approx(10.0 * work(11))
    assert seconds_at(256, [], 5.0, frames=11) == pytest.approx(5.0 * work(11))


def test_the_animation_share_is_the_engines() -> None:
    from stylizer import temporal

    assert temporal.FOLLOW_FRACTION == ANIMATION_FRAME_SHARE


async def test_a_queued_job_is_told_the_time_of_the_jobs_ahead_and_of_its_own_size(
        make_service: ServiceFactory, settings: Settings, clock: TickingClock,
        sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    """A fake executor with a known rate: one worker, and a job of 64 px that took 20 s.
    Then a 64-px job and a 128-px one queue behind a running 64-px one, 5 s into its run."""
    fake = FakeExecutor(workers=1)
    service = make_service(fake, default_job_s=100.0,
                           settings_=settings.replace(max_jobs_per_user=10, workers=1))
    await service.start()
    try:
        done = await service.submit(user_id="a", user_name="a", content=png(1),
                                    style_image=STYLE, params={"size": 64})
        await until(lambda: len(fake.submitted) == 1)
        clock.advance(20)
        fake.emit(JobSucceeded(done.id, png(2), {}))
        assert (await service.wait(done.id, timeout_s=5)).status is JobStatus.succeeded

        running = await service.submit(user_id="b", user_name="b", content=png(3),
                                       style_image=STYLE, params={"size": 64})
        await until(lambda: len(fake.submitted) == 2)
        small = await service.submit(user_id="c", user_name="c", content=png(4),
                                     style_image=STYLE, params={"size": 64})
        large = await service.submit(user_id="d", user_name="d", content=png(5),
                                     style_image=STYLE, params={"size": 128})
        clock.advance(5)
        assert await service.position_and_eta(running.id) == (None, pytest.approx(15.0,
                                                                                   abs=0.5))
        # 15 s left of the running one, then 20 s for the 64-px job ...
        assert await service.position_and_eta(small.id) == (1, pytest.approx(35.0, abs=0.5))
        # ... then four times the area, four times as long.
        assert await service.position_and_eta(large.id) == (2, pytest.approx(115.0,
                                                                               abs=0.5))
        # The queue full: a place frees up when the running job ends, in 15 s; with a
        # second worker free, at once.
        free_in = functools.partial(queue.next_place_in_s, sessionmaker,
                                    default_job_s=100.0, now=clock())
        assert await free_in(workers=1) == pytest.approx(15.0, abs=0.5)
        assert await free_in(workers=2) == 0.0
        # Two requests that arrived before it are on their way to the queue (downloading):
        # they will go ahead, as two more hand-overs of its size.
        assert await service.position_and_eta(small.id, on_the_way=lambda: 2) == (
            3, pytest.approx(75.0, abs=0.5))
    finally:
        await service.stop(grace_s=0)
