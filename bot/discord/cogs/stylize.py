"""`/stylize` and the "Stylize image" message context menu."""

from __future__ import annotations

import asyncio
import functools
import logging
import weakref
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord import validation
from bot.discord.validation import AttachmentInfo
from bot.discord.views import PresetPicker
from bot.jobs.errors import InvalidRequest, UserError
from stylizer import presets
from stylizer.errors import UnknownStyle
from stylizer.images import describe_allowed
from stylizer.params import limits

if TYPE_CHECKING:
    from bot.discord.client import StyleBot

log = logging.getLogger(__name__)

_SIZE = limits()["size"]
_STRENGTH = limits()["style_weight"]
# Discord's option ranges come from StyleParams (the server may allow less; see build_params).
SizeRange = app_commands.Range[int, int(_SIZE.min or 32), int(_SIZE.max or 2048)]
StrengthRange = app_commands.Range[float, float(_STRENGTH.min or 0.01),
                                   float(_STRENGTH.max or 100.0)]


def request_rate(interaction: discord.Interaction[StyleBot]) -> app_commands.Cooldown | None:
    """Each user's painting requests per minute, from the settings (None: no limit)."""
    per_minute = interaction.client.settings.requests_per_minute
    return app_commands.Cooldown(per_minute, 60.0) if per_minute > 0 else None


def attachment_info(a: discord.Attachment) -> AttachmentInfo:
    return AttachmentInfo(a.filename, a.content_type, a.size, a.width, a.height)


class Stylize(commands.Cog):
    def __init__(self, bot: StyleBot) -> None:
        self.bot = bot
        self.menu = app_commands.ContextMenu(name="Stylize image", callback=self.stylize_message)
        bot.tree.add_command(self.menu)
        # One download and byte check at a time per user: a flood of uploads from one user
        # waits behind itself, not in the shared thread pool ahead of everyone else's.
        self._downloading: weakref.WeakValueDictionary[int, asyncio.Lock] = (
            weakref.WeakValueDictionary())

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.menu.name, type=self.menu.type)

    # ---- helpers ---------------------------------------------------------------------
    def _check_meta(self, attachment: discord.Attachment, what: str) -> None:
        s = self.bot.settings
        validation.check_attachment(attachment_info(attachment), what=what,
                                    max_bytes=s.max_upload_bytes, max_pixels=s.max_pixels)

    async def _download(self, user: discord.abc.User, attachment: discord.Attachment,
                        what: str) -> bytes:
        s = self.bot.settings
        lock = self._downloading.get(user.id)
        if lock is None:
            lock = self._downloading[user.id] = asyncio.Lock()
        async with lock:
            data = await self.bot.fetcher.fetch(attachment.url, what=what)
            await asyncio.to_thread(validation.check_image_bytes, data, what=what,
                                    max_bytes=s.max_upload_bytes, max_pixels=s.max_pixels)
        return data

    def _check_preset(self, name: str) -> str:
        try:
            return presets.get(name, self.bot.settings.styles_dir).name
        except UnknownStyle as exc:
            raise InvalidRequest.from_stylizer(exc) from exc

    # ---- /stylize ----------------------------------------------------------------------
    @app_commands.command(name="stylize")
    @app_commands.checks.dynamic_cooldown(request_rate)
    @app_commands.describe(
        image="The photo to paint; an animated GIF, WebP or PNG is painted frame by frame",
        style="A preset painting (start typing to search)",
        style_image="Or: your own image to take the style from",
        strength="How much style: 1 is the default, 2 twice as much",
        size="Long side of the painting in pixels (animations are smaller unless you say)",
        preserve_colors="Keep the photo's colours",
        private="Only you see the painting",
    )
    async def stylize(self, interaction: discord.Interaction[StyleBot],
                      image: discord.Attachment, style: str | None = None,
                      style_image: discord.Attachment | None = None,
                      strength: StrengthRange | None = None, size: SizeRange | None = None,
                      preserve_colors: bool | None = None, private: bool = False) -> None:
        """Paint a photo in the style of a famous artwork, or of an image you upload."""
        s = self.bot.settings
        async with self.bot.flow.place(interaction) as ticket:  # in the order they arrive
            # Everything that needs no download is checked before answering, so a mistake
            # costs the user no wait.
            validation.check_style_choice(style, style_image is not None)
            self._check_meta(image, "photo")
            if style_image is not None:
                self._check_meta(style_image, "style image")
            preset = self._check_preset(style) if style else None
            params = validation.build_params(self.bot.default_params, strength=strength,
                                             size=size, preserve_colors=preserve_colors,
                                             max_size=s.max_size)
            await interaction.response.defer(ephemeral=True, thinking=True)
            await self.bot.flow.admission.admit(ticket)  # a place, before any download
            content = await self._download(interaction.user, image, "photo")
            style_bytes = (await self._download(interaction.user, style_image, "style image")
                           if style_image else None)
            await self.bot.flow.start_job(interaction, content=content, style=preset,
                                          style_image=style_bytes, params=params,
                                          private=private, source="slash", ticket=ticket)

    @stylize.autocomplete("style")
    async def style_autocomplete(self, interaction: discord.Interaction[StyleBot],
                                 current: str) -> list[app_commands.Choice[str]]:
        found = presets.suggest(current, self.bot.settings.styles_dir, limit=25)
        return [app_commands.Choice(name=p.label[:100], value=p.name) for p in found]

    # ---- context menu ------------------------------------------------------------------
    @app_commands.checks.dynamic_cooldown(request_rate)
    async def stylize_message(self, interaction: discord.Interaction[StyleBot],
                              message: discord.Message) -> None:
        image = next((a for a in message.attachments
                      if validation.could_be_image(a.filename, a.content_type)), None)
        if image is None:
            raise UserError(f"That message has no image I can paint ({describe_allowed()}).",
                            code="no_image")
        self._check_meta(image, "image")
        await interaction.response.defer(ephemeral=True, thinking=True)
        # Download now: attachment links expire, and the user may take a while to choose.
        content = await self._download(interaction.user, image, "image")
        choices = await asyncio.to_thread(presets.list_presets, self.bot.settings.styles_dir)
        picker = PresetPicker(owner_id=interaction.user.id,
                              options=[(p.name, p.label) for p in choices],
                              on_pick=functools.partial(self._picked, content=content))
        await interaction.edit_original_response(content="Which style should I paint it in?",
                                                 view=picker)

    async def _picked(self, interaction: discord.Interaction[StyleBot], style: str, *,
                      content: bytes) -> None:
        async with self.bot.flow.place(interaction) as ticket:  # the request is made now
            params = validation.build_params(self.bot.default_params, strength=None,
                                             size=None, preserve_colors=None,
                                             max_size=self.bot.settings.max_size)
            await interaction.response.edit_message(content=f"Starting `{style}`…", view=None)
            await self.bot.flow.admission.admit(ticket)
            await self.bot.flow.start_job(interaction, content=content, style=style,
                                          style_image=None, params=params, private=False,
                                          source="context_menu", ticket=ticket)


async def setup(bot: StyleBot) -> None:
    await bot.add_cog(Stylize(bot))
