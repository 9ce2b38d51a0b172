"""Store fixtures: every store test runs on SQLite (a tmp file) and on PostgreSQL (a fresh schema per test).

PostgreSQL is the server at 127.0.0.1:5432 (database ``test``, trust auth),
or ``$VKIT_TEST_PG_URL``; when it cannot be reached the PostgreSQL variants
are skipped with the reason shown by ``pytest -ra``.
"""
from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

PG_URL = os.environ.get("VKIT_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
BACKENDS = [pytest.param("sqlite", id="sqlite"), pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[sa.Engine]:
    """An engine on the test PostgreSQL database (skips when unreachable)."""
    try:
        engine = sa.create_engine(PG_URL, poolclass=sa.NullPool, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception as err:  # noqa: BLE001 - any failure means: no server to test against
        first = str(getattr(err, "orig", err)).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        pytest.skip(f"PostgreSQL at 127.0.0.1:5432 not reachable: {first}")
    yield engine
    engine.dispose()


def pg_schema_url(schema: str) -> str:
    """``PG_URL`` with ``search_path`` set to ``schema``."""
    return sa.make_url(PG_URL).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)


@pytest.fixture
def pg_url(pg_admin: sa.Engine) -> Iterator[str]:
    """A URL whose connections live in a fresh, uniquely named schema, dropped after the test."""
    schema = f"vkit_test_{uuid.uuid4().hex[:12]}"
    with pg_admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    yield pg_schema_url(schema)
    with pg_admin.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """An empty database URL on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store' / 'vkit.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def store(store_url: str):
    """A store opened (and created at head) on each backend."""
    from vkit.core.store import open_store

    opened = open_store(store_url)
    yield opened
    opened.close()
