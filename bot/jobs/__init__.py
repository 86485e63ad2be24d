"""Durable painting jobs: the database, image storage, fair scheduling and recovery.

No Discord and no torch here; workers are reached through the `Executor` seam.
"""

from bot.jobs.errors import InvalidRequest, JobNotFound, LimitExceeded, NotAllowed, UserError
from bot.jobs.service import (
    JobCancelledEvent,
    JobEvent,
    JobFailedEvent,
    JobProgressEvent,
    JobQueued,
    JobService,
    JobStartedEvent,
    JobStatus,
    JobSucceededEvent,
    JobView,
)
from bot.jobs.storage import BlobStorage

__all__ = [
    "BlobStorage", "InvalidRequest", "JobCancelledEvent", "JobEvent", "JobFailedEvent",
    "JobNotFound", "JobProgressEvent", "JobQueued", "JobService", "JobStartedEvent",
    "JobStatus", "JobSucceededEvent", "JobView", "LimitExceeded", "NotAllowed", "UserError",
]
