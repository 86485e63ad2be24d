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


@dataclass(frozen=True)
class QueuedJob:
    id: str
    user_id: str
    created_at: datetime


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


def eta_queued(position: int, workers: int, mean_s: float) -> float:
    """Seconds until a queued job is done: the rounds of work ahead of it plus its own."""
    return mean_s * math.ceil(position / max(1, workers))


def eta_running(step: int, total: int, elapsed_s: float, mean_s: float) -> float:
    """Seconds left for a running job: from its own pace once it has one."""
    if step > 0 and total > step and elapsed_s > 0:
        return elapsed_s * (total - step) / step
    return max(0.0, mean_s - elapsed_s)
