"""Worker process targets for the pool tests (spawn imports them by module name).

`troubled_worker` is the real worker, real engine included, except for jobs whose id
says otherwise:
- "hang-...":  the job never ends, and the process ignores SIGTERM;
- "oom-...":   the engine raises torch's out-of-memory error while the size is above 40;
- "bug-...":   the engine raises an unexpected error.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Sequence
from typing import Any

from PIL import Image

from stylizer.params import StyleParams
from stylizer.pool.messages import JobRequest, JobStarted
from stylizer.pool.worker import Engine, ResultLike, Worker, WorkerSpec

OOM_ABOVE = 40


class TroubledEngine:
    def __init__(self, inner: Engine, worker: TroubledWorker) -> None:
        self.inner = inner
        self.worker = worker

    def run(self, content: Image.Image, styles: Sequence[Image.Image], params: StyleParams,
            **kwargs: Any) -> ResultLike:
        job_id = self.worker.job_id
        if job_id.startswith("oom") and params.size > OOM_ABOVE:
            import torch

            raise torch.OutOfMemoryError(f"CUDA out of memory (simulated at {params.size})")
        if job_id.startswith("bug"):
            raise RuntimeError("simulated bug")
        return self.inner.run(content, styles, params, **kwargs)


class TroubledWorker(Worker):
    job_id = ""

    def make_engine(self) -> Engine:
        return TroubledEngine(super().make_engine(), self)

    def handle(self, seq: int, req: JobRequest) -> bool:
        self.job_id = req.job_id
        if req.job_id.startswith("hang"):
            self.send(JobStarted(req.job_id, self.spec.worker_id, self.pid))
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # only SIGKILL will do
            while True:
                time.sleep(1)
        return super().handle(seq, req)


def troubled_worker(spec: WorkerSpec) -> None:
    TroubledWorker(spec).serve()
