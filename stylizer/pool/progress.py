"""A job's progress, as the supervisor hears it: `JobProgress` events, rate-limited, with
a small JPEG of the canvas."""

from __future__ import annotations

import time
from collections.abc import Callable

from stylizer import images
from stylizer.pool.messages import JobProgress, WorkerMessage
from stylizer.pool.spec import ProgressLike

PREVIEW_SIDE = 256  # px, the preview's long side
PREVIEW_QUALITY = 80  # JPEG quality of a preview


class ProgressReporter:
    """Turns engine progress into `JobProgress` events, at most one per `interval_s` (the
    first always goes), each with a small JPEG preview when the engine supplied one."""

    def __init__(self, job_id: str, send: Callable[[WorkerMessage], None],
                 interval_s: float) -> None:
        self.job_id = job_id
        self.send = send
        self.interval_s = interval_s
        self._last: float | None = None

    def __call__(self, p: ProgressLike) -> None:
        now = time.monotonic()
        if self._last is not None and now - self._last < self.interval_s:
            return
        self._last = now
        preview = None
        if p.preview is not None:
            small = images.resize_to_fit(p.preview, PREVIEW_SIDE)
            preview = images.encode(small, "JPEG", quality=PREVIEW_QUALITY)
        self.send(JobProgress(self.job_id, p.step, p.total, p.content_loss, p.style_loss,
                              preview))
