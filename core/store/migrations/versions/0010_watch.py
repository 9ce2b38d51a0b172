"""Live analysis (``vkit watch``): live event status, keyframes, wall times of scores, alerts, live summaries.

- ``events.status``: ``open`` / ``closed`` / ``interrupted`` (existing rows: ``closed``), with
  ``opened_at`` / ``closed_at`` (wall time) and the event's keyframe (``keyframe_path``, ``keyframe_sha256``).
- ``scores.wall_time`` (when the window's last frame arrived) and ``scores.scored_at`` (when it was scored).
- ``alerts``: each event's open/close notice for ``--webhook``; undelivered ones stay ``pending``/``failed``.
- ``live_summaries``: a watch run's periodic group summaries (education: per session).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Add the live columns to ``events`` and ``scores``; create ``alerts`` and ``live_summaries``."""
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("status", sa.String(length=16), nullable=False, server_default="closed"))
        batch.add_column(sa.Column("opened_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("keyframe_path", sa.Text(), nullable=True))
        batch.add_column(sa.Column("keyframe_sha256", sa.String(length=64), nullable=True))
        batch.create_check_constraint("ck_events_status", sa.text("status IN ('open', 'closed', 'interrupted')"))
    with op.batch_alter_table("scores") as batch:
        batch.add_column(sa.Column("wall_time", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("scored_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("status IN ('pending', 'delivered', 'failed')", name="ck_alerts_status"),
        sa.ForeignKeyConstraint(["event_id"], ["events.id"], name="fk_alerts_event_id_events", ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_alerts_run_id_runs", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_alerts"),
        sa.UniqueConstraint("run_id", "event_id", "action", name="uq_alerts_run_event_action"),
    )
    op.create_index("ix_alerts_run_id", "alerts", ["run_id"])
    op.create_table(
        "live_summaries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("group_name", sa.String(length=500), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("values", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_live_summaries_run_id_runs", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_live_summaries"),
        sa.UniqueConstraint("run_id", "group_name", "step", name="uq_live_summaries_run_group_step"),
    )
    op.create_index("ix_live_summaries_run_id", "live_summaries", ["run_id"])


def downgrade() -> None:
    """Drop the live tables and columns (live events of watch runs are kept as plain events)."""
    op.drop_index("ix_live_summaries_run_id", table_name="live_summaries")
    op.drop_table("live_summaries")
    op.drop_index("ix_alerts_run_id", table_name="alerts")
    op.drop_table("alerts")
    with op.batch_alter_table("scores") as batch:
        batch.drop_column("scored_at")
        batch.drop_column("wall_time")
    with op.batch_alter_table("events") as batch:
        batch.drop_constraint("ck_events_status", type_="check")
        batch.drop_column("keyframe_sha256")
        batch.drop_column("keyframe_path")
        batch.drop_column("closed_at")
        batch.drop_column("opened_at")
        batch.drop_column("status")
