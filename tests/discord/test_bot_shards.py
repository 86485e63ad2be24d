"""Sharding: several bot processes, each running some of the bot's shards, share one
database; each job is shown by the process whose shard received its interaction, and
its result is delivered exactly once, by another process when the owner is down.

In one test process: two bots, shard 0 and shard 1 of 2, both `STYLEBOT_WORKERS=0`,
and a painter (a job service with a `FakePainter`, as `stylebot worker` runs one) over
one SQLite file, against an emulator that routes each server's events to its shard.
The bots' `STYLEBOT_LEASE` is short: it is how long another shard's result waits for
its owner.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from bot_helpers import (
    FAST_PARAMS,
    PRESET,
    FakePainter,
    job_id_of,
    make_settings,
    painting,
    photo_png,
    progress_message,
    wait_delivered,
    wait_painting,
)
from emulator import DiscordEmulator, Guild, Message, Upload

from bot.app import App, push_commands, running
from bot.cli.common import job_service
from bot.discord.delivery import shard_of
from bot.jobs import db
from bot.jobs.db import create_engine_and_sessionmaker
from bot.jobs.service import JobService
from bot.jobs.states import JobStatus
from bot.settings import Settings, SettingsError

# The bot tests share the module's emulator, and so its event loop.
on_the_module_loop = pytest.mark.asyncio(loop_scope="module")

TAKEOVER_S = 2.0  # the bots' STYLEBOT_LEASE
POLL_S = 0.1


# ---- the shard arithmetic and the settings --------------------------------------------
def test_shard_of_is_discords_formula() -> None:
    # The example of serenity's `shard_id`: server 81384788765712384 of 17 shards.
    assert shard_of(81384788765712384, 17) == 7
    assert shard_of("81384788765712384", 17) == 7
    assert shard_of((5 << 22) | 4095, 2) == 1  # the low 22 bits do not count
    assert shard_of(None, 4) == 0  # a DM
    assert shard_of(81384788765712384, 1) == 0


def test_shard_settings(tmp_path: Path) -> None:
    env = {"STYLEBOT_DATA_DIR": str(tmp_path)}
    unset = Settings.from_env(env)
    assert (unset.shard_count, unset.shard_ids) == (None, None)
    every = Settings.from_env({**env, "STYLEBOT_SHARD_COUNT": "4"})
    assert (every.shard_count, every.shard_ids) == (4, None)
    some = Settings.from_env({**env, "STYLEBOT_SHARD_COUNT": "4", "STYLEBOT_SHARD_IDS": "3, 1"})
    assert (some.shard_count, some.shard_ids) == (4, (3, 1))
    assert Settings.from_env(env, shard_count=2, shard_ids=[1]).shard_ids == (1,)


@pytest.mark.parametrize(("count", "ids", "fragment"), [
    ("0", "", "STYLEBOT_SHARD_COUNT must be at least 1"),
    ("two", "", "STYLEBOT_SHARD_COUNT='two' is not valid"),
    ("", "0", "STYLEBOT_SHARD_IDS needs STYLEBOT_SHARD_COUNT"),
    ("2", "2", "STYLEBOT_SHARD_IDS must be shard numbers from 0 to 1"),
    ("2", "-1", "STYLEBOT_SHARD_IDS must be shard numbers from 0 to 1"),
    ("2", "0,0", "STYLEBOT_SHARD_IDS names a shard twice"),
    ("2", "0;1", "STYLEBOT_SHARD_IDS='0;1' is not valid: use shard numbers separated by"),
    ("2", ",", "STYLEBOT_SHARD_IDS=',' is not valid"),
])
def test_bad_shard_settings_say_which_variable(tmp_path: Path, count: str, ids: str,
                                               fragment: str) -> None:
    env = {"STYLEBOT_DATA_DIR": str(tmp_path), "STYLEBOT_SHARD_COUNT": count,
           "STYLEBOT_SHARD_IDS": ids}
    with pytest.raises(SettingsError, match=fragment) as info:
        Settings.from_env(env)
    assert "\n" not in str(info.value)


# ---- two bot processes -----------------------------------------------------------------
@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def emu() -> AsyncIterator[DiscordEmulator]:
    """An emulated Discord recommending two shards; its main server is on shard 0."""
    emulator = DiscordEmulator(shard_count=2)
    await emulator.start()
    yield emulator
    await emulator.close()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def far(emu: DiscordEmulator, tmp_path_factory: pytest.TempPathFactory) -> Guild:
    """A server on shard 1 (made before any bot connects), with the commands synced."""
    guild = emu.add_guild("Far Guild", shard=1)
    assert (emu.shard_of(emu.guild), emu.shard_of(guild)) == (0, 1)
    await push_commands(make_settings(emu, tmp_path_factory.mktemp("sync")))
    return guild


class Painter:
    """`stylebot worker` in this process: a service painting with a `FakePainter`,
    which holds every job it starts while `paused`."""

    def __init__(self) -> None:
        self.paused = False
        self.fake = FakePainter(workers=2, paint_s=0.05, paused=lambda: self.paused)
        self.service: JobService | None = None

    async def status(self, job_id: str) -> JobStatus:
        assert self.service is not None
        return (await self.service.get(job_id)).status


@asynccontextmanager
async def painting_in(emu: DiscordEmulator, data_dir: Path) -> AsyncIterator[Painter]:
    painter = Painter()
    settings = make_settings(emu, data_dir, workers=2, poll_interval_s=POLL_S, lease_s=30)
    async with job_service(settings, executor=painter.fake) as service:
        await service.start()
        painter.service = service
        yield painter


def shard_settings(emu: DiscordEmulator, data_dir: Path, shard: int) -> Settings:
    return make_settings(emu, data_dir, workers=0, shard_count=2, shard_ids=(shard,),
                         poll_interval_s=POLL_S, lease_s=TAKEOVER_S)


@asynccontextmanager
async def shard_running(emu: DiscordEmulator, data_dir: Path, shard: int
                        ) -> AsyncIterator[App]:
    """A bot process running only `shard` of 2, painting nothing, connected."""
    async with running(shard_settings(emu, data_dir, shard), default_params=FAST_PARAMS,
                       grace_s=5) as app:
        await app.client.wait_until_ready()
        yield app


async def job_row(app: App, job_id: str) -> db.Job:
    """The job's row, with the delivery bookkeeping a `JobRecord` leaves out."""
    engine, sessionmaker = create_engine_and_sessionmaker(app.settings.database_url)
    try:
        async with sessionmaker() as session:
            job = await db.get_job(session, job_id=job_id)
            assert job is not None
            return job
    finally:
        await engine.dispose()


def paintings_of(emu: DiscordEmulator, job_id: str) -> list[Message]:
    return [m for m in emu.messages.values()
            if not m.deleted and any(f.filename.startswith(f"stylebot-{job_id}.")
                                     for f in m.files)]


async def stylize_paused(emu: DiscordEmulator, painter: Painter, **where: Any
                         ) -> tuple[Message, str]:
    """Alice's /stylize (from `where`), started by the painter and held there: its
    progress message, once its owner has shown it running, and the job id."""
    painter.paused = True
    ix = await emu.slash("stylize", emu.alice, image=Upload("a.png", photo_png()),
                         style=PRESET, **where)
    message = await progress_message(emu, ix)
    await emu.wait_for(lambda: message.edits >= 1, 20)  # "painting..."
    return message, job_id_of(message)


@on_the_module_loop
async def test_each_job_is_shown_by_the_shard_that_received_it(
        emu: DiscordEmulator, far: Guild, tmp_path: Path) -> None:
    async with (painting_in(emu, tmp_path) as painter,
                shard_running(emu, tmp_path, 0) as first,
                shard_running(emu, tmp_path, 1) as second):
        assert emu.connected_shards == [(0, 2), (1, 2)]
        assert first.client.get_guild(emu.guild_id) is not None
        assert first.client.get_guild(far.id) is None
        assert second.client.get_guild(far.id) is not None

        # Asked in the far server: only shard 1's process hears of the interaction, and
        # only it edits the progress message, though both watch the job.
        message, job_id = await stylize_paused(emu, painter, guild=far)
        job = await second.service.get(job_id)
        assert job.guild_id == str(far.id)
        assert second.client.delivery.owns(job)
        assert not first.client.delivery.owns(job)
        await asyncio.sleep(10 * POLL_S)  # the other process has seen it running by now
        assert message.edits == 1
        painter.paused = False
        await wait_painting(emu, message, 20)
        await wait_delivered(second, job_id, 20)
        assert (await job_row(second, job_id)).delivery_claimed_by == second.service.runner_id

        # A DM is shard 0's.
        dm_message, dm_id = await stylize_paused(emu, painter, dm=True)
        assert (await first.service.get(dm_id)).guild_id is None
        painter.paused = False
        await wait_painting(emu, dm_message, 20)
        await wait_delivered(first, dm_id, 20)
        assert (await job_row(first, dm_id)).delivery_claimed_by == first.service.runner_id

        # Well past the other process's wait: neither result was sent twice, and no
        # interaction reached both processes (a second answer would have been refused).
        await asyncio.sleep(TAKEOVER_S + 0.5)
        assert len(paintings_of(emu, job_id)) == len(paintings_of(emu, dm_id)) == 1
        assert not [c for c in emu.calls if c.status == 400]


@on_the_module_loop
async def test_a_result_whose_owner_is_down_is_delivered_by_another_shard(
        emu: DiscordEmulator, far: Guild, tmp_path: Path) -> None:
    async with (painting_in(emu, tmp_path) as painter,
                shard_running(emu, tmp_path, 0) as first):
        async with shard_running(emu, tmp_path, 1):
            message, job_id = await stylize_paused(emu, painter, guild=far)
        # Shard 1's process is gone; the job finishes, and shard 0's process waits for
        # the owner before it delivers, without showing any progress.
        painter.paused = False
        await emu.wait_for(lambda: painting(message), 20)
        row = await job_row(first, job_id)
        assert row.delivered
        assert row.delivery_claimed_by == first.service.runner_id
        assert row.delivered_at is not None
        assert row.finished_at is not None
        assert (row.delivered_at - row.finished_at).total_seconds() >= TAKEOVER_S - 0.2
        assert message.edits == 2  # "painting...", then the result
        assert len(paintings_of(emu, job_id)) == 1


@on_the_module_loop
async def test_a_starting_shard_delivers_what_a_dead_one_left_to_the_channel(
        emu: DiscordEmulator, far: Guild, tmp_path: Path) -> None:
    async with painting_in(emu, tmp_path) as painter:
        async with shard_running(emu, tmp_path, 1) as second:
            message, job_id = await stylize_paused(emu, painter, guild=far)
            token = (await second.service.get(job_id)).interaction_token
        # No bot is up when the job finishes, and by the time one is, the interaction's
        # token has expired: the result goes to the far server's channel, sent by shard
        # 0's process, which has never seen that server.
        painter.paused = False
        for _ in range(200):
            if await painter.status(job_id) == JobStatus.succeeded:
                break
            await asyncio.sleep(0.05)
        assert token is not None
        emu.expire_token(token)
        await asyncio.sleep(TAKEOVER_S)
        async with shard_running(emu, tmp_path, 0) as first:
            assert first.client.get_guild(far.id) is None
            row = await wait_delivered(first, job_id, 20)
            reply = emu.messages[int(row.result_message_id)]
            assert reply.channel_id == far.channel_id
            assert f"<@{emu.alice.id}>" in reply.content
            assert painting(reply) is not None
            assert (await job_row(first, job_id)).delivery_claimed_by == first.service.runner_id
        assert painting(message) is None
        assert len(paintings_of(emu, job_id)) == 1


@on_the_module_loop
async def test_a_server_without_the_bot_is_its_shards_and_only_dms_reach_it_later(
        emu: DiscordEmulator, far: Guild, tmp_path: Path) -> None:
    """A user-installed /stylize from a server the bot is not in comes to the shard of
    that server's id: that process shows it. With that process down and the token ended,
    another process delivers by DM, never to the channel it cannot reach."""
    club = emu.add_guild("Shard-1 Club Without the Bot", shard=1, bot_member=False,
                         members=[emu.alice, emu.bob])
    emu.install_for(emu.alice)
    async with (painting_in(emu, tmp_path) as painter,
                shard_running(emu, tmp_path, 0) as first):
        async with shard_running(emu, tmp_path, 1) as second:
            assert second.client.get_guild(club.id) is None  # not a member
            message, job_id = await stylize_paused(emu, painter, guild=club)
            job = await second.service.get(job_id)
            assert (job.guild_id, job.guild_install) == (str(club.id), False)
            assert second.client.delivery.owns(job)
            assert not first.client.delivery.owns(job)
            painter.paused = False
            await wait_painting(emu, message, 20)
            await wait_delivered(second, job_id, 20)
            later, later_id = await stylize_paused(emu, painter, guild=club)
            token = (await second.service.get(later_id)).interaction_token
        assert token is not None
        emu.expire_token(token)  # shard 1's process is gone, and so is the token
        painter.paused = False
        row = await wait_delivered(first, later_id, 20)
        reply = emu.messages[int(row.result_message_id)]
        assert reply.channel_id == emu.dm_channel(emu.alice)
        assert str(later.id) in reply.content  # the link back
        assert painting(later) is None
        assert not [c for c in emu.calls if c.path.startswith(f"/channels/{club.channel_id}")]
