"""Idempotent batched writes on SQLite and PostgreSQL (``INSERT ... ON CONFLICT``).

Example::

    upsert(conn, Score.__table__, rows, keys=("run_id", "video_id", "segment"))

writes each row once: a second call with the same keys updates the row in
place (or leaves it, with ``update=()``) instead of adding a duplicate.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from vkit.core.store.jsonable import to_jsonable
from vkit.registry.errors import StoreError

#: Rows per executemany call.
BATCH_SIZE = 1000

_INSERTS = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}


class _JSONText(sa.types.TypeDecorator[str]):
    """JSON already encoded as text, cast to JSON in SQL (PostgreSQL): no per-row processing in Python."""

    impl = sa.Text
    cache_ok = True

    def bind_expression(self, bindvalue: Any) -> Any:
        return sa.cast(bindvalue, sa.JSON)


_ENCODER = json.JSONEncoder(allow_nan=False)
# json.dumps builds its C encoder on every call; the bulk path builds it once (same output as json.dumps).
_C_ENCODE = json.encoder.c_make_encoder and json.encoder.c_make_encoder(
    None, _ENCODER.default, json.encoder.encode_basestring_ascii, None, ": ", ", ", False, False, False
)
_BULK_TABLES: dict[tuple[str, str], sa.Table] = {}


def _bulk_table(table: sa.Table, dialect: str) -> sa.Table:
    """``table`` (same columns and defaults) with its JSON columns bound as text (encoded once by :func:`json_text`)."""
    key = (table.name, dialect)
    if key not in _BULK_TABLES:
        text = _JSONText() if dialect == "postgresql" else sa.Text()
        columns = []
        for column in table.columns:
            copy = column._copy()
            if isinstance(column.type, sa.JSON):
                copy.type = text
            columns.append(copy)
        _BULK_TABLES[key] = sa.Table(table.name, sa.MetaData(), *columns)
    return _BULK_TABLES[key]


def json_text(value: Any) -> str:
    """``value`` as JSON text; plain JSON data is encoded directly, anything else through :func:`to_jsonable`."""
    try:
        if _C_ENCODE is not None:
            return "".join(_C_ENCODE(value, 0))
        return _ENCODER.encode(value)
    except (TypeError, ValueError, RecursionError):  # numpy/torch values, paths, NaN (PostgreSQL's JSON rejects it): convert first
        return json.dumps(to_jsonable(value))


def upsert(
    conn: sa.Connection | sa.orm.Session,
    table: sa.Table,
    rows: Iterable[Mapping[str, Any]],
    *,
    keys: Sequence[str],
    update: Sequence[str] | None = None,
    owned: bool = False,
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
        owned: the rows are fresh dicts of the table's columns that the caller
            built and gives away (the store's own row builders): they are not
            re-checked for unknown columns and JSON columns are encoded in place
            instead of in a copy (the bulk path's speed).

    Returns:
        the number of distinct rows written.
    """
    dialect = conn.get_bind().dialect.name
    insert = _INSERTS.get(dialect)
    if insert is None:
        raise StoreError(f"upsert into {table.name}: dialect {dialect!r} is not supported; expected one of {sorted(_INSERTS)}")
    distinct = _dedupe(table, rows, keys, owned)
    target = _bulk_table(table, dialect)
    for columns, group in _group_by_columns(distinct).items():
        stmt = insert(target)
        changing = [c for c in columns if c not in keys and (update is None or c in update)]
        if changing:
            stmt = stmt.on_conflict_do_update(index_elements=list(keys), set_={c: stmt.excluded[c] for c in changing})
        else:
            stmt = stmt.on_conflict_do_nothing(index_elements=list(keys))
        for start in range(0, len(group), BATCH_SIZE):
            conn.execute(stmt, group[start : start + BATCH_SIZE])
    return len(distinct)


def _dedupe(
    table: sa.Table, rows: Iterable[Mapping[str, Any]], keys: Sequence[str], owned: bool = False
) -> list[dict[str, Any]]:
    """Checked ``rows`` (copies unless ``owned``), the last of each key kept, JSON columns encoded: one pass."""
    by_key: dict[tuple[Any, ...], dict[str, Any]] = {}
    known = frozenset(table.columns.keys())
    json_columns = [c.name for c in table.columns if isinstance(c.type, sa.JSON)]
    for index, row in enumerate(rows):
        if not owned and not row.keys() <= known:
            raise StoreError(
                f"{table.name} row {index}: unknown columns {sorted(set(row) - known)}; expected some of {table.columns.keys()}"
            )
        key = tuple(map(row.get, keys))
        if None in key:
            missing = [k for k in keys if row.get(k) is None]
            raise StoreError(f"{table.name} row {index}: missing key columns {missing} in {dict(row)!r}")
        clean = row if owned else dict(row)
        for column in json_columns:
            if column in clean:
                clean[column] = json_text(clean[column])
        by_key[key] = clean
    return list(by_key.values())


def _group_by_columns(rows: list[dict[str, Any]]) -> dict[tuple[str, ...], list[dict[str, Any]]]:
    """Rows grouped by the columns they carry (in the order they carry them: no sort per row)."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row), []).append(row)
    return groups
