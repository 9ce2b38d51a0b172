"""The ``Store`` facade: what the rest of vkit calls to record runs, metrics, artifacts, predictions and scores.

Every write is one transaction and idempotent (re-running it updates rows in
place); every read returns plain dicts, so no caller holds an ORM object past
its session. Timestamps are timezone-aware UTC.

Example::

    store = open_store()                       # ./vkit.db or $VKIT_DB_URL
    with store.track_run("demo-classify", "education", cfg, seed=0) as run_id:
        store.log_metrics(run_id, {"acc": 0.91}, step=1, split="val")
        store.add_artifact(run_id, "checkpoint", "work/model.safetensors")
    print(store.url, store.final_metrics(run_id))   # {'val/acc': 0.91}
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import URL

from vkit.core.store.base import StoreBase
from vkit.core.store.engine import ENV_VAR, create_store_engine, mask_url, resolve_url, sqlite_path
from vkit.core.store.leases import LeaseQueue
from vkit.core.store.migrate import ensure_schema
from vkit.core.store.models import TABLES
from vkit.core.store.records import RunRecords
from vkit.core.store.runs import RunRows, resume_hint
from vkit.core.store.videos import VideoRows
from vkit.registry.errors import StoreError

__all__ = ["Store", "StoreBase", "open_store", "resume_hint"]


def open_store(url: str | URL | None = None, *, create: bool = True, read_only: bool = False) -> Store:
    """Open the store at ``url`` (default ``$VKIT_DB_URL`` or SQLite ``./vkit.db``) after checking its schema.

    Args:
        url: a SQLAlchemy URL (``sqlite:///path.db``, ``postgresql+psycopg://user@host/db``).
        create: create the tables at head when the database has none; ``False``: a missing
            SQLite file is a ``StoreError`` naming it (a command that needs a stored run).
        read_only: accept a database migrated by a newer vkit; every write then raises. A
            missing SQLite file then opens as an empty store in memory unless ``create=False``
            (a listing shows nothing); nothing is made on disk either way.

    Raises:
        StoreError: unreachable database, older schema (run ``vkit db upgrade``),
            newer schema unless ``read_only``, or no store and ``create=False``.
    """
    resolved = resolve_url(url)
    path = sqlite_path(resolved)
    if path is not None and not path.exists() and (read_only or not create):
        if not create:
            raise StoreError(f"no vkit store at {path} (the file does not exist; nothing was created); create it "
                             f"with `vkit db upgrade` or any command that writes (`vkit run`, `vkit score`), or check "
                             f"--db / {ENV_VAR}")
        return _empty_store(resolved)
    engine = create_store_engine(resolved, create=create and not read_only, read_only=read_only)
    try:
        state = ensure_schema(engine, create=create and not read_only, read_only=read_only)
    except BaseException:
        engine.dispose()
        raise
    store = Store(engine, state, read_only=read_only or state.newer)
    store.shown_url = mask_url(resolved)
    return store


def _empty_store(url: URL) -> Store:
    """What a reading command sees where no SQLite store exists: an empty store in memory, nothing made on disk."""
    from sqlalchemy.pool import StaticPool

    engine = create_store_engine(resolve_url("sqlite://"), poolclass=StaticPool)
    store = Store(engine, ensure_schema(engine, create=True), read_only=True)
    store.shown_url, store.exists = mask_url(url), False
    return store


class Store(RunRows, RunRecords, VideoRows, LeaseQueue):
    """A vkit store on one database; open it with :func:`open_store`.

    One mixin per job: :class:`~vkit.core.store.runs.RunRows` (run rows),
    :class:`~vkit.core.store.records.RunRecords` (metrics, artifacts, predictions),
    :class:`~vkit.core.store.videos.VideoRows` (videos), :class:`~vkit.core.store.results.Results`
    (scores, events, summaries) and :class:`~vkit.core.store.leases.LeaseQueue` (video leases),
    over :class:`~vkit.core.store.base.StoreBase` (the engine and its transactions).

    Args:
        engine: the engine (made by :func:`~vkit.core.store.engine.create_store_engine`).
        schema: the schema state found at open.
        read_only: refuse every write with a :class:`StoreError`.
    """

    def run_counts(self, run_ids: Sequence[int]) -> dict[str, int]:
        """Rows that runs ``run_ids`` own in each child table (``metrics``, ``predictions``, ``scores``, ...), plugins'
        tables in this database included (:meth:`plugin_tables`: e.g. ``recommendations``)."""
        ids = [int(i) for i in run_ids]
        tables = [m.__table__ for m in TABLES.values() if "run_id" in m.__table__.columns] + self.plugin_tables()
        with self.session(write=False) as session:
            return {t.name: session.scalar(sa.select(sa.func.count()).select_from(t).where(t.c.run_id.in_(ids)))
                    for t in tables}

    def counts(self) -> dict[str, int]:
        """Number of rows of every table, plugins' included (for ``vkit db current`` and checks)."""
        tables = [m.__table__ for m in TABLES.values()] + self.plugin_tables()
        with self.session(write=False) as session:
            return {t.name: session.scalar(sa.select(sa.func.count()).select_from(t)) for t in tables}

    def plugin_tables(self) -> list[sa.TableClause]:
        """The tables of this database that belong to runs but not to core (a plugin's, e.g. ``recommendations``;
        read from the database, so they count whether or not their plugin is loaded)."""
        with self.engine.connect() as conn:
            inspector = sa.inspect(conn)
            names = sorted(set(inspector.get_table_names()) - set(TABLES) - {"video_leases"})
            return [sa.table(name, sa.column("run_id")) for name in names
                    if not name.startswith("alembic_version")
                    and "run_id" in {c["name"] for c in inspector.get_columns(name)}]
