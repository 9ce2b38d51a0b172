"""Schema versions of the store: Alembic driven from code (``vkit db upgrade|current``), checked at every open.

The migration scripts live in ``vkit/core/store/migrations/versions``; the
history is linear (``0001`` → ``0002`` → ...). Opening a database with no
vkit tables creates it at head; an older revision is refused with the advice
to run ``vkit db upgrade``; a revision this vkit does not know (written by a
newer vkit) is refused for writing.

Example::

    from vkit.core.store.migrate import current, upgrade
    upgrade("sqlite:///vkit.db")        # ('0002', '0003')
    current("sqlite:///vkit.db")        # '0003'
"""
from __future__ import annotations

import functools
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy.engine import URL, Engine

from vkit.registry.errors import StoreError

from vkit.core.store.engine import (
    SQLITE_BEGIN_OPTION,
    create_store_engine,
    mask_secrets,
    mask_url,
    resolve_url,
    sqlite_path,
)
from vkit.core.store.models import TABLES

#: Folder of the Alembic environment shipped inside the package.
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
#: Alembic's table holding the schema revision.
VERSION_TABLE = "alembic_version"
#: Key of the advisory lock PostgreSQL sessions take while migrating.
_PG_LOCK_KEY = zlib.crc32(b"vkit.store.migrate")


@dataclass(frozen=True)
class SchemaState:
    """Where a database stands against this vkit's migrations.

    Attributes:
        current: the database's revision (``None``: not a vkit store yet).
        head: the newest revision this vkit knows.
        known: whether ``current`` is one of this vkit's revisions.
    """

    current: str | None
    head: str
    known: bool

    @property
    def at_head(self) -> bool:
        """Whether the database is exactly at this vkit's head."""
        return self.current == self.head

    @property
    def newer(self) -> bool:
        """Whether the database was migrated by a newer vkit (a revision unknown here)."""
        return self.current is not None and not self.known


def alembic_config() -> Config:
    """An Alembic ``Config`` pointing at the packaged migrations (no ``alembic.ini``)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


@functools.lru_cache(maxsize=1)
def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    """The newest revision of the packaged migrations."""
    head = _script().get_current_head()
    if head is None:  # pragma: no cover - the package always ships 0001
        raise StoreError(f"no migrations found under {MIGRATIONS_DIR}")
    return head


def _is_known(revision: str) -> bool:
    try:
        return _script().get_revision(revision) is not None
    except CommandError:
        return False


def schema_state(connection: sa.Connection) -> SchemaState:
    """Read the revision of the database behind ``connection``."""
    # Read alembic_version directly: MigrationContext would log two INFO lines on every open.
    heads: tuple[str, ...] = ()
    if sa.inspect(connection).has_table(VERSION_TABLE):
        heads = tuple(connection.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars())
    if len(heads) > 1:
        raise StoreError(f"store has several schema revisions {sorted(heads)}; vkit's history is linear")
    current_rev = heads[0] if heads else None
    return SchemaState(current_rev, head_revision(), current_rev is None or _is_known(current_rev))


def _vkit_tables(connection: sa.Connection) -> list[str]:
    names = set(sa.inspect(connection).get_table_names())
    return sorted(names & set(TABLES))


def _lock(connection: sa.Connection) -> None:
    """Serialise concurrent migrations (SQLite: the write transaction already does)."""
    if connection.dialect.name == "postgresql":
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})


@contextmanager
def _sqlite_foreign_keys_off(connection: sa.Connection) -> Iterator[None]:
    """SQLite: keep foreign keys off while migrating (set outside the transaction: SQLite ignores it inside one).

    A batch migration copies a table, drops the original and renames the copy;
    with foreign keys on, that DROP would delete every child row through
    ``ON DELETE CASCADE``. :func:`_check_foreign_keys` verifies the result instead.
    """
    if connection.dialect.name != "sqlite":
        yield
        return
    driver = connection.connection.driver_connection  # autocommit at driver level (see engine.py)
    driver.execute("PRAGMA foreign_keys = OFF")
    try:
        yield
    finally:
        driver.execute("PRAGMA foreign_keys = ON")


def _check_foreign_keys(connection: sa.Connection) -> None:
    """SQLite: refuse to commit a migration that left a row pointing at nothing."""
    if connection.dialect.name == "sqlite":
        broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
        if broken:
            raise StoreError(
                f"migration left {len(broken)} rows with broken foreign keys, e.g. {tuple(broken[0])}; rolled back"
            )


def _migrate(engine: Engine, target: str, downgrade_to: bool = False) -> tuple[str | None, str | None]:
    cfg = alembic_config()
    writer = engine.execution_options(**{SQLITE_BEGIN_OPTION: "IMMEDIATE"})
    with writer.connect() as conn, _sqlite_foreign_keys_off(conn), conn.begin():
        _lock(conn)
        before = schema_state(conn)
        if before.newer:
            raise StoreError(
                f"store {mask_url(engine.url)} is at revision {before.current!r}, newer than this vkit's "
                f"head {before.head!r}; upgrade vkit instead of the database"
            )
        if before.current is None and _vkit_tables(conn):
            raise StoreError(
                f"store {mask_url(engine.url)} has vkit tables {_vkit_tables(conn)} but no schema revision "
                "(alembic_version); it was not created by vkit, so vkit will not migrate it"
            )
        cfg.attributes["connection"] = conn
        if downgrade_to:
            command.downgrade(cfg, target)
        else:
            command.upgrade(cfg, target)
        _check_foreign_keys(conn)
        after = schema_state(conn).current
    return before.current, after


def _with_engine(url: str | URL | None) -> Engine:
    return create_store_engine(resolve_url(url))


def upgrade(url: str | URL | None = None, revision: str = "head") -> tuple[str | None, str | None]:
    """Migrate the store at ``url`` (default: :func:`~vkit.core.store.engine.default_url`) up to ``revision``.

    Creates the tables when the database is empty. Returns ``(before, after)`` revisions.

    Raises:
        StoreError: the database is newer than this vkit, or cannot be reached.
    """
    engine = _with_engine(url)
    try:
        return _guard(engine, lambda: _migrate(engine, revision))
    finally:
        engine.dispose()


def downgrade(url: str | URL | None, revision: str) -> tuple[str | None, str | None]:
    """Migrate the store at ``url`` down to ``revision`` (``"base"`` drops every table). Returns ``(before, after)``."""
    engine = _with_engine(url)
    try:
        return _guard(engine, lambda: _migrate(engine, revision, downgrade_to=True))
    finally:
        engine.dispose()


def current(url: str | URL | None = None) -> str | None:
    """The schema revision of the store at ``url`` (``None``: no vkit store there yet; nothing is created)."""
    resolved = resolve_url(url)
    path = sqlite_path(resolved)
    if path is not None and not path.exists():
        return None
    engine = create_store_engine(resolved, create=False, read_only=True)
    try:
        return _guard(engine, lambda: _read_state(engine).current)
    finally:
        engine.dispose()


def describe_revision(revision: str | None) -> str:
    """What to do about a store at ``revision``, for ``vkit db current``."""
    head = head_revision()
    if revision is None:
        return "no store yet: `vkit db upgrade` (or any command that writes) creates it"
    if revision == head:
        return "up to date"
    if not _is_known(revision):
        return (f"newer than this vkit's head {head}: it was migrated by a newer vkit; upgrade vkit "
                f"(this one only reads it)")
    return f"head is {head}: run `vkit db upgrade`"


def _read_state(engine: Engine) -> SchemaState:
    with engine.connect() as conn:
        return schema_state(conn)


def ensure_schema(engine: Engine, *, create: bool = True, read_only: bool = False) -> SchemaState:
    """Check (and on an empty database create) the schema behind ``engine``; used by ``open_store``.

    Args:
        engine: the store's engine.
        create: create the tables at head when the database has none.
        read_only: accept a newer revision (the caller will not write).

    Raises:
        StoreError: older revision (run ``vkit db upgrade``), newer revision
            when writing, no store and ``create=False``, or unreachable database.
    """
    return _guard(engine, lambda: _ensure(engine, create=create, read_only=read_only))


def _ensure(engine: Engine, *, create: bool, read_only: bool) -> SchemaState:
    where = mask_url(engine.url)
    state = _read_state(engine)
    if state.current is None:
        if not create:
            raise StoreError(f"no vkit store at {where}; create it with `vkit db upgrade` (or open with create=True)")
        _migrate(engine, "head")
        return _read_state(engine)
    if state.newer:
        if read_only:
            return state
        raise StoreError(
            f"store {where} is at schema revision {state.current!r}, unknown to this vkit (head {state.head!r}): "
            "it was migrated by a newer vkit; refusing to write. Upgrade vkit, or open it read-only"
        )
    if not state.at_head:
        raise StoreError(
            f"store {where} is at schema revision {state.current!r}, older than this vkit's {state.head!r}; "
            f"run `vkit db upgrade` (with VKIT_DB_URL or --db pointing at it)"
        )
    return state


def _guard(engine: Engine, fn):  # noqa: ANN001, ANN202 - internal
    """Turn driver errors into a StoreError naming the masked URL, never the password."""
    try:
        return fn()
    except sa.exc.SQLAlchemyError as err:
        raise StoreError(f"store {mask_url(engine.url)}: {describe_db_error(err)}") from None


def describe_db_error(err: BaseException) -> str:
    """First line of the driver's message of ``err``, credentials masked."""
    orig = getattr(err, "orig", None)
    text = str(orig if orig is not None else err).strip().splitlines()
    return mask_secrets(text[0] if text else type(err).__name__)


def revision(message: str, rev_id: str | None = None) -> None:
    """Write a new migration script by autogenerate (diff of the models against a scratch SQLite at head).

    Args:
        message: what the migration does (becomes the file name).
        rev_id: the revision id; default the next number (``0003`` after ``0002``).
    """
    import tempfile

    if rev_id is None:
        rev_id = f"{int(head_revision()) + 1:04d}"
    with tempfile.TemporaryDirectory() as tmp:
        engine = create_store_engine(resolve_url(f"sqlite:///{tmp}/scratch.db"))
        try:
            _migrate(engine, "head")
            cfg = alembic_config()
            cfg.set_main_option("file_template", "%%(rev)s_%%(slug)s")
            with engine.begin() as conn:
                cfg.attributes["connection"] = conn
                command.revision(cfg, message=message, autogenerate=True, rev_id=rev_id)
        finally:
            engine.dispose()
        _script.cache_clear()
