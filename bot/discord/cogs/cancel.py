"""`/cancel`: stop one of your jobs (a server's admins may stop any job made there)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord.callers import caller_of
from bot.jobs.ids import normalize_job_id

if TYPE_CHECKING:
    from bot.discord.client import StyleBot


class Cancel(commands.Cog):
    def __init__(self, bot: StyleBot) -> None:
        self.bot = bot

    @app_commands.command(name="cancel")
    @app_commands.rename(job_id="id")
    @app_commands.describe(job_id="The job's id, e.g. k3x9p2")
    async def cancel(self, interaction: discord.Interaction[StyleBot], job_id: str) -> None:
        """Cancel one of your painting jobs."""
        job_id = normalize_job_id(job_id)
        await interaction.response.defer(ephemeral=True, thinking=True)
        await self.bot.service.cancel(job_id, caller=caller_of(interaction))
        await interaction.edit_original_response(content=f"Job `{job_id}` is cancelled.")


async def setup(bot: StyleBot) -> None:
    await bot.add_cog(Cancel(bot))
