"""`/stylebot stats` for a server's admins: its jobs, the workers and the image store at a
glance."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord import embeds
from bot.discord.callers import caller_of

if TYPE_CHECKING:
    from bot.discord.client import StyleBot


# A server's own command: only where the app is installed in the server (not through a
# user's own install), and only in the server (the bot's defaults are everywhere).
@app_commands.guild_only()
@app_commands.allowed_installs(guilds=True, users=False)
@app_commands.allowed_contexts(guilds=True, dms=False, private_channels=False)
@app_commands.default_permissions(manage_guild=True)
class Admin(commands.GroupCog, group_name="stylebot",
            group_description="stylebot administration"):
    def __init__(self, bot: StyleBot) -> None:
        self.bot = bot
        super().__init__()

    @app_commands.command(name="stats")
    async def stats(self, interaction: discord.Interaction[StyleBot]) -> None:
        """This server's queued and running jobs, jobs and average time today, the
        workers, and the image store's size and free space."""
        # Discord hides the command from others by default; a server may change that, so
        # the service checks too, and counts only this server's jobs.
        data = await self.bot.service.stats(caller=caller_of(interaction))
        # Sizing a large store takes a while: answer "thinking…" within Discord's 3 s.
        await interaction.response.defer(ephemeral=True, thinking=True)
        storage = self.bot.flow.storage
        blobs, size = await storage.usage_async()
        free = await asyncio.to_thread(storage.free_bytes)
        data = {**data, "store_blobs": blobs, "store_bytes": size, "free_bytes": free}
        await interaction.edit_original_response(embed=embeds.stats(data))


async def setup(bot: StyleBot) -> None:
    await bot.add_cog(Admin(bot))
