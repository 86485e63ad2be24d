"""Turning any error during an interaction into a short message for the user.

A `UserError` is shown as it is. Anything else is logged with its traceback and the
user gets an apology carrying a reference (the job id when there is one), never a
traceback.
"""

from __future__ import annotations

import logging
import math
import secrets
from typing import Any

import discord
from discord import app_commands

from bot.jobs.errors import UserError

log = logging.getLogger(__name__)


def user_message(error: BaseException, *, ref: str) -> str:
    """What the user reads for `error` (logs nothing)."""
    if isinstance(error, UserError):
        return error.message
    if isinstance(error, app_commands.CommandOnCooldown):
        return (f"You are sending requests too fast: try again in "
                f"{math.ceil(error.retry_after)} s.")
    if isinstance(error, app_commands.MissingPermissions | app_commands.CheckFailure):
        return "You are not allowed to use this command here."
    if isinstance(error, app_commands.TransformerError):
        return f"I could not understand `{error.value}`."
    return f"Sorry, something went wrong on my side. (reference `{ref}`)"


def unwrap(error: BaseException) -> BaseException:
    """The error a command raised, out of discord.py's wrappers."""
    if isinstance(error, app_commands.CommandInvokeError):
        return error.original
    if isinstance(error, app_commands.TransformerError) and isinstance(error.__cause__,
                                                                        UserError):
        return error.__cause__
    return error


async def report_error(interaction: discord.Interaction[Any], error: BaseException, *,
                       job_id: str | None = None) -> None:
    error = unwrap(error)
    ref = job_id or secrets.token_hex(4)
    if not isinstance(error, UserError | app_commands.AppCommandError):
        data: dict[str, Any] = dict(interaction.data or {})
        command = (interaction.command.qualified_name if interaction.command
                   else str(data.get("custom_id", "?")))
        log.error("error in %s for user %s (reference %s)", command, interaction.user.id, ref,
                  exc_info=error)
    await send_ephemeral(interaction, user_message(error, ref=ref))


async def send_ephemeral(interaction: discord.Interaction[Any], text: str) -> None:
    """Answers privately, whatever state the interaction's response is in."""
    try:
        if not interaction.response.is_done():
            await interaction.response.send_message(text, ephemeral=True)
        elif interaction.response.type == discord.InteractionResponseType.deferred_channel_message:
            # Every command here defers ephemerally, so its placeholder is private: put the
            # message there rather than leave "thinking..." spinning.
            await interaction.edit_original_response(content=text, embeds=[], attachments=[],
                                                     view=None)
        else:
            await interaction.followup.send(text, ephemeral=True)
    except discord.HTTPException as exc:
        log.warning("could not tell user %s about an error: %s", interaction.user.id, exc)
