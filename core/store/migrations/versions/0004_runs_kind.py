"""Record what a run did (runs.kind: 'train', 'score' or 'predict'), so `vkit runs list --kind` filters in SQL.

Existing rows are classified from what they hold: a run with per-video
summaries or a model sha256 was made by ``vkit score`` (0003 set the sha256
only there), one with ``predict``-split predictions by ``vkit predict``, any
other by ``vkit run``.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Add ``runs.kind`` (default ``'train'``, indexed) and classify the runs already stored."""
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("kind", sa.String(length=32), nullable=False, server_default="train"))
    op.create_index(op.f("ix_runs_kind"), "runs", ["kind"])
    op.execute(sa.text(
        "UPDATE runs SET kind = 'score' WHERE model_sha256 IS NOT NULL "
        "OR id IN (SELECT run_id FROM video_summaries)"
    ))
    op.execute(sa.text(
        "UPDATE runs SET kind = 'predict' WHERE kind = 'train' "
        "AND id IN (SELECT run_id FROM predictions WHERE split = 'predict')"
    ))


def downgrade() -> None:
    """Drop ``runs.kind``."""
    op.drop_index(op.f("ix_runs_kind"), table_name="runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("kind")
