"""Worker process targets for the pool tests (spawn imports them by module name).

`troubled_worker` is the real worker, real engine included, except for jobs whose id
says otherwise:
- "hang-...":  the job never ends, and the process ignores SIGTERM;
- "oom-...":   the engine raises torch's out-of-memory error while the size is above 40;
- "tight-...": memory for one picture above 40 px at a time: two together run out;
- "bug-...":   the engine raises an unexpected error;
- "bug-linger-...": as "bug-", then the process stays up to `LINGER_S` after reporting the
  failure, until a job arrives (which it never reads), before it exits to be replaced;
- "bug-stuck-...": as "bug-", then the process never exits by itself.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from PIL import Image

from stylizer.params import StyleParams
from stylizer.pool.messages import JobRequest, JobStarted
from stylizer.pool.spec import Engine, ResultLike, WorkerSpec
from stylizer.pool.worker import Worker

if TYPE_CHECKING:
    from stylizer.engine import RunOptions

OOM_ABOVE = 40
LINGER_S = 2.0


class TroubledEngine:
    def __init__(self, inner: Engine, worker: TroubledWorker) -> None:
        self.inner = inner
        self.worker = worker

    def run_batch(self, contents: Sequence[Image.Image],
                  styles: Sequence[Sequence[Image.Image]], params: StyleParams,
                  options: RunOptions, **kwargs: Any) -> Sequence[ResultLike]:
        job_ids = self.worker.job_ids
        too_big = params.size > OOM_ABOVE and (
            any(j.startswith("oom") for j in job_ids)
            or (any(j.startswith("tight") for j in job_ids) and len(contents) > 1))
        if too_big:
            import torch

            raise torch.OutOfMemoryError(f"CUDA out of memory (simulated at {params.size})")
        if any(j.startswith("bug") for j in job_ids):
            raise RuntimeError("simulated bug")
        return self.inner.run_batch(contents, styles, params, options, **kwargs)


class TroubledWorker(Worker):
    job_ids: tuple[str, ...] = ()

    def make_engine(self) -> Engine:
        return TroubledEngine(super().make_engine(), self)

    def handle(self, batch: Sequence[tuple[int, JobRequest]]) -> bool:
        self.job_ids = tuple(req.job_id for _, req in batch)
        if any(j.startswith("hang") for j in self.job_ids):
            for job_id in self.job_ids:
                self.send(JobStarted(job_id, self.spec.worker_id, self.pid))
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # only SIGKILL will do
            while True:
                time.sleep(1)
        ok = super().handle(batch)
        if not ok and any(j.startswith("bug-linger") for j in self.job_ids):
            # Holds open the moment between the failure's report and the exit, for as long
            # as it takes a supervisor that thinks this process idle to hand it a job.
            self.spec.inbox.poll(LINGER_S)
        if not ok and any(j.startswith("bug-stuck") for j in self.job_ids):
            while True:
                time.sleep(1)
        return ok


def troubled_worker(spec: WorkerSpec) -> None:
    TroubledWorker(spec).serve()


SLOW_START_S = 30.0


def slow_starting_worker(spec: WorkerSpec) -> None:
    """The real worker, after `SLOW_START_S` of loading: a start that is still going on
    when a test closes the pool, however warm the machine."""
    time.sleep(SLOW_START_S)
    Worker(spec).serve()
