"""`/history` (your recent jobs) and `/job` (one job in full)."""

from __future__ import annotations

import asyncio
import io
import math
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord import embeds, pictures, views
from bot.discord.callers import caller_of
from bot.discord.views import Page, Pager
from bot.jobs.access import Action, Caller, allowed
from bot.jobs.states import JobStatus

if TYPE_CHECKING:
    from bot.discord.client import StyleBot
    from bot.jobs.records import JobRecord

PAGE_SIZE = 5


class History(commands.Cog):
    def __init__(self, bot: StyleBot) -> None:
        self.bot = bot

    @app_commands.command(name="history")
    @app_commands.describe(limit="How many of your latest jobs to show")
    async def history(self, interaction: discord.Interaction[StyleBot],
                      limit: app_commands.Range[int, 1, 100] = 20) -> None:
        """Your recent paintings, newest first."""
        # Only the caller's own jobs, whichever server they ask from (bot.jobs.access).
        await interaction.response.defer(ephemeral=True, thinking=True)
        user_id = str(interaction.user.id)
        service = self.bot.service
        total = min(limit, await service.count_for_user(user_id))
        pages = max(1, math.ceil(total / PAGE_SIZE))

        async def render(index: int) -> Page:
            offset = index * PAGE_SIZE
            jobs = await service.list_for_user(user_id, limit=min(PAGE_SIZE, total - offset),
                                               offset=offset) if total > offset else []
            return embeds.history(jobs, page=index, pages=pages, total=total), []

        embed, _ = await render(0)
        view = Pager(owner_id=interaction.user.id, count=pages, render=render) if pages > 1 \
            else discord.utils.MISSING
        await interaction.edit_original_response(embed=embed, view=view)

    @app_commands.command(name="job")
    @app_commands.rename(job_id="id")
    @app_commands.describe(job_id="The job's id, e.g. k3x9p2")
    async def job(self, interaction: discord.Interaction[StyleBot], job_id: str) -> None:
        """One of your jobs in full: pictures, parameters and status."""
        service = self.bot.service
        caller = caller_of(interaction)
        job = await service.authorize(job_id, caller=caller, action=Action.see)
        await interaction.response.defer(ephemeral=True, thinking=True)
        files: list[discord.File] = []
        painting = None
        if job.pictures_gone is None:
            files.append(discord.File(io.BytesIO(await asyncio.to_thread(
                pictures.thumbnail, await service.read_input(job.id))), "input.jpg"))
            output = await service.read_output(job.id)
            if output is not None:
                # The painting itself, as its result is sent (animated if it is, shrunk
                # only to fit the upload limit): where the bot could not deliver it (DMs
                # closed), this is where its owner gets it.
                fitted = await asyncio.to_thread(pictures.fit_to_limit, output,
                                                 interaction.filesize_limit)
                painting = f"stylebot-{job.id}.{fitted.ext}"
                files.append(discord.File(io.BytesIO(fitted.data), painting))
        embed = embeds.job_detail(job, input_name="input.jpg" if files else None,
                                  output_name=painting,
                                  retention_days=self.bot.settings.retention_days)
        view = views.job_view(job.id, detail_actions(job, caller))
        await interaction.edit_original_response(embed=embed, attachments=files,
                                                 view=view if view.children
                                                 else discord.utils.MISSING)


def detail_actions(job: JobRecord, caller: Caller) -> list[str]:
    """The buttons `/job` shows this caller: whoever may see a job may cancel it; only its
    owner may paint it again, or delete its pictures once it has ended."""
    status = JobStatus(job.status)
    if status.is_active:
        return ["cancel"]
    if job.pictures_gone is not None:
        return []
    actions = []
    if status == JobStatus.succeeded and allowed(caller, job, Action.reuse):
        actions += ["again", "more", "less"]
    if allowed(caller, job, Action.delete):
        actions.append("delete")
    return actions


async def setup(bot: StyleBot) -> None:
    await bot.add_cog(History(bot))
