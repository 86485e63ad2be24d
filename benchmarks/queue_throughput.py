"""The job queue on PostgreSQL: claims per second, the wait from enqueue to claim, and jobs
per minute through real `stylebot worker` processes.

    python benchmarks/queue_throughput.py [--url URL] [--depths 100 1000 10000] [--users 20]
        [--claimers 1 2 4 8] [--seconds 10] [--rate 20] [--poll 2]
        [--workers 1 2] [--pin on off] [--worker-jobs 24] [--size 48] [--steps 20]
        [--device cpu] [--worker-env KEY=VALUE ...] [--no-claims] [--no-workers]
        [--quick] [--json PATH]

Everything runs in databases of its own on the server at `--url` (one it may create and
drop databases from), each named with a uuid and dropped at the end.

1. Claims, painting stubbed out. `--depths` queued jobs from `--users` users go in with
   one bulk insert of rows built the way `JobService.submit` builds them (the request
   checked by the service's `Intake`, the same fields, parameters, batch key and turn of
   the fair order, the photo and style stored as blobs); each claimer count gets a fresh
   copy of that database. n claimer processes (separate OS processes: the figure is the
   database's and the claim code's, not one event loop's) start together and do what a
   worker's dispatcher does with a painting that takes no time: claim the next batch with
   `Leases.claim` (what `Dispatcher._claim_batch` calls: `queue.claim_batch`, fair order,
   `FOR UPDATE SKIP LOCKED`), then mark each job succeeded with the fenced
   `Leases.finish`, for `--seconds` or until half the queue is gone. Afterwards every
   claimed job must be `succeeded` exactly once.
2. The wait. Into an empty queue, jobs are submitted through `JobService.submit` (the
   composition `stylebot stylize` uses with STYLEBOT_WORKERS=0) at a steady `--rate` for
   `--seconds`, while n claimer processes run the dispatcher's loop: claim until nothing
   is left, then sleep until a QUEUED notification (the real `notify.Listener`) or the
   poll interval. A job's wait runs from its `created_at` (stamped by `submit` just before
   the insert commits) to the commit of its claim, read on the same clock.
3. Workers. `--workers` real `python -m bot.cli worker` processes (STYLEBOT_WORKERS=1,
   STYLEBOT_MAX_BATCH=1 each) paint `--worker-jobs` jobs, submitted at once through
   `JobService.submit`. Jobs per minute over the whole run (first submit to last
   result), and steady (each worker's own rate after its first job, summed); the mean
   seconds a job spends painting (claim to result) and a worker's idle gap between jobs.
   The pool gives its worker `usable CPUs // STYLEBOT_WORKERS` torch threads, or
   OMP_NUM_THREADS where it is set (`stylizer.pool.supervisor.threads_per_worker`):
   unpinned, every `stylebot worker` on a 2-core machine paints with 2 threads unless
   `--worker-env OMP_NUM_THREADS=1`. `--pin on` starts worker i on CPU i alone
   (sched_setaffinity, inherited by its pool), so its pool counts one CPU and paints
   with one thread.

Prints markdown tables; beside each row, the cores the PostgreSQL server (all its work)
and other processes than the benchmark's kept busy meanwhile (others may be using the
machine) and the 1-minute load average after it. `--json` writes everything.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import math
import multiprocessing as mp
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from PIL import Image
from sqlalchemy import func, insert, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from bot.cli.common import job_service
from bot.jobs import db, notify
from bot.jobs.ids import new_job_id
from bot.jobs.intake import Intake
from bot.jobs.leases import Leases
from bot.jobs.service import JobService
from bot.jobs.states import FINAL, JobStatus
from bot.jobs.storage import open_storage
from bot.settings import Settings
from stylizer.batching import batch_key

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
STYLE = "mosaic"  # procedural: no style pack needed
PHOTO_SIZE = (64, 48)
LEASE_S = 600.0  # nobody's lease runs out during a run
INSERT_CHUNK = 2000
# --quick's defaults: a smoke run of every part in a minute or so.
QUICK = {"depths": [1000], "claimers": [1, 2], "seconds": 3.0, "rate": 10.0,
         "worker_jobs": 4, "size": 32, "steps": 4, "pin": ["on"]}
READY = re.compile(r"worker (\S+:\d+:[0-9a-f]+): \d+ worker process")
# Runs `python -m bot.cli worker` on one CPU: the affinity is set before the program
# starts, so its pool counts one usable CPU.
PIN = "import os, sys; os.sched_setaffinity(0, {int(sys.argv[1])}); os.execv(sys.argv[2], sys.argv[2:])"


def now() -> datetime:
    return datetime.now(UTC)


def load() -> float:
    return os.getloadavg()[0]


class CpuMeter:
    """The CPU the whole machine used over a stretch of time (/proc/stat), in cores, split
    into this benchmark's own processes (itself and every process under it, with the
    children they have reaped), the PostgreSQL server's (all of its work, ours and any
    other user's) and everyone else's. Linux only; zeros elsewhere."""

    def __init__(self) -> None:
        self.start = self._sample()

    @staticmethod
    def _sample() -> tuple[float, float, float, float]:
        tick = os.sysconf("SC_CLK_TCK")
        busy = ours = server = 0.0
        with contextlib.suppress(OSError, ValueError):
            fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:9]]
            user, nice, system, _idle, _iowait, irq, softirq, steal = fields
            busy = (user + nice + system + irq + softirq + steal) / tick
            table = _processes()
            ours = _tree_ticks(table, [os.getpid()]) / tick
            # Its postmasters: a postgres process whose parent is not one.
            roots = [pid for pid, (ppid, name, _) in table.items() if name == "postgres"
                     and table.get(ppid, (0, "", 0))[1] != "postgres"]
            server = _tree_ticks(table, roots) / tick
        return time.monotonic(), busy, ours, server

    def read(self) -> dict[str, float]:
        """Cores busy since the start: all, this benchmark's, PostgreSQL's, the rest's."""
        (t0, busy0, ours0, pg0), (t1, busy1, ours1, pg1) = self.start, self._sample()
        wall = max(t1 - t0, 1e-9)
        busy, ours, server = busy1 - busy0, ours1 - ours0, pg1 - pg0
        return {"busy_cores": busy / wall, "our_cores": ours / wall,
                "postgres_cores": server / wall,
                "others_cores": max(0.0, busy - ours - server) / wall, "load": load()}


def _processes() -> dict[int, tuple[int, str, int]]:
    """Every process: its parent, its name, and its CPU ticks (user + system, its reaped
    children's included)."""
    out: dict[int, tuple[int, str, int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # "pid (name) state ppid ...", utime the 12th field after the name, then
            # stime, cutime, cstime ("/proc/pid/stat", proc(5)).
            text_ = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        name = text_[text_.find("(") + 1:text_.rfind(")")]
        rest = text_[text_.rfind(")") + 1:].split()
        out[int(entry.name)] = (int(rest[1]), name, sum(int(x) for x in rest[11:15]))
    return out


def _tree_ticks(table: dict[int, tuple[int, str, int]], roots: Sequence[int]) -> int:
    """CPU ticks of `roots` and of every live process under them."""
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    total = 0
    todo = list(roots)
    while todo:
        pid = todo.pop()
        if pid in table:
            total += table[pid][2]
            todo += children.get(pid, [])
    return total


def photo_png() -> bytes:
    """A small noisy photo (PNG), at a size that paints in a second."""
    noise = Image.effect_noise(PHOTO_SIZE, 60).convert("RGB")
    buf = io.BytesIO()
    noise.save(buf, "PNG")
    return buf.getvalue()


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); nan for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = min(len(ordered), max(1, math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]


# -------------------------------------------------------------------------- databases

class Databases:
    """Databases this run creates on the server, each named with a uuid; `drop_all` drops
    whatever is left of them."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.names: list[str] = []  # not dropped yet
        self.created: list[str] = []

    def _admin(self) -> AsyncEngine:
        # CREATE and DROP DATABASE cannot run inside a transaction block.
        return create_async_engine(self.url, isolation_level="AUTOCOMMIT", poolclass=NullPool)

    async def create(self, *, template: str | None = None) -> str:
        """A new database, empty or a copy of `template` (a URL nothing is connected to);
        returns its URL."""
        name = f"stylebot_bench_{uuid.uuid4().hex}"
        copy = f' TEMPLATE "{make_url(template).database}"' if template else ""
        engine = self._admin()
        try:
            async with engine.connect() as conn:
                await conn.execute(text(f'CREATE DATABASE "{name}"{copy}'))
        finally:
            await engine.dispose()
        self.names.append(name)
        self.created.append(name)
        return make_url(self.url).set(database=name).render_as_string(hide_password=False)

    async def drop(self, url: str) -> None:
        name = make_url(url).database
        engine = self._admin()
        try:
            async with engine.connect() as conn:
                await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        finally:
            await engine.dispose()
        if name in self.names:
            self.names.remove(name)

    async def drop_all(self) -> None:
        for name in list(self.names):
            await self.drop(make_url(self.url).set(database=name).render_as_string(
                hide_password=False))

    async def server_version(self) -> str:
        engine = self._admin()
        try:
            async with engine.connect() as conn:
                return str((await conn.execute(text("SHOW server_version"))).scalar_one())
        finally:
            await engine.dispose()


def bench_settings(url: str, data_dir: Path, **params: Any) -> Settings:
    """The settings of the process that submits: no per-user or queue limit in the way,
    no style pack (the style is a procedural one)."""
    return Settings.from_env({}, database_url=url, data_dir=data_dir, styles_dir=None,
                             max_jobs_per_user=10**9, max_queue=10**9,
                             requests_per_minute=0, **params)


def style_params(size: int, steps: int) -> dict[str, Any]:
    return {"size": size, "steps": steps, "scales": 1, "optimizer": "adam"}


async def fill(url: str, *, jobs: int, users: int, params: dict[str, Any], data_dir: Path
               ) -> None:
    """`jobs` queued rows, user i % `users`, one a millisecond up to now, each as
    `JobService.submit` would have written it, in one bulk insert."""
    settings = bench_settings(url, data_dir)
    request = await Intake(settings, None).check(content=photo_png(), style=STYLE,
                                                 style_image=None, params=params)
    engine, sm = db.create_engine_and_sessionmaker(url)
    try:
        storage = open_storage(url, settings.blobs_dir, sm)
        input_hash = await storage.put_async(photo_png())
        style_hash = await storage.put_async(request.style_bytes)
        job_params = request.params.to_dict()
        key = batch_key(request.photo.upright_size, job_params)
        ids: set[str] = set()
        while len(ids) < jobs:
            ids.add(new_job_id())
        start = now() - timedelta(milliseconds=jobs)
        rows = [{"id": job_id, "user_id": f"bench-{i % users}", "user_name": f"bench {i % users}",
                 "guild_id": None, "channel_id": None, "source": "bench",
                 "style": request.style_name, "style_hash": style_hash,
                 "input_hash": input_hash, "params": job_params,
                 "status": JobStatus.queued.value, "attempts": 0, "step": 0,
                 "total_steps": request.params.steps,
                 "created_at": start + timedelta(milliseconds=i), "private": False,
                 "parent_id": None, "cancel_requested": False, "delivered": False,
                 # Its round of the fair order: on a queue where nothing has started yet,
                 # a user's k-th job is in round k (`db.next_turn`; checked below).
                 "turn": i // users, "batch_key": key, "version": 0}
                for i, job_id in enumerate(sorted(ids))]
        async with sm.begin() as session:
            for i in range(0, len(rows), INSERT_CHUNK):
                await session.execute(insert(db.Job), rows[i:i + INSERT_CHUNK])
            following = await db.next_turn(session, user_id="bench-0")
            if following != (jobs + users - 1) // users:
                raise RuntimeError(f"the rows' turns are not submit's: user bench-0's next "
                                   f"job would be in round {following}")
        async with engine.connect() as conn:
            # Statistics for the planner, as autovacuum would gather them soon enough.
            auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await auto.execute(text("VACUUM ANALYZE jobs"))
    finally:
        await engine.dispose()


async def status_counts(url: str) -> dict[str, int]:
    engine, sm = db.create_engine_and_sessionmaker(url)
    try:
        async with sm() as session:
            rows = await session.execute(select(db.Job.status, func.count())
                                         .group_by(db.Job.status))
            return {status: int(n) for status, n in rows}
    finally:
        await engine.dispose()


# ----------------------------------------------------------------- claimer processes

def claimer_process(mode: str, url: str, options: dict[str, Any], barrier: Any, stop: Any,
                    results: Any) -> None:
    """One claimer, in a process of its own: `mode` "drain" (as fast as it can, for
    `seconds` or `cap` claims) or "woken" (the dispatcher's loop, until `stop`)."""
    run = drain if mode == "drain" else woken
    try:
        results.put(asyncio.run(run(url, barrier=barrier, stop=stop, **options)))
    except BaseException as exc:
        barrier.abort()
        results.put({"error": f"{type(exc).__name__}: {exc}"})
        raise


async def drain(url: str, *, seconds: float, cap: int, max_batch: int, barrier: Any,
                stop: Any) -> dict[str, Any]:
    """Claims and finishes batches back to back, as a dispatcher whose painting takes no
    time; returns its counts and where its time went."""
    engine, sm = db.create_engine_and_sessionmaker(url)
    leases = Leases(sessionmaker=sm, clock=now, lease_s=LEASE_S, max_attempts=3)
    held: set[str] = set()
    claims = jobs = 0
    claim_s = finish_s = 0.0
    try:
        async with engine.connect() as conn:  # connected before the clock starts
            await conn.execute(text("SELECT 1"))
        barrier.wait(60)
        start = time.perf_counter()
        while claims < cap and (t0 := time.perf_counter()) < start + seconds:
            records = await leases.claim(max_batch=max_batch, only_ids=None, held=held)
            t1 = time.perf_counter()
            claim_s += t1 - t0
            if not records:
                break
            for record in records:
                await leases.finish(record.id, JobStatus.succeeded,
                                    output_hash=record.input_hash)
                held.discard(record.id)
            finish_s += time.perf_counter() - t1
            claims += 1
            jobs += len(records)
        elapsed = time.perf_counter() - start
    finally:
        await leases.close()
        await engine.dispose()
    return {"claims": claims, "jobs": jobs, "elapsed_s": elapsed, "claim_s": claim_s,
            "finish_s": finish_s}


async def woken(url: str, *, poll_s: float, max_batch: int, barrier: Any, stop: Any
                ) -> dict[str, Any]:
    """The dispatcher's scheduling loop with a painting that takes no time: claims until
    nothing is left, then waits for a QUEUED notification or the poll interval. Returns
    each claimed job's wait (its claim's commit minus its `created_at`)."""
    engine, sm = db.create_engine_and_sessionmaker(url)
    leases = Leases(sessionmaker=sm, clock=now, lease_s=LEASE_S, max_attempts=3)
    listener = notify.Listener(engine)
    wake = asyncio.Event()
    listener.subscribe(notify.QUEUED, lambda job_id, version: wake.set())
    held: set[str] = set()
    waits: list[float] = []
    claims = empty = 0
    try:
        await listener.start()
        barrier.wait(60)
        while not stop.is_set():
            wake.clear()
            while True:
                records = await leases.claim(max_batch=max_batch, only_ids=None, held=held)
                claimed = time.time()
                if not records:
                    empty += 1
                    break
                claims += 1
                for record in records:
                    waits.append(claimed - record.created_at.timestamp())
                    await leases.finish(record.id, JobStatus.succeeded,
                                        output_hash=record.input_hash)
                    held.discard(record.id)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), poll_s)
    finally:
        await listener.stop()
        await leases.close()
        await engine.dispose()
    return {"claims": claims, "empty_claims": empty, "waits": waits}


class Claimers:
    """n claimer processes started together (spawned: each a fresh interpreter)."""

    def __init__(self, n: int, mode: str, url: str, options: dict[str, Any]) -> None:
        ctx = mp.get_context("spawn")
        self.barrier = ctx.Barrier(n + 1)
        self.stop = ctx.Event()
        self.results = ctx.SimpleQueue()
        self.procs = [ctx.Process(target=claimer_process, daemon=True,
                                  args=(mode, url, options, self.barrier, self.stop,
                                        self.results)) for _ in range(n)]

    async def start(self) -> None:
        """Returns when every claimer is connected and has started."""
        for proc in self.procs:
            proc.start()
        try:
            await asyncio.to_thread(self.barrier.wait, 120)
        except threading.BrokenBarrierError:
            for proc in self.procs:
                proc.kill()
            errors = []
            while not self.results.empty():
                errors.append(self.results.get().get("error"))
            raise RuntimeError(f"a claimer could not start: {errors or 'see above'}") from None

    async def finish(self, timeout_s: float = 120) -> list[dict[str, Any]]:
        """Stops them (woken claimers) and returns what each reported."""
        self.stop.set()
        out = [await asyncio.to_thread(self.results.get) for _ in self.procs]
        for proc in self.procs:
            await asyncio.to_thread(proc.join, timeout_s)
            if proc.is_alive():
                proc.kill()
        errors = [r["error"] for r in out if "error" in r]
        if errors:
            raise RuntimeError(f"a claimer failed: {errors[0]}")
        return out


# ------------------------------------------------------------------------- the parts

async def claims_part(dbs: Databases, args: argparse.Namespace, data_dir: Path
                      ) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    params = style_params(args.size, args.steps)
    for depth in args.depths:
        template = await dbs.create()
        await db.upgrade_database(template)
        t0 = time.perf_counter()
        await fill(template, jobs=depth, users=args.users, params=params, data_dir=data_dir)
        fill_s = time.perf_counter() - t0
        for n in args.claimers:
            url = await dbs.create(template=template)
            try:
                cap = max(1, depth // 2 // n)  # the queue stays between depth and depth/2
                claimers = Claimers(n, "drain", url, {"seconds": args.seconds, "cap": cap,
                                                      "max_batch": args.max_batch})
                meter = CpuMeter()
                await claimers.start()
                results = await claimers.finish()
                cpu = meter.read()
                counts = await status_counts(url)
            finally:
                await dbs.drop(url)
            claims = sum(r["claims"] for r in results)
            jobs = sum(r["jobs"] for r in results)
            wall = max(r["elapsed_s"] for r in results)
            if counts.get(JobStatus.succeeded.value, 0) != jobs or counts.get(
                    JobStatus.running.value, 0):
                raise RuntimeError(f"claims and rows disagree: {jobs} jobs claimed and "
                                   f"finished, rows {counts}")
            row = {"queued": depth, "claimers": n, "claims": claims, "jobs": jobs,
                   "wall_s": wall, "claims_per_s": claims / wall, "jobs_per_s": jobs / wall,
                   "claim_ms": 1000 * sum(r["claim_s"] for r in results) / max(1, claims),
                   "finish_ms": 1000 * sum(r["finish_s"] for r in results) / max(1, jobs),
                   "fill_s": fill_s, **cpu}
            rows.append(row)
            print(f"  {depth} queued, {n} claimer(s): {row['claims_per_s']:.1f} claims/s "
                  f"(load {row['load']:.2f})", file=sys.stderr)
        await dbs.drop(template)
    return rows


@contextlib.asynccontextmanager
async def submitter(url: str, data_dir: Path, params: dict[str, Any]
                    ) -> AsyncIterator[JobService]:
    """The job service a process without workers submits through (`stylebot stylize`
    with STYLEBOT_WORKERS=0): not started, so it paints and watches nothing."""
    settings = bench_settings(url, data_dir, workers=0)
    async with job_service(settings) as service:
        yield service


async def submit(service: JobService, i: int, users: int, params: dict[str, Any],
                 photo: bytes) -> str:
    record = await service.submit(user_id=f"bench-{i % users}", user_name=f"bench {i % users}",
                                  content=photo, style=STYLE, params=params, source="bench")
    return record.id


async def wait_part(dbs: Databases, args: argparse.Namespace, data_dir: Path
                    ) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    params = style_params(args.size, args.steps)
    photo = photo_png()
    template = await dbs.create()
    await db.upgrade_database(template)
    for n in args.claimers:
        url = await dbs.create(template=template)
        try:
            claimers = Claimers(n, "woken", url, {"poll_s": args.poll,
                                                  "max_batch": args.max_batch})
            meter = CpuMeter()
            await claimers.start()
            async with submitter(url, data_dir, params) as service:
                loop = asyncio.get_running_loop()
                start = loop.time()
                sent = 0
                while (due := start + sent / args.rate) < start + args.seconds:
                    await asyncio.sleep(max(0.0, due - loop.time()))
                    await submit(service, sent, args.users, params, photo)
                    sent += 1
                took = loop.time() - start
            deadline = loop.time() + 60
            while loop.time() < deadline:  # until the claimers have taken everything
                counts = await status_counts(url)
                if counts.get(JobStatus.succeeded.value, 0) >= sent:
                    break
                await asyncio.sleep(0.2)
            results = await claimers.finish()
            cpu = meter.read()
        finally:
            await dbs.drop(url)
        waits = [w for r in results for w in r["waits"]]
        if len(waits) != sent:
            raise RuntimeError(f"{sent} jobs submitted, {len(waits)} claimed")
        row = {"claimers": n, "jobs": sent, "rate": sent / max(took, args.seconds),
               "wait_p50_ms": 1000 * percentile(waits, 50),
               "wait_p95_ms": 1000 * percentile(waits, 95),
               "wait_max_ms": 1000 * max(waits),
               "empty_claims": sum(r["empty_claims"] for r in results), **cpu}
        rows.append(row)
        print(f"  wait with {n} claimer(s): p50 {row['wait_p50_ms']:.0f} ms "
              f"(load {row['load']:.2f})", file=sys.stderr)
    await dbs.drop(template)
    return rows


def start_worker(i: int, url: str, args: argparse.Namespace, work_dir: Path, pin: bool
                 ) -> tuple[subprocess.Popen[bytes], Path]:
    """`python -m bot.cli worker` with one worker process, on CPU i alone with `pin`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STYLEBOT_")}
    env.update(STYLEBOT_DATA_DIR=str(work_dir / f"w{i}"), STYLEBOT_DATABASE_URL=url,
               STYLEBOT_DEVICE=args.device, STYLEBOT_WORKERS="1", STYLEBOT_MAX_BATCH="1",
               STYLEBOT_POLL_INTERVAL=str(args.poll), STYLEBOT_LOG_LEVEL="INFO")
    env.update(dict(kv.split("=", 1) for kv in args.worker_env))
    cmd = [sys.executable, "-m", "bot.cli", "worker", "--grace", "1"]
    if pin:
        cpus = sorted(os.sched_getaffinity(0))
        cmd = [sys.executable, "-c", PIN, str(cpus[i % len(cpus)]), *cmd]
    log_path = work_dir / f"w{i}.log"
    with open(log_path, "wb") as out:  # the child keeps its own handle
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    return proc, log_path


async def stop_workers(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            await asyncio.to_thread(proc.wait, 30)
        except subprocess.TimeoutExpired:
            proc.kill()
            await asyncio.to_thread(proc.wait, 10)


async def workers_run(dbs: Databases, template: str, args: argparse.Namespace, n: int,
                      pin: bool, work_dir: Path) -> dict[str, Any]:
    """n `stylebot worker`s paint `--worker-jobs` jobs queued at once."""
    params = style_params(args.size, args.steps)
    photo = photo_png()
    url = await dbs.create(template=template)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        logs = []
        for i in range(n):
            proc, log_path = start_worker(i, url, args, work_dir, pin)
            procs.append(proc)
            logs.append(log_path)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 300
        while not all(READY.search(p.read_text(errors="replace")) for p in logs):
            dead = [p for proc, p in zip(procs, logs, strict=True) if proc.poll() is not None]
            if dead or loop.time() > deadline:
                tail = (dead or logs)[0].read_text(errors="replace")[-2000:]
                raise RuntimeError(f"a worker did not start:\n{tail}")
            await asyncio.sleep(0.25)
        meter = CpuMeter()  # from the first submit to the last result
        async with submitter(url, work_dir / "submitter", params) as service:
            ids = [await submit(service, i, args.users, params, photo)
                   for i in range(args.worker_jobs)]
        final = [s.value for s in FINAL]
        engine, sm = db.create_engine_and_sessionmaker(url)
        try:
            deadline = loop.time() + 120 + 60 * args.worker_jobs
            # A count twice a second: the painting has the CPUs, and the figures come from
            # the rows' own timestamps, not from when this notices.
            ended = select(func.count()).where(db.Job.id.in_(ids), db.Job.status.in_(final))
            while True:
                async with sm() as session:
                    if await session.scalar(ended) == len(ids):
                        cpu = meter.read()
                        break
                if loop.time() > deadline:
                    raise RuntimeError("the workers did not finish in time")
                await asyncio.sleep(0.5)
            async with sm() as session:
                rows = list((await session.scalars(
                    select(db.Job).where(db.Job.id.in_(ids)))).all())
        finally:
            await engine.dispose()
    finally:
        await stop_workers(procs)
        await dbs.drop(url)
    return workers_row(rows, n, pin, args.worker_env) | cpu


def workers_row(rows: list[db.Job], n: int, pin: bool, worker_env: Sequence[str] = ()
                ) -> dict[str, Any]:
    failed = [r for r in rows if r.status != JobStatus.succeeded.value]
    if failed:
        raise RuntimeError(f"{len(failed)} job(s) did not succeed: {failed[0].error_message}")
    first = min(r.created_at for r in rows)
    last = max(r.finished_at or first for r in rows)
    by_runner: dict[str, list[db.Job]] = {}
    for r in sorted(rows, key=lambda r: r.started_at or first):
        by_runner.setdefault(r.runner or "", []).append(r)
    paint = [((r.finished_at or first) - (r.started_at or first)).total_seconds() for r in rows]
    gaps: list[float] = []
    steady_per_s = 0.0
    for jobs in by_runner.values():
        ends = [(j.finished_at or first) for j in jobs]
        gaps += [((b.started_at or first) - a).total_seconds()
                 for a, b in zip(ends, jobs[1:], strict=False)]
        if len(jobs) > 1:
            steady_per_s += (len(jobs) - 1) / (ends[-1] - ends[0]).total_seconds()
    wall = (last - first).total_seconds()
    given = dict(kv.split("=", 1) for kv in worker_env).get("OMP_NUM_THREADS", "")
    cpus = 1 if pin else len(os.sched_getaffinity(0))
    threads = int(given) if given.isdigit() and int(given) > 0 else cpus
    return {"workers": n, "pinned": pin, "torch_threads_each": max(1, threads),
            "jobs": len(rows), "wall_s": wall, "jobs_per_min": 60 * len(rows) / wall,
            "steady_jobs_per_min": 60 * steady_per_s,
            "jobs_per_worker": sorted(len(j) for j in by_runner.values()),
            "paint_s": sum(paint) / len(paint),
            "gap_s": sum(gaps) / len(gaps) if gaps else float("nan")}


async def workers_part(dbs: Databases, args: argparse.Namespace, data_dir: Path
                       ) -> list[dict[str, Any]]:
    template = await dbs.create()
    await db.upgrade_database(template)
    rows = []
    try:
        for pin in (p == "on" for p in args.pin):
            base: dict[str, Any] | None = None
            for n in args.workers:
                with tempfile.TemporaryDirectory(prefix="stylebot-bench-") as tmp:
                    row = await workers_run(dbs, template, args, n, pin, Path(tmp))
                if base is None:
                    base = row
                row["speedup"] = row["jobs_per_min"] / base["jobs_per_min"]
                row["steady_speedup"] = (row["steady_jobs_per_min"] / base["steady_jobs_per_min"]
                                         if base["steady_jobs_per_min"] else float("nan"))
                row["speedup_over"] = base["workers"]
                rows.append(row)
                print(f"  {n} worker(s), {'pinned' if pin else 'unpinned'}: "
                      f"{row['steady_jobs_per_min']:.1f} jobs/min steady "
                      f"(load {row['load']:.2f})", file=sys.stderr)
    finally:
        await dbs.drop(template)
    return rows


# ---------------------------------------------------------------------------- output

def cpu_cell(r: dict[str, Any]) -> str:
    return f"{r['postgres_cores']:.2f} / {r['others_cores']:.2f} / {r['load']:.1f}"


def tables(res: dict[str, Any]) -> str:
    m = res["machine"]
    out = [f"{m['cpus']} CPUs ({m['cpu']}), PostgreSQL {m['postgresql']}, load average "
           f"(1, 5, 15 min) at the start {m['load_start']}, at the end {m['load_end']}. "
           "Beside each row, cores kept busy meanwhile by the PostgreSQL server (all its "
           "work) and by other processes than this benchmark's and the server's, and the "
           "1-minute load average after it.",
           ""]
    if res.get("claims"):
        out += ["Claims, painting stubbed out (claim + fenced finish per job, "
                f"max batch {res['args']['max_batch']}, {res['args']['users']} users):", "",
                "| queued | claimers | claims/s | jobs/s | ms per claim | ms per finish "
                "| PostgreSQL / others / load |", "|---|---|---|---|---|---|---|"]
        out += [f"| {r['queued']} | {r['claimers']} | {r['claims_per_s']:.1f} | "
                f"{r['jobs_per_s']:.1f} | {r['claim_ms']:.1f} | {r['finish_ms']:.1f} | "
                f"{cpu_cell(r)} |" for r in res["claims"]]
        out.append("")
    if res.get("wait"):
        out += [f"Enqueue to claim, jobs submitted at {res['args']['rate']:g}/s through "
                f"the service, claimers woken by NOTIFY (poll {res['args']['poll']:g} s):", "",
                "| claimers | jobs | rate | wait p50 | wait p95 | wait max | PostgreSQL / others / load |",
                "|---|---|---|---|---|---|---|"]
        out += [f"| {r['claimers']} | {r['jobs']} | {r['rate']:.1f}/s | "
                f"{r['wait_p50_ms']:.0f} ms | {r['wait_p95_ms']:.0f} ms | "
                f"{r['wait_max_ms']:.0f} ms | {cpu_cell(r)} |" for r in res["wait"]]
        out.append("")
    if res.get("workers"):
        a = res["args"]
        out += [f"`stylebot worker` processes (STYLEBOT_WORKERS=1 each) on {a['device']}, "
                f"{a['worker_jobs']} jobs of {a['size']} px, {a['steps']} Adam steps:", "",
                "| workers | torch threads each | jobs/min (whole run) | jobs/min (steady) "
                "| speed-up (steady) | s per job, claim to result | gap between jobs "
                "| PostgreSQL / others / load |", "|---|---|---|---|---|---|---|---|"]
        for r in res["workers"]:
            threads = f"{r['torch_threads_each']} ({'pinned' if r['pinned'] else 'unpinned'})"
            out.append(f"| {r['workers']} | {threads} | {r['jobs_per_min']:.1f} | "
                       f"{r['steady_jobs_per_min']:.1f} | {r['speedup']:.2f}× "
                       f"({r['steady_speedup']:.2f}×) | {r['paint_s']:.2f} | "
                       f"{r['gap_s']:.2f} s | {cpu_cell(r)} |")
        out.append("")
    return "\n".join(out)


def machine() -> dict[str, Any]:
    cpu = platform.processor() or "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"cpus": len(os.sched_getaffinity(0)), "cpu": cpu,
            "load_start": " ".join(f"{x:.2f}" for x in os.getloadavg())}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    dbs = Databases(args.url)
    res: dict[str, Any] = {"args": {k: v for k, v in vars(args).items() if k != "json"},
                           "machine": machine()}
    res["machine"]["postgresql"] = await dbs.server_version()
    try:
        with tempfile.TemporaryDirectory(prefix="stylebot-bench-") as tmp:
            if args.claims:
                print("claims…", file=sys.stderr)
                res["claims"] = await claims_part(dbs, args, Path(tmp))
                print("waits…", file=sys.stderr)
                res["wait"] = await wait_part(dbs, args, Path(tmp))
            if args.paint:
                print("workers…", file=sys.stderr)
                res["workers"] = await workers_part(dbs, args, Path(tmp))
    finally:
        await dbs.drop_all()
        res["databases"] = dbs.created
    res["machine"]["load_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    ap.add_argument("--url", default=DEFAULT_URL,
                    help="a database on the server from which this may create and drop "
                         f"databases (default {DEFAULT_URL})")
    ap.add_argument("--depths", type=int, nargs="+", default=[100, 1000, 10000],
                    help="jobs queued at the start of the claims runs")
    ap.add_argument("--users", type=int, default=20,
                    help="users the queued jobs come from (the fair order's turns)")
    ap.add_argument("--claimers", type=int, nargs="+", default=[1, 2, 4, 8],
                    help="claimer processes, one run for each count")
    ap.add_argument("--seconds", type=float, default=10.0,
                    help="seconds each claims run lasts at most, and of submits per wait run")
    ap.add_argument("--rate", type=float, default=20.0, help="jobs submitted per second "
                    "while measuring the wait")
    ap.add_argument("--poll", type=float, default=2.0,
                    help="STYLEBOT_POLL_INTERVAL of claimers and workers (default 2)")
    ap.add_argument("--max-batch", type=int, default=1,
                    help="the claimers' batch limit (1: a CPU worker; 16 a GPU's)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2],
                    help="real `stylebot worker` processes, one run for each count")
    ap.add_argument("--pin", nargs="+", choices=("on", "off"), default=["off", "on"],
                    help="off: the workers share every CPU; on: worker i runs on CPU i "
                         "alone; give both for both runs")
    ap.add_argument("--worker-jobs", type=int, default=24,
                    help="jobs the workers paint in each run")
    ap.add_argument("--size", type=int, default=48, help="the workers' paintings' size (px)")
    ap.add_argument("--steps", type=int, default=20, help="the workers' paintings' steps")
    ap.add_argument("--device", default="cpu", help="the workers' STYLEBOT_DEVICE")
    ap.add_argument("--worker-env", nargs="*", default=[], metavar="KEY=VALUE",
                    help="more environment for the workers (e.g. OMP_NUM_THREADS=1)")
    ap.add_argument("--no-claims", dest="claims", action="store_false",
                    help="skip the claims and wait parts")
    ap.add_argument("--no-workers", dest="paint", action="store_false",
                    help="skip the part with real workers")
    ap.add_argument("--quick", action="store_true",
                    help="a smoke run: 1000 queued, 1 and 2 claimers, 3 s, 4 tiny jobs, "
                         "pinned workers only")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if args.quick:  # smaller defaults; what the command line gives still wins
        ap.set_defaults(**QUICK)
        args = ap.parse_args()
    res = asyncio.run(run(args))
    print(tables(res))
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
