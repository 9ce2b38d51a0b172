"""Identical content at different paths is scored once per model.

- ``video_leases.video_sha256``: the content a lease holds once its file is
  hashed, unique per model (``uq_video_leases_model_content``), so two jobs —
  or two paths in one job — never score the same content at once.
- ``videos.status`` and ``video_summaries.status`` may be ``duplicate``: a
  path whose content this model already scored at another path (not decoded or
  scored again; the error names that path).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None

_CHECKS = {"videos": ("ck_videos_status", ("pending", "ok", "failed")),
           "video_summaries": ("ck_video_summaries_status", ("scored", "failed"))}


def _status_check(table: str, extra: tuple[str, ...]) -> None:
    name, statuses = _CHECKS[table]
    allowed = ", ".join(f"'{s}'" for s in statuses + extra)
    with op.batch_alter_table(table) as batch:
        batch.drop_constraint(name, type_="check")
        batch.create_check_constraint(name, sa.text(f"status IN ({allowed})"))


def upgrade() -> None:
    """Add ``video_leases.video_sha256`` (unique per model); allow status ``duplicate``."""
    with op.batch_alter_table("video_leases") as batch:
        batch.add_column(sa.Column("video_sha256", sa.String(length=64), nullable=True))
        batch.create_unique_constraint("uq_video_leases_model_content", ["model_sha256", "video_sha256"])
    for table in _CHECKS:
        _status_check(table, ("duplicate",))


def downgrade() -> None:
    """Drop the duplicate rows' status (summaries deleted, videos back to ``pending``) and the content lease."""
    op.execute(sa.text("DELETE FROM video_summaries WHERE status = 'duplicate'"))
    op.execute(sa.text("UPDATE videos SET status = 'pending', error = NULL WHERE status = 'duplicate'"))
    for table in _CHECKS:
        _status_check(table, ())
    with op.batch_alter_table("video_leases") as batch:
        batch.drop_constraint("uq_video_leases_model_content", type_="unique")
        batch.drop_column("video_sha256")
