"""End to end: who may see, cancel and reuse a job, on every path that takes a job id.

Two servers and their people: Alice and Bob are members of the main server, whose
administrator is `admin`; Mallory made a server of her own and administers it (Bob is
there too). The rule under test is `bot.jobs.access`: a job is its owner's; an admin
of the job's own server may cancel it and, unless it is private, see it; nobody else
learns even that it exists.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
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
    photo_png,
    progress_message,
    wait_delivered,
    wait_job,
)
from emulator import DiscordEmulator, Interaction, Message, Upload, User

from bot.app import App, push_commands
from bot.jobs.states import JobStatus

pytestmark = pytest.mark.asyncio(loop_scope="module")

NOBODYS = "zzzzzz"  # an id no job has


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def app(emu: DiscordEmulator, tmp_path_factory: pytest.TempPathFactory
              ) -> AsyncIterator[App]:
    settings = make_settings(emu, tmp_path_factory.mktemp("bot"), max_jobs_per_user=5)
    await push_commands(settings)
    async with bot_running(settings, gate=True) as running_app:
        yield running_app


async def refused(emu: DiscordEmulator, ix: Interaction, job_id: str) -> str:
    """Checks that `ix` was answered privately with the one refusal, and nothing else: no
    embed, no picture, no button. Returns the text with the id taken out."""
    text: str = await emu.wait_for(lambda: ephemeral_text(emu, ix))
    assert text == f"No job of yours has the id `{job_id}`."
    callback = ix.callbacks[0]
    data = callback.get("data") or {}
    assert not data.get("embeds")
    assert not data.get("attachments")
    assert not ix.followup_ids
    original = emu.original(ix)
    if original is not None:
        assert (original.embeds, original.files, original.components) == ([], [], [])
    return text.replace(job_id, "ID")


async def stylize(emu: DiscordEmulator, user: User, **options: Any) -> Interaction:
    return await emu.slash("stylize", user, image=Upload("photo.png", photo_png(seed=5)),
                           style=PRESET, **options)


async def job_of(emu: DiscordEmulator, ix: Interaction, *, private: bool) -> str:
    """The id of the job `ix` made: in its public progress message, or in the private
    placeholder that a private job uses as its progress message."""
    if not private:
        return job_id_of(await progress_message(emu, ix))
    message = await emu.wait_for(lambda: (m := emu.original(ix)) and m.embeds and m)
    return job_id_of(message)


def copy_into(emu: DiscordEmulator, message: Message, channel_id: int) -> Message:
    """A message in another channel that carries `message`'s buttons: what a forged
    component interaction from another server would point at."""
    copy = Message(emu.snowflake(), channel_id, message.author, message.content,
                   embeds=list(message.embeds), components=list(message.components))
    emu.messages[copy.id] = copy
    return copy


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def painted(emu: DiscordEmulator, app: App) -> dict[str, str]:
    """Alice's two finished paintings in the main server: one public, one private."""
    public_ix = await stylize(emu, emu.alice)
    private_ix = await stylize(emu, emu.alice, private=True)
    jobs = {"public": await job_of(emu, public_ix, private=False),
            "private": await job_of(emu, private_ix, private=True)}
    for job_id in jobs.values():
        await wait_delivered(app, job_id)
    return jobs


async def test_job_shows_a_job_to_its_owner_anywhere(emu: DiscordEmulator,
                                                     painted: dict[str, str]) -> None:
    for job_id in painted.values():
        for where in ({}, {"dm": True}):
            detail = await answered(emu, await emu.slash("job", emu.alice, id=job_id, **where))
            assert job_id in detail.text()
            assert sorted(f.filename for f in detail.files) == [
                "input.jpg", f"stylebot-{job_id}.png"]
            assert detail.custom_ids() == [f"job:again:{job_id}", f"job:more:{job_id}",
                                           f"job:less:{job_id}", f"job:delete:{job_id}"]


async def test_job_shows_a_servers_admin_its_public_jobs_only(emu: DiscordEmulator,
                                                              painted: dict[str, str]) -> None:
    public, private = painted["public"], painted["private"]
    detail = await answered(emu, await emu.slash("job", emu.admin, id=public))
    assert public in detail.text()
    assert sorted(f.filename for f in detail.files) == ["input.jpg", f"stylebot-{public}.png"]
    assert detail.custom_ids() == []  # the painting's buttons are its owner's

    await refused(emu, await emu.slash("job", emu.admin, id=private), private)
    # An admin's powers are the server's: from a DM, even the public job is not theirs.
    await refused(emu, await emu.slash("job", emu.admin, id=public, dm=True), public)


async def test_job_tells_anyone_else_nothing(emu: DiscordEmulator,
                                             painted: dict[str, str]) -> None:
    other = emu.other_guild
    missing = await refused(emu, await emu.slash("job", emu.mallory, id=NOBODYS,
                                                 guild=other), NOBODYS)
    for job_id in painted.values():
        # The admin of another server, a member who is no admin, anyone in a DM: the same
        # words as for an id that does not exist.
        for user, where in ((emu.mallory, {"guild": other}), (emu.bob, {}),
                            (emu.bob, {"guild": other}), (emu.mallory, {"dm": True})):
            ix = await emu.slash("job", user, id=job_id, **where)
            assert await refused(emu, ix, job_id) == missing


async def test_only_the_owner_reuses_a_painting(emu: DiscordEmulator, app: App,
                                                painted: dict[str, str]) -> None:
    job = await app.service.get(painted["public"])
    result = emu.messages[int(str(job.result_message_id))]
    forged = copy_into(emu, result, emu.other_guild.channel_id)
    pressers = (emu.admin, emu.bob, emu.mallory)
    before = [await app.service.count_for_user(str(u.id)) for u in pressers]
    for message, user in ((result, emu.admin), (result, emu.bob), (forged, emu.mallory)):
        for action in ("again", "more", "less"):
            ix = await emu.press(message, f"job:{action}:{job.id}", user)
            await refused(emu, ix, job.id)
    assert [await app.service.count_for_user(str(u.id)) for u in pressers] == before


async def test_cancel_follows_the_jobs_server(emu: DiscordEmulator, app: App) -> None:
    gate(app).open = False  # the jobs stay queued
    try:
        private = await job_of(emu, await stylize(emu, emu.alice, private=True), private=True)
        public_ix = await stylize(emu, emu.alice)
        public = await job_of(emu, public_ix, private=False)
        progress = await progress_message(emu, public_ix)
        other = emu.other_guild

        missing = await refused(emu, await emu.slash("cancel", emu.mallory, id=NOBODYS,
                                                     guild=other), NOBODYS)
        for job_id in (private, public):
            for user, where in ((emu.mallory, {"guild": other}), (emu.bob, {}),
                                (emu.admin, {"dm": True})):
                ix = await emu.slash("cancel", user, id=job_id, **where)
                assert await refused(emu, ix, job_id) == missing
        # The Cancel button's custom id names the job; the rule is checked on the job, so
        # the same button pressed from Mallory's server does nothing either.
        forged = copy_into(emu, progress, other.channel_id)
        ix = await emu.press(forged, f"job:cancel:{public}", emu.mallory)
        assert await refused(emu, ix, public) == missing
        ix = await emu.press(progress, f"job:cancel:{public}", emu.bob)
        assert await refused(emu, ix, public) == missing
        for job_id in (private, public):
            assert (await app.service.get(job_id)).status == JobStatus.queued

        # The admin of the job's own server keeps the queue in order, private jobs too.
        ix = await emu.slash("cancel", emu.admin, id=private)
        assert "is cancelled" in await emu.wait_for(lambda: ephemeral_text(emu, ix))
        ix = await emu.press(progress, f"job:cancel:{public}", emu.admin)
        assert "is cancelled" in await emu.wait_for(lambda: ephemeral_text(emu, ix))
        for job_id in (private, public):
            assert (await app.service.get(job_id)).status == JobStatus.cancelled
    finally:
        gate(app).open = True


async def test_a_job_made_in_a_dm_has_no_admin_but_its_owner(emu: DiscordEmulator,
                                                             app: App) -> None:
    gate(app).open = False
    try:
        ix = await stylize(emu, emu.alice, dm=True)
        job_id = await job_of(emu, ix, private=False)
        job = await app.service.get(job_id)
        assert job.guild_id is None
        assert job.channel_id == str(emu.dm_channel(emu.alice))
        for user, where in ((emu.admin, {}), (emu.mallory, {"guild": emu.other_guild})):
            await refused(emu, await emu.slash("job", user, id=job_id, **where), job_id)
            await refused(emu, await emu.slash("cancel", user, id=job_id, **where), job_id)
        # Its owner may cancel it from any server.
        cancel = await emu.slash("cancel", emu.alice, id=job_id)
        assert "is cancelled" in await emu.wait_for(lambda: ephemeral_text(emu, cancel))
    finally:
        gate(app).open = True


async def test_history_lists_only_the_callers_own_jobs(emu: DiscordEmulator, app: App,
                                                       painted: dict[str, str]) -> None:
    alices = {j.id for j in await app.service.list_for_user(str(emu.alice.id), limit=100)}
    assert set(painted.values()) <= alices
    for user, where in ((emu.mallory, {"guild": emu.other_guild}), (emu.admin, {}),
                        (emu.bob, {})):
        page = await answered(emu, await emu.slash("history", user, limit=100, **where))
        assert page.ephemeral
        shown = {f["name"].strip("`") for e in page.embeds for f in e.get("fields", [])}
        assert not shown & alices
    # Alice's own, private ones included, wherever she asks from.
    page = await answered(emu, await emu.slash("history", emu.alice, limit=5, dm=True))
    shown = {f["name"].strip("`") for e in page.embeds for f in e.get("fields", [])}
    assert set(painted.values()) <= shown


async def test_the_message_menu_makes_a_job_of_the_callers_own(emu: DiscordEmulator,
                                                               app: App) -> None:
    other = emu.other_guild
    posted = emu.post_user_message(emu.bob, "my dog", (Upload("dog.png", photo_png(seed=8)),),
                                   guild=other)
    ix = await emu.message_command("Stylize image", emu.mallory, posted)
    menu = await emu.wait_for(lambda: (m := emu.original(ix)) and m.custom_ids() and m)
    # The style picker answers only to the person who opened it.
    ix_bob = await emu.press(menu, menu.custom_ids()[0], emu.bob, values=[PRESET])
    assert "belongs to someone else" in await emu.wait_for(lambda: ephemeral_text(emu, ix_bob))

    pick = await emu.press(menu, menu.custom_ids()[0], emu.mallory, values=[PRESET])
    job_id = job_id_of(await progress_message(emu, pick))
    job = await wait_delivered(app, job_id)
    assert (job.user_id, job.guild_id) == (str(emu.mallory.id), str(other.id))
    # Mallory is the admin of her own server only: the main server's admin cannot see her
    # job either.
    await refused(emu, await emu.slash("job", emu.admin, id=job_id), job_id)
    detail = await answered(emu, await emu.slash("job", emu.mallory, id=job_id, guild=other))
    assert job_id in detail.text()


async def test_stats_show_an_admin_their_own_servers_jobs(emu: DiscordEmulator,
                                                         app: App) -> None:
    async def stats(user: User, **where: Any) -> dict[str, str]:
        ix = await emu.slash("stylebot", user, subcommand="stats", **where)
        answer = await answered(emu, ix)
        assert answer.ephemeral
        return {f["name"]: f["value"] for f in answer.embeds[0]["fields"]}

    made_in: dict[str | None, int] = {}
    for job in await app.service.list_all(limit=1000):
        made_in[job.guild_id] = made_in.get(job.guild_id, 0) + 1
    main, other = str(emu.guild_id), str(emu.other_guild.id)
    assert made_in[main] > made_in[other] >= 1

    gate(app).open = False
    try:
        queued = await job_of(emu, await stylize(emu, emu.bob), private=False)
        mine = await stats(emu.admin)
        mallorys = await stats(emu.mallory, guild=emu.other_guild)
    finally:
        gate(app).open = True
    assert (mine["Jobs today"], mine["Queued"]) == (str(made_in[main] + 1), "1")
    assert (mallorys["Jobs today"], mallorys["Queued"]) == (str(made_in[other]), "0")
    assert mine["Workers"] == mallorys["Workers"] == "1"  # the pool is everyone's

    for user, where in ((emu.bob, {}), (emu.bob, {"guild": emu.other_guild})):
        ix = await emu.slash("stylebot", user, subcommand="stats", **where)
        assert "Only server admins" in await emu.wait_for(
            lambda ix=ix: ephemeral_text(emu, ix))  # type: ignore[misc]
    await wait_job(app, queued, lambda j: j.status.is_final)


async def test_a_private_result_never_goes_to_the_channel(emu: DiscordEmulator,
                                                          app: App) -> None:
    """With the interaction's token gone, a private painting goes to its owner's DM, not
    to the channel it was asked in (a public one would; see test_bot_stylize)."""
    gate(app).open = False
    try:
        ix = await stylize(emu, emu.alice, private=True)
        job_id = await job_of(emu, ix, private=True)
        in_channel = len(emu.messages_in(emu.channel_id))
        posts = emu.calls_to("POST", rf"^/channels/{emu.channel_id}/messages$")
        emu.expire_token(ix.token)
    finally:
        gate(app).open = True
    job = await wait_delivered(app, job_id)
    dm = emu.dm_channel(emu.alice)
    assert job.result_channel_id == str(dm)
    delivered = emu.messages[int(str(job.result_message_id))]
    assert delivered.channel_id == dm
    assert any(f.filename.startswith("stylebot-") for f in delivered.files)
    await asyncio.sleep(0.2)
    assert len(emu.messages_in(emu.channel_id)) == in_channel
    # Only its own private placeholder (which only Alice sees) speaks of it there.
    public = [m for m in emu.messages_in(emu.channel_id) if not m.ephemeral]
    assert not any(job_id in m.text() for m in public)
    assert emu.calls_to("POST", rf"^/channels/{emu.channel_id}/messages$") == posts


async def test_a_private_result_reaches_its_owner_when_its_message_is_gone(
        emu: DiscordEmulator, app: App) -> None:
    """The private placeholder that shows a private job's progress may be gone (deleted,
    or never turned into the progress message because Discord refused the edit): the
    result then comes as a new private follow-up, still for the owner's eyes only."""
    gate(app).open = False
    try:
        deleted = await stylize(emu, emu.alice, private=True)
        deleted_id = await job_of(emu, deleted, private=True)
        placeholder = emu.original(deleted)
        assert placeholder is not None
        placeholder.deleted = True
        emu.fail_next("PATCH", r"^/webhooks/\d+/[^/]+/messages/@original$", 403)
        refused_edit = await stylize(emu, emu.alice, private=True)
        await emu.wait_for(lambda: emu.calls_to("PATCH", r"/messages/@original$")
                           and emu.calls_to("PATCH", r"/messages/@original$")[-1].status == 403)
        refused_id = next(j.id for j in await app.service.list_for_user(str(emu.alice.id))
                          if j.id != deleted_id)
        posts = emu.calls_to("POST", rf"^/channels/{emu.channel_id}/messages$")
    finally:
        gate(app).open = True
    for job_id, ix in ((deleted_id, deleted), (refused_id, refused_edit)):
        job = await wait_delivered(app, job_id)
        delivered = emu.messages[int(str(job.result_message_id))]
        assert delivered.ephemeral
        assert delivered.interaction_token == ix.token
        assert any(f.filename == f"stylebot-{job_id}.png" for f in delivered.files)
    assert emu.calls_to("POST", rf"^/channels/{emu.channel_id}/messages$") == posts


async def test_how_a_private_job_ended_is_its_owners_to_know(emu: DiscordEmulator,
                                                           painted: dict[str, str]) -> None:
    private = painted["private"]
    ix = await emu.slash("cancel", emu.admin, id=private)
    assert await emu.wait_for(lambda: ephemeral_text(emu, ix)) == (
        f"Job {private} has already finished.")
    ix = await emu.slash("cancel", emu.alice, id=private)
    assert await emu.wait_for(lambda: ephemeral_text(emu, ix)) == (
        f"Job {private} has already finished (succeeded).")
