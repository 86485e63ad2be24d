"""End to end: stylebot installed to a user's own account, used where the bot is not.

Alice has installed the app to her account. She uses it in "Alice's Club", a server
whose owner (`admin`) never added the bot, in a group DM with Bob, and in her DM with
the bot. Where the bot is not a member only the interaction's webhook reaches the
conversation, for 15 minutes: progress and paintings go through it; a job that outlives
it goes to Alice's DM with a link back, or, with her DMs closed, waits in /history; and
nobody there has a server admin's powers (`bot.jobs.access`).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio
from bot_helpers import (
    PRESET,
    answered,
    bot_running,
    decode,
    ephemeral_text,
    gate,
    job_id_of,
    make_settings,
    painting,
    photo_png,
    progress_message,
    wait_delivered,
    wait_painting,
)
from emulator import CommandUnavailable, DiscordEmulator, Guild, Interaction, Message, Upload

from bot.app import App, push_commands
from bot.discord.delivery import LAST_CALL, RETRY_S, TOKEN_MARGIN

pytestmark = pytest.mark.asyncio(loop_scope="module")

# How far ahead the bot's clock is put so that a new interaction's token has a little
# over a minute left for it: its last update is due at once (`Delivery._last_call`).
NEARLY_EXPIRED = timedelta(minutes=15) - TOKEN_MARGIN - LAST_CALL - timedelta(seconds=5)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def club(emu: DiscordEmulator) -> Guild:
    """A server without the bot, Alice and Bob among its members; `admin` owns it."""
    emu.install_for(emu.alice)
    emu.install_for(emu.admin)
    return emu.add_guild("Alice's Club", bot_member=False,
                         members=[emu.alice, emu.bob, emu.admin])


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def app(emu: DiscordEmulator, club: Guild, tmp_path_factory: pytest.TempPathFactory
              ) -> AsyncIterator[App]:
    settings = make_settings(emu, tmp_path_factory.mktemp("bot"), max_jobs_per_user=5)
    await push_commands(settings)
    async with bot_running(settings, gate=True) as running_app:
        yield running_app


def bot_calls_to(emu: DiscordEmulator, channel_id: int) -> list[Any]:
    """The bot's own REST calls on a channel (not through an interaction's webhook)."""
    return [c for c in emu.calls if re.match(rf"^/channels/{channel_id}(/|$)", c.path)]


async def stylize(emu: DiscordEmulator, **where: Any) -> Interaction:
    return await emu.slash("stylize", emu.alice, image=Upload("photo.png", photo_png(seed=6)),
                           style=PRESET, **where)


@pytest.fixture
def bot_clock_ahead(app: App) -> Iterator[None]:
    """The bot believes the interactions it gets now are nearly 15 minutes old."""
    delivery = app.client.delivery
    real = delivery.clock
    delivery.clock = lambda: datetime.now(UTC) + NEARLY_EXPIRED
    yield
    delivery.clock = real


async def test_stylize_in_a_server_without_the_bot(emu: DiscordEmulator, app: App,
                                                   club: Guild) -> None:
    """The painting comes back in the follow-up the command posted: the bot itself never
    touches the channel (it could not: it is not a member)."""
    ix = await stylize(emu, guild=club)
    assert ix.payload["authorizing_integration_owners"] == {"1": str(emu.alice.id)}
    message = await progress_message(emu, ix)
    assert message.channel_id == club.channel_id
    assert not message.ephemeral
    picture = decode(await wait_painting(emu, message))
    assert picture.size == (48, 36)
    job = await wait_delivered(app, job_id_of(message))
    assert (job.context, job.guild_install, job.guild_id) == ("guild", False, str(club.id))
    assert job.result_message_id == str(message.id)
    assert bot_calls_to(emu, club.channel_id) == []


@pytest.mark.parametrize("dm", ["the bot's", "Bob's"])
async def test_stylize_in_a_dm(emu: DiscordEmulator, app: App, dm: str) -> None:
    """In Alice's DM with the bot, or with Bob (where only the interaction reaches)."""
    channel = emu.dm_channel(emu.alice) if dm == "the bot's" else emu.private_dm(emu.alice,
                                                                                   emu.bob)
    ix = await stylize(emu, channel_id=channel)
    message = await progress_message(emu, ix)
    assert message.channel_id == channel
    await wait_painting(emu, message)
    job = await wait_delivered(app, job_id_of(message))
    assert job.guild_id is None
    assert job.context == ("bot_dm" if dm == "the bot's" else "private_channel")
    assert job.result_message_id == str(message.id)


async def outlived(emu: DiscordEmulator, app: App, *, then: Callable[[], None] = lambda: None,
                   **where: Any) -> tuple[Message, str, str]:
    """A job asked `where` that is still queued when its token ends: its message, its id,
    and the text of the message's last update. `then` runs as the token ends."""
    gate(app).open = False
    try:
        ix = await stylize(emu, **where)
        message = await progress_message(emu, ix)
        text: str = await emu.wait_for(
            lambda: "stops updating" in message.text() and message.text(), 30)
        emu.expire_token(ix.token)
        then()
    finally:
        gate(app).open = True
    return message, job_id_of(message), text


async def test_a_job_that_outlives_its_token_comes_by_dm(
        emu: DiscordEmulator, app: App, club: Guild, bot_clock_ahead: None) -> None:
    message, job_id, text = await outlived(emu, app, guild=club)
    assert "the painting will come to your DMs" in text
    dm = emu.dm_channel(emu.alice)
    link = f"https://discord.com/channels/{club.id}/{club.channel_id}/{message.id}"
    note = await emu.wait_for(lambda: next(
        (m for m in emu.messages_in(dm) if job_id in m.text() and not m.files), None))
    assert link in note.content  # said before the token ended
    job = await wait_delivered(app, job_id)
    delivered = emu.messages[int(str(job.result_message_id))]
    assert delivered.channel_id == dm
    assert delivered.files
    assert link in delivered.content  # a link back to where Alice asked
    assert "stops updating" in message.text()  # no edit after the token ended
    assert bot_calls_to(emu, club.channel_id) == []


async def test_a_discord_error_on_the_dm_is_tried_again(
        emu: DiscordEmulator, app: App, club: Guild, bot_clock_ahead: None) -> None:
    """The token has ended and Discord fails (503, which discord.py does not retry) when
    the painting is sent by DM: the bot tries again a little later."""
    delivery = app.client.delivery
    delivery.retry_s = 0.2
    dm = emu.dm_channel(emu.alice)
    _, job_id, _ = await outlived(emu, app, guild=club, then=lambda: emu.fail_next(
        "POST", rf"^/channels/{dm}/messages$", 503, times=2))
    try:
        job = await wait_delivered(app, job_id)
        assert emu.faults_left() == 0  # both failures were met
    finally:
        delivery.retry_s = RETRY_S
        emu.clear_faults()
    delivered = emu.messages[int(str(job.result_message_id))]
    assert delivered.channel_id == dm
    assert [m for m in emu.messages_in(dm) if painting(m) and job_id in m.text()] == [delivered]


async def test_with_dms_closed_it_waits_in_history(
        emu: DiscordEmulator, app: App, club: Guild, bot_clock_ahead: None) -> None:
    group = emu.group_dm(emu.alice, emu.bob)
    emu.close_dms(emu.alice)
    try:
        _, job_id, text = await outlived(emu, app, channel_id=group)
        job = await wait_delivered(app, job_id)
    finally:
        emu.open_dms(emu.alice)
    assert "Your DMs are closed to me" in text
    assert f"/job {job_id}" in text
    assert (job.context, job.result_message_id) == ("private_channel", None)
    assert job.status == "succeeded"
    assert not any(job_id in m.text() for m in emu.messages_in(emu.dm_channel(emu.alice))
                   if m.files)
    history = await answered(emu, await emu.slash("history", emu.alice, channel_id=group))
    assert job_id in history.text()
    detail = await answered(emu, await emu.slash("job", emu.alice, id=job_id, dm=True))
    assert [f.filename for f in detail.files] == ["input.jpg", f"stylebot-{job_id}.png"]
    assert bot_calls_to(emu, group) == []


async def test_a_server_admin_has_no_power_where_the_bot_is_not(
        emu: DiscordEmulator, app: App, club: Guild) -> None:
    """`admin` owns the club and administers it, but the bot is not installed there: the
    club's jobs are their owners' alone, and the server's own command is not offered."""
    gate(app).open = False
    try:
        job_id = job_id_of(await progress_message(emu, await stylize(emu, guild=club)))
        for name in ("cancel", "job"):
            ix = await emu.slash(name, emu.admin, guild=club, id=job_id)
            assert await emu.wait_for(lambda ix=ix: ephemeral_text(emu, ix)) == (  # type: ignore[misc]
                f"No job of yours has the id `{job_id}`.")
        assert (await app.service.get(job_id)).status == "queued"
        with pytest.raises(CommandUnavailable):
            await emu.slash("stylebot", emu.admin, guild=club, subcommand="stats")
    finally:
        gate(app).open = True
    await wait_delivered(app, job_id)


async def test_the_message_menu_on_an_image_in_a_group_dm(emu: DiscordEmulator,
                                                          app: App) -> None:
    group = emu.group_dm(emu.alice, emu.bob)
    posted = emu.post_user_message(emu.bob, "our cat", (Upload("cat.png", photo_png(seed=9)),),
                                   channel_id=group)
    ix = await emu.message_command("Stylize image", emu.alice, posted)
    assert ix.payload["context"] == 2
    menu = await emu.wait_for(lambda: (m := emu.original(ix)) and m.custom_ids() and m)
    assert menu.ephemeral
    pick = await emu.press(menu, menu.custom_ids()[0], emu.alice, values=[PRESET])
    message = await progress_message(emu, pick)
    assert message.channel_id == group
    assert not message.ephemeral
    await wait_painting(emu, message)
    job = await wait_delivered(app, job_id_of(message))
    assert (job.user_id, job.context, job.source) == (
        str(emu.alice.id), "private_channel", "context_menu")
    assert bot_calls_to(emu, group) == []


async def test_forget_deletes_what_the_interaction_still_reaches(
        emu: DiscordEmulator, app: App, club: Guild) -> None:
    """Where the bot is not a member, its messages can be deleted only through their
    interaction's webhook, for 15 minutes: /forget deletes those it still can, and says
    that the others stay."""
    emu.install_for(emu.bob)
    group = emu.group_dm(emu.alice, emu.bob)
    shown = []
    for where in ({"guild": club}, {"channel_id": group}):
        ix = await emu.slash("stylize", emu.bob, image=Upload("p.png", photo_png(seed=4)),
                             style=PRESET, **where)
        message = await progress_message(emu, ix)
        await wait_painting(emu, message)
        await wait_delivered(app, job_id_of(message))
        shown.append((ix, message))
    emu.expire_token(shown[1][0].token)  # the group DM's, 15 minutes on
    question = await answered(emu, await emu.slash("forget", emu.bob, guild=club))
    assert ("Messages I posted in conversations I am not part of can be deleted only within "
            "15 minutes of asking for them.") in question.text()
    await emu.press(question, question.custom_ids()[0], emu.bob)
    text = await emu.wait_for(lambda: "Deleted" in question.text() and question.text())
    assert "Deleted the pictures of 2 jobs and the message I posted a painting in." in text
    assert "One message with a painting, in a conversation I am not part of, can no" in text
    assert shown[0][1].deleted
    assert not shown[1][1].deleted
    assert bot_calls_to(emu, club.channel_id) == bot_calls_to(emu, group) == []
