"""Batch recommendations as rows of their own, queryable per user and rank.

- ``recommendations``: ``run_id``, ``user_id``, ``rank`` (1 = best),
  ``item_id``, ``score``; unique per (run, user, rank), indexed by run and by
  item. ``vkit recommend --users`` writes one row per list entry.
- Lists stored before this revision (``predictions`` of split ``recommend``,
  the ranked ``items``/``scores`` in ``values``) are copied into it; the
  prediction rows stay (they keep each user's note and model).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29
"""
from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Create ``recommendations`` and copy the lists kept in ``predictions.values``."""
    table = op.create_table(
        "recommendations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.String(length=500), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.String(length=500), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_recommendations_run_id_runs"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recommendations")),
        sa.UniqueConstraint("run_id", "user_id", "rank", name="uq_recommendations_run_user_rank"),
    )
    op.create_index(op.f("ix_recommendations_run_id"), "recommendations", ["run_id"])
    op.create_index(op.f("ix_recommendations_item_id"), "recommendations", ["item_id"])
    rows = []
    stored = op.get_bind().execute(sa.text("SELECT run_id, item_id, \"values\" FROM predictions WHERE split = 'recommend'"))
    for run_id, user, values in stored:
        data = json.loads(values) if isinstance(values, str) else values
        items = data.get("items") if isinstance(data, dict) else None
        if not isinstance(items, list):
            continue
        scores = data.get("scores") if isinstance(data.get("scores"), list) else [None] * len(items)
        rows += [dict(run_id=run_id, user_id=user, rank=r + 1, item_id=str(item), score=score)
                 for r, (item, score) in enumerate(zip(items, scores))]
    if rows:
        op.bulk_insert(table, rows)


def downgrade() -> None:
    """Drop ``recommendations`` (the lists stay in ``predictions.values``)."""
    op.drop_index(op.f("ix_recommendations_item_id"), table_name="recommendations")
    op.drop_index(op.f("ix_recommendations_run_id"), table_name="recommendations")
    op.drop_table("recommendations")
