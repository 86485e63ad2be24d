"""PostgreSQL: the job times become `timestamp with time zone`.

They were `timestamp` (no zone) holding UTC, as on SQLite, which keeps no zone at all. With
a zone, SQL that compares them with the server's clock (`now()`) is right whatever the
session's time zone. SQLite is left as it is.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMES = ("lease_expires_at", "created_at", "started_at", "finished_at", "token_expires_at",
         "delivered_at")


def upgrade() -> None:
    _retype(sa.DateTime(), sa.DateTime(timezone=True))


def downgrade() -> None:
    _retype(sa.DateTime(timezone=True), sa.DateTime())


def _retype(old: sa.DateTime, new: sa.DateTime) -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    for column in TIMES:
        # `AT TIME ZONE 'UTC'` reads a zoneless value as UTC, and turns a zoned one into
        # zoneless UTC: the same instants either way.
        op.alter_column("jobs", column, existing_type=old, type_=new,
                        postgresql_using=f"{column} AT TIME ZONE 'UTC'")
