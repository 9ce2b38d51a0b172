"""Schema versions: created at head, older refused until `vkit db upgrade`, newer refused for writing."""
from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from vkit.core.store import current, downgrade, head_revision, open_store, upgrade
from vkit.core.store.engine import create_store_engine, resolve_url
from vkit.core.store.models import TABLES, Base
from vkit.registry.errors import StoreError

HEAD = "0010"  # the newest migration shipped in core/store/migrations/versions


def _engine(url: str) -> sa.Engine:
    return create_store_engine(resolve_url(url))


def _index_names(url: str, table: str) -> set[str]:
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            return {ix["name"] for ix in sa.inspect(conn).get_indexes(table)}
    finally:
        engine.dispose()


def test_empty_database_is_created_at_head(store_url):
    assert head_revision() == HEAD
    assert current(store_url) is None
    with open_store(store_url) as store:
        assert store.schema.current == HEAD and store.schema.at_head
    assert current(store_url) == HEAD
    engine = _engine(store_url)
    try:
        with engine.connect() as conn:
            assert set(TABLES) <= set(sa.inspect(conn).get_table_names())
    finally:
        engine.dispose()
    with open_store(store_url) as again:  # re-open: no second creation
        assert again.list_runs() == []


def test_migrations_build_exactly_the_models(store):
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert diff == []


def test_older_revision_is_refused_until_upgrade(store_url):
    open_store(store_url).close()
    assert downgrade(store_url, "0001") == (HEAD, "0001")
    assert "ix_runs_started_at" not in _index_names(store_url, "runs")
    with pytest.raises(StoreError) as err:
        open_store(store_url)
    assert f"revision '0001', older than this vkit's '{HEAD}'" in str(err.value)
    assert "run `vkit db upgrade`" in str(err.value)

    assert upgrade(store_url) == ("0001", HEAD)
    assert "ix_runs_started_at" in _index_names(store_url, "runs")
    assert upgrade(store_url) == (HEAD, HEAD)  # idempotent
    with open_store(store_url) as store:
        assert store.schema.at_head


def _columns(url: str, table: str) -> set[str]:
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            return {col["name"] for col in sa.inspect(conn).get_columns(table)}
    finally:
        engine.dispose()


def _sql(url: str, statement: str) -> list[tuple]:
    engine = _engine(url)
    try:
        with engine.begin() as conn:
            result = conn.execute(sa.text(statement))
            return [tuple(row) for row in result] if result.returns_rows else []
    finally:
        engine.dispose()


def test_0003_adds_host_pid_and_interrupted_keeping_rows(store_url):
    assert upgrade(store_url, "0002") == (None, "0002")
    _sql(store_url, "INSERT INTO runs (task, plugin, status, started_at, config, versions) "
                    "VALUES ('t', 'p', 'running', '2025-01-01 00:00:00', '{}', '{}')")
    (run_id,), = _sql(store_url, "SELECT id FROM runs")
    _sql(store_url, "INSERT INTO metrics (run_id, key, value, step, split, logged_at) "
                    f"VALUES ({run_id}, 'acc', 0.5, 1, 'val', '2025-01-01 00:00:00')")
    with pytest.raises(StoreError, match=f"revision '0002', older than this vkit's '{HEAD}'; run `vkit db upgrade`"):
        open_store(store_url)

    assert upgrade(store_url) == ("0002", HEAD)
    assert {"host", "pid"} <= _columns(store_url, "runs")
    assert {"ix_runs_started_at", "ix_runs_status", "ix_runs_task"} <= _index_names(store_url, "runs")
    with open_store(store_url) as store:
        run = store.get_run(run_id)
        assert (run["status"], run["host"], run["pid"]) == ("running", None, None)
        assert store.final_metrics(run_id) == {"val/acc": 0.5}  # SQLite's table copy did not cascade-delete children
        assert store.reap_stale_runs() == []                     # no pid: nobody can tell, left alone
        _sql(store_url, f"UPDATE runs SET status = 'interrupted' WHERE id = {run_id}")
        assert store.get_run(run_id)["status"] == "interrupted"
        with pytest.raises(sa.exc.IntegrityError):
            _sql(store_url, f"UPDATE runs SET status = 'lost' WHERE id = {run_id}")

    assert downgrade(store_url, "0002") == (HEAD, "0002")
    assert not {"host", "pid"} & _columns(store_url, "runs")
    assert _sql(store_url, "SELECT id, status FROM runs") == [(run_id, "failed")]  # 'interrupted' is unknown to 0002
    assert _sql(store_url, "SELECT count(*) FROM metrics") == [(1,)]
    with pytest.raises(sa.exc.IntegrityError):
        _sql(store_url, f"UPDATE runs SET status = 'interrupted' WHERE id = {run_id}")
    assert upgrade(store_url) == ("0002", HEAD)


def test_newer_revision_refuses_to_write(store_url):
    with open_store(store_url) as store:
        run_id = store.start_run("t", "p", {}, seed=1)
        with store.session() as session:
            session.execute(sa.text("UPDATE alembic_version SET version_num = '0999'"))
    with pytest.raises(StoreError) as err:
        open_store(store_url)
    assert "'0999'" in str(err.value) and f"'{HEAD}'" in str(err.value) and "refusing to write" in str(err.value)
    with pytest.raises(StoreError, match=f"'0999', newer than this vkit's head '{HEAD}'"):
        upgrade(store_url)

    with open_store(store_url, read_only=True) as reader:
        assert [r["id"] for r in reader.list_runs()] == [run_id]
        with pytest.raises(StoreError, match=rf"read-only \(schema revision '0999', this vkit's head '{HEAD}'\)"):
            reader.start_run("t", "p", {}, seed=1)


def test_no_store_and_create_false(store_url):
    with pytest.raises(StoreError, match=r"no vkit store at .*; create it with `vkit db upgrade`"):
        open_store(store_url, create=False)
    assert upgrade(store_url) == (None, HEAD)
    open_store(store_url, create=False).close()


def test_unversioned_vkit_tables_are_not_touched(store_url):
    engine = _engine(store_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE runs (id INTEGER PRIMARY KEY)"))
    finally:
        engine.dispose()
    with pytest.raises(StoreError, match=r"has vkit tables \['runs'\] but no schema revision"):
        open_store(store_url)


def test_downgrade_to_base_drops_everything(store_url):
    open_store(store_url).close()
    assert downgrade(store_url, "base") == (HEAD, None)
    engine = _engine(store_url)
    try:
        with engine.connect() as conn:
            assert not set(TABLES) & set(sa.inspect(conn).get_table_names())
    finally:
        engine.dispose()


def test_revision_helper_writes_an_empty_migration_when_models_match(tmp_path, monkeypatch):
    import shutil

    from vkit.core.store import migrate

    copy = tmp_path / "migrations"
    shutil.copytree(migrate.MIGRATIONS_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(migrate, "MIGRATIONS_DIR", copy)
    migrate._script.cache_clear()
    NEXT = f"{int(HEAD) + 1:04d}"
    try:
        migrate.revision("no change")
        script = (copy / "versions" / f"{NEXT}_no_change.py").read_text()
        assert f'revision: str = "{NEXT}"' in script.replace("'", '"') and f'down_revision: str | None = "{HEAD}"' in script.replace("'", '"')
        assert "op." not in script  # autogenerate found no difference between models and migrations
        assert migrate.head_revision() == NEXT
    finally:
        migrate._script.cache_clear()


def test_0004_adds_run_kind_classifying_stored_runs(store_url):
    assert upgrade(store_url, "0003") == (None, "0003")
    for task, sha in (("train-task", None), ("score-task", "ab" * 32), ("predict-task", None)):
        _sql(store_url, "INSERT INTO runs (task, plugin, status, started_at, config, versions, model_sha256) "
                        f"VALUES ('{task}', 'p', 'finished', '2025-01-01 00:00:00', '{{}}', '{{}}', "
                        f"{'NULL' if sha is None else repr(sha)})")
    ids = dict(_sql(store_url, "SELECT task, id FROM runs"))
    _sql(store_url, "INSERT INTO predictions (run_id, split, item_id) VALUES "
                    f"({ids['predict-task']}, 'predict', 'a'), ({ids['train-task']}, 'test', 'b')")
    assert upgrade(store_url) == ("0003", HEAD)
    assert dict(_sql(store_url, "SELECT task, kind FROM runs")) == {
        "train-task": "train", "score-task": "score", "predict-task": "predict"}
    assert "ix_runs_kind" in _index_names(store_url, "runs")
    with open_store(store_url) as store:
        assert [r["task"] for r in store.list_runs(kind="predict")] == ["predict-task"]
        new = store.start_run("t", "p", {}, seed=0)
        assert store.get_run(new)["kind"] == "train"
    assert downgrade(store_url, "0003") == (HEAD, "0003")
    assert "kind" not in _columns(store_url, "runs")


def test_0006_adds_summary_values_keeping_summaries(store_url):
    assert upgrade(store_url, "0005") == (None, "0005")
    _sql(store_url, "INSERT INTO runs (task, plugin, status, started_at, config, versions, kind) "
                    "VALUES ('t', 'p', 'finished', '2025-01-01 00:00:00', '{}', '{}', 'score')")
    (run_id,), = _sql(store_url, "SELECT id FROM runs")
    _sql(store_url, "INSERT INTO videos (path, status, updated_at) VALUES ('/a.mp4', 'ok', '2025-01-01 00:00:00')")
    (video_id,), = _sql(store_url, "SELECT id FROM videos")
    _sql(store_url, "INSERT INTO video_summaries (run_id, video_id, status, segments, mean_score, scored_at) "
                    f"VALUES ({run_id}, {video_id}, 'scored', 4, 0.5, '2025-01-01 00:00:00')")
    assert "values" not in _columns(store_url, "video_summaries")
    assert upgrade(store_url) == ("0005", HEAD)
    with open_store(store_url) as store:
        (old,) = store.video_summaries(run_id)
        assert (old["segments"], old["mean_score"], old["values"]) == (4, 0.5, None)
        store.add_video_results(run_id, [dict(video_id=video_id, status="scored", scores=[], events=[],
                                              aggregates={"low_share": 0.25})])
        assert store.video_summaries(run_id)[0]["values"] == {"events": 0, "low_share": 0.25}
    assert downgrade(store_url, "0005") == (HEAD, "0005")
    assert "values" not in _columns(store_url, "video_summaries")
    assert _sql(store_url, "SELECT count(*) FROM video_summaries") == [(1,)]


def test_0007_content_leases_and_duplicate_status_keeping_rows(store_url):
    assert upgrade(store_url, "0006") == (None, "0006")
    _sql(store_url, "INSERT INTO runs (task, plugin, status, started_at, config, versions, kind) "
                    "VALUES ('t', 'p', 'running', '2025-01-01 00:00:00', '{}', '{}', 'score')")
    (run_id,), = _sql(store_url, "SELECT id FROM runs")
    _sql(store_url, "INSERT INTO videos (path, status, updated_at) VALUES ('/a.mp4', 'ok', '2025-01-01 00:00:00'), "
                    "('/b.mp4', 'pending', '2025-01-01 00:00:00')")
    ids = dict(_sql(store_url, "SELECT path, id FROM videos"))
    _sql(store_url, "INSERT INTO video_summaries (run_id, video_id, status, segments, scored_at) "
                    f"VALUES ({run_id}, {ids['/a.mp4']}, 'scored', 4, '2025-01-01 00:00:00')")
    _sql(store_url, "INSERT INTO video_leases (model_sha256, video_id, run_id, expires_at) "
                    f"VALUES ('m', {ids['/b.mp4']}, {run_id}, '2099-01-01 00:00:00')")
    with pytest.raises(sa.exc.IntegrityError):
        _sql(store_url, f"UPDATE videos SET status = 'duplicate' WHERE id = {ids['/b.mp4']}")
    assert upgrade(store_url, "0007") == ("0006", "0007")
    assert _sql(store_url, "SELECT video_sha256 FROM video_leases") == [(None,)]       # the lease is kept
    _sql(store_url, f"UPDATE videos SET status = 'duplicate', error = 'duplicate of /a.mp4' WHERE id = {ids['/b.mp4']}")
    _sql(store_url, "INSERT INTO video_summaries (run_id, video_id, status, segments, scored_at) "
                    f"VALUES ({run_id}, {ids['/b.mp4']}, 'duplicate', 0, '2025-01-01 00:00:00')")
    _sql(store_url, "UPDATE video_leases SET video_sha256 = 'c'")
    _sql(store_url, "INSERT INTO video_leases (model_sha256, video_id, run_id, expires_at) "
                    f"VALUES ('m', {ids['/a.mp4']}, {run_id}, '2099-01-01 00:00:00')")
    with pytest.raises(sa.exc.IntegrityError):                                            # one lease per content
        _sql(store_url, f"UPDATE video_leases SET video_sha256 = 'c' WHERE video_id = {ids['/a.mp4']}")
    assert downgrade(store_url, "0006") == ("0007", "0006")
    assert "video_sha256" not in _columns(store_url, "video_leases")
    assert _sql(store_url, "SELECT status FROM video_summaries") == [("scored",)]         # duplicates dropped
    assert dict(_sql(store_url, "SELECT path, status FROM videos")) == {"/a.mp4": "ok", "/b.mp4": "pending"}
    assert _sql(store_url, "SELECT count(*) FROM video_leases") == [(2,)]
    assert upgrade(store_url) == ("0006", HEAD)


def test_0008_leaves_recommendations_to_the_plugin(store_url):
    """Core makes no recommendations table any more (the recommendation plugin's migrations do:
    tests/plugins/test_recommendation_store.py); 0008 stays a known revision, a no-op both ways."""
    assert upgrade(store_url, "0008") == (None, "0008")
    engine = _engine(store_url)
    try:
        assert "recommendations" not in set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert upgrade(store_url) == ("0008", HEAD)
    assert downgrade(store_url, "0007") == (HEAD, "0007")
    assert upgrade(store_url) == ("0007", HEAD)


def test_0009_allows_changed_status_keeping_rows(store_url):
    assert upgrade(store_url, "0008") == (None, "0008")
    _sql(store_url, "INSERT INTO runs (task, plugin, status, started_at, config, versions, kind) "
                    "VALUES ('t', 'p', 'finished', '2025-01-01 00:00:00', '{}', '{}', 'score')")
    (run_id,), = _sql(store_url, "SELECT id FROM runs")
    _sql(store_url, "INSERT INTO videos (path, sha256, status, updated_at) VALUES "
                    "('/a.mp4', 'aa', 'ok', '2025-01-01 00:00:00'), ('/b.mp4', NULL, 'pending', '2025-01-01 00:00:00')")
    ids = dict(_sql(store_url, "SELECT path, id FROM videos"))
    _sql(store_url, "INSERT INTO video_summaries (run_id, video_id, video_sha256, status, segments, scored_at) "
                    f"VALUES ({run_id}, {ids['/a.mp4']}, 'aa', 'scored', 4, '2025-01-01 00:00:00')")
    with pytest.raises(sa.exc.IntegrityError):
        _sql(store_url, f"UPDATE videos SET status = 'changed' WHERE id = {ids['/b.mp4']}")
    assert upgrade(store_url, "0009") == ("0008", "0009")
    _sql(store_url, f"UPDATE videos SET status = 'changed', error = 'changed while being scored' "
                    f"WHERE id = {ids['/b.mp4']}")
    _sql(store_url, "INSERT INTO video_summaries (run_id, video_id, status, segments, scored_at) "
                    f"VALUES ({run_id}, {ids['/b.mp4']}, 'changed', 0, '2025-01-01 00:00:00')")
    with pytest.raises(sa.exc.IntegrityError):
        _sql(store_url, f"UPDATE videos SET status = 'gone' WHERE id = {ids['/b.mp4']}")
    assert downgrade(store_url, "0008") == ("0009", "0008")
    assert _sql(store_url, "SELECT video_id, status FROM video_summaries") == [(ids["/a.mp4"], "scored")]
    assert dict(_sql(store_url, "SELECT path, status FROM videos")) == {"/a.mp4": "ok", "/b.mp4": "pending"}
    assert upgrade(store_url) == ("0008", HEAD)
