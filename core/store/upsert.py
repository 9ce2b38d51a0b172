"""Idempotent batched writes on SQLite and PostgreSQL (``INSERT ... ON CONFLICT``).

Example::

    upsert(conn, Score.__table__, rows, keys=("run_id", "video_id", "segment"))

writes each row once: a second call with the same keys updates the row in
place (or leaves it, with ``update=()``) instead of adding a duplicate.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from vkit.registry.errors import StoreError

#: Rows per executemany call.
BATCH_SIZE = 1000

_INSERTS = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}


def upsert(
    conn: sa.Connection | sa.orm.Session,
    table: sa.Table,
    rows: Iterable[Mapping[str, Any]],
    *,
    keys: Sequence[str],
    update: Sequence[str] | None = None,
) -> int:
    """Insert ``rows`` into ``table``; a row whose ``keys`` already exist is updated (or skipped).

    Rows with the same keys within one call collapse to the last one. Rows
    are grouped by the columns they carry, so a column a row leaves out is
    never overwritten with NULL.

    Args:
        conn: a connection or session inside a transaction.
        table: the target table (``Model.__table__``).
        rows: dicts of column values; every row must carry all ``keys``.
        keys: the columns of a unique constraint of ``table``.
        update: columns to overwrite on conflict; ``None``: every non-key
            column the row carries; ``()``: keep the existing row.

    Returns:
        the number of distinct rows written.
    """
    dialect = conn.get_bind().dialect.name
    insert = _INSERTS.get(dialect)
    if insert is None:
        raise StoreError(f"upsert into {table.name}: dialect {dialect!r} is not supported; expected one of {sorted(_INSERTS)}")
    distinct = _dedupe(table, rows, keys)
    for columns, group in _group_by_columns(distinct).items():
        stmt = insert(table)
        changing = [c for c in columns if c not in keys and (update is None or c in update)]
        if changing:
            stmt = stmt.on_conflict_do_update(index_elements=list(keys), set_={c: stmt.excluded[c] for c in changing})
        else:
            stmt = stmt.on_conflict_do_nothing(index_elements=list(keys))
        for start in range(0, len(group), BATCH_SIZE):
            conn.execute(stmt, group[start : start + BATCH_SIZE])
    return len(distinct)


def _dedupe(table: sa.Table, rows: Iterable[Mapping[str, Any]], keys: Sequence[str]) -> list[dict[str, Any]]:
    by_key: dict[tuple[Any, ...], dict[str, Any]] = {}
    for index, row in enumerate(rows):
        unknown = set(row) - set(table.columns.keys())
        if unknown:
            raise StoreError(
                f"{table.name} row {index}: unknown columns {sorted(unknown)}; expected some of {table.columns.keys()}"
            )
        missing = [k for k in keys if row.get(k) is None]
        if missing:
            raise StoreError(f"{table.name} row {index}: missing key columns {missing} in {dict(row)!r}")
        by_key[tuple(row[k] for k in keys)] = dict(row)
    return list(by_key.values())


def _group_by_columns(rows: list[dict[str, Any]]) -> dict[tuple[str, ...], list[dict[str, Any]]]:
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(sorted(row)), []).append(row)
    return groups
