"""Fair order and time estimates, as pure functions of the queue.

Fairness is round-robin across users: when a worker frees up, the user who was served
least recently (never served comes first) gets the next job, and each user's own jobs
go first-in, first-out. One user's ten jobs therefore never hold back anyone else's.
Queue positions are read off the same order, so "position 3" is what will happen if
nobody else submits.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from stylizer.batching import batch_limit


@dataclass(frozen=True)
class QueuedJob:
    id: str
    user_id: str
    created_at: datetime
    batch_key: str | None = None
    attempts: int = 0


def riders(head: QueuedJob, rest: Sequence[QueuedJob], max_batch: int) -> list[QueuedJob]:
    """The queued jobs that go to a worker together with `head`: those with its batch key,
    in the order of `rest` (the fair order), as many as the batch takes. A job whose last
    run ended abnormally goes alone, and takes nobody along: if one job of a batch kills
    its worker, the others must not share its fate again (nor its attempts)."""
    if head.batch_key is None or head.attempts > 0:
        return []
    limit = batch_limit(head.batch_key, max_batch)
    return [j for j in rest if j.batch_key == head.batch_key and j.attempts == 0][:limit - 1]


def claims_until(order: Sequence[QueuedJob], job_id: str, max_batch: int) -> int:
    """How many hand-overs to workers, in fair order, until `job_id`'s (included)."""
    pending = list(order)
    claims = 0
    while pending:
        head, rest = pending[0], pending[1:]
        taken = {head.id, *(j.id for j in riders(head, rest, max_batch))}
        claims += 1
        if job_id in taken:
            break
        pending = [j for j in rest if j.id not in taken]
    return claims


def fair_order(queued: Sequence[QueuedJob],
               last_served: Mapping[str, datetime | None]) -> list[str]:
    """Job ids in the order workers will take them.

    Serving a user makes them the most recently served, so after the first pick the
    order is rounds: each user's next job, users in the same rotation as the first
    round (least recently served first, ties by their oldest waiting job).
    """
    per_user: dict[str, list[QueuedJob]] = {}
    for job in sorted(queued, key=lambda j: (j.created_at, j.id)):
        per_user.setdefault(job.user_id, []).append(job)

    def rotation_key(user: str) -> tuple[bool, datetime, datetime, str]:
        served = last_served.get(user)
        oldest = per_user[user][0].created_at
        # Never served sorts first; then the longest since being served.
        return (served is not None, served or oldest, oldest, user)

    users = sorted(per_user, key=rotation_key)
    order: list[str] = []
    rounds = max((len(jobs) for jobs in per_user.values()), default=0)
    for r in range(rounds):
        order.extend(per_user[u][r].id for u in users if r < len(per_user[u]))
    return order


def mean_duration(durations: Sequence[float], default: float) -> float:
    return sum(durations) / len(durations) if durations else default


def eta_queued(claims: int, workers: int, mean_s: float) -> float:
    """Seconds until a queued job is done: the rounds of work ahead of it plus its own,
    where a round is one hand-over (a job or a batch) per worker."""
    return mean_s * math.ceil(claims / max(1, workers))


def eta_running(step: int, total: int, elapsed_s: float, mean_s: float) -> float:
    """Seconds left for a running job: from its own pace once it has one."""
    if step > 0 and total > step and elapsed_s > 0:
        return elapsed_s * (total - step) / step
    return max(0.0, mean_s - elapsed_s)
