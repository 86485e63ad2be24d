"""Fair order and time estimates, as pure functions of the queue.

Fairness is round-robin across users, kept as start-time fair queuing (Goyal, Vin and
Cheng, "Start-time Fair Queuing", SIGCOMM 1996) with one unit of work per job: each job
gets a turn (a round number) when it is submitted, and workers take queued jobs by
(turn, created_at, id). A user's job takes the round being served (the highest turn ever
started), or the round after their latest job, whichever is later (`bot.jobs.db.
next_turn`). So each user has at most one job in each round and their own jobs go
first-in, first-out; a user who has not been served lately joins the current round, at
its end, ahead of the next round of a user with ten jobs waiting, whose jobs never hold
back anyone else's. A job put back in the queue (its worker died or stopped) keeps its
turn, and so goes ahead of the jobs submitted since. Queue positions are read off the same
order, so "position 3" is what will happen if nobody else submits.

The turn is in the row (and an index), so a claim reads a few index entries instead of
the whole queue: ordering at submit time is what lets the queue take thousands of claims
a second while staying round-robin.
"""

from __future__ import annotations

import heapq
import statistics
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from stylizer.batching import batch_limit

# An animation's painting work, in stills of its size: its first frame is painted as a
# still, each other frame from the one before with about this share of a still's steps
# (`stylizer.temporal.FOLLOW_FRACTION`; this module must not import torch).
ANIMATION_FRAME_SHARE = 0.3


@dataclass(frozen=True)
class QueuedJob:
    id: str
    user_id: str
    created_at: datetime
    batch_key: str | None = None
    attempts: int = 0
    size: int | None = None  # its `size` parameter (long side, px)
    frames: int = 0  # frames painted, for an animation; 0 for a still


def rides_alone(attempts: int) -> bool:
    """A queued job whose earlier run ended abnormally goes to a worker alone and takes
    nobody along: if one job of a batch kills its worker, the others must not share its
    fate again (nor its attempts)."""
    return attempts > 0


def handovers_until(order: Sequence[QueuedJob], job_id: str, max_batch: int
                    ) -> list[QueuedJob]:
    """The heads of the hand-overs to workers, in fair order, until `job_id`'s (included):
    each hand-over takes the first job not yet taken and, riding along, the next ones
    with its batch key, as many as the batch takes (`rides_alone` jobs neither ride nor
    take anyone along). Linear in the jobs ahead: each key's candidates are a queue
    consumed once."""
    same_key: dict[str, deque[QueuedJob]] = {}
    for job in order:
        if job.batch_key is not None and not rides_alone(job.attempts):
            same_key.setdefault(job.batch_key, deque()).append(job)
    taken: set[str] = set()
    heads: list[QueuedJob] = []
    for head in order:
        if head.id in taken:
            continue
        heads.append(head)
        taken.add(head.id)
        if head.id == job_id:
            break
        if head.batch_key is None or rides_alone(head.attempts):
            continue
        # The head is the first of its key not taken: the rest of its queue comes after it.
        candidates, room = same_key[head.batch_key], batch_limit(head.batch_key, max_batch) - 1
        while candidates and room > 0:
            rider = candidates.popleft()
            if rider.id in taken:
                continue
            taken.add(rider.id)
            room -= 1
        if job_id in taken:
            break
    return heads


def work(frames: int) -> float:
    """A job's painting work in stills of its size: 1 for a still (`frames` 0 or 1), more
    for an animation of `frames` frames (ANIMATION_FRAME_SHARE)."""
    return 1.0 + ANIMATION_FRAME_SHARE * max(0, frames - 1)


def seconds_at(size: int | None, recent: Sequence[tuple[int | None, float, int]],
               default_s: float, frames: int = 0) -> float:
    """How long a hand-over of a job of `size` (and `frames`, for an animation) takes,
    from `recent` (size, seconds, frames) of the latest jobs: the median of those of the
    same size and kind (still or animation); else of the same size; else of all, scaled
    by the area (the engine's work grows with the pixels); `default_s` with no history.
    Times of a job of another number of frames are scaled by their `work`. Medians,
    because a few jobs slowed by a busy moment (a burst of requests being answered) must
    not stretch the estimate of every job behind them."""
    def scaled(entries: Sequence[tuple[int | None, float, int]]) -> list[float]:
        return [s * work(frames) / work(f) for _, s, f in entries]

    same_size = [e for e in recent if e[0] == size]
    same_kind = [e for e in same_size if (e[2] > 1) == (frames > 1)]
    if same_kind or same_size:
        return statistics.median(scaled(same_kind or same_size))
    if not recent:
        return default_s * work(frames)
    typical_s = statistics.median(scaled(recent))
    sizes = [z for z, _, _ in recent if z]
    if size is None or not sizes:
        return typical_s
    return typical_s * (size / statistics.median(sizes)) ** 2


def eta_queued(busy_s: Sequence[float], handovers_s: Sequence[float], workers: int
               ) -> float:
    """Seconds until a queued job is done: `workers` workers, busy for `busy_s` seconds
    more (the running hand-overs; the others are free), take the hand-overs ahead of it
    and its own (`handovers_s`, in fair order, each lasting so long) each as soon as one
    is free: the time its own ends. List scheduling (Graham 1966), the dispatcher's rule."""
    free = sorted(busy_s)[:max(1, workers)]
    free += [0.0] * (max(1, workers) - len(free))
    heapq.heapify(free)
    end = 0.0
    for seconds in handovers_s:
        end = heapq.heappop(free) + seconds
        heapq.heappush(free, end)
    return end


def eta_running(step: int, total: int, elapsed_s: float, mean_s: float) -> float:
    """Seconds left for a running job: from its own pace once it has one."""
    if step > 0 and total > step and elapsed_s > 0:
        return elapsed_s * (total - step) / step
    return max(0.0, mean_s - elapsed_s)
