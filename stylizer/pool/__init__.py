"""A supervised pool of warm worker processes that run painting jobs.

Nothing here imports torch in the calling process: workers are spawned and load VGG19
themselves, so the bot process never initialises CUDA.
"""

from __future__ import annotations

from stylizer.pool.messages import (
    JobCancelled,
    JobFailed,
    JobProgress,
    JobRequest,
    JobStarted,
    JobSucceeded,
    PoolEvent,
)
from stylizer.pool.supervisor import PoolBusy, PoolClosed, PoolStartError, WorkerPool
from stylizer.pool.worker import Worker, WorkerSpec, worker_main

__all__ = [
    "JobCancelled", "JobFailed", "JobProgress", "JobRequest", "JobStarted", "JobSucceeded",
    "PoolBusy", "PoolClosed", "PoolEvent", "PoolStartError", "Worker", "WorkerPool",
    "WorkerSpec", "worker_main",
]
