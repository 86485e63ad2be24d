"""Bot and worker processes sharing one PostgreSQL database, for the end-to-end tests of
several machines: starting, freezing and killing them, and reading the jobs as they stand.

Every process is a real `python -m bot.cli` (`run` with `STYLEBOT_WORKERS=0` for a bot,
`worker` for a painter), configured only through its environment, with a data folder of
its own, as on a machine of its own: the jobs and their images travel through the
database alone. Each runs in a session of its own, so that the test can freeze it
(SIGSTOP) and kill it together with its pool's processes; `kill_worker` and `kill_bot`
kill only the process itself, as `kill -9` would.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot_helpers import REPO, settings_values
from emulator import DiscordEmulator, Message
from sqlalchemy import select

from bot.jobs import db
from bot.jobs.db import create_engine_and_sessionmaker
from bot.jobs.records import JobRecord
from bot.settings import Settings

# The line a worker logs once its pool has started (VGG19 loaded), with its runner id.
WORKER_READY = re.compile(r"worker (\S+:\d+:[0-9a-f]+): \d+ worker process")
RESULT_PREFIX = "stylebot-"  # a painting's file name (not a progress preview's)


def settings_env(values: Mapping[str, Any]) -> dict[str, str]:
    """`Settings.from_env` keyword arguments as the environment variables a process reads
    (comma-separated lists, as the settings take them; None: left unset)."""
    env: dict[str, str] = {}
    for name, value in values.items():
        if value is None:
            continue
        alias = Settings.model_fields[name].validation_alias
        variable = alias if isinstance(alias, str) else f"STYLEBOT_{name.upper()}"
        if isinstance(value, tuple | list):
            env[variable] = ",".join(str(v) for v in value)
        elif isinstance(value, bool):
            env[variable] = "on" if value else "off"
        else:
            env[variable] = str(value)
    return env


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


class Fleet:
    """The bots and workers of one test over one database, and the emulated Discord they
    talk to. `worker_values` and `bot_values` are settings every worker and every bot
    gets (as `Settings.from_env` keywords); `start_worker` and `start_bot` add more."""

    def __init__(self, emu: DiscordEmulator, database_url: str, root: Path, *,
                 worker_values: Mapping[str, Any], bot_values: Mapping[str, Any]) -> None:
        self.emu = emu
        self.database_url = database_url
        self.root = root
        self.worker_values = dict(worker_values)
        self.bot_values = dict(bot_values)
        self.workers: dict[str, Process] = {}
        self.runners: dict[str, str] = {}  # worker name -> its runner id, once ready
        self.bots: dict[int, Process] = {}  # the live ones, by shard (0 with a single bot)
        self.started: list[Process] = []  # every process, dead or alive
        self.engine, self.sessionmaker = create_engine_and_sessionmaker(database_url)
        self._started = 0

    # ---- processes -------------------------------------------------------------------
    def _start(self, name: str, args: list[str], values: Mapping[str, Any]) -> Process:
        self._started += 1
        home = self.root / f"{self._started:02d}-{name}"
        home.mkdir(parents=True)
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("STYLEBOT_", "DISCORD_"))}
        env.update(settings_env({"data_dir": home / "data", "database_url": self.database_url,
                                 **values}))
        env["PYTHONPATH"] = str(REPO)
        log = home / "log.txt"
        with log.open("wb") as out:  # the child keeps its own handle
            popen = subprocess.Popen([sys.executable, "-m", "bot.cli", *args], cwd=home,
                                     env=env, stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.started.append(Process(name, popen, log))
        return self.started[-1]

    def start_worker(self, name: str, **values: Any) -> Process:
        """`stylebot worker` (one pool process); `worker_ready` waits for its pool."""
        proc = self._start(name, ["worker", "--grace", "1"], {**self.worker_values, **values})
        self.workers[name] = proc
        return proc

    async def worker_ready(self, name: str, within: float = 180) -> str:
        """Waits until the worker's pool has started; returns its runner id."""
        proc = self.workers[name]

        def ready() -> str | None:
            if not proc.alive():
                raise AssertionError(f"worker {name} exited:\n{proc.log_text()[-3000:]}")
            found = WORKER_READY.search(proc.log_text())
            return found.group(1) if found else None

        self.runners[name] = await until(ready, within, interval=0.2)
        return self.runners[name]

    def worker_of(self, runner: str | None) -> str:
        """The name of the worker with this runner id."""
        return next(name for name, r in self.runners.items() if r == runner)

    async def kill_worker(self, name: str) -> None:
        """SIGKILL to the worker itself (its pool's process notices that it is orphaned),
        then reaped as its parent would on a real machine: a zombie still has its pid, and
        recovery would wait for its lease to run out instead."""
        proc = self.workers[name]
        proc.popen.kill()
        await asyncio.to_thread(proc.popen.wait, 30)

    def freeze(self, names: Iterable[str]) -> None:
        """SIGSTOP to these workers and their pools: they take no job until `thaw`."""
        for name in names:
            os.killpg(self.workers[name].pid, signal.SIGSTOP)

    def thaw(self, names: Iterable[str]) -> None:
        for name in names:
            os.killpg(self.workers[name].pid, signal.SIGCONT)

    def start_bot(self, shard: int = 0, **values: Any) -> Process:
        """`stylebot run` with no workers of its own; `bots_connected` waits for it."""
        values = {**self.bot_values, **values}
        settings = settings_values(self.emu, self.root, **values)
        del settings["data_dir"]  # each process has its own
        proc = self._start(f"bot-shard{shard}", ["run"], settings)
        self.bots[shard] = proc
        return proc

    async def bots_connected(self, within: float = 90) -> None:
        """Waits until every live bot has a gateway connection."""
        def connected() -> bool:
            for proc in self.bots.values():
                if not proc.alive():
                    raise AssertionError(f"{proc.name} exited:\n{proc.log_text()[-3000:]}")
            return self.emu.connections == len(self.bots)
        await self.emu.wait_for(connected, within)

    async def kill_bot(self, shard: int = 0) -> None:
        """SIGKILL: no shutdown, nothing recorded after this instant."""
        proc = self.bots.pop(shard)
        proc.popen.kill()
        await asyncio.to_thread(proc.popen.wait, 30)
        await self.emu.wait_for(lambda: self.emu.connections == len(self.bots), 30)

    def bot_of(self, claimant: str | None) -> int | None:
        """The shard of the live bot with this runner id (which has its pid), if any."""
        return next((shard for shard, proc in self.bots.items()
                     if claimant and f":{proc.pid}:" in claimant), None)

    def logs(self, tail: int = 4000) -> str:
        """Every process's log, the end of each, for a failure's report."""
        return "\n".join(f"==== {p.name} (pid {p.pid}) ====\n{p.log_text()[-tail:]}"
                         for p in self.started)

    def kill_all(self) -> None:
        """SIGKILL to every process still there and its pool, frozen or not (for a test
        that ended any way at all, a timeout included)."""
        for proc in self.started:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # the session: the pool's processes too
        for proc in self.started:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(30)

    async def close(self) -> None:
        """`kill_all`, then forgets the database connections."""
        await asyncio.to_thread(self.kill_all)
        await self.engine.dispose()

    # ---- the database ----------------------------------------------------------------
    async def jobs(self, job_ids: Iterable[str] | None = None) -> dict[str, JobRecord]:
        """These jobs (None: every job) as they stand, by id."""
        async with self.sessionmaker() as session:
            if job_ids is None:
                rows = await db.list_jobs(session, limit=1_000_000)
            else:  # read, not locked: the processes under test write these rows
                rows = list((await session.scalars(
                    select(db.Job).where(db.Job.id.in_(list(job_ids))))).all())
        return {row.id: JobRecord.from_row(row) for row in rows}

    async def claimants(self, job_ids: Iterable[str]) -> dict[str, str | None]:
        """Who claimed each job's delivery last (a bot's runner id, "host:pid:nonce")."""
        async with self.sessionmaker() as session:
            rows = await session.execute(select(db.Job.id, db.Job.delivery_claimed_by)
                                         .where(db.Job.id.in_(list(job_ids))))
            return {row.id: row.delivery_claimed_by for row in rows}

    async def until_jobs(self, job_ids: Iterable[str],
                         predicate: Callable[[JobRecord], bool], within: float = 120
                         ) -> dict[str, JobRecord]:
        """Waits until `predicate` holds for each of these jobs; returns them."""
        ids = list(job_ids)

        async def check() -> dict[str, JobRecord] | None:
            jobs = await self.jobs(ids)
            return jobs if len(jobs) == len(ids) and all(map(predicate, jobs.values())) else None

        try:
            found: dict[str, JobRecord] = await until(check, within, interval=0.1)
        except TimeoutError:
            raise AssertionError(f"jobs still not there after {within} s: "
                                 f"{list((await self.jobs(ids)).values())}") from None
        return found


async def until(check: Callable[[], Any], within: float, *, interval: float = 0.1) -> Any:
    """Calls `check` (a function or a coroutine function) until it returns something
    truthy, and returns that; TimeoutError after `within` seconds."""
    async def loop() -> Any:
        while True:
            value = check()
            if asyncio.iscoroutine(value):
                value = await value
            if value:
                return value
            await asyncio.sleep(interval)
    return await asyncio.wait_for(loop(), within)


# ---- what Discord shows ----------------------------------------------------------------
def carrying(emu: DiscordEmulator, job_id: str) -> list[Message]:
    """The messages (not deleted) that show the job's painting."""
    return [m for m in emu.messages.values()
            if not m.deleted and any(f.filename.startswith(f"{RESULT_PREFIX}{job_id}.")
                                     for f in m.files)]


def uploads(emu: DiscordEmulator, job_id: str) -> int:
    """How many times the bots uploaded the job's painting (each send or edit that
    carried it, whatever became of it)."""
    return sum(f.filename.startswith(f"{RESULT_PREFIX}{job_id}.") for f in emu.files.values())
