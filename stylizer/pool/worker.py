"""The worker process: loads VGG19 once, then paints the jobs the supervisor sends it.

A worker reads a batch, a list of `(seq, JobRequest)`, from its inbox pipe (None means
"exit") and writes
`messages` dataclasses to its outbox pipe. It never raises to the supervisor: bad input,
cancellation, out-of-memory and bugs all become events. Its log records go up the same
pipe (`WorkerLog`), for the supervisor's process to write with its own handlers: a worker
writes nothing to stderr itself. This module does not import torch at import time,
because the supervisor imports it for `worker_main`.

Long because a batch's life in the worker (decoding, the engine run, cancel checks,
out-of-memory retries at smaller sizes, and exactly one final event per job) is one
sequence, read top to bottom. An animated photo is painted as a job of its own, its frames
the batch (what differs from a still is in `stylizer.pool.animated`).
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import signal
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from PIL import Image

from stylizer import images
from stylizer.animation import Animation
from stylizer.batching import shared_digest
from stylizer.errors import Cancelled, InvalidParams, StylizerError
from stylizer.params import StyleParams
from stylizer.pool import animated
from stylizer.pool.animated import Stats
from stylizer.pool.messages import (
    JobCancelled,
    JobFailed,
    JobRequest,
    JobStarted,
    JobSucceeded,
    WorkerLeaving,
    WorkerLog,
    WorkerMessage,
    WorkerReady,
    WorkerStartFailed,
)
from stylizer.pool.progress import PREVIEW_SIDE, ProgressReporter
from stylizer.pool.spec import Engine, ProgressLike, WorkerSpec

log = logging.getLogger(__name__)

# After a CUDA out-of-memory error the job is tried again at these fractions of its size.
OOM_SCALES = (1.0, 0.75, 0.5)
# zlib level of the paintings sent back: on paintings level 1 takes 15-20 ms at 512 px
# against 25-45 ms at the usual 6, for files 2-5% bigger (the worker's CPU time per job
# matters when the GPU finishes a job every few tens of milliseconds).
RESULT_PNG_LEVEL = 1
INTERNAL_MESSAGE = "Something went wrong while painting."
# Exit status of a worker that leaves after an unexpected error (see Worker.handle).
EXIT_RECYCLE = 3


@dataclass(eq=False)
class Task:
    """One job of a batch, inside the worker."""

    seq: int
    slot: int  # its position in the batch: its cell in the cancel array
    req: JobRequest
    report: ProgressReporter
    params: StyleParams | None = None
    content: Image.Image | None = None  # a still's photo
    animation: Animation | None = None  # an animation's frames and timing, instead
    styles: list[Image.Image] = field(default_factory=list)
    keys: list[str] | None = None
    open: bool = True  # no final event sent yet

    @property
    def job_id(self) -> str:
        return self.req.job_id


class LogOutbox:
    """The queue of the worker's `logging.handlers.QueueHandler`: each record, already
    formatted into text by the handler, goes up the outbox pipe as a `WorkerLog`.

    Not a shared `multiprocessing.Queue`: each worker's outbox is already an ordered channel
    that the supervisor's reader thread drains, a record is on its way before the log call
    returns (nothing is lost when the process exits or dies next), and a worker killed
    mid-write cannot leave a shared queue's lock held for the others.
    """

    def __init__(self, send: Callable[[WorkerMessage], None]) -> None:
        self._send = send

    def put_nowait(self, record: logging.LogRecord) -> None:
        """`QueueHandler`'s call: the record goes up the pipe, never blocking."""
        self._send(WorkerLog.from_record(record))

    def get(self) -> logging.LogRecord:
        """Never called in the worker (the queue protocol asks for it)."""
        raise NotImplementedError("the supervisor reads the records from the outbox")


class OutOfMemory(Exception):
    """The job did not fit in device memory even at the smallest retry size."""


def worker_main(spec: WorkerSpec) -> None:
    """The default process target of `WorkerPool`."""
    Worker(spec).serve()


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether `exc` says the host or the device ran out of memory."""
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
        self._orphaned = False
        self._send_lock = threading.Lock()  # log records come from any thread
        self.leaving = False
        self._styles: OrderedDict[tuple[str, int], Image.Image] = OrderedDict()
        self._styles_lock = threading.Lock()
        self._threads: ThreadPoolExecutor | None = None
        self.engine: Engine | None = None
        # The device the engine resolved ("auto" -> "cuda:0" or "cpu"): the supervisor
        # batches only once a worker has reported a GPU.
        self.device = spec.engine.device

    # -- process life ----------------------------------------------------------------------

    def setup_process(self) -> None:
        """Signals and logging of the worker process, before anything else runs."""
        # A Ctrl-C in a terminal reaches the whole process group; the supervisor decides
        # when its workers stop (it lets running jobs finish on a graceful shutdown).
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        # To the supervisor's process, whose logging configuration (format, destination,
        # redaction of secrets) applies; the format here only adds who wrote the line.
        logging.basicConfig(
            level=self.spec.log_level, force=True,
            handlers=[logging.handlers.QueueHandler(LogOutbox(self.send))],
            format=f"worker-{self.spec.worker_id}[%(process)d] %(message)s")
        logging.captureWarnings(True)

    def make_engine(self) -> Engine:
        """A `Stylizer` as `spec.engine` says, warmed up unless `spec.warm_up` is False.
        Raises what `Stylizer` raises (e.g. `WeightsUnavailable`)."""
        import torch

        from stylizer.engine import Stylizer

        if self.spec.cpu_threads > 0:
            # Several workers on one CPU would each start one thread per core otherwise.
            torch.set_num_threads(self.spec.cpu_threads)
        engine = Stylizer(self.spec.engine)
        self.device = str(engine.device)
        if self.spec.warm_up:
            engine.warm_up()
        return engine

    def serve(self) -> None:
        """The process's whole life: set up, load the engine, paint until told to exit."""
        self.setup_process()
        try:
            self.load_then_serve()
        except Exception:
            # Left to multiprocessing, the traceback would go to stderr, past the
            # supervisor's logging (and its redaction of secrets).
            log.exception("stopped by an unexpected error")
            sys.exit(1)

    def load_then_serve(self) -> None:
        """Loads the engine, says it is ready, then paints batches until told to exit."""
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
        log.info("ready on %s", self.device)
        self.send(WorkerReady(self.spec.worker_id, self.pid, self.device))
        while not self._orphaned:
            try:
                msg = self.spec.inbox.recv()
            except (EOFError, OSError):
                log.info("the supervisor has gone; exiting")
                return
            if msg is None:
                log.debug("asked to exit")
                return
            if not self.handle(msg):
                self.leave()
                sys.exit(EXIT_RECYCLE)

    def send(self, msg: WorkerMessage) -> None:
        """Writes `msg` to the outbox, from any thread; notes when the supervisor is gone."""
        with self._send_lock:
            try:
                self.spec.outbox.send(msg)
            except (OSError, ValueError):
                # The supervisor is gone: stop the running job (see should_stop) and exit.
                self._orphaned = True

    def leave(self) -> None:
        """Tells the supervisor that this process takes no more jobs: call it before the
        batch's last events, so that no job is handed to a process on its way out."""
        if not self.leaving:
            self.leaving = True
            self.send(WorkerLeaving(self.spec.worker_id))

    # -- one batch -------------------------------------------------------------------------

    def handle(self, batch: Sequence[tuple[int, JobRequest]]) -> bool:
        """Paints a batch of jobs and reports how each ended; False means this process
        should be replaced (after an unexpected error its state, e.g. a CUDA context, is
        suspect). Jobs whose photos come out at the same size with the same parameters
        (but for the style weight) run as one `run_batch`; the others run one group after
        another."""
        tasks = [Task(seq, slot, req, ProgressReporter(req.job_id, self.send,
                                                       self.spec.preview_interval_s))
                 for slot, (seq, req) in enumerate(batch)]
        for task in tasks:
            self.send(JobStarted(task.job_id, self.spec.worker_id, self.pid))
            log.info("job %s: started (attempt %d, batch of %d)", task.job_id,
                     task.req.attempt, len(tasks))
        try:
            for group in self.group(tasks):
                self.paint_group(group)
        except Exception:
            # Retryable: the next attempt runs in a fresh process, which cures anything
            # transient; the job service caps the attempts for a bug that always fails.
            unfinished = [task for task in tasks if task.open]
            log.exception("jobs %s: failed", ", ".join(t.job_id for t in unfinished))
            self.leave()
            for task in unfinished:
                self.finish(task, JobFailed(task.job_id, "internal", INTERNAL_MESSAGE,
                                            retryable=True))
            return False
        return True

    def group(self, tasks: list[Task]) -> list[list[Task]]:
        """Prepares every job (refusing bad input at once) and groups the rest by painted
        size and shared parameters."""
        groups: dict[tuple[object, ...], list[Task]] = {}
        # Decoding runs on a few threads (Pillow lets go of the GIL): on a GPU host the
        # device would otherwise wait for the photos of a batch one after another.
        refusals = list(self.threads.map(self.try_prepare, tasks))
        for task, exc in zip(tasks, refusals, strict=True):
            if exc is not None:
                log.info("job %s: refused (%s): %s", task.job_id, exc.code, exc)
                self.finish(task, JobFailed(task.job_id, exc.code, str(exc), retryable=False))
                continue
            assert task.params is not None
            if task.animation is not None:  # its frames are its batch
                key: tuple[object, ...] = ("animation", task.seq)
            else:
                assert task.content is not None
                key = (task.content.size, shared_digest(task.params.to_dict()))
            groups.setdefault(key, []).append(task)
        return list(groups.values())

    def finish(self, task: Task, event: JobSucceeded | JobFailed | JobCancelled) -> None:
        """Sends a job's final event; the batch may go on without it."""
        task.open = False
        self.send(event)

    @property
    def threads(self) -> ThreadPoolExecutor:
        """Threads for a batch's image decoding and encoding."""
        if self._threads is None:
            n = max(2, min(8, self.spec.cpu_threads or os.cpu_count() or 2))
            self._threads = ThreadPoolExecutor(n, thread_name_prefix="images")
        return self._threads

    def try_prepare(self, task: Task) -> StylizerError | None:
        """`prepare`, returning its refusal instead of raising it."""
        try:
            self.prepare(task)
        except StylizerError as exc:
            return exc
        return None

    def prepare(self, task: Task) -> None:
        """Decodes and checks one job's images and parameters (StylizerError if bad)."""
        req = task.req
        params = StyleParams.from_dict(req.params)
        if not req.styles:
            raise InvalidParams("At least one style image is needed.")
        if params.style_blend and len(params.style_blend) != len(req.styles):
            raise InvalidParams("Give one style weight per style image.")
        task.params = params
        task.animation = animated.decode_job(req.content, params)
        if task.animation is None:
            task.content = images.decode_photo(req.content, params.size)
        else:
            log.info("job %s: an animation, %d of its %d frames painted", task.job_id,
                     len(task.animation.frames), task.animation.source_frames)
        task.keys = list(req.style_keys) if len(req.style_keys) == len(req.styles) else None
        task.styles = [self.style_image(data, task.keys[i] if task.keys else None)
                       for i, data in enumerate(req.styles)]

    def paint_group(self, group: list[Task]) -> None:
        """Paints jobs of one size and one set of parameters together."""
        try:
            results = self.paint(group)
        except Cancelled:
            # The supervisor is gone (each job cancelled on its own was reported then).
            for task in group:
                if task.open:
                    self.finish(task, JobCancelled(task.job_id))
            return
        except StylizerError as exc:
            for task in group:
                if task.open:
                    log.info("job %s: refused (%s): %s", task.job_id, exc.code, exc)
                    self.finish(task, JobFailed(task.job_id, exc.code, str(exc),
                                                retryable=False))
            return
        except OutOfMemory:
            for task in group:
                if task.open:
                    self.finish(task, JobFailed(
                        task.job_id, "out_of_memory", "The picture did not fit in the "
                        "painter's memory; try a smaller size.", retryable=False))
            return
        for task in group:
            if task.open and task.job_id in results:
                png, stats = results[task.job_id]
                log.info("job %s: done in %.1f s", task.job_id, stats.get("seconds", 0.0))
                self.finish(task, JobSucceeded(task.job_id, png, stats))

    def paint(self, tasks: list[Task]) -> dict[str, tuple[bytes, Stats]]:
        """Runs the engine; after an out-of-memory error a batch is split in halves, and a
        single job is tried again smaller (OOM_SCALES)."""
        for factor in OOM_SCALES:
            try:
                return self.run_engine(tasks, factor)
            except Exception as exc:
                if not is_out_of_memory(exc):
                    raise
                log.warning("jobs %s: out of memory at %.0f%% size",
                            ", ".join(t.job_id for t in tasks), factor * 100)
            # Outside the except block: until it ends, the traceback's frames hold tensors.
            self.free_memory()
            if len(tasks) > 1:
                mid = len(tasks) // 2
                return {**self.paint(tasks[:mid]), **self.paint(tasks[mid:])}
        raise OutOfMemory

    def run_engine(self, tasks: list[Task], factor: float) -> dict[str, tuple[bytes, Stats]]:
        """Paints the open jobs of `tasks` as one batch at `factor` times their size: job id
        -> (PNG bytes, or an animation's, see `animated.paint`; stats). Raises what the
        engine raises."""
        # Here, not at the top: importing this module must not import torch.
        from stylizer.engine import RunOptions

        assert self.engine is not None
        live = [t for t in tasks if t.open]
        if not live:
            return {}
        params = live[0].params
        assert params is not None
        size = max(32, round(params.size * factor))
        attempt = params.replace(size=size)
        # Enough progress calls for a smooth bar; previews are only rendered when sent.
        every = max(1, min(10, params.steps // 20))

        def on_progress(batch: Sequence[ProgressLike]) -> None:
            # One report per photo of a batch; an animation's one, counting its frames.
            for task, progress in zip(live, batch, strict=True):
                if task.open:
                    task.report(progress, frame=progress.frame, frames=progress.frames)

        options = RunOptions(on_progress=on_progress, should_stop=self.stop_check(live),
                             progress_every=every, preview_every=every,
                             preview_size=PREVIEW_SIDE)
        try:
            anim = live[0].animation
            if anim is not None:
                (task,) = live  # grouped alone
                done = animated.paint(self.engine, anim, task.styles, task.keys, attempt,
                                      options, self.threads)
                return {task.job_id: done} if task.open else {}
            contents, weights = [], []
            for task in live:
                assert task.content is not None
                assert task.params is not None
                contents.append(images.resize_to_fit(task.content, size))
                weights.append(task.params.style_weight)
            results = self.engine.run_batch(
                contents, [t.styles for t in live], attempt, options,
                style_keys=[t.keys for t in live], style_weights=weights)
        except Cancelled:
            if any(t.open for t in live):
                raise  # the supervisor is gone
            return {}  # every job in it was cancelled and has been reported
        kept = [(task, result) for task, result in zip(live, results, strict=True) if task.open]
        pngs = self.threads.map(
            lambda r: images.encode(r.image, "PNG", compress_level=RESULT_PNG_LEVEL),
            [result for _, result in kept])
        out: dict[str, tuple[bytes, Stats]] = {}
        for (task, result), png in zip(kept, pngs, strict=True):
            stats: Stats = dict(result.stats())
            stats.update(width=result.image.width, height=result.image.height, size=size,
                         batch=len(live))
            out[task.job_id] = (png, stats)
        return out

    def stop_check(self, tasks: list[Task]) -> Callable[[], bool]:
        """Polled before every step: reports jobs cancelled since, and stops the run when
        none of its jobs is wanted any more."""
        def should_stop() -> bool:
            if self._orphaned or os.getppid() != self._parent_pid:
                return True
            for task in tasks:
                if task.open and self.spec.cancel[task.slot] == task.seq:
                    log.info("job %s: cancelled", task.job_id)
                    self.finish(task, JobCancelled(task.job_id))
            return not any(t.open for t in tasks)

        return should_stop

    def style_image(self, data: bytes, key: str | None) -> Image.Image:
        """Decodes a style at the largest side the engine uses, always the same way for the
        same bytes, so that Gram matrices cached by key match a fresh computation."""
        if key is None:
            return images.decode_style(data)
        cache_key = (key, images.MAX_STYLE_SIDE)
        with self._styles_lock:  # jobs of a batch are prepared on several threads
            if cache_key in self._styles:
                self._styles.move_to_end(cache_key)
                return self._styles[cache_key]
        img = images.decode_style(data)
        with self._styles_lock:
            self._styles[cache_key] = img
            while len(self._styles) > 8:
                self._styles.popitem(last=False)
        return img

    def free_memory(self) -> None:
        """Gives the device's cached blocks back after an out-of-memory error."""
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()
