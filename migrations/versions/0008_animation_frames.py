"""An animation's progress: `jobs.frame`, the frames its run has finished, of `jobs.frames`
(both 0 for a still), beside `step` and `total_steps`, so that a process that does not
paint the job reads them from the row (`bot.jobs.watch`).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = ("frame", "frames")


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        for name in _COLUMNS:
            batch.add_column(sa.Column(name, sa.Integer(), server_default="0", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        for name in reversed(_COLUMNS):
            batch.drop_column(name)
