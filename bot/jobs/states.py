"""The job state machine.

    queued ──► running ──► succeeded | failed | cancelled | dead
      │  ▲        │
      │  └────────┘  (retry after a worker died, recovery after a crash, graceful stop)
      └──► cancelled

`dead` is for a job that killed its worker (or the whole service) too often.
"""

from __future__ import annotations

from enum import StrEnum

from bot.jobs.errors import IllegalTransition


class JobStatus(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"
    dead = "dead"

    @property
    def is_final(self) -> bool:
        return self in FINAL

    @property
    def is_active(self) -> bool:
        return self in ACTIVE


ACTIVE = frozenset({JobStatus.queued, JobStatus.running})
FINAL = frozenset({JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled, JobStatus.dead})

TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.queued: frozenset({JobStatus.running, JobStatus.cancelled}),
    JobStatus.running: frozenset({JobStatus.queued, JobStatus.succeeded, JobStatus.failed,
                                  JobStatus.cancelled, JobStatus.dead}),
    JobStatus.succeeded: frozenset(),
    JobStatus.failed: frozenset(),
    JobStatus.cancelled: frozenset(),
    JobStatus.dead: frozenset(),
}


def can_transition(old: JobStatus | str, new: JobStatus | str) -> bool:
    return JobStatus(new) in TRANSITIONS[JobStatus(old)]


def check_transition(old: JobStatus | str, new: JobStatus | str) -> None:
    """Raises `IllegalTransition` unless `old -> new` is allowed."""
    if not can_transition(old, new):
        raise IllegalTransition(f"a job cannot go from {old} to {new}")
