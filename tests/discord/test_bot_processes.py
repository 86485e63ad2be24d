"""Several machines, end to end: bot processes (one per shard) and `stylebot worker`s
sharing one PostgreSQL database, with the emulated Discord, on the CPU (tiny pictures,
few steps).

Two workers (two runner identities, as two machines) paint; the bots (`stylebot run`
with no workers of their own, shard i of BOTS each) take the requests of their shard's
servers, insert the jobs, learn of progress and results from the database, and deliver
each result exactly once. One test, in phases, because every worker loads VGG19 and
every phase needs the whole fleet:

1. forty jobs from three users, on both shards, all succeed, each delivered once by the
   bot of its server's shard;
2. a bot killed with SIGKILL while its jobs wait: the workers paint them, and the bot,
   restarted, delivers each once;
3. the worker painting a job is killed: the other one paints it (a second run), and it
   is delivered once;
4. `/cancel` stops a job running on a worker;
5. a worker killed while it holds a batch: the other one paints every job of it.

Each phase checks both sides: the rows (status, runs, runner, delivered, and which bot
claimed the delivery) and what Discord shows (exactly one message carries each painting,
uploaded once). Jobs are made long (phases 3 to 5) by restarting the bot of phase 2
with more default steps; the workers are held (SIGSTOP) where a phase needs jobs to wait
in the queue, as a busy fleet would make them, without the wait.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Coroutine, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest
import pytest_asyncio
from bot_helpers import (
    PRESET,
    ephemeral_text,
    job_id_of,
    make_settings,
    photo_png,
    progress_message,
    settle,
)
from emulator import DiscordEmulator, Guild, Interaction, Upload, User
from process_helpers import Fleet, Process, carrying, until, uploads

from bot.app import push_commands
from bot.jobs.records import JobRecord
from bot.jobs.states import JobStatus

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow,
              pytest.mark.postgresql, pytest.mark.timeout(480)]

log = logging.getLogger(__name__)

# Bot processes, each running shard i of BOTS (1: a single bot, not sharded).
BOTS = 2
FAST_STEPS = 4     # at 32 px a job is mostly its fixed costs (about a second here)
LONG_STEPS = 50    # seconds at 32-64 px, over 30 s at 256 px: time to kill or cancel
SETTLE_S = 180.0
CANCEL_WITHIN_S = 15.0
WORKER_VALUES: dict[str, Any] = {
    "device": "cpu", "workers": 1, "max_batch": 4, "job_timeout_s": 120,
    # Short leases and polls: a dead worker's jobs come back within seconds.
    "lease_s": 5.0, "poll_interval_s": 0.25, "log_level": "INFO"}
BOT_VALUES: dict[str, Any] = {
    "workers": 0, "default_size": 32, "default_steps": FAST_STEPS, "max_size": 256,
    "max_jobs_per_user": 20, "max_queue": 100, "requests_per_minute": 0,
    "poll_interval_s": 0.25,
    # A bot's lease is how long another shard's result waits for its own bot before a
    # bot of another shard sends it: long enough for phase 2's restart to come first.
    "lease_s": 60.0}

Member = tuple[User, Guild]
T = TypeVar("T")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def emu() -> AsyncIterator[DiscordEmulator]:
    emulator = DiscordEmulator(shard_count=BOTS)
    await emulator.start()
    yield emulator
    await emulator.close()


@pytest.fixture
def fleet(emu: DiscordEmulator, postgres_url: str, tmp_path: Path) -> Iterator[Fleet]:
    fleet = Fleet(emu, postgres_url, tmp_path, worker_values=WORKER_VALUES,
                  bot_values=BOT_VALUES)
    yield fleet
    fleet.kill_all()  # the test closes it; this is for a test stopped by its timeout


@pytest_asyncio.fixture(loop_scope="module", scope="module", autouse=True)
async def commands(emu: DiscordEmulator, tmp_path_factory: pytest.TempPathFactory) -> None:
    await push_commands(make_settings(emu, tmp_path_factory.mktemp("sync")))


def shard_values(shard: int) -> dict[str, Any]:
    """The settings that make a bot process run shard `shard` of BOTS, and only that."""
    return {} if BOTS == 1 else {"shard_count": BOTS, "shard_ids": (shard,)}


def photo(seed: int) -> Upload:
    # Every photo the same size: with the same settings, their jobs can share a batch.
    return Upload(f"photo{seed}.png", photo_png(64, 48, seed=seed))


async def stylize(emu: DiscordEmulator, member: Member, seed: int, **options: Any
                  ) -> Interaction:
    user, guild = member
    return await emu.slash("stylize", user, guild=guild, image=photo(seed), style=PRESET,
                           **options)


async def accepted(emu: DiscordEmulator, ixs: Sequence[Interaction]) -> list[str]:
    """The ids of the jobs these requests made, once each has its progress message."""
    return [job_id_of(await progress_message(emu, ix)) for ix in ixs]


def delivered_once(emu: DiscordEmulator, job: JobRecord) -> None:
    """The job is delivered, in the database and in Discord: one message carries its
    painting (its progress message, edited), uploaded once."""
    shown = carrying(emu, job.id)
    assert job.delivered, job
    assert [m.id for m in shown] == [int(job.result_message_id or 0)], (job, shown)
    assert shown[0].id == int(job.progress_message_id or 0)
    assert uploads(emu, job.id) == 1, job


async def delivered_by_their_shards(fleet: Fleet, jobs: Sequence[JobRecord]) -> None:
    """Each job's delivery was claimed by the bot that runs its server's shard."""
    claimants = await fleet.claimants(j.id for j in jobs)
    for job in jobs:
        guild = fleet.emu.guilds[int(job.guild_id or 0)]
        assert fleet.bot_of(claimants[job.id]) == fleet.emu.shard_of(guild), (
            job.id, claimants[job.id])


async def timed(phase: Coroutine[Any, Any, T]) -> T:
    """Runs a phase of the test and logs how long it took."""
    started = time.monotonic()
    try:
        return await phase
    finally:
        log.info("%s: %.1f s", getattr(phase, "__qualname__", phase),
                 time.monotonic() - started)


async def test_bots_and_workers_on_several_machines_share_one_database(
        emu: DiscordEmulator, fleet: Fleet) -> None:
    carol = emu.add_user("carol")  # before the bots connect: they see her join
    users = [emu.alice, emu.bob, carol]
    # A server on each shard (emu.guild is on shard 0); everyone is in each.
    guilds = [emu.guild, *(emu.add_guild(f"Shard {shard}'s guild", shard=shard, members=users)
                           for shard in range(1, BOTS))]
    # Three users: two on the first shard's server, one on the last one's.
    members: list[Member] = [(emu.alice, guilds[0]), (emu.bob, guilds[0]),
                             (carol, guilds[-1])]
    try:
        await timed(start(fleet))
        one_run = await timed(forty_jobs(fleet, members))
        # The last shard's bot is killed and comes back making long jobs, which the last
        # three phases ask it for.
        shard = BOTS - 1
        here = [(user, guilds[shard]) for user in users]
        await timed(bot_killed_while_its_jobs_wait(fleet, here, shard))
        await timed(worker_killed_mid_job(fleet, here[0], one_run))
        await timed(cancelled_on_a_worker(fleet, here[1]))
        await timed(worker_killed_holding_a_batch(fleet, here, one_run))

        jobs = await fleet.jobs()
        assert len(jobs) == 40 + 3 + 1 + 1 + 3
        assert sorted(j.status for j in jobs.values()) == sorted(
            [JobStatus.succeeded] * 47 + [JobStatus.cancelled])
        for job in jobs.values():
            if job.status is JobStatus.succeeded:
                delivered_once(emu, job)
    except BaseException:
        log.error("the processes' logs:\n%s", fleet.logs())
        raise
    finally:
        await fleet.close()


async def start(fleet: Fleet) -> None:
    """Two workers and a bot for each shard, all connected and ready."""
    for name in ("w1", "w2"):
        fleet.start_worker(name)
    for shard in range(BOTS):
        fleet.start_bot(shard, **shard_values(shard))
    await asyncio.gather(fleet.worker_ready("w1"), fleet.worker_ready("w2"),
                         fleet.bots_connected())
    assert len(set(fleet.runners.values())) == 2
    assert sorted(fleet.emu.connected_shards) == [(shard, BOTS) for shard in range(BOTS)]


async def forty_jobs(fleet: Fleet, members: list[Member]) -> int:
    """Forty requests at once from three users: every one painted and delivered once.
    Returns the `attempts` of a job painted at its first run."""
    emu = fleet.emu
    ixs = list(await asyncio.gather(*(stylize(emu, members[i % 3], 100 + i)
                                      for i in range(40))))
    outcomes = await settle(emu, ixs, SETTLE_S)
    assert [o.result for o in outcomes] == ["painted"] * 40, [
        (o.job_id, o.result, o.refusal) for o in outcomes]
    ids = [o.job_id or "" for o in outcomes]
    assert len(set(ids)) == 40
    # The edit that shows the painting comes before the row says so.
    jobs = await fleet.until_jobs(ids, lambda j: j.delivered, 30)
    for job in jobs.values():
        assert job.status is JobStatus.succeeded
        delivered_once(emu, job)
    assert {j.runner for j in jobs.values()} == set(fleet.runners.values())  # both painted
    await delivered_by_their_shards(fleet, list(jobs.values()))
    (runs,) = {j.attempts for j in jobs.values()}  # one run each
    return runs


async def bot_killed_while_its_jobs_wait(fleet: Fleet, members: list[Member],
                                         shard: int) -> None:
    """SIGKILL to a bot whose jobs are queued; they are painted while it is gone, and
    delivered once, by the bot restarted (which then makes long jobs, for the phases
    after this one)."""
    emu = fleet.emu
    workers = [name for name, proc in fleet.workers.items() if proc.alive()]
    fleet.freeze(workers)
    try:
        ixs = [await stylize(emu, member, 200 + i) for i, member in enumerate(members)]
        ids = await accepted(emu, ixs)
        await fleet.until_jobs(ids, lambda j: j.status is JobStatus.queued
                               and j.progress_message_id is not None, 30)
        await fleet.kill_bot(shard)
    finally:
        fleet.thaw(workers)
    jobs = await fleet.until_jobs(ids, lambda j: j.status.is_final, 60)
    for job in jobs.values():
        assert job.status is JobStatus.succeeded
        assert not job.delivered  # nor by another shard's bot, which waits for its owner
        assert not carrying(emu, job.id)

    fleet.start_bot(shard, default_steps=LONG_STEPS, **shard_values(shard))
    await fleet.bots_connected()
    jobs = await fleet.until_jobs(ids, lambda j: j.delivered, 60)
    for job in jobs.values():
        delivered_once(emu, job)
    await delivered_by_their_shards(fleet, list(jobs.values()))


async def worker_killed_mid_job(fleet: Fleet, member: Member, one_run: int) -> None:
    """SIGKILL to the worker painting a job: the other paints it again, from the start,
    and it is delivered once. A new worker takes the dead one's place."""
    emu = fleet.emu
    # At 64 px: a wider window between the first step reported and the last.
    (job_id,) = await accepted(emu, [await stylize(emu, member, 300, size=64)])
    (running,) = (await fleet.until_jobs(
        [job_id], lambda j: j.status is JobStatus.running and j.step > 0, 60)).values()
    victim = fleet.worker_of(running.runner)
    await fleet.kill_worker(victim)
    fleet.start_worker("w3")
    survivor = next(name for name, proc in fleet.workers.items()
                    if proc.alive() and name not in (victim, "w3"))

    (job,) = (await fleet.until_jobs([job_id], lambda j: j.delivered, 120)).values()
    assert job.status is JobStatus.succeeded
    assert job.runner == fleet.runners[survivor]
    assert job.attempts == one_run + 1
    assert job.step == job.total_steps == LONG_STEPS
    delivered_once(emu, job)
    await fleet.worker_ready("w3")


async def cancelled_on_a_worker(fleet: Fleet, member: Member) -> None:
    """`/cancel` of a job a worker is painting stops it there, long before its end."""
    emu = fleet.emu
    user, guild = member
    painting = await stylize(emu, member, 400, size=256)
    (job_id,) = await accepted(emu, [painting])
    (running,) = (await fleet.until_jobs(
        [job_id], lambda j: j.status is JobStatus.running and j.step > 0, 60)).values()
    asked = time.monotonic()
    ix = await emu.slash("cancel", user, guild=guild, id=job_id)
    (job,) = (await fleet.until_jobs(
        [job_id], lambda j: j.status is JobStatus.cancelled, CANCEL_WITHIN_S)).values()
    log.info("job %s cancelled %.1f s after /cancel", job_id, time.monotonic() - asked)
    assert job.runner == running.runner
    assert job.step < job.total_steps
    # Stopped in the worker's pool, not only marked in the row.
    worker = fleet.workers[fleet.worker_of(job.runner)]
    await until_logged(worker, f"job {job_id}: cancelled")
    text = await emu.wait_for(lambda: ephemeral_text(emu, ix), 30)
    assert f"Job `{job_id}` is cancelled." in text
    progress = await progress_message(emu, painting)
    await emu.wait_for(lambda: progress.embeds[0].get("title", "").endswith("Cancelled"), 30)
    assert not carrying(emu, job_id)
    assert uploads(emu, job_id) == 0


async def until_logged(proc: Process, text: str, within: float = 30) -> None:
    await until(lambda: text in proc.log_text(), within, interval=0.2)


async def worker_killed_holding_a_batch(fleet: Fleet, members: list[Member],
                                        one_run: int) -> None:
    """A worker claims three compatible jobs as one batch and is killed while painting
    them: the other worker paints all three (each a second run), each delivered once."""
    emu = fleet.emu
    holder, other = [name for name, proc in fleet.workers.items() if proc.alive()]
    fleet.freeze([holder, other])
    try:
        ixs = [await stylize(emu, member, 500 + i) for i, member in enumerate(members)]
        ids = await accepted(emu, ixs)
        await fleet.until_jobs(ids, lambda j: j.status is JobStatus.queued
                               and j.progress_message_id is not None, 30)
        fleet.thaw([holder])
        runner = fleet.runners[holder]
        await fleet.until_jobs(ids, lambda j: j.status is JobStatus.running
                               and j.runner == runner, 60)
        await fleet.until_jobs(ids, lambda j: j.step > 0, 60)  # painting under way
        await fleet.kill_worker(holder)
    finally:
        fleet.thaw([other])
    jobs = await fleet.until_jobs(ids, lambda j: j.delivered, 150)
    for job in jobs.values():
        assert job.status is JobStatus.succeeded
        assert job.runner == fleet.runners[other]
        assert job.attempts == one_run + 1
        delivered_once(emu, job)
