"""Several processes on one database: row versions, delivery claims, previews and blobs.

- `jobs.version`: one more at each change a reader may show; notifications carry it.
- `jobs.delivery_claimed_by` / `delivery_claim_expires_at`: the process delivering a
  result, so that exactly one does.
- `job_previews`: the latest preview of a running job, for processes that show it but
  do not paint it.
- `blobs`: image bytes by sha256, used where the database is PostgreSQL so that every
  machine reads the same images (SQLite keeps them on disk; the table is made there too,
  so that one schema fits both).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _time() -> sa.DateTime:
    # As 0003 left the other time columns: with a zone on PostgreSQL only.
    return sa.DateTime(timezone=op.get_context().dialect.name == "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("delivery_claimed_by", sa.String(length=128), nullable=True))
        batch.add_column(sa.Column("delivery_claim_expires_at", _time(), nullable=True))
        batch.add_column(sa.Column("version", sa.Integer(), server_default="0",
                                   nullable=False))
    op.create_table(
        "job_previews",
        sa.Column("job_id", sa.String(length=16), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("jpeg", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"],
                                name=op.f("fk_job_previews_job_id_jobs"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("job_id", name=op.f("pk_job_previews")),
    )
    op.create_table(
        "blobs",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", _time(), nullable=False),
        sa.PrimaryKeyConstraint("sha256", name=op.f("pk_blobs")),
    )


def downgrade() -> None:
    # The images in `blobs` go with it: copy them out first if a PostgreSQL deployment
    # goes back to files.
    op.drop_table("blobs")
    op.drop_table("job_previews")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("version")
        batch.drop_column("delivery_claim_expires_at")
        batch.drop_column("delivery_claimed_by")
