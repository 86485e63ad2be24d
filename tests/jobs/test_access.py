"""The access rule (bot.jobs.access), case by case, and the service enforcing it."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from jobs_helpers import ServiceFactory, png

from bot.jobs.access import (
    Action,
    Caller,
    Context,
    Origin,
    allowed,
    bot_in_channel,
    may_post_in_channel,
    stats_scope,
)
from bot.jobs.errors import JobNotFound, NotAllowed

SEE, CANCEL, REUSE, DELETE = Action.see, Action.cancel, Action.reuse, Action.delete
STYLE = png(99)


@dataclass(frozen=True)
class Job:
    """A job made in server `guild_id` through its install (None: in the bot's DM), or,
    with `context`, elsewhere; `guild_install` False: through the user's own install."""

    user_id: str
    guild_id: str | None
    private: bool = False
    guild_install: bool = True
    context: str | None = None

    def __post_init__(self) -> None:
        if self.context is None:
            object.__setattr__(self, "context",
                               Context.guild if self.guild_id else Context.bot_dm)


def in_server(guild_id: str) -> Origin:
    """A job asked in a server's channel where the app is installed."""
    return Origin(guild_id, f"channel-of-{guild_id}", Context.guild, guild_install=True)


USER_INSTALLED = {"guild_install": False}  # asked where the bot is not a member


OWNER = Caller("alice", guild_id="A")
ADMIN_A = Caller("ann", guild_id="A", guild_admin=True)
ADMIN_B = Caller("mallory", guild_id="B", guild_admin=True)
MEMBER_A = Caller("bob", guild_id="A")
OWNER_IN_DM = Caller("alice")
ANN_IN_DM = Caller("ann")  # an admin of A, asking from a DM


@pytest.mark.parametrize(("caller", "job", "expected"), [
    # The owner may do everything, from anywhere.
    (OWNER, Job("alice", "A"), {SEE, CANCEL, REUSE, DELETE}),
    (OWNER, Job("alice", "A", private=True), {SEE, CANCEL, REUSE, DELETE}),
    (OWNER_IN_DM, Job("alice", "A", private=True), {SEE, CANCEL, REUSE, DELETE}),
    (Caller("alice", guild_id="B"), Job("alice", None), {SEE, CANCEL, REUSE, DELETE}),
    # An admin of the job's own server, asking from there: sees it unless private,
    # cancels it, never reuses it nor deletes its pictures.
    (ADMIN_A, Job("alice", "A"), {SEE, CANCEL}),
    (ADMIN_A, Job("alice", "A", private=True), {CANCEL}),
    # The same admin asking from a DM, or about a job of another server or a DM: nothing.
    (ANN_IN_DM, Job("alice", "A"), set()),
    (ADMIN_A, Job("alice", "B"), set()),
    (ADMIN_A, Job("alice", None), set()),
    # An admin of another server: nothing, whatever the job.
    (ADMIN_B, Job("alice", "A"), set()),
    (ADMIN_B, Job("alice", "A", private=True), set()),
    (ADMIN_B, Job("alice", None), set()),
    # A member who is no admin: nothing of anyone else's.
    (MEMBER_A, Job("alice", "A"), set()),
    # A job asked in server A through the user's own install (the bot is not in A): A's
    # admins have no power over it; its owner has every power, as anywhere.
    (ADMIN_A, Job("alice", "A", **USER_INSTALLED), set()),
    (OWNER, Job("alice", "A", **USER_INSTALLED), {SEE, CANCEL, REUSE, DELETE}),
    (OWNER_IN_DM, Job("alice", None, context=Context.private_channel, guild_install=False),
     {SEE, CANCEL, REUSE, DELETE}),
    # A caller that says it is an admin but comes from no server.
    (Caller("mallory", guild_admin=True), Job("alice", None), set()),
    # The operator at the command line: sees, cancels and deletes anything (a user's
    # request, passed on), paints nobody's photo.
    (Caller.cli(), Job("alice", "A", private=True), {SEE, CANCEL, DELETE}),
])
def test_who_may_do_what(caller: Caller, job: Job, expected: set[Action]) -> None:
    assert {a for a in Action if allowed(caller, job, a)} == expected


@pytest.mark.parametrize(("job", "bot_there", "public_there"), [
    (Job("alice", "A"), True, True),
    (Job("alice", "A", private=True), True, False),
    (Job("alice", None), True, True),  # the bot's own DM
    (Job("alice", "A", **USER_INSTALLED), False, False),
    (Job("alice", None, context=Context.private_channel, guild_install=False), False, False),
    (Job("cli", None, context="", guild_install=False), False, False),
])
def test_the_bot_posts_on_its_own_only_where_it_is_a_member(
        job: Job, bot_there: bool, public_there: bool) -> None:
    assert bot_in_channel(job) is bot_there
    assert may_post_in_channel(job) is public_there



def test_stats_are_scoped_to_the_admins_own_server() -> None:
    assert stats_scope(ADMIN_A) == "A"
    assert stats_scope(ADMIN_B) == "B"
    for caller in (MEMBER_A, OWNER_IN_DM, Caller("x", guild_admin=True)):
        with pytest.raises(NotAllowed):
            stats_scope(caller)


async def test_a_refusal_reads_like_a_missing_job(make_service: ServiceFactory) -> None:
    service = make_service()
    job = await service.submit(user_id="alice", user_name="alice", content=png(1),
                               style_image=STYLE, origin=in_server("A"), private=True)
    assert (await service.authorize(job.id, caller=OWNER, action=SEE)).id == job.id
    other = "zzzzzz" if job.id != "zzzzzz" else "yyyyyy"
    for action in Action:
        with pytest.raises(JobNotFound) as refused:
            await service.authorize(job.id, caller=ADMIN_B, action=action)
        with pytest.raises(JobNotFound) as missing:
            await service.authorize(other, caller=ADMIN_B, action=action)
        assert refused.value.message == f"No job of yours has the id `{job.id}`."
        assert missing.value.message == refused.value.message.replace(job.id, other)
    with pytest.raises(JobNotFound, match="No job of yours"):
        await service.authorize(job.id, caller=ADMIN_A, action=SEE)  # private
    with pytest.raises(JobNotFound, match="No job of yours"):
        await service.cancel(job.id, caller=ADMIN_B)
    assert (await service.get(job.id)).status == "queued"
    assert (await service.cancel(job.id, caller=ADMIN_A)).status == "cancelled"


async def test_stats_count_only_the_callers_server(make_service: ServiceFactory) -> None:
    service = make_service()
    for i, guild in enumerate(("A", "A", "B", None)):
        await service.submit(user_id=f"u{i}", user_name="u", content=png(i + 1),
                             style_image=STYLE,
                             origin=in_server(guild) if guild else Origin())
    a = await service.stats(caller=ADMIN_A)
    b = await service.stats(caller=ADMIN_B)
    everything = await service.stats(caller=Caller.cli())
    assert (a["queue_depth"], a["jobs_today"]) == (2, 2)
    assert (b["queue_depth"], b["jobs_today"]) == (1, 1)
    assert (everything["queue_depth"], everything["jobs_today"]) == (4, 4)
    with pytest.raises(NotAllowed):
        await service.stats(caller=MEMBER_A)


def test_a_refusal_shows_what_was_typed_short_and_plain() -> None:
    long = JobNotFound("k" * 3000, of_caller=True).message
    assert long == f"No job of yours has the id `{'k' * 16}…`."
    assert JobNotFound("`@everyone`", of_caller=True).message == (
        "No job of yours has the id `@everyone`.")
