"""Index runs.started_at: ``list_runs`` orders by it.

Revision ID: 0002
Revises: 0001
Create Date: 2025-01-01
"""
from __future__ import annotations

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Add ``ix_runs_started_at``."""
    op.create_index(op.f("ix_runs_started_at"), "runs", ["started_at"])


def downgrade() -> None:
    """Drop ``ix_runs_started_at``."""
    op.drop_index(op.f("ix_runs_started_at"), table_name="runs")
