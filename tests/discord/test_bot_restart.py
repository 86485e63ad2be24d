"""A bot restart loses nothing: queued jobs run and reach their progress messages,
results nobody could receive are delivered, and old buttons still work."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from bot_helpers import (
    PRESET,
    GatedPool,
    bot_running,
    decode,
    gate,
    job_id_of,
    make_settings,
    painting,
    photo_png,
    progress_message,
    wait_delivered,
    wait_job,
    wait_painting,
    wait_service_job,
)
from emulator import DiscordEmulator, Upload

from bot.app import push_commands
from bot.discord.delivery import Delivery
from bot.jobs.service import JobService
from bot.jobs.states import JobStatus

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def test_restart(emu: DiscordEmulator, tmp_path: Path,
                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="bot.discord.delivery")
    settings = make_settings(emu, tmp_path / "bot")
    await push_commands(settings)

    async with bot_running(settings, gate=True) as app:
        pool = app.executor
        assert isinstance(pool, GatedPool)
        # 1. A finished job whose message will carry buttons across the restart.
        done_ix = await emu.slash("stylize", emu.alice, image=Upload("a.png", photo_png()),
                                  style=PRESET)
        done_msg = await progress_message(emu, done_ix)
        await wait_painting(emu, done_msg)
        done_id = job_id_of(done_msg)
        await wait_delivered(app, done_id)

        # 2. A job that finishes while nobody can receive it: token gone, channel and DMs
        #    refused. It stays undelivered.
        pool.open = False
        lost_ix = await emu.slash("stylize", emu.bob, image=Upload("b.png", photo_png(seed=3)),
                                  style=PRESET)
        lost_id = job_id_of(await progress_message(emu, lost_ix))
        emu.expire_token(lost_ix.token)
        emu.refuse_channel(emu.channel_id)
        emu.refuse_dms = True
        pool.open = True
        await wait_job(app, lost_id, lambda j: j.status == JobStatus.succeeded)
        await emu.wait_for(lambda: any(
            c.status == 403 for c in emu.calls_to("POST", r"^/channels/\d+/messages$")
            if int(c.path.split("/")[2]) in emu.dm_channels), 30)

        # 3. A job still queued when the bot stops.
        pool.open = False
        queued_ix = await emu.slash("stylize", emu.alice, image=Upload("c.png", photo_png(seed=5)),
                                    style=PRESET)
        queued_msg = await progress_message(emu, queued_ix)
        queued_id = job_id_of(queued_msg)
        assert (await app.service.get(queued_id)).status == JobStatus.queued

    # Nothing of this run was taken for a previous run's.
    assert not [r for r in caplog.records if "previous run" in r.getMessage()]

    emu.refusing_channels.clear()
    emu.refuse_dms = False
    identifies = emu.identifies
    async with bot_running(settings) as app:
        assert emu.identifies == identifies + 1
        # The queued job runs and lands in the progress message posted before the restart.
        await wait_painting(emu, queued_msg)
        await wait_delivered(app, queued_id)

        # The undelivered result reaches the channel, replying to bob.
        lost = await wait_delivered(app, lost_id)
        reply = emu.messages[int(lost.result_message_id)]
        assert reply.channel_id == emu.channel_id
        assert f"<@{emu.bob.id}>" in reply.content
        assert decode(painting(reply)).format == "PNG"
        # The log says why it is delivered now.
        assert f"delivering job {lost_id}, left over from a previous run" in caplog.text

        # A button on a message from before the restart still works.
        again = await emu.press(done_msg, f"job:again:{done_id}", emu.alice)
        child_msg = await progress_message(emu, again)
        await wait_painting(emu, child_msg)
        child = await wait_delivered(app, job_id_of(child_msg))
        parent = await app.service.get(done_id)
        assert child.parent_id == done_id
        assert child.params["seed"] != parent.params["seed"]

    # Only that one was a previous run's.
    assert [r.getMessage() for r in caplog.records if "previous run" in r.getMessage()] == [
        f"delivering job {lost_id}, left over from a previous run"]

    # Each result was delivered exactly once.
    for job_id in (done_id, lost_id, queued_id):
        sent = [m for m in emu.messages.values() if job_id in m.text() and painting(m)]
        assert len(sent) == 1, job_id


async def test_a_job_painted_while_the_start_lists_what_is_left_is_not_taken_for_one(
        emu: DiscordEmulator, tmp_path: Path, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A job queued before a restart and painted as the restarted bot lists the results
    left undelivered is in that list; by the time the list is gone through, its own
    event has delivered it. It is not delivered again, nor logged as left over."""
    caplog.set_level(logging.INFO, logger="bot.discord.delivery")
    settings = make_settings(emu, tmp_path / "bot")
    await push_commands(settings)
    async with bot_running(settings, shut=True) as app:
        ix = await emu.slash("stylize", emu.alice, image=Upload("e.png", photo_png(seed=9)),
                             style=PRESET)
        job_id = job_id_of(await progress_message(emu, ix))

    listed = asyncio.Event()
    seen: list[str] = []
    real_undelivered = JobService.undelivered

    async def undelivered_as_the_job_ends(self: JobService) -> list:  # type: ignore[type-arg]
        # Listed once the job has succeeded, while its delivery is held (below); handed
        # back once it is delivered.
        await wait_service_job(self, job_id, lambda j: j.status == JobStatus.succeeded)
        jobs = await real_undelivered(self)
        seen.extend(j.id for j in jobs)
        listed.set()
        await wait_service_job(self, job_id, lambda j: j.delivered)
        worker = deliveries[-1]._tasks.get(job_id)
        if worker is not None:
            await worker  # its delivery's last steps
        return jobs

    monkeypatch.setattr(JobService, "undelivered", undelivered_as_the_job_ends)
    deliveries: list[Delivery] = []
    real_ready = Delivery.client_ready

    def ready(self: Delivery) -> None:
        deliveries.append(self)
        real_ready(self)

    monkeypatch.setattr(Delivery, "client_ready", ready)
    # The first picture sent (a preview, or the result) waits until the list is read:
    # one job's messages go out one after another, so its result is not sent before.
    emu.hold_answer(lambda call, files: bool(files), listed.wait)
    async with bot_running(settings) as app:
        await asyncio.wait_for(listed.wait(), 60)
        await wait_delivered(app, job_id)
        assert job_id in seen  # listed as undelivered, as the race has it
        startup = deliveries[-1]._startup
        assert startup is not None
        await asyncio.wait_for(startup, 60)  # the start has gone through its list

    assert not [r for r in caplog.records if job_id in r.getMessage()
                and "previous run" in r.getMessage()]
    sent = [m for m in emu.messages.values() if job_id in m.text() and painting(m)]
    assert len(sent) == 1


async def test_a_restart_keeps_the_last_update_before_a_token_ends(
        emu: DiscordEmulator, tmp_path: Path) -> None:
    """Where the bot is not a member, a job's message gets a last update a minute before
    its interaction token ends, saying where the painting will go: a restarted bot plans
    it too, for the jobs it finds queued."""
    settings = make_settings(emu, tmp_path / "bot")
    await push_commands(settings)
    club = emu.add_guild("A Club Without the Bot", bot_member=False,
                         members=[emu.alice, emu.bob])
    emu.install_for(emu.alice)
    async with bot_running(settings, shut=True) as app:
        ix = await emu.slash("stylize", emu.alice, image=Upload("d.png", photo_png(seed=7)),
                             style=PRESET, guild=club)
        message = await progress_message(emu, ix)
        job_id = job_id_of(message)
        await wait_job(app, job_id, lambda j: j.progress_message_id == str(message.id))
        # As if it had been asked 13.6 minutes ago.
        await app.service.set_delivery(
            job_id, token_expires_at=datetime.now(UTC) + timedelta(seconds=85))
    async with bot_running(settings, shut=True) as app:
        text = await emu.wait_for(lambda: "stops updating" in message.text() and message.text())
        assert "the painting will come to your DMs" in text
        assert (await app.service.get(job_id)).status == JobStatus.queued
        emu.expire_token(ix.token)
        gate(app).open = True
        job = await wait_delivered(app, job_id)
    delivered = emu.messages[int(str(job.result_message_id))]
    assert delivered.channel_id == emu.dm_channel(emu.alice)
    assert str(message.id) in delivered.content  # the link back to where it was asked
