"""End to end: discord.py's client, the job service, a SQLite file and a real worker pool,
against the emulated Discord. One bot for the module; tests run in file order."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from bot_helpers import (
    PRESET,
    STYLE_PACK,
    bomb_png,
    bot_running,
    decode,
    ephemeral_text,
    gate,
    job_id_of,
    make_settings,
    noise_png,
    painting,
    photo_png,
    progress_message,
    stripes_png,
    truncated_png,
    wait_delivered,
    wait_painting,
)
from emulator import DiscordEmulator, Upload

from bot.app import App, push_commands
from bot.jobs.states import JobStatus
from stylizer import presets

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def app(emu: DiscordEmulator, tmp_path_factory: pytest.TempPathFactory
              ) -> AsyncIterator[App]:
    # Up to three compatible jobs share a batch, as on a GPU.
    settings = make_settings(emu, tmp_path_factory.mktemp("bot"), max_batch=3)
    await push_commands(settings)  # the emulator types interaction options from this
    async with bot_running(settings, gate=True) as running_app:
        yield running_app


async def jobs_of(app: App, user: Any) -> int:
    return await app.service.count_for_user(str(user.id))


async def test_the_client_connects_and_sees_the_guild(emu: DiscordEmulator, app: App) -> None:
    assert emu.identifies == 1
    assert app.client.user is not None
    assert app.client.user.id == emu.app_id
    guild = app.client.get_guild(emu.guild_id)
    assert guild is not None
    assert guild.get_channel(emu.channel_id) is not None


async def test_a_dropped_gateway_connection_is_resumed(emu: DiscordEmulator,
                                                       app: App) -> None:
    await emu.drop_connections()
    await emu.wait_for(lambda: emu.resumes == 1, 30)
    assert emu.identifies == 1  # resumed, not a new session
    ix = await emu.slash("stylebot", emu.admin, subcommand="stats")
    assert (await emu.response(ix))["type"] == 5


async def test_stylize_with_a_preset_delivers_a_png(emu: DiscordEmulator, app: App) -> None:
    ix = await emu.slash("stylize", emu.alice, image=Upload("photo.png", photo_png()),
                         style=PRESET)
    first = await emu.response(ix)
    assert first["type"] == 5
    assert first["data"]["flags"] & 64

    progress = await progress_message(emu, ix)
    assert not progress.ephemeral
    job_id = job_id_of(progress)
    assert f"job:cancel:{job_id}" in progress.custom_ids()
    receipt = await emu.wait_for(lambda: ephemeral_text(emu, ix))
    assert job_id in receipt

    image = decode(await wait_painting(emu, progress))
    assert image.format == "PNG"
    assert max(image.size) == 48
    assert "ready" in progress.text()
    assert progress.custom_ids() == [f"job:again:{job_id}", f"job:more:{job_id}",
                                     f"job:less:{job_id}"]
    job = await wait_delivered(app, job_id)
    assert job.status == JobStatus.succeeded
    assert job.style == PRESET
    assert job.source == "slash"
    assert job.user_id == str(emu.alice.id)
    assert job.result_message_id == str(progress.id)
    # While it ran, the same message showed progress with a preview, at most every ~4 s.
    previews = [text for text, files in progress.history if "preview.jpg" in files]
    assert previews
    assert "Painting" in previews[0]
    assert "%" in previews[0]
    assert len(previews) <= 1 + (job.seconds or 0) / 4


async def test_a_custom_style_image_privately(emu: DiscordEmulator, app: App) -> None:
    ix = await emu.slash("stylize", emu.alice, image=Upload("photo.jpg.png", photo_png(seed=2)),
                         style_image=Upload("stripes.png", stripes_png()), private=True)
    await emu.response(ix)
    original = await emu.wait_for(lambda: emu.original(ix))
    # A private job lives in the private placeholder: no public message at all.
    png = await wait_painting(emu, original)
    assert original.ephemeral
    assert not ix.followup_ids
    assert decode(png).format == "PNG"
    job = await wait_delivered(app, job_id_of(original))
    assert job.style == "custom"
    assert job.private


async def test_autocomplete_offers_matching_presets(emu: DiscordEmulator, app: App) -> None:
    ix = await emu.autocomplete("stylize", emu.alice, focused="style", style=PRESET[:4])
    answer = await emu.response(ix)
    assert answer["type"] == 8
    choices = answer["data"]["choices"]
    assert choices[0]["value"] == PRESET  # best match first
    assert len(choices) < len(await asyncio.to_thread(presets.list_presets, STYLE_PACK))

    everything = await emu.autocomplete("stylize", emu.alice, focused="style", style="")
    choices = (await emu.response(everything))["data"]["choices"]
    assert 1 <= len(choices) <= 25


BAD_REQUESTS: dict[str, tuple[dict[str, Any], str]] = {
    "text renamed .png": ({"image": Upload("notes.png", b"just some text, honestly\n" * 20,
                                           "image/png"), "style": PRESET}, "not an image"),
    "not an image type": ({"image": Upload("notes.txt", b"hello", "text/plain"),
                           "style": PRESET}, "not an image I accept"),
    "decompression bomb": ({"image": Upload("bomb.png", bomb_png()), "style": PRESET},
                           "megapixels"),
    "too many bytes": ({"image": Upload("huge.png", photo_png() + b"\0" * 1_100_000),
                        "style": PRESET}, "the limit is 1 MB"),
    "more bytes than it said": ({"image": Upload("sly.png", photo_png() + b"\0" * 1_100_000,
                                                 declared_size=4000), "style": PRESET},
                                "larger than 1 MB"),
    "corrupt": ({"image": Upload("cut.png", truncated_png()), "style": PRESET},
                "damaged or cut short"),
    "corrupt style image": ({"image": Upload("ok.png", photo_png()),
                             "style_image": Upload("cut.png", truncated_png())},
                            "style image"),
    "unknown style": ({"image": Upload("ok.png", photo_png()), "style": "starry-nite"},
                      "no style called"),
    "two styles": ({"image": Upload("ok.png", photo_png()), "style": PRESET,
                    "style_image": Upload("s.png", stripes_png())}, "not both"),
    "too large a size": ({"image": Upload("ok.png", photo_png()), "style": PRESET,
                          "size": 512}, "largest size"),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
async def test_bad_requests_get_a_private_message_and_no_job(emu: DiscordEmulator, app: App,
                                                             case: str) -> None:
    options, expected = BAD_REQUESTS[case]
    before = await jobs_of(app, emu.bob)
    ix = await emu.slash("stylize", emu.bob, **options)
    text = await emu.wait_for(lambda: ephemeral_text(emu, ix))
    assert expected in text
    assert "Traceback" not in text
    assert not ix.followup_ids
    assert await jobs_of(app, emu.bob) == before


async def test_per_user_limit_and_cancelling(emu: DiscordEmulator, app: App) -> None:
    gate(app).open = False  # accepted jobs stay queued
    try:
        first = await emu.slash("stylize", emu.alice, image=Upload("a.png", photo_png()),
                                style=PRESET)
        second = await emu.slash("stylize", emu.alice, image=Upload("b.png", photo_png()),
                                 style=PRESET)
        first_msg = await progress_message(emu, first)
        second_msg = await progress_message(emu, second)
        assert "Position in the queue" in first_msg.text()

        third = await emu.slash("stylize", emu.alice, image=Upload("c.png", photo_png()),
                                style=PRESET)
        text = await emu.wait_for(lambda: ephemeral_text(emu, third))
        assert "You already have 2 jobs" in text
        assert not third.followup_ids

        # Someone else's Cancel button is refused, and so is their /cancel.
        a_id, b_id = job_id_of(first_msg), job_id_of(second_msg)
        press = await emu.press(first_msg, f"job:cancel:{a_id}", emu.bob)
        assert "No job of yours" in await emu.wait_for(lambda: ephemeral_text(emu, press))
        cmd = await emu.slash("cancel", emu.bob, id=b_id)
        assert "No job of yours" in await emu.wait_for(lambda: ephemeral_text(emu, cmd))
        assert (await app.service.get(a_id)).status == JobStatus.queued

        # The owner's button and the owner's command work.
        press = await emu.press(first_msg, f"job:cancel:{a_id}", emu.alice)
        assert "cancelled" in await emu.wait_for(lambda: ephemeral_text(emu, press))
        cmd = await emu.slash("cancel", emu.alice, id=b_id.upper())
        assert "cancelled" in await emu.wait_for(lambda: ephemeral_text(emu, cmd))
        for msg, job_id in ((first_msg, a_id), (second_msg, b_id)):
            assert (await app.service.get(job_id)).status == JobStatus.cancelled
            await emu.wait_for(lambda m=msg: (  # type: ignore[misc]
                "Cancelled" in m.text() and not m.custom_ids()))
    finally:
        gate(app).open = True


async def test_an_admin_may_cancel_anyones_job(emu: DiscordEmulator, app: App) -> None:
    gate(app).open = False
    try:
        ix = await emu.slash("stylize", emu.bob, image=Upload("a.png", photo_png()), style=PRESET)
        job_id = job_id_of(await progress_message(emu, ix))
        cmd = await emu.slash("cancel", emu.admin, id=job_id)
        assert "cancelled" in await emu.wait_for(lambda: ephemeral_text(emu, cmd))
        assert (await app.service.get(job_id)).status == JobStatus.cancelled
    finally:
        gate(app).open = True


async def test_a_queued_job_s_message_shows_it_moving_up(emu: DiscordEmulator,
                                                         app: App) -> None:
    delivery = app.client.delivery
    delivery.refresh_s = 0.0  # as often as the queue moves (5 s apart in production)
    gate(app).open = False  # they stay queued
    try:
        first = await emu.slash("stylize", emu.alice, image=Upload("a.png", photo_png()),
                                style=PRESET)
        second = await emu.slash("stylize", emu.bob, image=Upload("b.png", photo_png()),
                                 style=PRESET)
        messages = [(emu.alice, await progress_message(emu, first)),
                    (emu.bob, await progress_message(emu, second))]

        def place(message: Any) -> bool:
            return "Position in the queue: **2**" in message.text()

        # The fair order puts whoever has had fewer turns in this module first: bob's job
        # may go ahead of alice's, which was alone when it was answered. Both messages
        # come to show where they are.
        await emu.wait_for(lambda: sorted(place(m) for _, m in messages) == [False, True])
        (ahead, ahead_msg), (_, behind_msg) = sorted(messages, key=lambda um: place(um[1]))
        cmd = await emu.slash("cancel", ahead, id=job_id_of(ahead_msg))
        assert "cancelled" in await emu.wait_for(lambda: ephemeral_text(emu, cmd))
        await emu.wait_for(lambda: "Position in the queue: **1**" in behind_msg.text())
        assert "Queued" in behind_msg.text()
    finally:
        delivery.refresh_s = 5.0
        gate(app).open = True
    await wait_delivered(app, job_id_of(behind_msg))


async def test_the_request_that_arrived_first_is_ahead_in_the_queue_whatever_its_download(
        emu: DiscordEmulator, app: App) -> None:
    # Two users new to the bot (the same round of the fair order); the first to ask has a
    # slow download, so the second's job is in the database first.
    carol, dave = emu.add_user("carol"), emu.add_user("dave")
    emu.cdn_delay_s["slow.png"] = 1.5
    gate(app).open = False  # they stay queued
    try:
        slow = await emu.slash("stylize", carol, image=Upload("slow.png", photo_png()),
                               style=PRESET)
        fast = await emu.slash("stylize", dave, image=Upload("fast.png", photo_png()),
                               style=PRESET)
        fast_msg = await progress_message(emu, fast)
        assert not slow.followup_ids  # still downloading when the other job was shown
        slow_msg = await progress_message(emu, slow)
        first = await app.service.get(job_id_of(slow_msg))
        second = await app.service.get(job_id_of(fast_msg))
        # First come, first served: the queue's order is the order the requests arrived,
        # and the reply shown first already counted the request still on its way.
        assert first.created_at < second.created_at
        place = await app.service.queue_position(first.id)
        assert place is not None
        assert await app.service.queue_position(second.id) == place + 1
        # As first posted (the queue's moves edit them later).
        assert f"Position in the queue: **{place}**" in slow_msg.history[0][0]
        assert f"Position in the queue: **{place + 1}**" in fast_msg.history[0][0]
    finally:
        emu.cdn_delay_s.clear()
        gate(app).open = True
    await wait_delivered(app, job_id_of(slow_msg))
    await wait_delivered(app, job_id_of(fast_msg))


async def test_queued_jobs_of_several_users_are_painted_together(
        emu: DiscordEmulator, app: App, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="bot.jobs.dispatch")
    gate(app).open = False  # they queue up, as behind a busy worker
    try:
        ixs = [await emu.slash("stylize", user, image=Upload(f"{i}.png", photo_png()),
                               style=PRESET)
               for i, user in enumerate((emu.alice, emu.bob, emu.admin))]
        messages = [await progress_message(emu, ix) for ix in ixs]
    finally:
        gate(app).open = True
    for message, user in zip(messages, (emu.alice, emu.bob, emu.admin), strict=True):
        image = decode(await wait_painting(emu, message))
        assert max(image.size) == 48
        job = await wait_delivered(app, job_id_of(message))
        assert job.user_id == str(user.id)
        assert job.result_message_id == str(message.id)  # each on its own message
    assert any("batch of 3" in r.getMessage() for r in caplog.records)


async def test_history_and_job(emu: DiscordEmulator, app: App) -> None:
    mine = await app.service.list_for_user(str(emu.alice.id), limit=50)
    assert len(mine) >= 4
    ix = await emu.slash("history", emu.alice, limit=3)
    await emu.response(ix)
    page = await emu.wait_for(lambda: (m := emu.original(ix)) and not m.loading and m)
    assert page.ephemeral
    shown = [f["name"].strip("`") for f in page.embeds[0]["fields"]]
    assert shown == [j.id for j in mine[:3]]  # newest first
    done = next(j for j in mine if j.status == JobStatus.succeeded and not j.private)
    if done.id in shown:
        assert "[result](https://discord.com/channels/" in page.text()

    ix = await emu.slash("job", emu.alice, id=done.id)
    await emu.response(ix)
    detail = await emu.wait_for(lambda: (m := emu.original(ix)) and not m.loading and m)
    assert detail.ephemeral
    assert done.id in detail.text()
    assert PRESET in detail.text()
    # The photo as a thumbnail, the painting itself (as its result was sent).
    assert sorted(f.filename for f in detail.files) == ["input.jpg", f"stylebot-{done.id}.png"]
    shown = next(f for f in detail.files if f.filename.endswith(".png"))
    assert shown.data == await app.service.read_output(done.id)
    assert detail.custom_ids() == [f"job:again:{done.id}", f"job:more:{done.id}",
                                   f"job:less:{done.id}", f"job:delete:{done.id}"]

    ix = await emu.slash("job", emu.bob, id=done.id)
    assert f"No job of yours has the id `{done.id}`" in await emu.wait_for(
        lambda: ephemeral_text(emu, ix))
    ix = await emu.slash("job", emu.alice, id="zzzzzz")
    assert "No job of yours has the id `zzzzzz`" in await emu.wait_for(
        lambda: ephemeral_text(emu, ix))


async def test_the_message_context_menu(emu: DiscordEmulator, app: App) -> None:
    posted = emu.post_user_message(emu.bob, "look at my cat",
                                   (Upload("cat.png", photo_png(seed=7)),))
    ix = await emu.message_command("Stylize image", emu.alice, posted)
    await emu.response(ix)
    menu = await emu.wait_for(lambda: (m := emu.original(ix)) and m.custom_ids() and m)
    assert menu.ephemeral
    options = menu.components[0]["components"][0]["options"]
    assert PRESET in [o["value"] for o in options]
    assert len(options) <= 25

    pick = await emu.press(menu, menu.custom_ids()[0], emu.alice, values=[PRESET])
    progress = await progress_message(emu, pick)
    png = await wait_painting(emu, progress)
    assert decode(png).format == "PNG"
    job = await app.service.get(job_id_of(progress))
    assert job.source == "context_menu"
    assert job.style == PRESET
    assert job.user_id == str(emu.alice.id)


async def test_context_menu_on_a_message_without_an_image(emu: DiscordEmulator,
                                                          app: App) -> None:
    posted = emu.post_user_message(emu.bob, "no pictures here")
    ix = await emu.message_command("Stylize image", emu.alice, posted)
    assert "no image" in await emu.wait_for(lambda: ephemeral_text(emu, ix))


async def test_more_style_makes_a_child_job_and_only_for_the_owner(emu: DiscordEmulator,
                                                                   app: App) -> None:
    parent = next(j for j in await app.service.list_for_user(str(emu.alice.id), limit=50)
                  if j.status == JobStatus.succeeded and not j.private)
    # The painting can reach Discord a moment before the job is marked delivered.
    parent = await wait_delivered(app, parent.id)
    message = emu.messages[int(str(parent.result_message_id))]

    press = await emu.press(message, f"job:more:{parent.id}", emu.bob)
    assert "No job of yours" in await emu.wait_for(lambda: ephemeral_text(emu, press))

    press = await emu.press(message, f"job:more:{parent.id}", emu.alice)
    progress = await progress_message(emu, press)
    await wait_painting(emu, progress)
    child = await app.service.get(job_id_of(progress))
    assert child.parent_id == parent.id
    assert child.source == "button"
    assert child.params["style_weight"] == pytest.approx(2 * parent.params["style_weight"])
    assert await app.service.read_input(child.id) == await app.service.read_input(parent.id)


async def test_a_429_and_a_500_from_the_api_are_survived(emu: DiscordEmulator,
                                                        app: App) -> None:
    # The follow-up that posts the progress message is rate limited once, and the edit
    # that puts the painting in it fails once with a server error.
    emu.fail_next("POST", r"^/webhooks/\d+/[^/]+$", 429, retry_after=0.5)
    emu.fail_next("PATCH", r"^/webhooks/\d+/[^/]+/messages/\d+$", 500)
    ix = await emu.slash("stylize", emu.alice, image=Upload("a.png", photo_png()), style=PRESET)
    progress = await progress_message(emu, ix)
    await wait_painting(emu, progress)
    assert emu.faults_left() == 0
    assert emu.calls_to("POST", r"^/webhooks/")[-1].status == 200
    statuses = [c.status for c in emu.calls if c.path.startswith("/webhooks/")]
    assert 429 in statuses
    assert 500 in statuses
    await wait_delivered(app, job_id_of(progress))


async def test_after_the_token_expired_the_result_goes_to_the_channel(
        emu: DiscordEmulator, app: App) -> None:
    gate(app).open = False
    try:
        ix = await emu.slash("stylize", emu.alice, image=Upload("a.png", photo_png()),
                             style=PRESET)
        progress = await progress_message(emu, ix)
        emu.expire_token(ix.token)
    finally:
        gate(app).open = True
    job_id = job_id_of(progress)
    reply = await emu.wait_for(lambda: next(
        (m for m in emu.messages_in(emu.channel_id)
         if m.webhook_id is None and painting(m) and job_id in m.text()), None))
    assert f"<@{emu.alice.id}>" in reply.content
    assert reply.message_reference
    assert int(reply.message_reference["message_id"]) == progress.id
    assert decode(painting(reply)).format == "PNG"
    job = await wait_delivered(app, job_id)
    assert job.result_message_id == str(reply.id)
    assert job.result_channel_id == str(emu.channel_id)
    assert painting(progress) is None


async def test_when_discord_refuses_the_result_edit_the_result_goes_to_the_channel(
        emu: DiscordEmulator, app: App) -> None:
    """Not only an expired token: any refusal of the interaction's edit falls back."""
    gate(app).open = False
    try:
        ix = await emu.slash("stylize", emu.alice, image=Upload("a.png", photo_png()),
                             style=PRESET)
        progress = await progress_message(emu, ix)
        job_id = job_id_of(progress)
        emu.fail_next("PATCH", rf"^/webhooks/\d+/[^/]+/messages/{progress.id}$", 403,
                      times=50)
    finally:
        gate(app).open = True
    try:
        job = await wait_delivered(app, job_id)
    finally:
        emu.clear_faults()
    reply = emu.messages[int(str(job.result_message_id))]
    assert reply.channel_id == emu.channel_id
    assert reply.webhook_id is None  # a channel message, not the interaction's
    assert f"<@{emu.alice.id}>" in reply.content
    assert decode(painting(reply)).format == "PNG"


async def test_a_channel_that_refuses_means_a_dm(emu: DiscordEmulator, app: App) -> None:
    gate(app).open = False
    try:
        ix = await emu.slash("stylize", emu.alice, image=Upload("a.png", photo_png()),
                             style=PRESET)
        progress = await progress_message(emu, ix)
        emu.expire_token(ix.token)
        emu.refuse_channel(emu.channel_id)
    finally:
        gate(app).open = True
    try:
        job_id = job_id_of(progress)
        dm = await emu.wait_for(lambda: next(
            (m for m in emu.messages.values() if m.channel_id in emu.dm_channels
             and job_id in m.text() and painting(m)), None))
        assert emu.dm_channels[dm.channel_id] == emu.alice.id
        assert emu.calls_to("POST", rf"^/channels/{emu.channel_id}/messages$")[-1].status == 403
        job = await wait_delivered(app, job_id)
        assert job.result_channel_id == str(dm.channel_id)
    finally:
        emu.refusing_channels.clear()


async def test_an_oversized_result_is_shrunk_to_fit(emu: DiscordEmulator, app: App) -> None:
    limit = 6000
    ix = await emu.slash("stylize", emu.alice, image=Upload("a.png", noise_png(96, 72)),
                         style=PRESET, size=96, filesize_limit=limit)
    progress = await progress_message(emu, ix)
    sent = await wait_painting(emu, progress)
    job = await app.service.get(job_id_of(progress))
    original = await app.service.read_output(job.id)
    assert original is not None
    assert len(original) > limit
    assert len(sent) <= limit
    assert decode(sent).format == "JPEG"
    assert progress.files[0].filename.endswith(".jpg")
    assert "upload limit" in progress.text()


async def test_stats_are_for_admins(emu: DiscordEmulator, app: App) -> None:
    ix = await emu.slash("stylebot", emu.admin, subcommand="stats")
    answer = await emu.response(ix)
    assert answer["type"] == 5  # "thinking…", privately, while the store is sized
    assert answer["data"]["flags"] & 64
    shown = await emu.wait_for(lambda: (m := emu.original(ix)) and not m.loading and m)
    fields = {f["name"]: f["value"] for f in shown.embeds[0]["fields"]}
    assert fields["Workers"] == "1"
    assert fields["Batch limit"] == "3"
    assert int(fields["Jobs today"]) >= 5
    blobs, size = await app.storage.usage_async()
    assert blobs > 0
    assert fields["Image store"] == f"{blobs} images, {size / 2**20:.1f} MB"
    assert fields["Free space"].endswith(" MB")

    ix = await emu.slash("stylebot", emu.alice, subcommand="stats")
    assert "Only server admins" in await emu.wait_for(lambda: ephemeral_text(emu, ix))


async def test_the_styles_gallery(emu: DiscordEmulator, app: App) -> None:
    ix = await emu.slash("styles", emu.alice)
    await emu.response(ix)
    page = await emu.wait_for(lambda: (m := emu.original(ix)) and m.files and m)
    assert page.ephemeral
    assert "style 1 of" in page.text()
    assert decode(page.files[0].data).format == "JPEG"
    _, next_id = page.custom_ids()
    # The pager answers only to whoever opened it.
    not_hers = await emu.press(page, next_id, emu.bob)
    assert "someone else's command" in await emu.wait_for(
        lambda: ephemeral_text(emu, not_hers))
    assert "style 1 of" in page.text()
    press = await emu.press(page, next_id, emu.alice)
    await emu.response(press)
    assert "style 2 of" in page.text()
    assert page.files


async def test_history_pages(emu: DiscordEmulator, app: App) -> None:
    ix = await emu.slash("history", emu.alice)
    await emu.response(ix)
    page = await emu.wait_for(lambda: (m := emu.original(ix)) and not m.loading and m)
    total = await jobs_of(app, emu.alice)
    assert total > 5
    assert "page 1 of" in page.text()
    first_ids = [f["name"] for f in page.embeds[0]["fields"]]
    _, next_id = page.custom_ids()
    press = await emu.press(page, next_id, emu.alice)
    assert (await emu.response(press))["type"] == 7
    assert "page 2 of" in page.text()
    assert not set(first_ids) & {f["name"] for f in page.embeds[0]["fields"]}


async def test_a_flood_of_requests_is_slowed_down(emu: DiscordEmulator, app: App) -> None:
    settings = app.client.settings
    app.client.settings = settings.replace(requests_per_minute=2)
    try:
        texts = []
        for i in range(3):  # bad uploads: each still costs a download, and no job is made
            ix = await emu.slash("stylize", emu.admin, image=Upload(
                f"notes{i}.png", b"just some text\n" * 20, "image/png"), style=PRESET)
            texts.append(await emu.wait_for(lambda ix=ix: ephemeral_text(emu, ix)))
        assert "not an image" in texts[0]
        assert "not an image" in texts[1]
        assert "too fast" in texts[2]
        assert "try again in" in texts[2]
        assert "Traceback" not in texts[2]
        # Another user is not slowed down by someone else's flood.
        ix = await emu.slash("stylize", emu.bob, image=Upload(
            "notes.png", b"just some text\n" * 20, "image/png"), style=PRESET)
        assert "not an image" in await emu.wait_for(lambda: ephemeral_text(emu, ix))
    finally:
        app.client.settings = settings
