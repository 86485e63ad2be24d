"""The words of a job's queued message (`bot.discord.embeds.queued`) in each case its
reply can meet: still queued, taken by a worker, already finished; what a job of an
animated photo's messages say of its frames; and the words where the bot is not a member
(links back, the last update before a token ends, what /forget could not reach)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from bot.discord import embeds
from bot.jobs.intake import AnimationPlan
from bot.jobs.records import JobRecord
from bot.jobs.retention import Removed
from bot.jobs.states import JobStatus

JOB = JobRecord(
    id="k3x9p2", user_id="1", user_name="alice", guild_id=None, channel_id=None,
    source="slash", style="starry-night", style_hash=None, input_hash="0" * 64,
    output_hash=None, params={"size": 256}, status=JobStatus.queued, error_code=None,
    error_message=None, attempts=0, step=0, total_steps=100,
    created_at=datetime(2026, 1, 1, tzinfo=UTC), started_at=None, finished_at=None,
    private=False, parent_id=None, interaction_token=None, token_expires_at=None,
    application_id=None, progress_message_id=None, result_message_id=None,
    result_channel_id=None, delivered=False)


@pytest.mark.parametrize(("position", "eta_s", "title", "lines"), [
    (3, 75.0, "Queued",
     ["Position in the queue: **3**", "Expected to be ready in about 1 min 15 s"]),
    (1, 0.4, "Queued", ["Position in the queue: **1**", "Expected to be ready in a moment"]),
    (None, 12.0, "Starting",
     ["A worker has started on it", "Expected to be ready in about 12 s"]),
    (None, None, "Finishing", ["Finished already; the result follows"]),
])
def test_a_queued_message_says_where_the_job_is_and_when_it_should_be_ready(
        position: int | None, eta_s: float | None, title: str, lines: list[str]) -> None:
    embed = embeds.queued(JOB, position=position, eta_s=eta_s)
    assert embed.title == title
    assert (embed.description or "").splitlines() == [
        "Style: `starry-night` · size 256 px", *lines]
    assert embed.footer.text == "job k3x9p2 · alice"


# -- animations ------------------------------------------------------------------------

@pytest.mark.parametrize(("plan", "line"), [
    (AnimationPlan("GIF", 144, 48), "Animated GIF: 48 of its 144 frames will be painted "
                                    "(every 3rd)"),
    (AnimationPlan("WEBP", 100, 48), "Animated WebP: 48 of its 100 frames will be painted "
                                     "(evenly spaced)"),
    (AnimationPlan("PNG", 12, 12), "Animated PNG: all 12 of its frames will be painted"),
    (AnimationPlan("GIF", 6, 1), "Animated GIF: only its first frame will be painted"),
    (AnimationPlan("GIF", 44, 2), "Animated GIF: 2 of its 44 frames will be painted "
                                  "(every 22nd)"),
])
def test_a_queued_animation_says_how_many_of_its_frames_will_be_painted(
        plan: AnimationPlan, line: str) -> None:
    embed = embeds.queued(JOB, position=2, eta_s=None, animation=plan)
    assert (embed.description or "").splitlines()[:3] == [
        "Style: `starry-night` · size 256 px", line, "Position in the queue: **2**"]


@pytest.mark.parametrize(("n", "word"), [(1, "1st"), (2, "2nd"), (3, "3rd"), (4, "4th"),
                                         (11, "11th"), (12, "12th"), (13, "13th"),
                                         (21, "21st"), (102, "102nd"), (111, "111th")])
def test_ordinals(n: int, word: str) -> None:
    assert embeds.ordinal(n) == word


def test_a_running_animation_shows_its_frames_beside_its_steps() -> None:
    job = replace(JOB, status=JobStatus.running)
    started = embeds.running(job, step=0, total=100, preview=False, frames=48)
    # Until its run reports, its total of steps (over every frame) is not known.
    assert started.description == "Style: `starry-night` · 0 of 48 frames done"
    assert started.title == "Painting… 0%"
    going = embeds.running(job, step=430, total=1200, preview=True, frame=12, frames=48)
    assert going.description == ("Style: `starry-night` · 12 of 48 frames done · "
                                 "step 430 of 1200")
    assert going.title == "Painting… 35%"
    still = embeds.running(job, step=4, total=9, preview=False)
    assert still.description == "Style: `starry-night` · step 4 of 9"


@pytest.mark.parametrize(("plan", "words"), [
    (AnimationPlan("GIF", 144, 48), "48 of 144 frames, evenly spaced"),
    (AnimationPlan("GIF", 6, 6), "6 frames"),
    (AnimationPlan("GIF", 6, 1), "the first of its 6 frames"),
])
def test_a_finished_animation_says_which_frames_it_has(plan: AnimationPlan,
                                                       words: str) -> None:
    job = replace(JOB, status=JobStatus.succeeded, total_steps=1200)
    embed = embeds.result(job, filename="stylebot-k3x9p2.gif", width=256, height=170,
                          animation=plan)
    assert (embed.description or "").split(" · ")[:4] == [
        "Style: `starry-night`", "256×170 px", words, "1200 steps"]
    assert embed.image.url == "attachment://stylebot-k3x9p2.gif"
    plain = embeds.result(job, filename="stylebot-k3x9p2.png", width=256, height=170)
    assert "frames" not in (plain.description or "")


# -- where the bot is not a member ------------------------------------------------------

IN_CLUB = replace(JOB, guild_id="10", channel_id="20", progress_message_id="30",
                  context="guild", guild_install=False)


@pytest.mark.parametrize(("job", "link"), [
    (IN_CLUB, "https://discord.com/channels/10/20/30"),
    # A private reply cannot be linked to: its channel is.
    (replace(IN_CLUB, private=True), "https://discord.com/channels/10/20"),
    (replace(IN_CLUB, guild_id=None, context="private_channel"),
     "https://discord.com/channels/@me/20/30"),
    (replace(JOB, channel_id=None), None),
])
def test_a_link_back_to_where_a_job_was_asked(job: JobRecord, link: str | None) -> None:
    assert embeds.asked_in(job) == link


def test_a_result_by_dm_says_where_it_was_asked_unless_it_was_there() -> None:
    assert embeds.dm_result_note(IN_CLUB) == (
        "Job `k3x9p2`, which you asked for here: https://discord.com/channels/10/20/30")
    assert embeds.dm_result_note(replace(IN_CLUB, guild_id=None, context="bot_dm")) is None


@pytest.mark.parametrize(("dms_open", "words"), [
    (True, "If it is not done by then, the painting will come to your DMs."),
    (False, "Your DMs are closed to me, so once it is done, find the painting with "
            "`/job k3x9p2` or in `/history`."),
    (None, "if they are open to me; if not, find the painting with `/job k3x9p2`"),
])
def test_the_last_update_before_a_token_ends_says_where_the_painting_goes(
        dms_open: bool | None, words: str) -> None:
    embed = embeds.token_ending(IN_CLUB, dms_open=dms_open)
    assert (embed.title, embed.description) == ("Queued", "Style: `starry-night`")
    running = embeds.token_ending(replace(IN_CLUB, status=JobStatus.running), dms_open=True)
    assert running.title == "Painting…"
    [field] = embed.fields
    assert field.name == "This message stops updating in a minute"
    assert (field.value or "").startswith("Discord lets me update it for 15 minutes only. ")
    assert words in (field.value or "")
    assert "https://discord.com/channels/10/20/30" in embeds.token_ending_dm(IN_CLUB)


def test_forget_says_which_messages_it_could_not_reach() -> None:
    removed = Removed(jobs=3, blobs=4)
    assert embeds.forgotten(removed, posts=1, kept=2) == (
        "Deleted the pictures of 3 jobs and the message I posted a painting in. They stay "
        "in `/history`, without pictures. 2 messages with paintings, in conversations I am "
        "not part of, can no longer be deleted: Discord lets me change them for 15 minutes "
        "only.")
    assert "not part of" not in embeds.forgotten(removed, posts=3)
