"""(Formerly: the ``recommendations`` table.) Nothing to do: the table belongs to the recommendation plugin.

Until issue 22 this revision created ``recommendations`` in core's schema and
copied the lists stored in ``predictions.values`` into it. The table is now
the recommendation plugin's (its own Alembic history,
``vkit/plugins/recommendation/migrations``, version table
``alembic_version_recommendation``): its first revision adopts a table this
revision made, every row kept, or creates it and copies the lists. Stores at
or past this revision are unchanged by the move; the revision id stays so
that they stay known.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29
"""
from __future__ import annotations

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Nothing: ``recommendations`` is made by the recommendation plugin's migrations."""


def downgrade() -> None:
    """Nothing: the recommendation plugin's migrations drop ``recommendations`` (``downgrade ... base``)."""
