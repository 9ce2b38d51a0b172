"""Record where a run's process lives (runs.host, runs.pid) and allow status 'interrupted'.

A run whose process died without closing it (SIGKILL, OOM killer, power
loss) is found by ``Store.reap_stale_runs`` through these two columns and
marked ``interrupted``.

Revision ID: 0003
Revises: 0002
Create Date: 2025-01-01
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None

_OLD_STATUSES = "status IN ('running', 'finished', 'failed')"
_NEW_STATUSES = "status IN ('running', 'finished', 'failed', 'interrupted')"


def upgrade() -> None:
    """Add ``runs.host`` and ``runs.pid``; widen ``ck_runs_status`` to allow ``'interrupted'``."""
    # recreate="auto": ALTER on PostgreSQL, a copy of the table on SQLite (which cannot alter a CHECK).
    with op.batch_alter_table("runs", recreate="auto") as batch:
        batch.add_column(sa.Column("host", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("pid", sa.Integer(), nullable=True))
        batch.drop_constraint("ck_runs_status", type_="check")
        batch.create_check_constraint("ck_runs_status", sa.text(_NEW_STATUSES))


def downgrade() -> None:
    """Turn ``interrupted`` runs into ``failed`` ones, restore the old ``ck_runs_status``, drop ``host`` and ``pid``."""
    op.execute(sa.text("UPDATE runs SET status = 'failed' WHERE status = 'interrupted'"))
    with op.batch_alter_table("runs", recreate="auto") as batch:
        batch.drop_constraint("ck_runs_status", type_="check")
        batch.create_check_constraint("ck_runs_status", sa.text(_OLD_STATUSES))
        batch.drop_column("pid")
        batch.drop_column("host")
