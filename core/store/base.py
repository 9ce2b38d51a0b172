"""What every part of the :class:`~vkit.core.store.store.Store` shares: the engine, one transaction per call, row checks.

:class:`StoreBase` holds the connection; the store's jobs (:mod:`~vkit.core.store.runs`,
:mod:`~vkit.core.store.records`, :mod:`~vkit.core.store.videos`, :mod:`~vkit.core.store.results`,
:mod:`~vkit.core.store.leases`) are mixins on it, composed by the ``Store`` facade.

Example::

    class Notes(StoreBase):                     # a job of the store: one transaction per call
        def runs_named(self, task: str) -> list[dict]:
            return self._select(Run, Run.task == task)
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Self

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from vkit.core.store.engine import SQLITE_BEGIN_OPTION, mask_url, sqlite_path
from vkit.core.store.migrate import SchemaState, describe_db_error
from vkit.core.store.models import Run, Video
from vkit.registry.errors import StoreError

#: ``frozenset`` of each field tuple ``_pick`` was given (tuples hash by value; built once per tuple).
_FIELD_SETS: dict[tuple[str, ...], frozenset[str]] = {}


class StoreBase:
    """The connection of a vkit store and the helpers its jobs share; open a store with
    :func:`~vkit.core.store.store.open_store`.

    Args:
        engine: the engine (made by :func:`~vkit.core.store.engine.create_store_engine`).
        schema: the schema state found at open.
        read_only: refuse every write with a :class:`StoreError`.
    """

    def __init__(self, engine: Engine, schema: SchemaState, *, read_only: bool = False) -> None:
        self.engine = engine
        self.schema = schema
        self.read_only = read_only
        self._writer = engine.execution_options(**{SQLITE_BEGIN_OPTION: "IMMEDIATE"})
        #: ``False`` when no store exists at the URL (a reading command got an empty one; nothing was created).
        self.exists = True
        self.shown_url: str | None = None

    def __repr__(self) -> str:
        return f"Store({self.url!r}, revision={self.schema.current!r}{', read_only' if self.read_only else ''})"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def url(self) -> str:
        """The database URL for display, password masked."""
        if self.shown_url is None and self.engine.url.query.get("mode") == "ro":
            self.shown_url = f"sqlite:///{sqlite_path(self.engine.url)}"
        return self.shown_url or mask_url(self.engine.url)

    @property
    def identity(self) -> str:
        """Eight hex digits naming this database (:func:`~vkit.core.store.identity.store_identity`); work folders
        and checkpoint sidecars carry it."""
        from vkit.core.store.identity import store_identity

        return store_identity(self.engine.url)

    def close(self) -> None:
        """Release the connection pool."""
        self.engine.dispose()

    @contextmanager
    def session(self, *, write: bool = True) -> Iterator[Session]:
        """An ORM session in one transaction: committed on success, rolled back on error.

        Args:
            write: take the write lock at ``BEGIN`` (SQLite), so the
                transaction never fails half-way on a concurrent writer.

        Raises:
            StoreError: a database error (message names the masked URL), or
                ``write`` on a read-only store.
        """
        if write:
            self._check_writable()
        session = Session(self._writer if write else self.engine, expire_on_commit=False)
        try:
            yield session
            session.commit()
        except sa.exc.SQLAlchemyError as err:
            session.rollback()
            raise StoreError(f"store {self.url}: {describe_db_error(err)}{self._readonly_hint(err)}") from None
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    # ------------------------------------------------------------ helpers

    def _readonly_hint(self, err: BaseException) -> str:
        path = sqlite_path(self.engine.url)
        if path is None or "readonly database" not in str(err):
            return ""
        return (f" (SQLite writes its journal next to the file: is the folder {path.parent} writable by this user? "
                f"Reading commands open such a store read-only)")

    def _check_writable(self) -> None:
        if self.read_only:
            raise StoreError(
                f"store {self.url} is open read-only (schema revision {self.schema.current!r}, this vkit's head "
                f"{self.schema.head!r}); refusing to write"
            )

    def _run(self, session: Session, run_id: int) -> Run:
        run = session.get(Run, run_id)
        if run is None:
            raise StoreError(f"run {run_id!r} is not in store {self.url}; create it with start_run() first")
        return run

    def _check_refs(self, session: Session, run_id: int, video_ids: set[int]) -> None:
        self._run(session, run_id)
        found = set(session.scalars(sa.select(Video.id).where(Video.id.in_(list(video_ids)))))
        missing = sorted(video_ids - found)
        if missing:
            raise StoreError(f"videos {missing[:5]} are not in store {self.url}; add them with upsert_videos() first")

    def _select(self, model: type, *where: Any, order_by: Sequence[Any] = (), limit: int | None = None) -> list[dict[str, Any]]:
        query = sa.select(model.__table__).where(*where).order_by(*order_by).limit(limit)
        with self.session(write=False) as session:
            return [dict(row) for row in session.execute(query).mappings()]


def _seconds(value: float) -> Any:
    import datetime as dt

    return dt.timedelta(seconds=float(value))


def _pairs(session: Session, query: sa.Select[Any]) -> dict[Any, Any]:
    """``{first column: second column}`` of a two-column query."""
    return {key: value for key, value in session.execute(query)}


def _pick(row: Mapping[str, Any], fields: Sequence[str], table: str, required: Sequence[str] = ()) -> dict[str, Any]:
    known = _FIELD_SETS.get(tuple(fields)) or _FIELD_SETS.setdefault(tuple(fields), frozenset(fields))
    if row.keys() <= known and None not in [*map(row.get, required)]:
        return dict(row)
    unknown = set(row) - set(fields)
    if unknown:
        raise StoreError(f"{table} row {dict(row)!r}: unknown fields {sorted(unknown)}; expected some of {list(fields)}")
    missing = [f for f in required if row.get(f) is None]
    if missing:
        raise StoreError(f"{table} row {dict(row)!r}: missing {missing}")
    return dict(row)
