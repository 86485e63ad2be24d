"""The events the job service emits to its subscribers, one class per moment of a job's
life. Every event carries `job_id`; all but `JobProgress` carry the job as it is now.

The names follow the worker pool's messages (`stylizer.pool.messages`), which the
dispatcher turns into these: a pool `JobStarted` becomes a service `JobStarted` carrying
the job's record instead of the worker's pid.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bot.jobs.records import JobRecord


@dataclass(frozen=True)
class JobQueued:
    """Accepted (or put back after a worker died); `position` is 1-based."""

    job_id: str
    job: JobRecord
    position: int
    eta_s: float | None


@dataclass(frozen=True)
class JobStarted:
    job_id: str
    job: JobRecord


@dataclass(frozen=True)
class JobProgress:
    job_id: str
    step: int
    total: int
    preview_jpeg: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True)
class JobSucceeded:
    job_id: str
    job: JobRecord
    png: bytes = field(repr=False)


@dataclass(frozen=True)
class JobFailed:
    """`job.status` is failed or dead; `job.error_code` / `error_message` say why."""

    job_id: str
    job: JobRecord


@dataclass(frozen=True)
class JobCancelled:
    job_id: str
    job: JobRecord


JobEvent = JobQueued | JobStarted | JobProgress | JobSucceeded | JobFailed | JobCancelled
FINAL_EVENTS = (JobSucceeded, JobFailed, JobCancelled)
