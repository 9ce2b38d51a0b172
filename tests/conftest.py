"""Shared fixtures: every test gets its own data cache and never touches ./vkit.db or a real VKIT_DB_URL.

Store tests run on SQLite (a tmp file) and on PostgreSQL: the server at
127.0.0.1:5432 (database ``test``, trust auth), or ``$VKIT_TEST_PG_URL``; each
test gets a fresh schema, dropped afterwards. When the server cannot be
reached the PostgreSQL variants are skipped with the reason (``pytest -ra``).
"""
from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

PG_URL = os.environ.get("VKIT_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
BACKENDS = [pytest.param("sqlite", id="sqlite"), pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres)]

# tests/helpers/ holds modules the tests share, imported by name (``from vkit_cli import vkit``: the installed command).
HELPERS = str(Path(__file__).parent / "helpers")
if HELPERS not in sys.path:
    sys.path.insert(0, HELPERS)


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    monkeypatch.delenv("VKIT_DB_URL", raising=False)
    monkeypatch.delenv("VKIT_PLUGINS", raising=False)
    monkeypatch.delenv("VKIT_DISABLE_PLUGINS", raising=False)
    monkeypatch.setenv("VKIT_DATA", str(tmp_path_factory.getbasetemp() / "vkit-data"))


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    """A fresh SQLite store URL in the test's temporary folder."""
    return f"sqlite:///{tmp_path / 'vkit.db'}"


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models train faster on one torch thread (and do not fight other processes for the cores)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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


@pytest.fixture
def pg_base_url() -> str:
    """The URL fresh schemas are made under (a folder's conftest may override it, e.g. to carry a password)."""
    return PG_URL


@pytest.fixture
def pg_url(pg_admin: sa.Engine, pg_base_url: str) -> Iterator[str]:
    """A URL whose connections live in a fresh, uniquely named schema, dropped after the test."""
    schema = f"vkit_test_{uuid.uuid4().hex[:12]}"
    with pg_admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    yield sa.make_url(pg_base_url).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
        hide_password=False)
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
