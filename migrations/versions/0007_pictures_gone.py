"""Pictures that go: `jobs.pictures_gone` ("deleted" by their owner, or "expired"), a
job without its photo (`input_hash` NULL), and the indexes that tell whether any job still
needs a blob and which finished jobs' pictures are due to expire (`bot.jobs.retention`).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_INDEXES = {"ix_jobs_input_hash": "input_hash", "ix_jobs_style_hash": "style_hash",
            "ix_jobs_output_hash": "output_hash", "ix_jobs_finished_at": "finished_at"}


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("pictures_gone", sa.String(16), nullable=True))
        batch.alter_column("input_hash", existing_type=sa.String(64), nullable=True)
    for name, column in _INDEXES.items():
        op.create_index(name, "jobs", [column])


def downgrade() -> None:
    for name in _INDEXES:
        op.drop_index(name, table_name="jobs")
    # A job whose pictures are gone has no photo: it cannot go back to NOT NULL as it is.
    op.execute("UPDATE jobs SET input_hash = '' WHERE input_hash IS NULL")
    with op.batch_alter_table("jobs") as batch:
        batch.alter_column("input_hash", existing_type=sa.String(64), nullable=False)
        batch.drop_column("pictures_gone")
