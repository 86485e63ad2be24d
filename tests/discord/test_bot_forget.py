"""End to end: `/forget` and the Delete button of `/job` delete a user's pictures, and
what shows a job copes with a job whose pictures are gone. The real bot, worker pool and
SQLite file against the emulated Discord; one bot for the module, tests in file order."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
import pytest_asyncio
from bot_helpers import (
    PRESET,
    answered,
    bot_running,
    ephemeral_text,
    gate,
    job_id_of,
    make_settings,
    painting,
    photo_png,
    progress_message,
    stripes_png,
    wait_delivered,
    wait_job,
    wait_painting,
)
from emulator import DiscordEmulator, Message, Upload, User
from sqlalchemy.ext.asyncio import async_sessionmaker

from bot.app import App, push_commands
from bot.jobs.access import Caller
from bot.jobs.records import JobRecord, utcnow
from bot.jobs.retention import expire
from bot.jobs.states import JobStatus

pytestmark = pytest.mark.asyncio(loop_scope="module")

FORGET_COG = "bot.discord.cogs.forget"


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def app(emu: DiscordEmulator, tmp_path_factory: pytest.TempPathFactory
              ) -> AsyncIterator[App]:
    settings = make_settings(emu, tmp_path_factory.mktemp("bot"), max_jobs_per_user=3)
    await push_commands(settings)  # the emulator types interaction options from this
    async with bot_running(settings, gate=True) as running_app:
        yield running_app


async def paint(emu: DiscordEmulator, app: App, user: User, photo: bytes, **options: Any
                ) -> JobRecord:
    """A public painting of `photo` by `user`, delivered."""
    ix = await emu.slash("stylize", user, image=Upload("photo.png", photo), **options)
    progress = await progress_message(emu, ix)
    await wait_painting(emu, progress)
    job: JobRecord = await wait_delivered(app, job_id_of(progress))
    return job


def hashes(job: JobRecord) -> set[str]:
    return {h for h in (job.input_hash, job.output_hash,
                        job.style_hash if job.style == "custom" else None) if h}


async def mine(app: App, user: User) -> list[JobRecord]:
    return await app.service.list_for_user(str(user.id), limit=100)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def painted(emu: DiscordEmulator, app: App) -> dict[str, JobRecord]:
    """Alice's painting with a preset and one with her own style image, of the photo bob
    painted too (one blob both jobs need), and bob's painting."""
    shared = photo_png(seed=12)
    return {"alice": await paint(emu, app, emu.alice, photo_png(seed=11), style=PRESET),
            "bob": await paint(emu, app, emu.bob, shared, style=PRESET),
            "alice_custom": await paint(emu, app, emu.alice, shared,
                                        style_image=Upload("stripes.png", stripes_png()))}


async def ask_to_forget(emu: DiscordEmulator, user: User) -> tuple[Message, str, str]:
    """`/forget`'s question, and its buttons' custom ids: delete, keep."""
    question = await answered(emu, await emu.slash("forget", user))
    assert question.ephemeral
    labels = [c["label"] for row in question.components for c in row["components"]]
    assert labels == ["Delete my pictures", "Keep them"]
    delete, keep = question.custom_ids()
    return question, delete, keep


async def test_keep_them_deletes_nothing(emu: DiscordEmulator, app: App,
                                         painted: dict[str, JobRecord]) -> None:
    assert painted["alice_custom"].input_hash == painted["bob"].input_hash
    question, delete, keep = await ask_to_forget(emu, emu.alice)
    assert "Delete the pictures of your 2 jobs" in question.text()
    assert "stay listed in `/history`" in question.text()

    # Only alice may answer.
    press = await emu.press(question, delete, emu.bob)
    assert "someone else's" in await emu.wait_for(lambda: ephemeral_text(emu, press))
    assert question.custom_ids() == [delete, keep]

    press = await emu.press(question, keep, emu.alice)
    assert (await emu.response(press))["type"] == 7  # the question itself is answered
    assert question.text() == "Nothing was deleted."
    assert question.custom_ids() == []
    for job in await mine(app, emu.alice):
        assert job.pictures_gone is None
        for digest in hashes(job):
            assert await app.storage.exists_async(digest)


async def test_an_unanswered_question_deletes_nothing(emu: DiscordEmulator, app: App,
                                                      painted: dict[str, JobRecord],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.modules[FORGET_COG], "CONFIRM_S", 0.5)
    question, _, _ = await ask_to_forget(emu, emu.alice)
    await emu.wait_for(lambda: question.text() == "Nothing was deleted.", 10)
    assert question.custom_ids() == []
    assert all(job.pictures_gone is None for job in await mine(app, emu.alice))


async def test_forget_deletes_the_callers_pictures_only(emu: DiscordEmulator, app: App,
                                                        painted: dict[str, JobRecord]) -> None:
    gate(app).open = False  # alice's next job stays queued
    try:
        ix = await emu.slash("stylize", emu.alice, image=Upload("q.png", photo_png(seed=13)),
                             style=PRESET)
        queued = await app.service.get(job_id_of(await progress_message(emu, ix)))
        assert queued.status == JobStatus.queued

        question, delete, _ = await ask_to_forget(emu, emu.alice)
        assert "Delete the pictures of your 3 jobs" in question.text()
        assert "1 of them is queued or painting and will be cancelled" in question.text()
        press = await emu.press(question, delete, emu.alice)
        assert (await emu.response(press))["type"] == 7
        # Its two paintings' messages (the queued job has none).
        await emu.wait_for(lambda: "Deleted the pictures of 3 jobs and the 2 messages I "
                           "posted paintings in." in question.text(), 30)
        assert "stay in `/history`" in question.text()
        assert question.custom_ids() == []
    finally:
        gate(app).open = True

    assert (await app.service.get(queued.id)).status == JobStatus.cancelled
    for job in await mine(app, emu.alice):
        assert job.pictures_gone == "deleted"
        assert (job.input_hash, job.output_hash, job.user_name) == (None, None, "")
    bob = await app.service.get(painted["bob"].id)
    assert bob.pictures_gone is None
    assert bob.input_hash
    assert bob.output_hash
    gone = (hashes(painted["alice"]) | hashes(painted["alice_custom"])
            | hashes(queued)) - hashes(bob)
    assert painted["alice_custom"].style_hash in gone
    for digest in gone:
        assert not await app.storage.exists_async(digest)
    for digest in hashes(bob):  # the photo alice painted too among them
        assert await app.storage.exists_async(digest)
    # The messages the bot posted alice's paintings in are gone; bob's stays.
    for job in (painted["alice"], painted["alice_custom"]):
        assert emu.messages[int(str(job.result_message_id))].deleted
    assert not emu.messages[int(str(bob.result_message_id))].deleted

    # Bob still sees his pictures, and may delete them.
    detail = await answered(emu, await emu.slash("job", emu.bob, id=bob.id))
    assert sorted(f.filename for f in detail.files) == ["input.jpg", f"stylebot-{bob.id}.png"]
    assert detail.custom_ids() == [f"job:{a}:{bob.id}" for a in ("again", "more", "less",
                                                                   "delete")]

    # Nothing left to delete.
    again = await answered(emu, await emu.slash("forget", emu.alice))
    assert again.text() == "You have no pictures to delete."
    assert again.custom_ids() == []


async def test_history_and_job_show_that_the_pictures_are_gone(
        emu: DiscordEmulator, app: App, painted: dict[str, JobRecord]) -> None:
    page = await answered(emu, await emu.slash("history", emu.alice))
    lines = {f["name"].strip("`"): f["value"] for f in page.embeds[0]["fields"]}
    assert {job.id for job in await mine(app, emu.alice)} <= set(lines)
    assert all(line.endswith("· pictures deleted") for line in lines.values())

    job_id = painted["alice"].id
    detail = await answered(emu, await emu.slash("job", emu.alice, id=job_id))
    assert job_id in detail.text()
    assert "Pictures Deleted at its owner's request" in detail.text()  # field, value
    assert detail.files == []
    assert detail.custom_ids() == []
    assert "image" not in detail.embeds[0]
    assert "thumbnail" not in detail.embeds[0]


async def test_the_delete_button_of_job(emu: DiscordEmulator, app: App,
                                        painted: dict[str, JobRecord]) -> None:
    bob = painted["bob"]
    detail = await answered(emu, await emu.slash("job", emu.bob, id=bob.id))
    earlier = await answered(emu, await emu.slash("job", emu.bob, id=bob.id))
    button = f"job:delete:{bob.id}"

    # The rule is checked on the job, not on who sees the message.
    press = await emu.press(detail, button, emu.alice)
    assert await emu.wait_for(lambda: ephemeral_text(emu, press)) == (
        f"No job of yours has the id `{bob.id}`.")
    assert (await app.service.get(bob.id)).pictures_gone is None

    press = await emu.press(detail, button, emu.bob)
    # The /job reply itself becomes the answer: its pictures and buttons go.
    assert (await emu.response(press))["type"] == 6
    await emu.wait_for(lambda: detail.text().startswith(
        f"Deleted the pictures of job `{bob.id}` and the message I posted a painting in."))
    assert (detail.files, detail.embeds, detail.custom_ids()) == ([], [], [])
    assert emu.messages[int(str(bob.result_message_id))].deleted
    assert (await app.service.get(bob.id)).pictures_gone == "deleted"
    for digest in hashes(bob):  # the photo alice shared goes with its last job
        assert not await app.storage.exists_async(digest)

    # The same button on another /job reply shown before: nothing left to delete.
    await emu.press(earlier, button, emu.bob)
    await emu.wait_for(lambda: earlier.text() == (
        f"The pictures of job `{bob.id}` were already gone."))
    detail = await answered(emu, await emu.slash("job", emu.bob, id=bob.id))
    assert "Pictures Deleted at its owner's request" in detail.text()
    assert (detail.files, detail.custom_ids()) == ([], [])


async def test_expired_pictures(emu: DiscordEmulator, app: App) -> None:
    carol = emu.add_user("carol")
    job = await paint(emu, app, carol, photo_png(seed=14), style=PRESET)
    days = app.settings.retention_days
    removed = await expire(async_sessionmaker(app.engine, expire_on_commit=False),
                           app.storage, now=utcnow() + timedelta(days=days + 1),
                           retention_days=days, history_days=0)
    assert removed.jobs >= 1
    assert (await app.service.get(job.id)).pictures_gone == "expired"

    detail = await answered(emu, await emu.slash("job", carol, id=job.id))
    assert f"Pictures Expired (kept for {days:g} days)" in detail.text()
    assert (detail.files, detail.custom_ids()) == ([], [])
    page = await answered(emu, await emu.slash("history", carol))
    assert page.embeds[0]["fields"][0]["value"].endswith("· pictures expired")

    # Its result message stays, and its buttons say why they cannot paint again.
    result = emu.messages[int(str(job.result_message_id))]
    before = await app.service.count_for_user(str(carol.id))
    for action in ("again", "more", "less"):
        press = await emu.press(result, f"job:{action}:{job.id}", carol)
        text = await emu.wait_for(lambda p=press: ephemeral_text(emu, p))  # type: ignore[misc]
        assert text == (f"The pictures of job `{job.id}` have expired: there is nothing "
                        "to show or paint again.")
    assert await app.service.count_for_user(str(carol.id)) == before


async def test_a_painting_whose_pictures_went_before_it_was_shown(
        emu: DiscordEmulator, app: App) -> None:
    carol = emu.add_user("carol")
    gate(app).open = False
    try:
        ix = await emu.slash("stylize", carol, image=Upload("c.png", photo_png(seed=11)),
                             style=PRESET)
        progress = await progress_message(emu, ix)
        job_id = job_id_of(progress)
        # Once its reply is recorded (and the reply's own hold given back), its result
        # waits, as behind a slow Discord.
        await wait_job(app, job_id, lambda j: j.progress_message_id is not None)
        app.client.delivery.hold(job_id)
    finally:
        gate(app).open = True
    try:
        await wait_job(app, job_id, lambda j: j.status == JobStatus.succeeded)
        removed = await app.client.flow.privacy.forget_job(job_id, caller=Caller(str(carol.id)))
        assert removed.jobs == 1
    finally:
        app.client.delivery.release(job_id)
    job = await wait_delivered(app, job_id)
    assert "Pictures deleted at its owner's request" in progress.text()
    assert not painting(progress)
    # Nothing else was posted for it, and no painting anywhere.
    assert [m.id for m in emu.messages.values()
            if job_id in m.text() and not m.ephemeral] == [progress.id]
    assert not [m for m in emu.messages.values() if job_id in m.text() and painting(m)]
    assert job.result_message_id == str(progress.id)
