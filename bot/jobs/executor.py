"""The executor seam: "something that runs jobs and reports events".

The job service sees workers only through `Executor`, a typing Protocol (PEP 544).
`LocalPoolExecutor` adapts the local supervised pool (`stylizer.pool.WorkerPool`), typed
against it, and mypy checks both the adapter against the pool and every executor against
the Protocol (the assignments under TYPE_CHECKING at the end). A distributed engine can
take the pool's place without the service changing. Requests and events are the pool's
plain dataclasses (`stylizer.pool.messages`), which import neither torch nor the pool.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from stylizer.pool.messages import JobRequest, PoolEvent

if TYPE_CHECKING:
    from bot.settings import Settings
    from stylizer.pool.supervisor import WorkerPool



class ExecutorBusy(RuntimeError):
    """No free worker right now (or the executor is not running); try again later."""


class ExecutorStartError(RuntimeError):
    """The executor could not start; the message is fit for an operator."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Executor(Protocol):
    """Runs jobs somewhere and reports what happens to them as `PoolEvent`s."""

    async def start(self) -> None: ...
    @property
    def capacity(self) -> int: ...
    @property
    def idle(self) -> int: ...
    @property
    def max_batch(self) -> int: ...  # the most jobs one submit_batch takes
    # Jobs one worker paints together (those of one size and parameters as one batch);
    # raises ExecutorBusy.
    async def submit_batch(self, reqs: Sequence[JobRequest]) -> None: ...
    async def cancel(self, job_id: str) -> bool: ...
    def events(self) -> AsyncIterator[PoolEvent]: ...
    async def close(self, grace_s: float = 30.0) -> list[str]: ...


class LocalPoolExecutor:
    """The supervised pool of worker processes on this machine."""

    def __init__(self, pool: WorkerPool) -> None:
        self._pool = pool

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> LocalPoolExecutor:
        """A pool as the settings describe; `overrides` go to `WorkerPool` (tests)."""
        from stylizer.pool.supervisor import WorkerPool

        kwargs: dict[str, Any] = {"engine": settings.engine, "workers": settings.workers,
                                  "job_timeout_s": settings.job_timeout_s,
                                  "max_batch": settings.max_batch}
        kwargs.update(overrides)
        return cls(WorkerPool(**kwargs))

    @property
    def pool(self) -> WorkerPool:
        return self._pool

    async def start(self) -> None:
        from stylizer.pool.supervisor import PoolStartError

        try:
            await self._pool.start()
        except PoolStartError as exc:
            raise ExecutorStartError(exc.code, exc.message) from exc

    @property
    def capacity(self) -> int:
        return self._pool.capacity

    @property
    def idle(self) -> int:
        return self._pool.idle

    @property
    def max_batch(self) -> int:
        return self._pool.max_batch

    async def submit_batch(self, reqs: Sequence[JobRequest]) -> None:
        from stylizer.pool.supervisor import PoolBusy

        try:
            await self._pool.submit_batch(reqs)
        except PoolBusy as exc:
            raise ExecutorBusy(str(exc)) from exc

    async def cancel(self, job_id: str) -> bool:
        return await self._pool.cancel(job_id)

    def events(self) -> AsyncIterator[PoolEvent]:
        return self._pool.events()

    async def close(self, grace_s: float = 30.0) -> list[str]:
        return await self._pool.close(grace_s)


class OfflineExecutor:
    """No workers at all: for tools that read or cancel jobs but never run them."""

    def __init__(self) -> None:
        self._closed = asyncio.Event()

    async def start(self) -> None:
        return None

    @property
    def capacity(self) -> int:
        return 0

    @property
    def idle(self) -> int:
        return 0

    @property
    def max_batch(self) -> int:
        return 1

    async def submit_batch(self, reqs: Sequence[JobRequest]) -> None:
        raise ExecutorBusy("This process does not run jobs.")

    async def cancel(self, job_id: str) -> bool:
        return False

    async def events(self) -> AsyncIterator[PoolEvent]:
        await self._closed.wait()
        return
        yield  # an async generator that ends at close()

    async def close(self, grace_s: float = 30.0) -> list[str]:
        self._closed.set()
        return []


if TYPE_CHECKING:
    # Static checks only: each executor has every member of the seam, with its types.
    _local: type[Executor] = LocalPoolExecutor
    _offline: type[Executor] = OfflineExecutor
