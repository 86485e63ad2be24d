"""Helpers shared by the worker pool tests: tiny jobs and an event reader with deadlines."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from stylizer import images
from stylizer.params import StyleParams
from stylizer.pool.messages import JobCancelled, JobFailed, JobRequest, JobSucceeded, PoolEvent
from stylizer.pool.supervisor import WorkerPool

TERMINAL = (JobSucceeded, JobFailed, JobCancelled)
PoolFactory = Callable[..., Awaitable[WorkerPool]]


def tiny_png(arr: np.ndarray) -> bytes:
    return images.encode(Image.fromarray(arr.astype(np.uint8), "RGB"), "PNG")


def tiny_content() -> bytes:
    y, x = np.mgrid[0:48, 0:64]
    return tiny_png(np.stack([x * 4, y * 5, (x + y) * 2], axis=-1))


def tiny_style(seed: int = 7, tint: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> bytes:
    rng = np.random.default_rng(seed)
    return tiny_png(rng.integers(0, 256, (64, 64, 3)) * np.array(tint))


def request(job_id: str, *, content: bytes | None = None, style_seed: int = 7,
            tint: tuple[float, float, float] = (1.0, 1.0, 1.0), **params: Any) -> JobRequest:
    p = StyleParams(**({"size": 32, "steps": 6, "scales": 1} | params))
    return JobRequest(job_id, content if content is not None else tiny_content(),
                      (tiny_style(style_seed, tint),), (f"style-{style_seed}-{tint}",),
                      p.to_dict())


class Events:
    """Reads a pool's event stream, with deadlines."""

    def __init__(self, pool: WorkerPool) -> None:
        self.it: AsyncIterator[PoolEvent] = pool.events()
        self.seen: dict[str, list[PoolEvent]] = {}

    async def next(self, within: float = 60.0) -> PoolEvent:
        event = await asyncio.wait_for(anext(self.it), within)
        self.seen.setdefault(event.job_id, []).append(event)
        return event

    async def until(self, cond: Callable[[PoolEvent], bool], within: float = 60.0) -> PoolEvent:
        """Reads events (of any job) up to the first that meets `cond`."""
        deadline = time.monotonic() + within
        while not cond(event := await self.next(deadline - time.monotonic())):
            pass
        return event

    async def until_end(self, job_id: str, within: float = 60.0) -> list[PoolEvent]:
        out: list[PoolEvent] = []
        deadline = time.monotonic() + within
        while True:
            event = await self.next(deadline - time.monotonic())
            assert event.job_id == job_id, event
            out.append(event)
            if isinstance(event, TERMINAL):
                return out


async def wait_until(cond: Callable[[], bool], within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


def gone(pid: int) -> bool:
    """True once the process has exited *and* been reaped (a zombie still answers)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def spawned_children() -> list[int]:
    """Live worker processes we started: spawned children of ours, or children of our
    forkserver (the server itself, like the resource tracker, lives as long as we do)."""
    me = os.getpid()
    parents: dict[int, int] = {}
    cmdlines: dict[int, bytes] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] == "Z":
            continue  # exited; its parent reaps it
        parents[int(entry.name)] = int(fields[1])
        cmdlines[int(entry.name)] = cmdline
    servers = {pid for pid, ppid in parents.items()
               if ppid == me and b"multiprocessing.forkserver" in cmdlines[pid]}
    return sorted(pid for pid, ppid in parents.items()
                  if (ppid == me and b"spawn_main" in cmdlines[pid]) or ppid in servers)
