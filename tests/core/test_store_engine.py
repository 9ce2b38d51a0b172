"""Store plumbing: default URL, password masking, SQLite pragmas, concurrent writers, JSON snapshots, upserts."""
from __future__ import annotations

import logging
import threading
from enum import Enum
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from vkit.core.store import default_url, mask_secrets, mask_url, open_store
from vkit.core.store.jsonable import to_jsonable
from vkit.core.store.models import Run
from vkit.core.store.upsert import upsert
from vkit.registry.errors import StoreError


def test_default_url_is_absolute_sqlite_or_env(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert default_url() == f"sqlite:///{tmp_path / 'vkit.db'}"
    monkeypatch.setenv("VKIT_DB_URL", "postgresql+psycopg://u@h/db")
    assert default_url() == "postgresql+psycopg://u@h/db"


def test_open_store_without_url_uses_cwd(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    with open_store() as store:
        assert store.url == f"sqlite:///{tmp_path / 'vkit.db'}"
    assert (tmp_path / "vkit.db").is_file()


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql+psycopg://bob:s3cret@db:5432/vkit", "postgresql+psycopg://bob:***@db:5432/vkit"),
        ("postgresql+psycopg://bob@db/vkit", "postgresql+psycopg://bob@db/vkit"),
        ("sqlite:////tmp/x.db", "sqlite:////tmp/x.db"),
    ],
)
def test_mask_url(url, shown):
    assert mask_url(url) == shown


@pytest.mark.parametrize("url", [
    "postgresql+psycopg://bob@db/vkit?password=s3cret",
    "postgresql+psycopg://bob@db/vkit?sslmode=require&sslpassword=s3cret&connect_timeout=2",
    "postgresql+psycopg://bob:s3cret@db/vkit?PWD=s3cret&token=s3cret",
    "mysql+pymysql://bob@db/vkit?passwd=s3cret",
])
def test_mask_url_hides_every_credential_form(url):
    shown = mask_url(url)
    assert "s3cret" not in shown and "***" in shown
    assert "bob@db/vkit" in shown or "bob:***@db/vkit" in shown  # the rest of the URL stays readable


@pytest.mark.parametrize(("text", "shown"), [
    ("at postgresql://u@h/d?password=s3cret&sslmode=require", "at postgresql://u@h/d?password=***&sslmode=require"),
    ("dsn host=h db_password='s 3cret' user=u", "dsn host=h db_password=*** user=u"),
    ('{"password": "s3cret", "api_key": "s3cret", "max_tokens": 5}', '{"password": "***", "api_key": "***", "max_tokens": 5}'),
    ("max_tokens=5 threshold=0.5", "max_tokens=5 threshold=0.5"),
])
def test_mask_secrets_query_dsn_and_json_forms(text, shown):
    assert mask_secrets(text) == shown


def test_mask_secrets_in_free_text():
    text = "failed: postgresql+psycopg://bob:p%40ss@db/x and host=db password=hunter2 user=bob"
    assert mask_secrets(text) == "failed: postgresql+psycopg://bob:***@db/x and host=db password=*** user=bob"


def test_unreachable_database_error_hides_password():
    with pytest.raises(StoreError) as err:
        open_store("postgresql+psycopg://bob:s3cret@127.0.0.1:1/vkit?connect_timeout=2")
    message = str(err.value)
    assert "postgresql+psycopg://bob:***@127.0.0.1:1/vkit" in message and "s3cret" not in message
    assert err.value.__cause__ is None and err.value.__suppress_context__


def test_bad_url_is_a_store_error():
    with pytest.raises(StoreError, match=r"store URL 'not a url' is not a database URL"):
        open_store("not a url")


@pytest.mark.postgres
def test_password_never_logged(pg_url, caplog):
    url = pg_url.replace("postgres@", "postgres:s3cret@")  # trust auth ignores the password
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="sqlalchemy")  # SQL statements and their parameters
    with open_store(url) as store:
        assert "s3cret" not in store.url and "s3cret" not in repr(store)
        run_id = store.start_run("t", "p", {"db": url}, seed=0)
        store.finish_run(run_id, "failed", f"cannot reach {url}")
        run = store.get_run(run_id)
        assert run["error"] == f"cannot reach {store.url}"
        assert run["config"] == {"db": store.url}
    assert "INSERT INTO runs" in caplog.text and "s3cret" not in caplog.text


def test_sqlite_pragmas(tmp_path):
    with open_store(f"sqlite:///{tmp_path / 'p.db'}") as store, store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000
    assert (tmp_path / "p.db-wal").exists() or (tmp_path / "p.db").exists()


def test_sqlite_concurrent_writers_do_not_lock_out(tmp_path):
    url = f"sqlite:///{tmp_path / 'c.db'}"
    with open_store(url) as store:
        run_id = store.start_run("t", "p", {}, seed=0)
    errors: list[BaseException] = []

    def write(worker: int) -> None:
        try:
            with open_store(url) as mine:
                for step in range(15):
                    mine.log_metrics(run_id, {f"w{worker}": step / 10}, step=step, split="train")
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with open_store(url) as store:
        assert len(store.run_metrics(run_id)) == 60


def test_check_constraint_rejects_bad_run_status(store):
    with pytest.raises(StoreError, match="ck_runs_status|CHECK constraint"):
        with store.session() as session:
            session.add(Run(task="t", plugin="p", status="weird", config={}, versions={}))


class _Color(Enum):
    RED = "red"


def test_to_jsonable():
    value = {
        1: (1, 2.5, float("nan"), float("inf")),
        "path": Path("/data/x"),
        "arr": np.arange(3),
        "scalar": np.int64(4),
        "set": {3, 1},
        "cls": Path,
        "color": _Color.RED,
        "obj": object.__new__(_Opaque),
    }
    assert to_jsonable(value) == {
        "1": [1, 2.5, None, None], "path": "/data/x", "arr": [0, 1, 2], "scalar": 4, "set": [1, 3],
        "cls": "pathlib.Path", "color": "red", "obj": "<opaque>",
    }


class _Opaque:
    def __repr__(self) -> str:
        return "<opaque>"


def test_mmengine_config_snapshot(store):
    from mmengine.config import Config

    cfg = Config(dict(model=dict(type="X3D", dims=(1, 2)), seed=0))
    run_id = store.start_run("t", "p", cfg, seed=0)
    assert store.get_run(run_id)["config"] == {"model": {"type": "X3D", "dims": [1, 2]}, "seed": 0}


def test_upsert_helper_collapses_duplicates_and_keeps_rows(store):
    from vkit.core.store.models import Video

    rows = [{"path": "/v.mp4", "size": 1}, {"path": "/v.mp4", "size": 2}, {"path": "/w.mp4", "size": 3}]
    with store.session() as session:
        assert upsert(session, Video.__table__, rows, keys=("path",)) == 2
        assert upsert(session, Video.__table__, [{"path": "/v.mp4", "size": 9}], keys=("path",), update=()) == 1
    with store.session(write=False) as session:
        sizes = dict(session.execute(sa.select(Video.path, Video.size)).all())
    assert sizes == {"/v.mp4": 2, "/w.mp4": 3}
    with pytest.raises(StoreError, match=r"missing key columns \['path'\]"):
        with store.session() as session:
            upsert(session, Video.__table__, [{"size": 1}], keys=("path",))
    with pytest.raises(StoreError, match=r"unknown columns \['colour'\]"):
        with store.session() as session:
            upsert(session, Video.__table__, [{"path": "/x", "colour": 1}], keys=("path",))
