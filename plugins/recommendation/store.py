"""The recommendation plugin's table in the store: ``recommendations`` (run, user, rank, item, score).

Its migrations live in ``migrations/`` beside this module (the plugin's own
Alembic history, handed to vkit by the ``vkit_store_schema`` hook): ``vkit db
upgrade`` runs them, and the first read or write here creates the table in a
store that lacks it. A store made when core still owned the table keeps it,
every row with it.

Example::

    add_recommendations(store, run_id, [dict(user_id="u1", rank=1, item_id="v7", score=2.5)])
    run_recommendations(store, run_id, user_id="u1")   # [{'run_id': 3, 'user_id': 'u1', 'rank': 1, ...}]
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from vkit.core.store.models import Run
from vkit.core.store.plugin_schema import PluginSchema, ensure_plugin_schema
from vkit.core.store.upsert import upsert
from vkit.registry.errors import StoreError

METADATA = sa.MetaData()
#: One entry of a user's top-K list (``vkit recommend --users``): queryable per user and rank.
RECOMMENDATIONS = sa.Table(
    "recommendations", METADATA,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("run_id", sa.Integer, sa.ForeignKey(Run.__table__.c.id, ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("user_id", sa.String(500), nullable=False),
    sa.Column("rank", sa.Integer, nullable=False),
    sa.Column("item_id", sa.String(500), nullable=False, index=True),
    sa.Column("score", sa.Float),
    sa.UniqueConstraint("run_id", "user_id", "rank", name="uq_recommendations_run_user_rank"),
)
#: What the ``vkit_store_schema`` hook hands to vkit.
SCHEMA = PluginSchema("recommendation", Path(__file__).resolve().parent / "migrations", METADATA)


def add_recommendations(store: Any, run_id: int, rows: Iterable[Mapping[str, Any]]) -> int:
    """Record top-K entries (``user_id``, ``rank`` from 1, ``item_id``, ``score``); same user and rank updates it.

    Raises:
        StoreError: a row without user, item or a rank >= 1 (naming its index), or an unknown run.
    """
    clean = []
    for index, row in enumerate(rows):
        rank = row.get("rank")
        if (row.get("user_id") is None or row.get("item_id") is None or not isinstance(rank, int)
                or isinstance(rank, bool) or rank < 1 or not set(row) <= {"user_id", "rank", "item_id", "score"}):
            raise StoreError(f"recommendations row {index}: {dict(row)!r}; expected user_id, rank (an int >= 1), "
                             "item_id and optionally score")
        score = row.get("score")
        clean.append(dict(run_id=run_id, user_id=str(row["user_id"]), rank=rank, item_id=str(row["item_id"]),
                          score=None if score is None else float(score)))
    ensure_plugin_schema(store, SCHEMA)
    with store.session() as session:
        if session.get(Run, run_id) is None:
            raise StoreError(f"run {run_id!r} is not in store {store.url}; create it with start_run() first")
        return upsert(session, RECOMMENDATIONS, clean, keys=("run_id", "user_id", "rank"), owned=True)


def run_recommendations(store: Any, run_id: int, user_id: str | None = None,
                        max_rank: int | None = None) -> list[dict[str, Any]]:
    """Top-K entries of run ``run_id`` (optionally one user, ranks up to ``max_rank``), by user and rank."""
    if not ensure_plugin_schema(store, SCHEMA):
        return []  # a read-only store the plugin never wrote to
    r = RECOMMENDATIONS.c
    query = sa.select(RECOMMENDATIONS).where(r.run_id == run_id)
    query = query.where(r.user_id == str(user_id)) if user_id is not None else query
    query = query.where(r.rank <= int(max_rank)) if max_rank is not None else query
    with store.session(write=False) as session:
        return [dict(row) for row in session.execute(query.order_by(r.user_id, r.rank)).mappings()]


__all__ = ["METADATA", "RECOMMENDATIONS", "SCHEMA", "add_recommendations", "run_recommendations"]
