"""A short, stable identity of a store: which database (file, or server + database + schema) it is.

Work folders and checkpoint sidecars carry it, so store A's run 1 and store
B's run 1 never share a folder, and ``vkit runs delete --work-dir`` can tell
whose folder it is. It is a hash of the URL without credentials: a SQLite
file by its resolved real path, a server by backend, user, host, port,
database and query options (``options=-csearch_path=...`` picks a schema).

Example::

    store_identity(make_url("sqlite:///runs/vkit.db"))   # e.g. '3f2a9c1e', the same from any working folder
"""
from __future__ import annotations

import hashlib
import os

from sqlalchemy.engine import URL

from vkit.core.store.engine import sqlite_path

#: Query keys whose values are credentials: left out, so a rotated password keeps the identity.
_SECRET_PARTS = ("pass", "secret", "token", "key")


def canonical_url(url: URL) -> str:
    """The database ``url`` names, without credentials: SQLite as its real file path, a server as
    ``backend://user@host:port/database?sorted non-secret options``.

    Example::

        canonical_url(make_url("postgresql+psycopg://bob:pw@db/vkit?password=x&sslmode=require"))
        # 'postgresql://bob@db:/vkit?sslmode=require'
    """
    backend = url.get_backend_name()
    if backend == "sqlite":  # a read-only ``file:...?mode=ro`` URI names the same file
        path = sqlite_path(url)
        return f"sqlite:{os.path.realpath(path) if path is not None else ':memory:'}"
    query = sorted((key, str(value)) for key, value in url.query.items()
                   if not any(part in key.lower() for part in _SECRET_PARTS))
    options = "&".join(f"{key}={value}" for key, value in query)
    return f"{backend}://{url.username or ''}@{url.host or ''}:{url.port or ''}/{url.database or ''}?{options}"


def store_identity(url: URL) -> str:
    """Eight hex digits naming the database of ``url`` (a sha256 prefix of :func:`canonical_url`).

    Example::

        store_identity(make_url("sqlite:///a.db")) != store_identity(make_url("sqlite:///b.db"))   # True
    """
    return hashlib.sha256(canonical_url(url).encode("utf-8")).hexdigest()[:8]


__all__ = ["canonical_url", "store_identity"]
