"""A plugin's own tables in the store: its Alembic history, run beside core's, with a version table of its own.

A plugin hands a :class:`PluginSchema` to vkit through the ``vkit_store_schema``
hook: a folder of Alembic scripts (Alembic's ``version_locations``: one linear
history, its first script with ``down_revision = None``) and the
``sqlalchemy.MetaData`` of its tables. Its revision is kept in
``alembic_version_<name>``, never in core's ``alembic_version``: core's check
at open does not depend on which plugins are installed, and a store opened
without the plugin works (its tables are simply not used). ``vkit db upgrade``
migrates core, then every loaded plugin's schema; the plugin calls
:func:`ensure_plugin_schema` before it touches its tables: an absent schema is
created at its head (a new, empty table, like a new store), an older one is
refused until ``vkit db upgrade``.

Example::

    SCHEMA = PluginSchema("recommendation", Path(__file__).parent / "migrations", METADATA)
    ensure_plugin_schema(store, SCHEMA)        # before the first read or write of its tables
    upgrade_plugin_schema(store.url, SCHEMA)   # what `vkit db upgrade` does: ('0001', '0002')
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy.engine import URL, Engine

from vkit.core.store.engine import SQLITE_BEGIN_OPTION, create_store_engine, mask_url, resolve_url, sqlite_path
from vkit.core.store.migrate import MIGRATIONS_DIR, _check_foreign_keys, _guard, _lock, _sqlite_foreign_keys_off
from vkit.registry.errors import StoreError

_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")


@dataclass(frozen=True)
class PluginSchema:
    """A plugin's tables: ``name`` (lowercase, ``_``; names its version table), its Alembic ``versions`` folder
    and the ``metadata`` holding its tables (a table with a ``run_id`` column is exported and counted per run).

    Raises:
        StoreError: a bad name, or a ``versions`` folder that does not exist.
    """

    name: str
    versions: Path
    metadata: sa.MetaData = field(compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise StoreError(f"plugin schema name {self.name!r}: expected lowercase letters, digits and '_' "
                             "(it names the version table alembic_version_<name>)")
        if not Path(self.versions).is_dir():
            raise StoreError(f"plugin schema {self.name!r}: versions folder {self.versions} does not exist")

    @property
    def version_table(self) -> str:
        """Where this schema's revision is kept."""
        return f"alembic_version_{self.name}"

    @property
    def run_tables(self) -> dict[str, sa.Table]:
        """Its tables that belong to a run (have a ``run_id`` column), by name."""
        return {name: t for name, t in self.metadata.tables.items() if "run_id" in t.columns}


def _config(schema: PluginSchema) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))  # core's env.py runs every history
    cfg.set_main_option("path_separator", "os")  # a folder with a space in its name stays one folder
    cfg.set_main_option("version_locations", str(schema.versions))
    cfg.attributes["version_table"] = schema.version_table
    cfg.attributes["target_metadata"] = schema.metadata
    return cfg


@functools.lru_cache(maxsize=None)
def _script(versions: str) -> ScriptDirectory:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("path_separator", "os")
    cfg.set_main_option("version_locations", versions)
    return ScriptDirectory.from_config(cfg)


def plugin_head(schema: PluginSchema) -> str:
    """The newest revision of ``schema``'s history."""
    heads = _script(str(schema.versions)).get_heads()
    if len(heads) != 1:
        raise StoreError(f"plugin schema {schema.name!r}: {schema.versions} has heads {heads}; expected one linear history")
    return heads[0]


def plugin_revision(connection: sa.Connection, schema: PluginSchema) -> str | None:
    """``schema``'s revision in the database behind ``connection`` (``None``: its tables were never made)."""
    if not sa.inspect(connection).has_table(schema.version_table):
        return None
    heads = list(connection.execute(sa.text(f"SELECT version_num FROM {schema.version_table}")).scalars())
    return heads[0] if heads else None


def plugin_currents(url: str | URL | None, schemas: list[PluginSchema]) -> dict[str, str | None]:
    """Each schema's revision in the store at ``url`` (``None``: its tables were never made, or there is no store),
    read only: nothing is created."""
    resolved = resolve_url(url)
    path = sqlite_path(resolved)
    if not schemas or (path is not None and not path.exists()):
        return {schema.name: None for schema in schemas}
    engine = create_store_engine(resolved, create=False, read_only=True)

    def read() -> dict[str, str | None]:
        with engine.connect() as conn:
            return {schema.name: plugin_revision(conn, schema) for schema in schemas}

    try:
        return _guard(engine, read)
    finally:
        engine.dispose()


def describe_plugin_revision(schema: PluginSchema, revision: str | None) -> str:
    """What to do about ``schema``'s tables at ``revision``, for ``vkit db current``."""
    head = plugin_head(schema)
    if revision is None:
        return f"not made yet: `vkit db upgrade` (or the plugin's first write) creates them at {head}"
    if revision == head:
        return "up to date"
    if not _known(schema, revision):
        return (f"newer than this plugin's head {head}: they were migrated by a newer version of the plugin; "
                "upgrade the plugin (this one only reads them)")
    return f"head is {head}: run `vkit db upgrade`"


def _known(schema: PluginSchema, revision: str) -> bool:
    try:
        return _script(str(schema.versions)).get_revision(revision) is not None
    except CommandError:
        return False


def _migrate(engine: Engine, schema: PluginSchema, target: str, down: bool = False) -> tuple[str | None, str | None]:
    cfg = _config(schema)
    writer = engine.execution_options(**{SQLITE_BEGIN_OPTION: "IMMEDIATE"})
    with writer.connect() as conn, _sqlite_foreign_keys_off(conn), conn.begin():
        _lock(conn)
        before = plugin_revision(conn, schema)
        if before is not None and not _known(schema, before):
            raise StoreError(f"store {mask_url(engine.url)}: {schema.name} tables are at revision {before!r}, newer "
                             f"than this plugin's {plugin_head(schema)!r}; upgrade the plugin instead of the database")
        cfg.attributes["connection"] = conn
        (command.downgrade if down else command.upgrade)(cfg, target)
        _check_foreign_keys(conn)
        return before, plugin_revision(conn, schema)


def upgrade_plugin_schema(url: str | URL | None, schema: PluginSchema, revision: str = "head",
                          *, down: bool = False) -> tuple[str | None, str | None]:
    """Migrate ``schema``'s tables in the store at ``url`` to ``revision`` (``down``: downgrade; ``"base"`` drops
    them); core's schema must be at its head. Returns ``(before, after)``."""
    engine = create_store_engine(resolve_url(url))
    try:
        return _guard(engine, lambda: _migrate(engine, schema, revision, down))
    finally:
        engine.dispose()


def ensure_plugin_schema(store: Any, schema: PluginSchema) -> bool:
    """Make sure ``schema``'s tables are usable in ``store`` (checked once per store and schema).

    Absent: created at the head (a table made before the plugin owned it is adopted by its first migration);
    on a read-only store left as it is (``False`` when its tables are not there: nothing of the plugin's to read).
    Older: refused until ``vkit db upgrade``. Newer: refused unless the store is read-only.

    Returns:
        whether the tables are there.

    Raises:
        StoreError: naming the store, the schema and what to run.
    """
    done = store.__dict__.setdefault("_plugin_schemas", set())
    if schema.name not in done and _guard(store.engine, lambda: _ensure(store, schema)):
        done.add(schema.name)
    return schema.name in done


def _ensure(store: Any, schema: PluginSchema) -> bool:
    with store.engine.connect() as conn:
        found = plugin_revision(conn, schema)
        present = set(sa.inspect(conn).get_table_names()) >= set(schema.metadata.tables)
    head = plugin_head(schema)
    if found == head:
        return True
    if found is None:
        if store.read_only:
            return present  # tables made before the plugin owned them are read as they are
        _migrate(store.engine, schema, "head")
    elif not _known(schema, found):
        if not store.read_only:
            raise StoreError(f"store {store.url}: {schema.name} tables are at revision {found!r}, unknown to this "
                             f"plugin (head {head!r}): migrated by a newer version; refusing to write")
    else:
        raise StoreError(f"store {store.url}: {schema.name} tables are at revision {found!r}, older than the "
                         f"plugin's {head!r}; run `vkit db upgrade` (with VKIT_DB_URL or --db pointing at it)")
    return True


__all__ = ["PluginSchema", "describe_plugin_revision", "ensure_plugin_schema", "plugin_currents", "plugin_head",
           "plugin_revision", "upgrade_plugin_schema"]
