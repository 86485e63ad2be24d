"""Where a job was asked: `jobs.context`, Discord's interaction context ("guild", "bot_dm",
"private_channel"; NULL from the command line), and `jobs.guild_install`, whether through
the app's install in that server (`bot.jobs.access.Origin`). The bot posts on its own
only where it is a member, and a server's admins have powers only over the jobs made
through its install.

Every job made before came through a server's install or the bot's DM: they are
backfilled as such.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("context", sa.String(16), nullable=True))
        batch.add_column(sa.Column("guild_install", sa.Boolean(), server_default=sa.false(),
                                   nullable=False))
    op.execute("UPDATE jobs SET context = CASE WHEN guild_id IS NULL THEN 'bot_dm' "
               "ELSE 'guild' END, guild_install = (guild_id IS NOT NULL) "
               "WHERE source <> 'cli'")


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("guild_install")
        batch.drop_column("context")
