"""Who an interaction comes from, as the job service's access rule needs it.

The rule itself lives in `bot.jobs.access`; this only reads Discord's side of it.
"""

from __future__ import annotations

from typing import Any

import discord

from bot.jobs.access import Caller


def is_guild_admin(interaction: discord.Interaction[Any]) -> bool:
    """Administrator or Manage Server, as Discord resolved the member's permissions in the
    channel of the interaction (`member.permissions` in the payload); never in a DM."""
    perms = interaction.permissions
    return interaction.guild_id is not None and (perms.administrator or perms.manage_guild)


def caller_of(interaction: discord.Interaction[Any]) -> Caller:
    """The interaction's user, the server it comes from, and whether they administer it."""
    guild_id = interaction.guild_id
    return Caller(user_id=str(interaction.user.id),
                  guild_id=str(guild_id) if guild_id is not None else None,
                  guild_admin=is_guild_admin(interaction))
