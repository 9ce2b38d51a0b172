"""Where the store lives: URL resolution, password masking and engine creation.

The default store is SQLite at ``./vkit.db`` (made absolute, so every run
summary shows where it is); ``VKIT_DB_URL`` or an explicit URL selects another
database, e.g. ``postgresql+psycopg://user:pw@host:5432/vkit``. SQLite
connections get WAL journaling, a busy timeout and foreign keys through a
connect listener; write transactions on SQLite start with ``BEGIN IMMEDIATE``
so two writers wait for each other instead of failing mid-transaction.

Example::

    engine = create_store_engine(resolve_url(None))
    print(mask_url(engine.url))   # sqlite:////home/me/vkit.db
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError

from vkit.registry.errors import StoreError

#: Environment variable that selects the store when no URL is given.
ENV_VAR = "VKIT_DB_URL"
#: File name of the default SQLite store, relative to the working directory.
DEFAULT_SQLITE_FILE = "vkit.db"
#: How long (ms) a SQLite connection waits for another writer's lock.
SQLITE_BUSY_TIMEOUT_MS = 30_000
#: Execution option naming the ``BEGIN`` mode of a SQLite transaction.
SQLITE_BEGIN_OPTION = "vkit_sqlite_begin"

#: Names of keys whose values are credentials (``password``, ``sslpassword``, ``db_passwd``, ``pwd``,
#: ``token``, ``access_token``, ``client_secret``, ``api_key``...), in URL queries, DSNs and JSON alike.
_SECRET_KEY = r"[\w.-]*?(?:password|passwd|passphrase|pwd|token|secret|api_?key)"
#: ``scheme://user:password@``: the password of a URL's netloc.
_CREDENTIALS = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*):(?P<pw>[^@\s]+)@")
#: ``?password=...&``, ``sslpassword=...`` (DSN), ``token='...'``: a secret key's value up to ``&``, a quote or a space.
_SECRET_KV = re.compile(
    rf"(?P<head>(?<![\w.-]){_SECRET_KEY}\s*=\s*)(?P<pw>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|[^\s&'\"]+)", re.IGNORECASE)
#: ``"password": "..."`` in JSON or a Python repr (a config snapshot, a ``--json`` document).
_SECRET_ITEM = re.compile(
    rf"(?P<head>(?P<q>[\"']){_SECRET_KEY}(?P=q)\s*:\s*)(?P<pw>\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*')", re.IGNORECASE)


def default_url() -> str:
    """Return ``$VKIT_DB_URL`` if set, else SQLite at ``./vkit.db`` (absolute path)."""
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        return env
    return f"sqlite:///{Path(DEFAULT_SQLITE_FILE).resolve()}"


def resolve_url(url: str | URL | None) -> URL:
    """Parse ``url`` (``None`` means :func:`default_url`) into a SQLAlchemy ``URL``.

    Raises:
        StoreError: the URL cannot be parsed (the message shows it masked).
    """
    raw = default_url() if url is None else url
    if isinstance(raw, URL):
        return raw
    try:
        return make_url(raw)
    except ArgumentError:
        raise StoreError(
            f"store URL {mask_secrets(str(raw))!r} is not a database URL; expected e.g. "
            f"'sqlite:///path/vkit.db' or 'postgresql+psycopg://user@host:5432/db' ({ENV_VAR})"
        ) from None


def mask_url(url: str | URL) -> str:
    """Return ``url`` for display with every credential replaced by ``***`` (see :func:`mask_secrets`).

    Example::

        >>> mask_url("postgresql+psycopg://bob:s3cret@db:5432/vkit")
        'postgresql+psycopg://bob:***@db:5432/vkit'
        >>> mask_url("postgresql+psycopg://bob@db/vkit?sslmode=require&password=s3cret")
        'postgresql+psycopg://bob@db/vkit?password=***&sslmode=require'
    """
    try:
        parsed = url if isinstance(url, URL) else make_url(url)
    except ArgumentError:
        return mask_secrets(str(url))
    return mask_secrets(parsed.render_as_string(hide_password=True))


def mask_secrets(text: str) -> str:
    """Mask every credential form inside free text (URLs, error messages, logs, JSON): the password of
    ``scheme://user:password@``, the value of a secret key in a URL query or DSN (``?password=``,
    ``sslpassword=``, ``token=``...) and of a secret key in JSON (``"password": "..."``).

    Example::

        >>> mask_secrets("failed: postgresql://bob:pw@db/x?sslpassword=k&sslmode=require password='a b'")
        'failed: postgresql://bob:***@db/x?sslpassword=***&sslmode=require password=***'
    """
    text = _CREDENTIALS.sub(lambda m: f"{m.group('head')}:***@", text)
    text = _SECRET_KV.sub(lambda m: f"{m.group('head')}***", text)
    return _SECRET_ITEM.sub(lambda m: f"{m.group('head')}{m.group('q')}***{m.group('q')}", text)


def is_sqlite(url: URL) -> bool:
    """Whether ``url`` names a SQLite database."""
    return url.get_backend_name() == "sqlite"


def sqlite_path(url: URL) -> Path | None:
    """The file of a SQLite ``url`` (``None``: in memory, or not SQLite)."""
    database = url.database or ""
    if database.startswith("file:"):  # a URI filename (``?uri=true``): the path before its query
        database = database[len("file:"):]
    if not is_sqlite(url) or not database or database == ":memory:":
        return None
    return Path(database).expanduser()


def create_store_engine(url: URL, *, create: bool = True, read_only: bool = False, **kwargs: Any) -> Engine:
    """Create the engine for ``url`` with vkit's connection settings.

    Args:
        url: a parsed URL (see :func:`resolve_url`).
        create: for SQLite, make the file's folder when missing (commands that write).
        read_only: for SQLite in a folder this user cannot write, open the file
            read-only (``mode=ro``, ``immutable``) so listing still works.
        **kwargs: passed to :func:`sqlalchemy.create_engine`.

    Raises:
        StoreError: the URL's dialect or driver is not installed.
    """
    path = sqlite_path(url)
    ro_file = read_only and path is not None and path.is_file() and not os.access(path.parent, os.W_OK)
    if ro_file:
        url = url.set(database=f"file:{path.resolve()}").update_query_dict({"mode": "ro", "immutable": "1", "uri": "true"})
    elif create and is_sqlite(url):
        _make_parent_dir(url)
    kwargs.setdefault("pool_pre_ping", not is_sqlite(url))
    # Bound values (config snapshots, error texts) never reach SQL logs or error messages.
    kwargs.setdefault("hide_parameters", True)
    try:
        engine = sa.create_engine(url, **kwargs)
    except (ImportError, ArgumentError, sa.exc.NoSuchModuleError) as err:
        raise StoreError(
            f"store {mask_url(url)}: cannot create an engine ({mask_secrets(str(err))}); for PostgreSQL "
            "install psycopg (pip install 'vkit[postgres]') and use 'postgresql+psycopg://...'"
        ) from None
    if is_sqlite(url):
        _install_sqlite_listeners(engine, wal=not ro_file)
    return engine


def _make_parent_dir(url: URL) -> None:
    database = url.database or ""
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)


def _install_sqlite_listeners(engine: Engine, wal: bool = True) -> None:
    """WAL, busy timeout, foreign keys on connect; explicit ``BEGIN`` (the pysqlite recipe of SQLAlchemy's docs)."""

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Autocommit at the driver level: SQLAlchemy emits BEGIN itself (below),
        # so PRAGMAs run outside a transaction and DDL is transactional.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys = ON")
            if wal:  # a read-only file keeps its journal mode
                cursor.execute("PRAGMA journal_mode = WAL")
                cursor.execute("PRAGMA synchronous = NORMAL")
        finally:
            cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        mode = connection.get_execution_options().get(SQLITE_BEGIN_OPTION, "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {mode}")
