"""`stylebot run`, `stylebot sync` and `stylebot db upgrade`: running the Discord bot and
looking after its database."""

from __future__ import annotations

import argparse
import asyncio

from bot.settings import Settings


def cmd_db_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    from sqlalchemy.engine import make_url

    from bot.jobs.db import current_revision, upgrade_database

    async def upgrade() -> str | None:
        await upgrade_database(settings.database_url)
        return await current_revision(settings.database_url)

    revision = asyncio.run(upgrade())
    where = make_url(settings.database_url).render_as_string(hide_password=True)
    print(f"database {where} is at revision {revision}")
    return 0


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from bot.app import run_bot

    return run_bot(settings)


def cmd_sync(args: argparse.Namespace, settings: Settings) -> int:
    from bot.app import sync_commands

    return sync_commands(settings, args.guild if args.guild is not None
                         else settings.dev_guild_id)
