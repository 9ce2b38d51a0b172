"""Alembic environment of the vkit store.

vkit drives Alembic from :mod:`vkit.core.store.migrate`, which passes an open
connection in ``config.attributes["connection"]``; the engine is made by
:func:`vkit.core.store.engine.create_store_engine` only when Alembic's own
command line is used with ``-x url=...``.

To write a new migration (from the repository root)::

    python -c "from vkit.core.store.migrate import revision; revision('add x to y')"
"""
from __future__ import annotations

from alembic import context

from vkit.core.store.engine import create_store_engine, resolve_url
from vkit.core.store.models import Base, UTCDateTime

config = context.config
#: Core's tables; a plugin's schema (:mod:`vkit.core.store.plugin_schema`) passes its own, and its version table.
target_metadata = config.attributes.get("target_metadata", Base.metadata)


def _render_item(kind: str, obj: object, _autogen_context: object) -> str | bool:
    """Write vkit's ``UTCDateTime`` as the plain type it stores, so migrations never import vkit's models."""
    if kind == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def _run(connection) -> None:  # noqa: ANN001 - an SQLAlchemy Connection
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        render_item=_render_item,
        transaction_per_migration=False,
        version_table=config.attributes.get("version_table", "alembic_version"),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    """Emit SQL to stdout (``--sql``) for the URL given with ``-x url=...``."""
    url = context.get_x_argument(as_dictionary=True).get("url")
    context.configure(url=str(resolve_url(url)), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Migrate through the connection vkit passed in, or one opened for ``-x url=...``."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.get_x_argument(as_dictionary=True).get("url")
    engine = create_store_engine(resolve_url(url))
    try:
        with engine.connect() as conn:
            _run(conn)
            conn.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
