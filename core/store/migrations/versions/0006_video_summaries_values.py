"""Per-video aggregates kept with a video's scoring summary.

- ``video_summaries.values``: JSON of the scorer's per-video aggregates (e.g. mean
  engagement level, share of time below a level, number of low stretches) and
  the number of events. Kept even when ``vkit score --aggregate-only`` stores
  no per-segment rows; NULL on summaries written before this revision.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Add ``video_summaries.values``."""
    with op.batch_alter_table("video_summaries") as batch:
        batch.add_column(sa.Column("values", sa.JSON(), nullable=True))


def downgrade() -> None:
    """Drop ``video_summaries.values``."""
    with op.batch_alter_table("video_summaries") as batch:
        batch.drop_column("values")
