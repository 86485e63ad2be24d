"""The worker process: loads VGG19 once, then paints the jobs the supervisor sends it.

A worker reads `(seq, JobRequest)` from its inbox pipe (None means "exit") and writes
`messages` dataclasses to its outbox pipe. It never raises to the supervisor: bad input,
cancellation, out-of-memory and bugs all become events. This module does not import
torch at import time, because the supervisor imports it for `worker_main`.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, Protocol

from PIL import Image

from stylizer import images
from stylizer.errors import Cancelled, InvalidParams, StylizerError
from stylizer.params import StyleParams
from stylizer.pool.messages import (
    JobCancelled,
    JobFailed,
    JobProgress,
    JobRequest,
    JobStarted,
    JobSucceeded,
    WorkerMessage,
    WorkerReady,
    WorkerStartFailed,
)

log = logging.getLogger(__name__)

# After a CUDA out-of-memory error the job is tried again at these fractions of its size.
OOM_SCALES = (1.0, 0.75, 0.5)
PREVIEW_SIDE = 256
PREVIEW_QUALITY = 80
INTERNAL_MESSAGE = "Something went wrong while painting."
# Exit status of a worker that leaves after an unexpected error (see Worker.handle).
EXIT_RECYCLE = 3


class SharedInt(Protocol):
    """A `multiprocessing.RawValue("q")`: one integer both processes can see."""

    value: int


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker process is started with (pickled once, at spawn)."""

    worker_id: int
    device: str
    weights: str
    preview_interval_s: float
    log_level: int
    cpu_threads: int  # torch intra-op threads; 0 leaves torch's default
    inbox: Connection  # (seq, JobRequest) or None, from the supervisor
    outbox: Connection  # WorkerMessage, to the supervisor
    # The supervisor writes a job's seq here to cancel it. A number rather than a flag, so
    # that a cancel arriving just as one job ends can never stop the next one.
    cancel: SharedInt


class ProgressLike(Protocol):
    @property
    def step(self) -> int: ...
    @property
    def total(self) -> int: ...
    @property
    def content_loss(self) -> float: ...
    @property
    def style_loss(self) -> float: ...
    @property
    def preview(self) -> Image.Image | None: ...


class ResultLike(Protocol):
    @property
    def image(self) -> Image.Image: ...
    def stats(self) -> dict[str, float | int]: ...


class Engine(Protocol):
    """What a worker needs of `stylizer.engine.Stylizer`."""

    def run(self, content: Image.Image, styles: Sequence[Image.Image], params: StyleParams, *,
            on_progress: Callable[[Any], None] | None = None,
            should_stop: Callable[[], bool] | None = None, progress_every: int = 10,
            preview_every: int = 0, preview_size: int = 256,
            style_keys: Sequence[str] | None = None) -> ResultLike: ...


class OutOfMemory(Exception):
    """The job did not fit in device memory even at the smallest retry size."""


def worker_main(spec: WorkerSpec) -> None:
    """The default process target of `WorkerPool`."""
    Worker(spec).serve()


def is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    torch = sys.modules.get("torch")
    # torch.OutOfMemoryError (CUDA and, in recent versions, CPU allocator failures);
    # torch.cuda.OutOfMemoryError is the same class or, in older versions, its only name.
    if torch is None:
        return False
    return isinstance(exc, (getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError),
                            torch.cuda.OutOfMemoryError))


class Worker:
    """One worker process's life. Subclass to change how the engine is made or a job run."""

    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec
        self.pid = os.getpid()
        self._parent_pid = os.getppid()
        self._seq = 0
        self._orphaned = False
        self._styles: OrderedDict[tuple[str, int], Image.Image] = OrderedDict()
        self.engine: Engine | None = None

    # -- process life ----------------------------------------------------------------------

    def setup_process(self) -> None:
        # A Ctrl-C in a terminal reaches the whole process group; the supervisor decides
        # when its workers stop (it lets running jobs finish on a graceful shutdown).
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        logging.basicConfig(
            level=self.spec.log_level, stream=sys.stderr, force=True,
            format=f"%(asctime)s %(levelname)s worker-{self.spec.worker_id}[%(process)d] "
                   "%(name)s: %(message)s")

    def make_engine(self) -> Engine:
        import torch

        from stylizer.engine import Stylizer

        if self.spec.cpu_threads > 0:
            # Several workers on one CPU would each start one thread per core otherwise.
            torch.set_num_threads(self.spec.cpu_threads)
        return Stylizer(self.spec.device, self.spec.weights)

    def serve(self) -> None:
        self.setup_process()
        try:
            self.engine = self.make_engine()
        except StylizerError as exc:
            log.error("cannot start: %s", exc)
            self.send(WorkerStartFailed(self.spec.worker_id, exc.code, str(exc)))
            return
        except Exception:
            log.exception("cannot start")
            self.send(WorkerStartFailed(self.spec.worker_id, "internal",
                                        "The painting engine could not start."))
            return
        log.info("ready on %s", self.spec.device)
        self.send(WorkerReady(self.spec.worker_id, self.pid, self.spec.device))
        while not self._orphaned:
            try:
                msg = self.spec.inbox.recv()
            except (EOFError, OSError):
                log.info("the supervisor has gone; exiting")
                return
            if msg is None:
                log.debug("asked to exit")
                return
            seq, req = msg
            if not self.handle(seq, req):
                sys.exit(EXIT_RECYCLE)

    def send(self, msg: WorkerMessage) -> None:
        try:
            self.spec.outbox.send(msg)
        except (OSError, ValueError):
            # The supervisor is gone: stop the running job (see should_stop) and exit.
            self._orphaned = True

    def should_stop(self) -> bool:
        return (self.spec.cancel.value == self._seq or self._orphaned
                or os.getppid() != self._parent_pid)

    # -- one job ---------------------------------------------------------------------------

    def handle(self, seq: int, req: JobRequest) -> bool:
        """Runs one job and reports how it ended; False means this process should be
        replaced (after an unexpected error its state, e.g. a CUDA context, is suspect)."""
        self._seq = seq
        job_id = req.job_id
        self.send(JobStarted(job_id, self.spec.worker_id, self.pid))
        log.info("job %s: started (attempt %d)", job_id, req.attempt)
        try:
            png, stats = self.paint(req)
        except Cancelled:
            log.info("job %s: cancelled", job_id)
            self.send(JobCancelled(job_id))
        except StylizerError as exc:
            log.info("job %s: refused (%s): %s", job_id, exc.code, exc)
            self.send(JobFailed(job_id, exc.code, str(exc), retryable=False))
        except OutOfMemory:
            self.send(JobFailed(job_id, "out_of_memory", "The picture did not fit in the "
                                "painter's memory; try a smaller size.", retryable=False))
        except Exception:
            # Retryable: the next attempt runs in a fresh process, which cures anything
            # transient; the job service caps the attempts for a bug that always fails.
            log.exception("job %s: failed", job_id)
            self.send(JobFailed(job_id, "internal", INTERNAL_MESSAGE, retryable=True))
            return False
        else:
            log.info("job %s: done in %.1f s", job_id, stats.get("seconds", 0.0))
            self.send(JobSucceeded(job_id, png, stats))
        return True

    def paint(self, req: JobRequest) -> tuple[bytes, dict[str, float | int]]:
        assert self.engine is not None
        params = StyleParams.from_dict(req.params)
        if not req.styles:
            raise InvalidParams("At least one style image is needed.")
        if params.style_blend and len(params.style_blend) != len(req.styles):
            raise InvalidParams("Give one style weight per style image.")
        content = images.decode(req.content, max_side=params.size)
        keys = list(req.style_keys) if len(req.style_keys) == len(req.styles) else None
        styles = [self.style_image(data, keys[i] if keys else None)
                  for i, data in enumerate(req.styles)]
        if self.should_stop():
            raise Cancelled("cancelled before the first step")
        report = ProgressReporter(req.job_id, self.send, self.spec.preview_interval_s)
        # Enough progress calls for a smooth bar, few enough that previews stay cheap.
        every = max(1, min(10, params.steps // 20))
        for factor in OOM_SCALES:
            size = max(32, round(params.size * factor))
            attempt = params.replace(size=size)
            try:
                result = self.engine.run(
                    images.resize_to_fit(content, size), styles, attempt,
                    on_progress=report, should_stop=self.should_stop, progress_every=every,
                    preview_every=every, preview_size=PREVIEW_SIDE, style_keys=keys)
            except Exception as exc:
                if not is_out_of_memory(exc):
                    raise
                log.warning("job %s: out of memory at size %d", req.job_id, size)
            else:
                break
            # Outside the except block: until it ends, the traceback's frames hold tensors.
            self.free_memory()
        else:
            raise OutOfMemory
        stats = dict(result.stats())
        stats.update(width=result.image.width, height=result.image.height, size=size)
        return images.encode(result.image, "PNG"), stats

    def style_image(self, data: bytes, key: str | None) -> Image.Image:
        """Decodes a style at the largest side the engine uses, always the same way for the
        same bytes, so that Gram matrices cached by key match a fresh computation."""
        from stylizer.engine import MAX_STYLE_SIDE

        if key is None:
            return images.decode(data, max_side=MAX_STYLE_SIDE)
        cache_key = (key, MAX_STYLE_SIDE)
        if cache_key in self._styles:
            self._styles.move_to_end(cache_key)
            return self._styles[cache_key]
        img = images.decode(data, max_side=MAX_STYLE_SIDE)
        self._styles[cache_key] = img
        while len(self._styles) > 8:
            self._styles.popitem(last=False)
        return img

    def free_memory(self) -> None:
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()


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
