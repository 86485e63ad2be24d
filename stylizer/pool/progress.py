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
    first always goes), each with a small JPEG preview when the engine supplied one.

    For an animation, a report that counts more frames finished than the last one sent
    always goes too: there are a few per animation (one per batch of frames), and the
    count the user sees should not lag a whole interval behind."""

    def __init__(self, job_id: str, send: Callable[[WorkerMessage], None],
                 interval_s: float) -> None:
        self.job_id = job_id
        self.send = send
        self.interval_s = interval_s
        self._last: float | None = None
        self._frame = 0  # frames finished, as last sent

    def __call__(self, p: ProgressLike, *, frame: int = 0, frames: int = 0) -> None:
        """Reports `p` unless one went less than `interval_s` ago. `frame` and `frames`:
        an animation's frames finished and in all (0 for a still)."""
        now = time.monotonic()
        more_frames = frame > self._frame
        if (not more_frames and self._last is not None
                and now - self._last < self.interval_s):
            return
        self._last = now
        self._frame = frame
        preview = None
        if p.preview is not None:
            small = images.resize_to_fit(p.preview, PREVIEW_SIDE)
            preview = images.encode(small, "JPEG", quality=PREVIEW_QUALITY)
        self.send(JobProgress(self.job_id, p.step, p.total, p.content_loss, p.style_loss,
                              preview, frame, frames))
