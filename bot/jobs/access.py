"""Who may do what with a job: the one place that decides it.

Every path that takes a job id or acts on a job asks `allowed` (through the service's
`authorize`, `cancel` and `stats`), so the rule below is the whole rule.

| who                                         | see it     | cancel it | reuse it | delete it |
|---------------------------------------------|------------|-----------|----------|-----------|
| the job's owner, wherever they ask from     | yes        | yes       | yes      | yes       |
| an admin of the server the job was made in, | unless it  | yes       | no       | no        |
| asking from that same server                | is private |           |          |           |
| anyone else (other servers' admins too)     | no         | no        | no       | no        |
| the operator (the `stylebot` command line)  | yes        | yes       | no       | yes       |

"See" is `/job`: the details, the photo, the preview and the painting. "Cancel" is
`/cancel` and the Cancel button. "Reuse" is the Again / More style / Less style buttons.
"Delete" is `/forget` and the Delete button of `/job`: the job's pictures go, its line
in `/history` stays (`bot.jobs.retention`).

- "Admin" means the Administrator or Manage Server permission, as Discord resolves it
  for the member in the channel the interaction comes from, in a server where the app
  is installed (its guild install: Discord's `authorizing_integration_owners` names the
  server). It is a power over that server only: a job made in another server, in a DM
  or a group DM, or in a server through someone's own install of the app (the bot is
  not a member there), has no admin but its owner.
- A private job's details and pictures are its owner's alone. The admin of its server
  may still cancel it, to keep the queue in order.
- Reusing (Again / More style / Less style) starts a new job from this job's photo,
  for the person who presses: only the owner may do it.
- `/history` lists the caller's own jobs only (private ones too: it answers privately).
- `/stylebot stats` shows a server's admin the jobs of that server and the shared
  worker pool; nobody else may ask (`stats_scope`).
- The "Stylize image" message menu paints an image from a message the caller can see
  and makes a job of the caller's own; its style picker answers only to the caller.
- Results go to the job's own interaction, else (unless private, or asked where the bot
  is not a member: `may_post_in_channel`) to the channel it was asked in, else to the
  owner's DM; never anywhere else (`bot.discord.delivery`).

Anyone refused a job is told only that no job of theirs has that id: the same words as
for an id that does not exist (`JobNotFound`), so a refusal never says a job exists.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

from bot.jobs.errors import NotAllowed


class Action(enum.StrEnum):
    see = "see"          # the job's details, its photo, preview and painting
    cancel = "cancel"    # stop it while queued or running
    reuse = "reuse"      # start a new job from its pictures (Again / More / Less style)
    delete = "delete"    # delete its pictures (`bot.jobs.retention`)


class Context(enum.StrEnum):
    """Where an interaction was made: Discord's interaction context types (Discord API,
    "Receiving and Responding", interaction context types)."""

    guild = "guild"                      # a server's channel
    bot_dm = "bot_dm"                    # the user's DM with the bot
    private_channel = "private_channel"  # a group DM, or a DM between users


@dataclass(frozen=True)
class Origin:
    """Where a job was asked for: the server (None outside one) and channel, the
    interaction's `context`, and `guild_install`: whether the app is installed in that
    server (Discord's `authorizing_integration_owners` holds its guild install), so that
    the bot is a member there. None everywhere for the command line."""

    guild_id: str | None = None
    channel_id: str | None = None
    context: Context | None = None
    guild_install: bool = False


@dataclass(frozen=True)
class Caller:
    """Who is asking, and from where.

    `guild_id`: the server the interaction comes from (None in a DM or a group DM).
    `guild_admin`: whether the caller administers that server (Administrator or Manage
    Server there) and the app is installed in it. `operator`: the person running the
    bot's own command line.
    """

    user_id: str
    guild_id: str | None = None
    guild_admin: bool = False
    operator: bool = False

    @classmethod
    def cli(cls) -> Caller:
        return cls(user_id="cli", operator=True)


class JobLike(Protocol):
    @property
    def user_id(self) -> str: ...
    @property
    def guild_id(self) -> str | None: ...
    @property
    def private(self) -> bool: ...
    @property
    def context(self) -> str | None: ...
    @property
    def guild_install(self) -> bool: ...


def admin_of_jobs_server(caller: Caller, job: JobLike) -> bool:
    """The caller administers the server the job was made in, and asks from there; the
    job was made through the app's install in that server, not a user's own."""
    return (caller.guild_admin and job.guild_id is not None and job.guild_install
            and caller.guild_id == job.guild_id)


def allowed(caller: Caller, job: JobLike, action: Action) -> bool:
    """Whether `caller` may do `action` with `job` (see the table in the module docstring)."""
    if caller.user_id == job.user_id:
        return True
    if caller.operator:
        return action is not Action.reuse  # the operator may delete, as an admin must

    if admin_of_jobs_server(caller, job):
        if action is Action.cancel:
            return True
        if action is Action.see:
            return not job.private
    return False


def bot_in_channel(job: JobLike) -> bool:
    """Whether the bot itself can post in the channel the job was asked in: a server
    channel where the app is installed (the bot is a member), or the user's DM with the
    bot. Elsewhere (a server reached through the user's own install, a group DM, a DM
    between users) only the interaction's webhook reaches it, for 15 minutes."""
    if job.context == Context.bot_dm:
        return True
    return job.context == Context.guild and job.guild_install


def may_post_in_channel(job: JobLike) -> bool:
    """Whether the bot may post the job's progress and result in the channel it was asked
    in, for everyone there, on its own (not through the interaction). A private job's are
    shown only to its owner: in the interaction's private reply, or in a DM."""
    return not job.private and bot_in_channel(job)


def stats_scope(caller: Caller) -> str:
    """The server whose jobs `/stylebot stats` may show this caller.

    Raises `NotAllowed` unless the caller administers the server they ask from.
    """
    if caller.guild_id is None or not caller.guild_admin:
        raise NotAllowed("Only server admins can see the stats.")
    return caller.guild_id
