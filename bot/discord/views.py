"""Buttons and menus.

`JobButton` is a dynamic item: its custom id carries the action and the job id
(`job:again:k3x9p2`), so a button on a message sent before a restart still works
without any view being kept in memory. A press goes to the job flow the client holds
(`interaction.client.flow`), so this module imports nothing above it. Who may press
them is decided from the job, not from the message (`bot.jobs.access`): its owner, and
for "Cancel" an admin of the job's own server.

`OwnedView` is the other kind: a command's own menu (`Pager`, `PresetPicker`,
`Confirm`), which only the user who ran the command may use.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import discord

from bot.discord.errors import report_error, send_ephemeral

if TYPE_CHECKING:
    from bot.discord.client import StyleBot

log = logging.getLogger(__name__)

ACTION_LABELS = {
    "again": ("Again", "🎲", discord.ButtonStyle.primary),
    "more": ("More style", "➕", discord.ButtonStyle.secondary),
    "less": ("Less style", "➖", discord.ButtonStyle.secondary),
    "cancel": ("Cancel", "✖️", discord.ButtonStyle.danger),
    "delete": ("Delete pictures", "🗑️", discord.ButtonStyle.danger),
}
# Every action's button matches, also one sent before a restart.
JOB_BUTTON_ID = rf"job:(?P<action>{'|'.join(ACTION_LABELS)}):(?P<job_id>[0-9a-z]{{1,16}})"


class JobButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=JOB_BUTTON_ID):
    def __init__(self, action: str, job_id: str) -> None:
        label, emoji, style = ACTION_LABELS[action]
        super().__init__(discord.ui.Button(label=label, emoji=emoji, style=style,
                                           custom_id=f"job:{action}:{job_id}"))
        self.action = action
        self.job_id = job_id

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction[Any],
                             item: discord.ui.Item[Any], match: re.Match[str], /) -> JobButton:
        return cls(match["action"], match["job_id"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        # discord.py only logs errors raised here; route them to the user instead.
        bot: StyleBot = interaction.client
        try:
            await bot.flow.on_job_button(interaction, self.action, self.job_id)
        except Exception as exc:  # noqa: BLE001 - every error becomes a message + log line
            await report_error(interaction, exc, job_id=None)


def job_view(job_id: str, actions: Sequence[str]) -> discord.ui.View:
    """The job's buttons for `actions` (keys of `ACTION_LABELS`), in that order."""
    view = discord.ui.View(timeout=None)
    for action in actions:
        view.add_item(JobButton(action, job_id))
    return view


def progress_view(job_id: str) -> discord.ui.View:
    return job_view(job_id, ["cancel"])


def result_view(job_id: str) -> discord.ui.View:
    return job_view(job_id, ["again", "more", "less"])


class OwnedView(discord.ui.View):
    """A command's own menu: only `owner_id` may use it (others are told `not_yours`), and
    its errors reach the user as a command's do."""

    not_yours = "This belongs to someone else."

    def __init__(self, *, owner_id: int, timeout: float | None) -> None:
        super().__init__(timeout=timeout)
        self.owner_id = owner_id

    async def interaction_check(self, interaction: discord.Interaction[Any], /) -> bool:
        if interaction.user.id != self.owner_id:
            await send_ephemeral(interaction, self.not_yours)
            return False
        return True

    async def on_error(self, interaction: discord.Interaction[Any], error: Exception,
                       item: discord.ui.Item[Any], /) -> None:
        await report_error(interaction, error)


Page = tuple[discord.Embed, list[discord.File]]


class Pager(OwnedView):
    """◀ ▶ through `count` pages that `render(index)` draws; only `owner_id` may page."""

    not_yours = "These buttons belong to someone else's command."

    def __init__(self, *, owner_id: int, count: int, render: Callable[[int], Awaitable[Page]],
                 timeout: float = 300) -> None:
        super().__init__(owner_id=owner_id, timeout=timeout)
        self.count = count
        self.render = render
        self.index = 0
        self._sync()

    def _sync(self) -> None:
        self.previous.disabled = self.index <= 0
        self.next.disabled = self.index >= self.count - 1

    async def _show(self, interaction: discord.Interaction[Any], index: int) -> None:
        self.index = max(0, min(index, self.count - 1))
        self._sync()
        embed, files = await self.render(self.index)
        await interaction.response.edit_message(embed=embed, attachments=files, view=self)

    @discord.ui.button(label="◀", style=discord.ButtonStyle.secondary)
    async def previous(self, interaction: discord.Interaction[Any],
                       button: discord.ui.Button[Any]) -> None:
        await self._show(interaction, self.index - 1)

    @discord.ui.button(label="▶", style=discord.ButtonStyle.secondary)
    async def next(self, interaction: discord.Interaction[Any],
                   button: discord.ui.Button[Any]) -> None:
        await self._show(interaction, self.index + 1)


class PresetPicker(OwnedView):
    """The context menu's answer: pick a preset for an image already downloaded."""

    not_yours = "This menu belongs to someone else."

    def __init__(self, *, owner_id: int, options: Sequence[tuple[str, str]],
                 on_pick: Callable[[discord.Interaction[Any], str], Awaitable[None]],
                 timeout: float = 600) -> None:
        super().__init__(owner_id=owner_id, timeout=timeout)
        self.on_pick = on_pick
        select: discord.ui.Select[Any] = discord.ui.Select(
            placeholder="Choose a style", min_values=1, max_values=1,
            options=[discord.SelectOption(label=label[:100], value=value)
                     for value, label in options[:25]])
        select.callback = self._picked  # type: ignore[method-assign]
        self.select = select
        self.add_item(select)

    async def _picked(self, interaction: discord.Interaction[Any]) -> None:
        self.stop()
        await self.on_pick(interaction, self.select.values[0])


class Confirm(OwnedView):
    """A yes-or-no question on a private reply: "yes" runs `on_yes` and shows the text it
    returns; "no", or `timeout` seconds without an answer, shows `no_text`. Either way the
    buttons go. Set `origin` to the command's interaction once the question is shown, so
    that a timeout can edit it."""

    not_yours = "These buttons belong to someone else's command."

    def __init__(self, *, owner_id: int, yes_label: str, no_label: str, no_text: str,
                 on_yes: Callable[[], Awaitable[str]], timeout: float = 120) -> None:
        super().__init__(owner_id=owner_id, timeout=timeout)
        self.yes.label = yes_label
        self.no.label = no_label
        self.no_text = no_text
        self.on_yes = on_yes
        self.origin: discord.Interaction[Any] | None = None

    @discord.ui.button(label="Yes", style=discord.ButtonStyle.danger)
    async def yes(self, interaction: discord.Interaction[Any],
                  button: discord.ui.Button[Any]) -> None:
        self.stop()
        await interaction.response.edit_message(content="Working on it…", view=None)
        try:
            answer = await self.on_yes()
        except Exception:
            # Said in the question itself, not left at "Working on it…"; the error
            # handler logs it and tells the user what went wrong.
            await interaction.edit_original_response(content="That did not work.")
            raise
        await interaction.edit_original_response(content=answer)

    @discord.ui.button(label="No", style=discord.ButtonStyle.secondary)
    async def no(self, interaction: discord.Interaction[Any],
                 button: discord.ui.Button[Any]) -> None:
        self.stop()
        await interaction.response.edit_message(content=self.no_text, view=None)

    async def on_timeout(self) -> None:
        if self.origin is None:
            return
        try:
            await self.origin.edit_original_response(content=self.no_text, view=None)
        except discord.HTTPException as exc:
            log.warning("could not close a question after its timeout: %s", exc)
