"""The composition root: settings -> logging -> database -> storage -> worker pool ->
job service -> Discord client -> delivery -> job flow (and the pictures' housekeeping),
built here and nowhere else.

The Discord side is built bottom-up and handed over: the client gets the service and
the attachment fetcher; `Delivery` gets the service and the client it sends through;
`JobFlow` gets the service, the storage and the delivery; then the client is given
the delivery and the flow, which its cogs and job buttons use.

`run_bot` is `stylebot run` (and `python -m bot`); `sync_commands` is `stylebot sync`.
Both return a process exit code and turn the errors an operator can fix (no token, a
rejected token, missing weights) into one log line instead of a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import discord
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.discord.client import StyleBot, point_discord_py_at
from bot.discord.delivery import Delivery
from bot.discord.downloads import AttachmentFetcher
from bot.discord.jobflow import JobFlow
from bot.jobs import queue
from bot.jobs.admission import Admission
from bot.jobs.db import DatabaseUnavailable, create_engine_and_sessionmaker, upgrade_database
from bot.jobs.executor import Executor, ExecutorStartError, LocalPoolExecutor, OfflineExecutor
from bot.jobs.retention import Housekeeping, Privacy
from bot.jobs.service import JobService
from bot.jobs.storage import BlobStore, open_storage
from bot.logging_setup import setup_logging
from bot.settings import Settings, SettingsError
from stylizer import presets

log = logging.getLogger(__name__)

# How long running jobs may take to finish on SIGTERM before they go back to the queue.
SHUTDOWN_GRACE_S = 30.0


class TokenMissing(RuntimeError):
    pass


@dataclass
class App:
    """The running pieces, for `run_bot` and for tests."""

    settings: Settings
    engine: AsyncEngine
    storage: BlobStore
    executor: Executor
    service: JobService
    client: StyleBot
    housekeeping: Housekeeping
    connection: asyncio.Task[None] | None = field(default=None)

    async def shutdown(self, grace_s: float = SHUTDOWN_GRACE_S) -> None:
        """Jobs first (running ones finish or go back to the queue, their results still
        delivered), then the Discord connection, then the database."""
        try:
            await self.housekeeping.stop()
            await self.service.stop(grace_s)
        finally:
            try:
                await self.client.close()
                if self.connection is not None:
                    with contextlib.suppress(Exception, asyncio.CancelledError):
                        await self.connection
            finally:
                await self.engine.dispose()


def log_style_pack(settings: Settings) -> None:
    """Says which paintings users can pick, so that a missing style pack is noticed at
    start-up rather than from users' "not installed here" replies."""
    pack = settings.styles_dir
    found = [p for p in presets.list_presets(pack) if p.source == "pack"]
    total = sum(p.source == "pack" for p in presets.catalogue())
    if found:
        log.info("style pack %s: %d of %d paintings", pack, len(found), total)
    else:
        log.warning("no paintings found (style pack: %s; set STYLEBOT_STYLES_DIR): only the "
                    "procedural styles are offered", pack or "none")


async def build(settings: Settings, *, executor: Executor | None = None,
                default_params: Mapping[str, Any] | None = None) -> App:
    """Every piece, wired, nothing started.

    `executor` replaces the local worker pool (tests, or a distributed engine); with
    `STYLEBOT_WORKERS=0` there is none, and `stylebot worker`s sharing the database
    paint. The service watches the jobs other processes paint when there may be any:
    with no workers of its own, on PostgreSQL, or when this process runs only some of
    the bot's shards (never on the single-process default).
    `default_params` are `StyleParams` overrides every new job starts from; the
    settings have no knob for them, so only tests use this (tiny, quick jobs).
    """
    log_style_pack(settings)
    await upgrade_database(settings.database_url)
    engine, sessionmaker = create_engine_and_sessionmaker(settings.database_url)
    storage = open_storage(settings.database_url, settings.blobs_dir, sessionmaker)
    if executor is None:
        executor = (LocalPoolExecutor.from_settings(settings) if settings.workers > 0
                    else OfflineExecutor())
    shared = (settings.workers == 0 or engine.dialect.name == "postgresql"
              or settings.shard_ids is not None)
    service = JobService(sessionmaker=sessionmaker, storage=storage, executor=executor,
                         settings=settings, presets_dir=settings.styles_dir, watch=shared,
                         lease_s=settings.lease_s, poll_interval_s=settings.poll_interval_s)
    point_discord_py_at(settings.discord_api_base, settings.discord_gateway_url)
    fetcher = AttachmentFetcher(hosts=settings.attachment_hosts,
                                max_bytes=settings.max_upload_bytes)
    client = StyleBot(settings=settings, service=service, fetcher=fetcher,
                      default_params=default_params)
    # Another shard's result waits one lease for its owner before this process sends it.
    delivery = Delivery(service, client, shard_count=settings.shard_count,
                        shard_ids=settings.shard_ids, takeover_s=settings.lease_s)
    admission = Admission(
        counts=functools.partial(queue.counts_at_door, sessionmaker),
        free_in_s=functools.partial(queue.next_place_in_s, sessionmaker,
                                    workers=max(1, settings.workers), default_job_s=60.0),
        max_jobs_per_user=settings.max_jobs_per_user, max_queue=settings.max_queue)
    client.attach(delivery=delivery, flow=JobFlow(service, storage, delivery, admission,
                                                  Privacy(service, sessionmaker, storage)))
    housekeeping = Housekeeping.from_settings(sessionmaker, storage, settings)
    return App(settings, engine, storage, executor, service, client, housekeeping)


@contextlib.asynccontextmanager
async def running(settings: Settings, *, executor: Executor | None = None,
                  default_params: Mapping[str, Any] | None = None,
                  grace_s: float = SHUTDOWN_GRACE_S) -> AsyncIterator[App]:
    """Logs in, starts the job service and connects; shuts everything down on exit."""
    token = settings.discord_token
    if not token:
        raise TokenMissing("DISCORD_TOKEN is not set.")
    app = await build(settings, executor=executor, default_params=default_params)
    try:
        # Log in (which checks the token and loads the cogs) before starting workers:
        # a bad token fails in a second rather than after the pool has loaded VGG19.
        await app.client.login(token.get_secret_value())
        await app.service.start()
        app.housekeeping.start()
        app.connection = asyncio.create_task(app.client.connect(), name="discord-gateway")
        yield app
    finally:
        await app.shutdown(grace_s)


async def _serve(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):  # not on Windows
            loop.add_signal_handler(sig, stop.set)
    async with running(settings) as app:
        assert app.connection is not None
        stopping = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({app.connection, stopping},
                                     return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if app.connection in done:
            app.connection.result()  # the gateway gave up: raise why
        else:
            log.info("stopping (signal received)")


def run_bot(settings: Settings) -> int:
    """`stylebot run`: runs until SIGTERM/SIGINT; returns the exit code."""
    setup_logging(settings.log_level, secrets=settings.secrets())
    return _guarded(_serve(settings))


async def push_commands(settings: Settings, guild_id: int | None = None
                        ) -> list[discord.app_commands.AppCommand]:
    """Sends the command definitions to Discord: to one guild (instant), or globally."""
    if not settings.discord_token:
        raise TokenMissing("DISCORD_TOKEN is not set.")
    # Syncing needs the command definitions, not workers: no pool is started.
    app = await build(settings, executor=OfflineExecutor())
    try:
        await app.client.login(settings.discord_token.get_secret_value())
        tree = app.client.tree
        if guild_id is not None:
            guild = discord.Object(guild_id)
            tree.copy_global_to(guild=guild)
            synced = await tree.sync(guild=guild)
            log.info("synced %d command(s) to guild %s (there only: a user's own install "
                     "needs the global commands)", len(synced), guild_id)
        else:
            synced = await tree.sync()
            log.info("synced %d global command(s); Discord may take a while to show them",
                     len(synced))
            for command in tree.get_commands():
                log.info("  %s", describe_reach(command.to_dict(tree)))
        return synced
    finally:
        await app.shutdown(grace_s=0)


def describe_reach(payload: Mapping[str, Any]) -> str:
    """Where Discord offers a command, from the definition sent to it (`to_dict`): through
    which installations of the app (`integration_types`: 0 a server's, 1 a user's own)
    and in which contexts (`contexts`: 0 servers, 1 the bot's DM, 2 group DMs and DMs
    between users; Discord API, "Application Commands"). Read from what was sent:
    discord.py 2.7 reads these arrays back from Discord's answer one place off."""
    installs = payload.get("integration_types") or [0]
    contexts = payload.get("contexts") or [0, 1]
    through = [name for value, name in ((0, "a server's install"), (1, "a user's own"))
               if value in installs]
    where = [name for value, name in ((0, "servers"), (1, "the bot's DM"),
                                      (2, "group DMs and other DMs")) if value in contexts]
    name = payload["name"] if payload.get("type", 1) != 1 else f"/{payload['name']}"
    return f"{name}: through {' or '.join(through)}; in {', '.join(where)}"


def sync_commands(settings: Settings, guild_id: int | None = None) -> int:
    """`stylebot sync [--guild ID]`: pushes the command definitions; returns the exit code."""
    setup_logging(settings.log_level, secrets=settings.secrets())
    return _guarded(push_commands(settings, guild_id))


def _guarded(coro: Any) -> int:
    try:
        asyncio.run(coro)
    except TokenMissing as exc:
        log.error("%s Put the bot's token in the DISCORD_TOKEN environment variable.", exc)
        return 2
    except discord.LoginFailure:
        log.error("Discord rejected the token in DISCORD_TOKEN; check it in the developer "
                  "portal.")
        return 2
    except discord.PrivilegedIntentsRequired:
        log.error("Discord refused the connection: the bot asks for an intent it may not use.")
        return 2
    except ExecutorStartError as exc:
        log.error("The worker pool could not start: %s", exc.message)
        return 1
    except DatabaseUnavailable as exc:
        log.error("%s", exc)
        return 1
    except (SettingsError, discord.HTTPException, OSError) as exc:
        log.error("%s", exc)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0
