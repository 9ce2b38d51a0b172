"""A video that changed while it was scored is recorded as such, not under another content's sha256.

- ``videos.status`` and ``video_summaries.status`` may be ``changed``: the
  file was rewritten or replaced between hashing and decoding, again on every
  retry; nothing is recorded under any sha256 for it (no score rows), and the
  next run scores it.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | None = None
depends_on: str | None = None

_CHECKS = {"videos": ("ck_videos_status", ("pending", "ok", "failed", "duplicate")),
           "video_summaries": ("ck_video_summaries_status", ("scored", "failed", "duplicate"))}


def _status_check(table: str, extra: tuple[str, ...]) -> None:
    name, statuses = _CHECKS[table]
    allowed = ", ".join(f"'{s}'" for s in statuses + extra)
    with op.batch_alter_table(table) as batch:
        batch.drop_constraint(name, type_="check")
        batch.create_check_constraint(name, sa.text(f"status IN ({allowed})"))


def upgrade() -> None:
    """Allow status ``changed`` for videos and video summaries."""
    for table in _CHECKS:
        _status_check(table, ("changed",))


def downgrade() -> None:
    """Drop the ``changed`` summaries and put ``changed`` videos back to ``pending`` (to be scored)."""
    op.execute(sa.text("DELETE FROM video_summaries WHERE status = 'changed'"))
    op.execute(sa.text("UPDATE videos SET status = 'pending', error = NULL WHERE status = 'changed'"))
    for table in _CHECKS:
        _status_check(table, ())
