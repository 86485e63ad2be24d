"""A result is delivered exactly once, even when the bot dies after Discord took the
message and before the database recorded it.

Each test runs the bot in a process of its own (the whole bot, with a `FakePainter` for a
worker pool), has the emulator carry out the request that delivers the painting and,
before answering it, kill that process with SIGKILL; then starts a new bot over the same
database, which finds the job undelivered and delivers it again. Exactly one message
carrying the painting must be left.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from bot_helpers import (
    PRESET,
    job_id_of,
    kill_bot_process,
    make_settings,
    painting,
    photo_png,
    progress_message,
    start_bot_process,
    stop_bot_process,
)
from emulator import Call, DiscordEmulator, Interaction, Message, StoredFile, Upload

from bot.app import push_commands
from bot.jobs import db
from bot.jobs.db import create_engine_and_sessionmaker
from bot.jobs.records import JobRecord
from bot.jobs.states import JobStatus

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow,
              pytest.mark.timeout(180)]

ORIGINAL_PATCH = r"^/webhooks/\d+/[^/]+/messages/@original$"


@pytest_asyncio.fixture(loop_scope="module", scope="module", autouse=True)
async def commands(emu: DiscordEmulator, tmp_path_factory: pytest.TempPathFactory) -> None:
    await push_commands(make_settings(emu, tmp_path_factory.mktemp("sync")))


def carries_painting(call: Call, files: list[StoredFile]) -> bool:
    """A request that uploads a painting (a result, not a progress preview)."""
    return any(f.filename.startswith("stylebot-") for f in files)


class Crashes:
    """One bot process at a time over one data directory, and its crash."""

    def __init__(self, emu: DiscordEmulator, data_dir: Path) -> None:
        self.emu = emu
        self.data_dir = data_dir
        self.pause_file = data_dir / "pause"
        self.proc: subprocess.Popen[bytes] | None = None
        self.killed = asyncio.Event()
        self.settings = make_settings(emu, data_dir)
        self.engine, self.sessionmaker = create_engine_and_sessionmaker(
            self.settings.database_url)

    async def start(self, *, paused: bool = False) -> None:
        """A new bot process, connected to the emulator."""
        if paused:
            self.pause_file.touch()
        identifies = self.emu.identifies
        self.proc = start_bot_process(self.emu, self.data_dir, pause_file=self.pause_file)
        await self.emu.wait_for(lambda: self.emu.identifies > identifies
                                and self.emu.connections == 1, 60)

    def paint(self) -> None:
        self.pause_file.unlink(missing_ok=True)

    def kill_at_the_painting(self) -> None:
        """The next request that uploads a painting is carried out, then the bot is killed
        before it hears the answer."""
        self.killed.clear()

        async def kill() -> None:
            assert self.proc is not None
            await kill_bot_process(self.proc)
            self.killed.set()

        self.emu.hold_answer(carries_painting, kill)

    async def crashed(self) -> None:
        await asyncio.wait_for(self.killed.wait(), 60)
        await self.emu.wait_for(lambda: self.emu.connections == 0, 30)

    async def job(self, job_id: str) -> JobRecord:
        async with self.sessionmaker() as session:
            row = await db.get_job(session, job_id=job_id)
            assert row is not None
            return JobRecord.from_row(row)

    async def only_job(self) -> JobRecord:
        async with self.sessionmaker() as session:
            (row,) = await db.list_jobs(session)
            return JobRecord.from_row(row)

    async def until(self, job_id: str, predicate: Callable[[JobRecord], bool],
                    within: float = 60) -> JobRecord:
        async def loop() -> JobRecord:
            while True:
                view = await self.job(job_id)
                if predicate(view):
                    return view
                await asyncio.sleep(0.05)
        return await asyncio.wait_for(loop(), within)

    async def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            await stop_bot_process(self.proc)
        self.pause_file.unlink(missing_ok=True)
        await self.engine.dispose()


@pytest_asyncio.fixture(loop_scope="module")
async def crashes(emu: DiscordEmulator, tmp_path: Path) -> AsyncIterator[Crashes]:
    lab = Crashes(emu, tmp_path / "bot")
    try:
        yield lab
    finally:
        emu.clear_faults()
        emu.expired_tokens.clear()
        await lab.close()


def with_painting(emu: DiscordEmulator, job_id: str) -> list[Message]:
    """Messages (not deleted) that carry the job's painting."""
    return [m for m in emu.messages.values()
            if not m.deleted and painting(m) and any(
                f.filename.startswith(f"stylebot-{job_id}.") for f in m.files)]


async def crash_then_restart(lab: Crashes, job_id: str) -> JobRecord:
    """Lets the paused job paint, kills the bot as its painting is delivered, checks that
    the database never heard of it, and starts a new bot, which delivers it again."""
    lab.kill_at_the_painting()
    lab.paint()
    await lab.crashed()
    job = await lab.job(job_id)
    assert job.status == JobStatus.succeeded
    assert not job.delivered  # the crash came between Discord and the database
    assert len(with_painting(lab.emu, job_id)) == 1
    await lab.start()
    return await lab.until(job_id, lambda j: j.delivered)


async def test_a_channel_result_is_not_posted_twice(emu: DiscordEmulator,
                                                    crashes: Crashes) -> None:
    await crashes.start(paused=True)
    ix = await emu.slash("stylize", emu.alice, image=Upload("a.png", photo_png()),
                         style=PRESET)
    job_id = job_id_of(await progress_message(emu, ix))
    emu.expire_token(ix.token)  # so the result goes to the channel

    job = await crash_then_restart(crashes, job_id)

    (reply,) = with_painting(emu, job_id)
    assert reply.channel_id == emu.channel_id
    assert reply.webhook_id is None
    assert job.result_message_id == str(reply.id)
    # The new bot did post again, and Discord answered with the message it already had.
    posts = [c for c in emu.calls_to("POST", rf"^/channels/{emu.channel_id}/messages$")
             if c.status == 200 and job_id in str(c.body)]
    assert len(posts) == 2
    assert posts[0].body["nonce"] == posts[1].body["nonce"]
    assert posts[0].body["enforce_nonce"] is True


async def test_a_private_result_in_the_placeholder_is_not_sent_twice(
        emu: DiscordEmulator, crashes: Crashes) -> None:
    """The private placeholder never showed the queued job (Discord refused that edit),
    so no progress message was recorded: the result still goes into the placeholder, by
    an edit a restart can repeat, not as a new follow-up."""
    await crashes.start(paused=True)
    emu.fail_next("PATCH", ORIGINAL_PATCH, 403)
    ix = await emu.slash("stylize", emu.alice, image=Upload("a.png", photo_png()),
                         style=PRESET, private=True)
    await emu.wait_for(lambda: emu.faults_left() == 0)
    job = await asyncio.wait_for(_recorded(crashes), 30)

    await crash_then_restart(crashes, job.id)

    (delivered,) = with_painting(emu, job.id)
    assert delivered.ephemeral
    assert delivered.interaction_token == ix.token
    assert [m.id for m in interaction_messages(emu, ix) if painting(m)] == [delivered.id]


async def test_a_result_whose_progress_message_is_gone_is_not_sent_twice(
        emu: DiscordEmulator, crashes: Crashes) -> None:
    await crashes.start(paused=True)
    ix = await emu.slash("stylize", emu.bob, image=Upload("b.png", photo_png(seed=4)),
                         style=PRESET)
    progress = await progress_message(emu, ix)
    job_id = job_id_of(progress)
    progress.deleted = True  # a moderator removed it

    job = await crash_then_restart(crashes, job_id)

    (delivered,) = with_painting(emu, job_id)
    assert job.result_message_id == str(delivered.id)
    assert f"<@{emu.bob.id}>" in delivered.content


async def test_a_result_edited_into_its_message_is_not_sent_again_after_the_token_died(
        emu: DiscordEmulator, crashes: Crashes) -> None:
    """The painting reached the progress message; by the time the bot is back, the
    interaction's token has expired, so it cannot look through the interaction: it looks
    at the message in the channel before sending the painting anywhere else."""
    await crashes.start(paused=True)
    ix = await emu.slash("stylize", emu.alice, image=Upload("c.png", photo_png(seed=6)),
                         style=PRESET)
    progress = await progress_message(emu, ix)
    job_id = job_id_of(progress)
    crashes.kill_at_the_painting()
    crashes.paint()
    await crashes.crashed()
    assert painting(progress) is not None
    assert not (await crashes.job(job_id)).delivered
    emu.expire_token(ix.token)

    await crashes.start()
    job = await crashes.until(job_id, lambda j: j.delivered)

    assert [m.id for m in with_painting(emu, job_id)] == [progress.id]
    assert job.result_message_id == str(progress.id)


async def test_the_emulator_honours_enforce_nonce(emu: DiscordEmulator) -> None:
    """Discord's documented nonce semantics, which the tests above rely on."""
    url = f"{emu.api_base}/channels/{emu.channel_id}/messages"
    headers = {"Authorization": f"Bot {emu.token}"}

    async def post(session: aiohttp.ClientSession, **body: Any) -> tuple[int, Any]:
        async with session.post(url, json={"content": "hi", **body}, headers=headers) as resp:
            return resp.status, await resp.json()

    async with aiohttp.ClientSession() as session:
        _, first = await post(session, nonce="n-1", enforce_nonce=True)
        _, again = await post(session, nonce="n-1", enforce_nonce=True)
        assert again["id"] == first["id"]
        assert first["nonce"] == "n-1"
        _, unenforced = await post(session, nonce="n-1")
        assert unenforced["id"] != first["id"]
        _, number = await post(session, nonce=12345, enforce_nonce=True)
        assert number["nonce"] == 12345
        status, _ = await post(session, nonce="x" * 26, enforce_nonce=True)
        assert status == 400
        window, emu.nonce_window_s = emu.nonce_window_s, 0.0
        try:
            await asyncio.sleep(0.01)
            _, later = await post(session, nonce="n-1", enforce_nonce=True)
        finally:
            emu.nonce_window_s = window
        assert later["id"] != first["id"]


async def _recorded(lab: Crashes) -> JobRecord:
    """The only job, once its interaction is recorded."""
    while True:
        try:
            job = await lab.only_job()
        except ValueError:
            job = None
        if job is not None and job.interaction_token:
            return job
        await asyncio.sleep(0.05)


def interaction_messages(emu: DiscordEmulator, ix: Interaction) -> list[Message]:
    ids = {ix.original_id, *ix.followup_ids} - {None}
    return [m for m in emu.messages.values() if m.id in ids and not m.deleted]

