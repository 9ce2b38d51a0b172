"""The recommendation plugin's first table: ``recommendations`` (one row per entry of a user's top-K list).

- ``recommendations``: ``run_id``, ``user_id``, ``rank`` (1 = best),
  ``item_id``, ``score``; unique per (run, user, rank), indexed by run and by
  item. ``vkit recommend --users`` writes one row per list entry.
- A store made by a vkit whose core revision 0008 created this table keeps it
  as it is, every row with it (it is adopted, not rebuilt).
- Otherwise the table is created and the lists stored in
  ``predictions.values`` (split ``recommend``, ranked ``items``/``scores``)
  are copied into it; the prediction rows stay (they keep each user's note).

Revision ID: 0001
Revises: (none: the recommendation plugin's history, version table ``alembic_version_recommendation``)
Create Date: 2026-12-07
"""
from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: tuple[str, ...] | None = ("recommendation",)
depends_on: str | None = None


def upgrade() -> None:
    """Adopt the ``recommendations`` table core 0008 made, or create it and copy the lists kept in predictions."""
    bind = op.get_bind()
    if sa.inspect(bind).has_table("recommendations"):
        return  # made by core's 0008 before the table moved to this plugin: kept as is, every row with it
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
    stored = bind.execute(sa.text("SELECT run_id, item_id, \"values\" FROM predictions WHERE split = 'recommend'"))
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
