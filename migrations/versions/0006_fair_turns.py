"""`jobs.turn`: the round of the fair order a job is served in, so that a claim reads the
first free rows of an index instead of the whole queue (`bot.jobs.scheduling`).

Queued jobs get the turns the round-robin gives them now: each user's first waiting job
is in round 0, their second in round 1, and so on; every other row keeps 0, so new jobs
start from round 0 too (the highest turn ever started).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_STARTED = sa.text("started_at IS NOT NULL")


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("turn", sa.BigInteger(), server_default="0",
                                   nullable=False))
    op.execute("UPDATE jobs SET turn = (SELECT count(*) FROM jobs AS earlier "
               "WHERE earlier.status = 'queued' AND earlier.user_id = jobs.user_id "
               "AND (earlier.created_at < jobs.created_at OR (earlier.created_at = "
               "jobs.created_at AND earlier.id < jobs.id))) WHERE status = 'queued'")
    op.create_index("ix_jobs_status_turn_created_at_id", "jobs",
                    ["status", "turn", "created_at", "id"])
    op.create_index("ix_jobs_user_id_turn", "jobs", ["user_id", "turn"])
    op.create_index("ix_jobs_turn_started", "jobs", ["turn"], postgresql_where=_STARTED,
                    sqlite_where=_STARTED)


def downgrade() -> None:
    op.drop_index("ix_jobs_turn_started", table_name="jobs")
    op.drop_index("ix_jobs_user_id_turn", table_name="jobs")
    op.drop_index("ix_jobs_status_turn_created_at_id", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("turn")
