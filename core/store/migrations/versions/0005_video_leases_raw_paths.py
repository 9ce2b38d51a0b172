"""Cooperating scoring jobs and file names that are not UTF-8.

- ``video_leases``: one row per (model sha256, video) that a scoring run has
  claimed before decoding it, with the claiming run and an expiry. A claim is
  one ``INSERT ... ON CONFLICT DO UPDATE ... WHERE`` (atomic on SQLite and
  PostgreSQL): it takes a free, expired or dead run's lease, never a live one.
- ``videos.path_bytes``: the exact bytes of a file name that is not valid
  UTF-8 (``videos.path`` then holds a display form with ``\\xNN`` escapes).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Create ``video_leases``; add ``videos.path_bytes``."""
    op.create_table(
        "video_leases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_sha256", sa.String(length=64), nullable=False),
        sa.Column("video_id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_video_leases_run_id_runs"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["video_id"], ["videos.id"], name=op.f("fk_video_leases_video_id_videos"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_video_leases")),
        sa.UniqueConstraint("model_sha256", "video_id", name="uq_video_leases_model_video"),
    )
    op.create_index(op.f("ix_video_leases_run_id"), "video_leases", ["run_id"])
    with op.batch_alter_table("videos") as batch:
        batch.add_column(sa.Column("path_bytes", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    """Drop ``videos.path_bytes`` and ``video_leases``."""
    with op.batch_alter_table("videos") as batch:
        batch.drop_column("path_bytes")
    op.drop_index(op.f("ix_video_leases_run_id"), table_name="video_leases")
    op.drop_table("video_leases")
