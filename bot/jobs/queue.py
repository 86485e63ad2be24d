"""The queue, read from the job table: whether it has room, its fair order, a job's place
in it and its wait, and the claim of the next batch by a dispatcher.

The order is kept in the rows: each job gets its turn when it is submitted (`next_turn`;
the rule is `bot.jobs.scheduling`'s), and queued jobs are taken by (turn, created_at, id),
which an index holds sorted. So `claim_batch` reads the first free rows of that index,
a queue position is a count, and neither reads the whole queue. Any number of
dispatchers, in any number of processes and on any number of machines sharing the
database, may claim at once: each job is claimed by exactly one, and the claims follow
the fair order as if there were a single dispatcher, give or take the claims in flight at
the same moment.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Set
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

from bot.jobs import db
from bot.jobs.errors import LimitExceeded
from bot.jobs.records import size_of
from bot.jobs.scheduling import (
    QueuedJob,
    eta_queued,
    eta_running,
    handovers_until,
    rides_alone,
    seconds_at,
)
from bot.jobs.states import ACTIVE, JobStatus
from stylizer.batching import batch_limit

RECENT_JOBS_FOR_ETA = 20


async def check_room(session: AsyncSession, *, user_id: str, max_jobs_per_user: int,
                     max_queue: int) -> None:
    """Raises `LimitExceeded` when the user already has `max_jobs_per_user` jobs queued or
    running, or `max_queue` jobs are waiting; the message is for the user. Call it in the
    transaction that inserts the job: it holds the admission lock until the commit, so
    that the counts stay true across processes sharing the database."""
    await db.lock_admission(session)
    active = await db.count_active_for_user(session, user_id=user_id)
    if active >= max_jobs_per_user:
        raise LimitExceeded.user_full(active)
    queued = await db.count_queued(session)
    if queued >= max_queue:
        raise LimitExceeded.queue_full(queued)


async def counts_at_door(sessionmaker: async_sessionmaker[AsyncSession],
                         user_ids: Collection[str]) -> tuple[dict[str, int], int]:
    """({user: jobs queued or running} for `user_ids`, jobs queued in all): what
    `bot.jobs.admission.Admission` counts before a request's download."""
    async with sessionmaker() as session:
        return (await db.count_active_by_user(session, user_ids=user_ids),
                await db.count_queued(session))


async def next_place_in_s(sessionmaker: async_sessionmaker[AsyncSession], *, workers: int,
                          default_job_s: float, now: datetime | None = None) -> float:
    """Rough seconds until a worker takes the next queued job, from the same model as
    `position_and_eta`: at once if one of `workers` is free, else when the running
    hand-over with the least left ends."""
    now = now or datetime.now(UTC)
    async with sessionmaker() as session:
        busy = await _busy_s(session, now=now, recent=await _recent(session),
                             default_job_s=default_job_s)
    if len(busy) < max(1, workers):
        return 0.0
    return min(busy)


async def _recent(session: AsyncSession) -> list[tuple[int | None, float, int]]:
    """(size, seconds, frames) of the latest jobs: what `scheduling.seconds_at` goes by."""
    return [(size_of(params), seconds, frames) for params, seconds, frames
            in await db.recent_runs(session, limit=RECENT_JOBS_FOR_ETA)]


def _left_s(running: db.Job, *, now: datetime, recent: list[tuple[int | None, float, int]],
            default_job_s: float) -> float:
    """Seconds left for a running job: its own pace, or what jobs of its size took."""
    elapsed = max(0.0, (now - (running.started_at or now)).total_seconds())
    return eta_running(running.step, running.total_steps, elapsed,
                       seconds_at(size_of(running.params), recent, default_job_s,
                                  running.frames))


async def _busy_s(session: AsyncSession, *, now: datetime,
                  recent: list[tuple[int | None, float, int]], default_job_s: float
                  ) -> list[float]:
    """Seconds left of each running hand-over (a batch is one: its jobs share a runner
    and a start), on any machine."""
    busy: dict[tuple[str | None, datetime | None], float] = {}
    for running in await db.jobs_with_status(session, statuses=[JobStatus.running]):
        busy[(running.runner, running.started_at)] = _left_s(
            running, now=now, recent=recent, default_job_s=default_job_s)
    return list(busy.values())


def _queued(row: Any) -> QueuedJob:
    return QueuedJob(row.id, row.user_id, row.created_at, row.batch_key, row.attempts,
                     size_of(row.params), row.frames)


async def _handovers(session: AsyncSession, job: db.Job, max_batch: int) -> list[QueuedJob]:
    """The heads of the hand-overs to workers until `job`'s, its own included: read from
    the jobs ahead of it only."""
    order = [_queued(row) for row in await db.queued_in_order(session, through=job)]
    return handovers_until(order, job.id, max_batch)


async def position_and_eta(session: AsyncSession, job: db.Job, *, now: datetime,
                           max_batch: int, workers: int, default_job_s: float,
                           want_eta: bool = True, on_the_way: Callable[[], int] | None = None
                           ) -> tuple[int | None, float | None]:
    """The job's 1-based place in the fair order (None unless it is queued) and a rough
    number of seconds until it is done (None once it has finished, or unless `want_eta`).
    `on_the_way()`, called right after the jobs ahead are counted: jobs not yet in the
    database that will go ahead of it (`Admission.ahead_of`), each taken as a hand-over of
    its size.

    One model of the queue (`scheduling.eta_queued`): the running hand-overs keep their
    workers for as long as their own pace says; the hand-overs ahead of the job in fair
    order (batches counted once) and its own then go to whichever of `workers` is free
    first, each lasting what the latest jobs of its size took (`scheduling.seconds_at`:
    batching and the workers' speed are in those times; `default_job_s` before there are
    any). A running job: its own pace."""
    status = JobStatus(job.status)
    if status not in ACTIVE:
        return None, None
    position = None
    coming = 0
    if status is JobStatus.queued:
        position = await db.count_queued_ahead(session, job=job) + 1
        coming = on_the_way() if on_the_way is not None else 0
        position += coming
    if not want_eta:
        return position, None
    recent = await _recent(session)
    if status is JobStatus.running:
        return None, _left_s(job, now=now, recent=recent, default_job_s=default_job_s)
    busy = await _busy_s(session, now=now, recent=recent, default_job_s=default_job_s)
    handovers = [seconds_at(head.size, recent, default_job_s, head.frames)
                 for head in await _handovers(session, job, max_batch)]
    if handovers and coming:  # [] when a worker took it meanwhile
        handovers[-1:-1] = [handovers[-1]] * coming
    # Running hand-overs beyond `workers` are other machines' workers.
    return position, eta_queued(busy, handovers, max(workers, len(busy)))


async def claim_batch(conn: AsyncConnection, *, runner: str, now: datetime,
                      lease_until: datetime, max_batch: int,
                      only_ids: Set[str] | None = None) -> list[Any]:
    """Claims for `runner` the next job in fair order and, riding along with it, queued
    jobs that can be painted in the same batch (same batch key, up to `max_batch`), in
    fair order too; returns their rows, now running, head first, or [] if the queue is
    empty. Each claimed job's `attempts` goes up by one: this run is one of them.

    Each is one statement, `db.claim_next_queued` (`FOR UPDATE SKIP LOCKED`): a row
    another claimer holds, or has just claimed, is passed over for the next one in the
    order, so two dispatchers claiming at once take the first two heads rather than one
    waiting for the other, and a claim reads a few index entries however long the
    queue is. On PostgreSQL (autocommit) the head's claim commits before its riders'
    read; a crash between them leaves the head running alone, as it may be anyway.
    """
    claim = functools.partial(db.claim_next_queued, conn, runner=runner, now=now,
                              lease_until=lease_until, only_ids=only_ids)
    heads = await claim()
    if not heads:
        return []
    head = heads[0]
    # Its attempts count this run already; the runs before it decide.
    if head.batch_key is None or rides_alone(head.attempts - 1):
        return heads
    limit = batch_limit(head.batch_key, max_batch)
    if limit <= 1:
        return heads
    return heads + await claim(limit=limit - 1, batch_key=head.batch_key)
