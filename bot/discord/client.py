"""The Discord client: a `commands.AutoShardedBot` that holds the services its cogs use.

Everything it holds is built by the composition root (`bot.app`) and passed in: the
settings, the job service, the attachment fetcher, and (once they are built on top of
the client, in `attach`) the delivery and the job flow. The cogs reach them through
`self.bot`, a job button through `interaction.client`. The client starts and stops
what it holds with its own life: the fetcher's session, and the delivery.

It runs the shards the settings name (`STYLEBOT_SHARD_COUNT`, `STYLEBOT_SHARD_IDS`), all
in this process: discord.py opens one gateway connection per shard and shows them as one
client. With no count, it asks Discord how many (GET /gateway/bot): one, for most bots.
Which process shows which job is the delivery's business (`bot.discord.delivery.shard_of`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import discord
import yarl
from discord import app_commands
from discord.ext import commands
from discord.gateway import DiscordWebSocket
from discord.http import Route

from bot.discord.errors import report_error
from bot.discord.views import JobButton

if TYPE_CHECKING:
    from bot.discord.delivery import Delivery
    from bot.discord.downloads import AttachmentFetcher
    from bot.discord.jobflow import JobFlow
    from bot.jobs.service import JobService
    from bot.settings import Settings

log = logging.getLogger(__name__)

EXTENSIONS = (
    "bot.discord.cogs.stylize",
    "bot.discord.cogs.styles",
    "bot.discord.cogs.history",
    "bot.discord.cogs.cancel",
    "bot.discord.cogs.admin",
    "bot.discord.cogs.forget",
)


def point_discord_py_at(api_base: str, gateway_url: str) -> None:
    """Sends discord.py's REST, webhook and gateway traffic to another server.

    discord.py has no per-client setting for this: REST and webhook URLs (interaction
    callbacks and follow-ups included) are built from the class attribute `Route.BASE`,
    and a `Client` opens its first gateway connection at `DiscordWebSocket.DEFAULT_GATEWAY`
    (later resumes use the `resume_gateway_url` the server sends in READY). Both are
    process-wide, so the composition root calls this once, before any client exists.
    """
    Route.BASE = api_base.rstrip("/")
    DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)


class StyleTree(app_commands.CommandTree["StyleBot"]):
    """Errors from every slash command and context menu end up in one place."""

    async def on_error(self, interaction: discord.Interaction[StyleBot],
                       error: app_commands.AppCommandError) -> None:
        await report_error(interaction, error)


class StyleBot(commands.AutoShardedBot):
    # Built on top of the client (the delivery sends through it), then handed to it by
    # `attach` before it logs in.
    delivery: Delivery
    flow: JobFlow

    def __init__(self, *, settings: Settings, service: JobService, fetcher: AttachmentFetcher,
                 default_params: Mapping[str, Any] | None = None) -> None:
        # Without ids discord.py runs every shard (0 to the count less one) here.
        shards: dict[str, Any] = {"shard_count": settings.shard_count}
        if settings.shard_ids is not None:
            shards["shard_ids"] = list(settings.shard_ids)
        # The default intents: no privileged ones (no message content, no members list).
        # Every command, unless it says otherwise, is offered through both installations
        # (a server's, and a user's own) and in every context: servers, the bot's DM,
        # group DMs and DMs between users (`app_commands.allowed_installs`/`_contexts`).
        super().__init__(command_prefix=commands.when_mentioned, intents=discord.Intents.default(),
                         help_command=None, tree_cls=StyleTree,
                         allowed_installs=app_commands.AppInstallationType(guild=True, user=True),
                         allowed_contexts=app_commands.AppCommandContext(
                             guild=True, dm_channel=True, private_channel=True),
                         allowed_mentions=discord.AllowedMentions(everyone=False, roles=False,
                                                                  users=True), **shards)
        self.settings = settings
        self.service = service
        self.fetcher = fetcher
        # Parameters every new job starts from before the user's options (e.g. fewer steps).
        self.default_params: dict[str, Any] = dict(default_params or {})
        self._logging_in = False

    async def login(self, token: str) -> None:
        self._logging_in = True
        await super().login(token)

    def attach(self, *, delivery: Delivery, flow: JobFlow) -> None:
        self.delivery = delivery
        self.flow = flow

    async def setup_hook(self) -> None:
        await self.fetcher.open()
        for name in EXTENSIONS:
            await self.load_extension(name)
        # Buttons on results and progress messages keep working after a restart: they
        # are matched by their custom id (which carries the job id), not by a live view.
        self.add_dynamic_items(JobButton)
        if self.settings.dev_guild_id is not None:
            # Commands synced to the development guild arrive with its id; look them up
            # there too.
            self.tree.copy_global_to(guild=discord.Object(self.settings.dev_guild_id))
        self.delivery.start()

    async def on_ready(self) -> None:
        user = self.user
        log.info("connected as %s (%s) to %d guild(s) on shard(s) %s of %s", user,
                 user.id if user else "?", len(self.guilds),
                 ",".join(str(shard) for shard in sorted(self.shards)), self.shard_count)
        self.delivery.client_ready()

    async def close(self) -> None:
        await self.delivery.stop()
        # A sharded client's `close` needs what `login` sets up (its shards' queue); one
        # built and never logged in (a failed start-up) has nothing to close.
        if self._logging_in:
            await super().close()
        await self.fetcher.close()
