"""What crosses the process boundary between the pool supervisor and its workers.

Plain frozen dataclasses of bytes, strings, numbers and dicts only: never tensors, PIL
images or exceptions, so a message pickles cheaply and means the same on both sides.
`PoolEvent` is what the pool reports to its consumer; `WorkerReady`, `WorkerStartFailed`,
`WorkerLeaving` and `WorkerLog` stay between the supervisor and its workers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class JobRequest:
    """One painting to make: encoded images and `StyleParams.to_dict()`."""

    job_id: str
    content: bytes  # encoded image bytes (any allowed format)
    styles: tuple[bytes, ...]  # encoded style images, one or more
    style_keys: tuple[str, ...]  # a stable key per style (sha256 hex) for caching its targets
    params: dict[str, Any] = field(default_factory=dict)
    attempt: int = 1
    # How many stills' worth of painting it is (an animation is more): its time limit is
    # the pool's per-job limit times this.
    work: float = 1.0

    def __repr__(self) -> str:
        # The default repr would print megabytes of image bytes into a log line.
        return (f"JobRequest(job_id={self.job_id!r}, content=<{len(self.content)} bytes>, "
                f"styles={len(self.styles)}, attempt={self.attempt})")


@dataclass(frozen=True)
class JobStarted:
    """A worker (`worker_id`, process `pid`) has begun painting the job."""

    job_id: str
    worker_id: int
    pid: int


@dataclass(frozen=True)
class JobProgress:
    """After `step` of `total` optimiser steps: the two loss terms as the engine weighs
    them, and now and then a small JPEG of the canvas (`preview_jpeg`). For an animation,
    `frame` frames are finished of `frames` (0 for a still), the steps count over all of
    them, and the preview shows the latest frame."""

    job_id: str
    step: int
    total: int
    content_loss: float
    style_loss: float
    preview_jpeg: bytes | None = None
    frame: int = 0
    frames: int = 0

    def __repr__(self) -> str:
        preview = f"<{len(self.preview_jpeg)} bytes>" if self.preview_jpeg else None
        return (f"JobProgress(job_id={self.job_id!r}, step={self.step}, total={self.total}, "
                f"frame={self.frame}, frames={self.frames}, preview_jpeg={preview})")


@dataclass(frozen=True)
class JobSucceeded:
    """The painting's encoded bytes (`png`: a PNG for a still; for an animation an
    animated GIF, or an animated WebP for a WebP photo), and figures about its run
    (an animation's stats add "frames", "source_frames" and "format")."""

    job_id: str
    png: bytes
    # steps, seconds, content_loss, style_loss, total_loss, width, height, size
    stats: dict[str, float | int | str]

    def __repr__(self) -> str:
        return (f"JobSucceeded(job_id={self.job_id!r}, png=<{len(self.png)} bytes>, "
                f"stats={self.stats})")


@dataclass(frozen=True)
class JobFailed:
    """`code` is a `StylizerError.code` for bad input, or one of "out_of_memory", "timeout",
    "worker_died", "internal". `message` is short and fit to show a user as it is."""

    job_id: str
    code: str
    message: str
    retryable: bool


@dataclass(frozen=True)
class JobCancelled:
    """Stopped on request (`WorkerPool.cancel`) before it finished."""

    job_id: str


PoolEvent = JobStarted | JobProgress | JobSucceeded | JobFailed | JobCancelled


@dataclass(frozen=True)
class WorkerReady:
    """A worker has loaded its model and waits for jobs."""

    worker_id: int
    pid: int
    device: str


@dataclass(frozen=True)
class WorkerStartFailed:
    """A worker could not load its model (e.g. the weights are missing); it exits next."""

    worker_id: int
    code: str
    message: str


@dataclass(frozen=True)
class WorkerLeaving:
    """The worker takes no more jobs and exits once its batch's last events are sent (after
    an unexpected error). It comes before those events, so that the supervisor never
    takes the worker for idle and hands it a job that nobody would read."""

    worker_id: int


# The attributes of a worker's log record that cross over: text and numbers only.
LOG_RECORD_FIELDS = ("name", "msg", "levelname", "levelno", "pathname", "filename", "module",
                     "lineno", "funcName", "created", "msecs", "relativeCreated", "thread",
                     "threadName", "process", "processName")


@dataclass(frozen=True)
class WorkerLog:
    """A worker's log record, for the supervisor's process to log. `fields["msg"]` is the
    whole text, a traceback included (see `logging.handlers.QueueHandler.prepare`): no
    arguments or exceptions to pickle, and nothing the parent's formatter cannot see."""

    fields: dict[str, str | int | float | None]

    @classmethod
    def from_record(cls, record: logging.LogRecord) -> WorkerLog:
        """From a record `QueueHandler.prepare` has already formatted."""
        return cls({name: getattr(record, name, None) for name in LOG_RECORD_FIELDS})

    def to_record(self) -> logging.LogRecord:
        """The record again, in the supervisor's process, for its own handlers."""
        return logging.makeLogRecord({**self.fields, "args": None})


WorkerMessage = PoolEvent | WorkerReady | WorkerStartFailed | WorkerLeaving | WorkerLog
