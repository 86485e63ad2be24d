"""`jobs.attempts` counts the runs started, this one included, not the runs that ended
abnormally: one more at each claim (as `attempt` in Oban and River), so that a job
painted at its second try says 2, as its log lines do.

Rows that ran under the old meaning get the run they were in or ended with: running and
finished jobs that started (succeeded, failed, cancelled while running: with a step).
Queued rows already counted their earlier runs, and `dead` rows counted every run, all
abnormal.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_RAN = ("UPDATE jobs SET attempts = attempts {sign} 1 WHERE started_at IS NOT NULL "
        "AND status IN ('running', 'succeeded', 'failed', 'cancelled') "
        "AND (status <> 'cancelled' OR step > 0){floor}")


def upgrade() -> None:
    op.execute(_RAN.format(sign="+", floor=""))


def downgrade() -> None:
    op.execute(_RAN.format(sign="-", floor=" AND attempts > 0"))
