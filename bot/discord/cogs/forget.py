"""`/forget`: delete the pictures of all your jobs, once you have confirmed it.

The work is `JobFlow.forget`'s: the caller's queued and running jobs are cancelled, their
jobs' pictures deleted (the jobs stay in /history), then the messages the bot posted the
paintings in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord import embeds
from bot.discord.callers import caller_of
from bot.discord.views import Confirm

if TYPE_CHECKING:
    from bot.discord.client import StyleBot

CONFIRM_S = 120.0  # how long the question waits for an answer


class Forget(commands.Cog):
    def __init__(self, bot: StyleBot) -> None:
        self.bot = bot

    @app_commands.command(name="forget")
    async def forget(self, interaction: discord.Interaction[StyleBot]) -> None:
        """Delete the pictures of all your jobs (you are asked to confirm first)."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        service = self.bot.service
        user_id = str(interaction.user.id)
        jobs = await service.list_for_user(user_id, limit=await service.count_for_user(user_id))
        kept = [job for job in jobs if job.pictures_gone is None]
        if not kept:
            await interaction.edit_original_response(content="You have no pictures to delete.")
            return
        caller = caller_of(interaction)

        async def forget_all() -> str:
            removed, posts, kept = await self.bot.flow.forget(caller)
            return embeds.forgotten(removed, posts=posts, kept=kept)

        view = Confirm(owner_id=interaction.user.id, yes_label="Delete my pictures",
                       no_label="Keep them", no_text="Nothing was deleted.",
                       on_yes=forget_all, timeout=CONFIRM_S)
        await interaction.edit_original_response(content=embeds.forget_question(kept),
                                                 view=view)
        view.origin = interaction


async def setup(bot: StyleBot) -> None:
    await bot.add_cog(Forget(bot))
