"""Who an interaction comes from and where, as the job service's access rule needs it.

The rule itself lives in `bot.jobs.access`; this only reads Discord's side of it: the
interaction's `context` and `authorizing_integration_owners` (Discord API, "Receiving
and Responding", the interaction object), which say where it was made and through which
installation of the app: the server's own (the bot is a member there) or the user's.
"""

from __future__ import annotations

from typing import Any

import discord

from bot.jobs.access import Caller, Context, Origin


def is_guild_admin(interaction: discord.Interaction[Any]) -> bool:
    """Administrator or Manage Server, as Discord resolved the member's permissions in the
    channel of the interaction (`member.permissions` in the payload), in a server where
    the app is installed; never in a DM, nor through a user's own install."""
    perms = interaction.permissions
    return (interaction.guild_id is not None and interaction.is_guild_integration()
            and (perms.administrator or perms.manage_guild))


def caller_of(interaction: discord.Interaction[Any]) -> Caller:
    """The interaction's user, the server it comes from, and whether they administer it."""
    guild_id = interaction.guild_id
    return Caller(user_id=str(interaction.user.id),
                  guild_id=str(guild_id) if guild_id is not None else None,
                  guild_admin=is_guild_admin(interaction))


def context_of(interaction: discord.Interaction[Any]) -> Context:
    """Where the interaction was made (Discord's `context`; from the channel when an older
    payload has none)."""
    where = interaction.context
    if where.private_channel:
        return Context.private_channel
    if where.dm_channel:
        return Context.bot_dm
    if where.guild or interaction.guild_id is not None:
        return Context.guild
    return Context.bot_dm


def origin_of(interaction: discord.Interaction[Any]) -> Origin:
    """Where a job asked for by this interaction was asked, for the job's row."""
    guild_id, channel_id = interaction.guild_id, interaction.channel_id
    return Origin(guild_id=str(guild_id) if guild_id is not None else None,
                  channel_id=str(channel_id) if channel_id is not None else None,
                  context=context_of(interaction),
                  guild_install=interaction.is_guild_integration())
