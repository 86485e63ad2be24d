"""`/styles`: the preset gallery, one painting per page."""

from __future__ import annotations

import asyncio
import io
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord import embeds
from bot.discord.views import Page, Pager
from stylizer import presets

if TYPE_CHECKING:
    from bot.discord.client import StyleBot


class Styles(commands.Cog):
    def __init__(self, bot: StyleBot) -> None:
        self.bot = bot
        self._thumbs: dict[str, bytes] = {}

    async def _thumbnail(self, preset: presets.Preset) -> bytes:
        if preset.name not in self._thumbs:
            self._thumbs[preset.name] = await asyncio.to_thread(
                presets.thumbnail, preset, self.bot.settings.styles_dir)
        return self._thumbs[preset.name]

    @app_commands.command(name="styles")
    async def styles(self, interaction: discord.Interaction[StyleBot]) -> None:
        """Browse the preset styles you can paint with."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        items = await asyncio.to_thread(presets.list_presets, self.bot.settings.styles_dir)

        async def render(index: int) -> Page:
            preset = items[index]
            name = f"{preset.name}.jpg"
            file = discord.File(io.BytesIO(await self._thumbnail(preset)), name)
            return embeds.preset(preset, index=index, count=len(items), thumbnail=name), [file]

        embed, files = await render(0)
        view = Pager(owner_id=interaction.user.id, count=len(items), render=render)
        await interaction.edit_original_response(embed=embed, attachments=files, view=view)


async def setup(bot: StyleBot) -> None:
    await bot.add_cog(Styles(bot))
