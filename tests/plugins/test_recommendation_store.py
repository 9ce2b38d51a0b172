"""The recommendation plugin owns its ``recommendations`` table (its own Alembic history, ``vkit_store_schema``).

An old store, where core's migration 0008 made the table and ``vkit recommend`` filled it, upgrades in place
with every row kept (same ids, users, ranks, items, scores), through ``vkit db upgrade`` or at the plugin's
first write; a store from before 0008 gets its stored lists copied; a store opened without the plugin works
and has no such table. SQLite and PostgreSQL.
"""
from __future__ import annotations

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from vkit.core.store import head_revision, open_store, upgrade
from vkit.core.store.engine import create_store_engine, resolve_url
from vkit.core.store.plugin_schema import ensure_plugin_schema, upgrade_plugin_schema
from vkit.plugins.recommendation.store import SCHEMA, add_recommendations, run_recommendations
from vkit.registry.errors import StoreError

USERS = ["u1", "ü [bold]/2", "=SUM(A1)"]


def _sql(url: str, statement: str, **params) -> list[tuple]:
    engine = create_store_engine(resolve_url(url))
    try:
        with engine.begin() as conn:
            result = conn.execute(sa.text(statement), params)
            return [tuple(r) for r in result] if result.returns_rows else []
    finally:
        engine.dispose()


def _tables(url: str) -> set[str]:
    engine = create_store_engine(resolve_url(url))
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _old_store(url: str) -> list[tuple]:
    """A store as vkit left it before the table moved: core at its head, ``recommendations`` made as core's
    migration 0008 made it, two runs' lists in it. Returns every row."""
    upgrade(url)
    engine = create_store_engine(resolve_url(url))
    try:
        metadata = sa.MetaData()
        sa.Table("runs", metadata, autoload_with=engine)
        table = sa.Table(  # core 0008's DDL, names included
            "recommendations", metadata,
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE",
                                                          name="fk_recommendations_run_id_runs"), nullable=False),
            sa.Column("user_id", sa.String(500), nullable=False),
            sa.Column("rank", sa.Integer, nullable=False),
            sa.Column("item_id", sa.String(500), nullable=False),
            sa.Column("score", sa.Float),
            sa.UniqueConstraint("run_id", "user_id", "rank", name="uq_recommendations_run_user_rank"),
            sa.Index("ix_recommendations_run_id", "run_id"), sa.Index("ix_recommendations_item_id", "item_id"))
        metadata.create_all(engine, tables=[table])
    finally:
        engine.dispose()
    for _ in range(2):
        _sql(url, "INSERT INTO runs (task, plugin, status, started_at, config, versions, kind) VALUES "
                  "('recommendation', 'recommendation', 'finished', '2025-01-01 00:00:00', '{}', '{}', 'predict')")
    for run_id, in _sql(url, "SELECT id FROM runs ORDER BY id"):
        for u, user in enumerate(USERS):
            for rank in range(1, 6):
                score = None if rank == 5 else 10.0 - rank + u / 10
                _sql(url, "INSERT INTO recommendations (run_id, user_id, rank, item_id, score) "
                          "VALUES (:r, :u, :k, :i, :s)", r=run_id, u=user, k=rank, i=f"v{run_id}{u}{rank}", s=score)
    return _rows(url)


def _rows(url: str) -> list[tuple]:
    return _sql(url, "SELECT id, run_id, user_id, rank, item_id, score FROM recommendations ORDER BY id")


def test_an_old_store_with_recommendation_rows_upgrades_with_every_row_kept(store_url, tmp_path):
    from vkit.workflows.cli import cli
    from vkit.workflows.export import export_run, plugin_tables

    before = _old_store(store_url)
    assert len(before) == 30
    out = CliRunner().invoke(cli, ["--db", store_url, "db", "upgrade"])
    assert out.exit_code == 0, out.output
    assert f"already at {head_revision()}" in out.output
    assert "recommendation tables: revision (empty) -> 0001" in out.output
    assert _rows(store_url) == before                                              # every row, same ids
    assert _sql(store_url, "SELECT version_num FROM alembic_version") == [(head_revision(),)]  # core's own, alone
    assert _sql(store_url, "SELECT version_num FROM alembic_version_recommendation") == [("0001",)]
    assert "already at 0001" in CliRunner().invoke(cli, ["--db", store_url, "db", "upgrade"]).output

    with open_store(store_url) as store:
        run_id = before[0][1]
        rows = run_recommendations(store, run_id)
        assert [(r["id"], r["user_id"], r["rank"], r["item_id"], r["score"]) for r in rows] == sorted(
            [(i, u, k, item, s) for i, r, u, k, item, s in before if r == run_id], key=lambda t: (t[1], t[2]))
        assert add_recommendations(store, run_id, [dict(user_id="u1", rank=1, item_id="new", score=0.5)]) == 1
        assert [r["item_id"] for r in run_recommendations(store, run_id, user_id="u1", max_rank=2)] == ["new", f"v{run_id}02"]
        assert store.run_counts([run_id])["recommendations"] == 15
        files = export_run(store, run_id, tmp_path, tables=["recommendations"], extra=plugin_tables())
        lines = files["recommendations"].read_text(encoding="utf-8").splitlines()
        assert lines[0] == "run_id,user_id,rank,item_id,score" and len(lines) == 16
        assert f"{run_id},'=SUM(A1),1,v{run_id}21,9.2" in lines                  # a formula user stays text
        store.delete_run(run_id)                                                    # the plugin's rows go with it
    assert [r[1] for r in _rows(store_url)] == [before[-1][1]] * 15


def test_the_plugins_first_write_adopts_an_old_table_without_db_upgrade(store_url):
    before = _old_store(store_url)
    with open_store(store_url, read_only=True) as reader:                          # read as it is, nothing made
        assert len(run_recommendations(reader, before[0][1])) == 15
    assert "alembic_version_recommendation" not in _tables(store_url)
    with open_store(store_url) as store:
        add_recommendations(store, before[0][1], [dict(user_id="u9", rank=1, item_id="x")])
    assert _rows(store_url)[:30] == before and len(_rows(store_url)) == 31
    assert _sql(store_url, "SELECT version_num FROM alembic_version_recommendation") == [("0001",)]


def test_a_store_from_before_0008_gets_its_stored_lists_copied(store_url):
    assert upgrade(store_url, "0007") == (None, "0007")
    _sql(store_url, "INSERT INTO runs (task, plugin, status, started_at, config, versions, kind) "
                    "VALUES ('recommendation', 'p', 'finished', '2025-01-01 00:00:00', '{}', '{}', 'predict')")
    (run_id,), = _sql(store_url, "SELECT id FROM runs")
    _sql(store_url, "INSERT INTO predictions (run_id, split, item_id, \"values\") VALUES "
                    f"({run_id}, 'recommend', 'u1', '{{\"items\": [\"v3\", \"v1\"], \"scores\": [2.5, 1.0]}}'), "
                    f"({run_id}, 'recommend', 'u2', '{{\"note\": \"no list\"}}'), "
                    f"({run_id}, 'test', 'u3', '{{\"items\": [\"v9\"]}}')")
    assert upgrade(store_url) == ("0007", head_revision())
    assert "recommendations" not in _tables(store_url)                              # core makes none
    assert upgrade_plugin_schema(store_url, SCHEMA) == (None, "0001")
    with open_store(store_url) as store:
        assert [(r["user_id"], r["rank"], r["item_id"], r["score"]) for r in run_recommendations(store, run_id)] == [
            ("u1", 1, "v3", 2.5), ("u1", 2, "v1", 1.0)]
        with pytest.raises(StoreError, match=r"recommendations row 0: .*rank \(an int >= 1\)"):
            add_recommendations(store, run_id, [dict(user_id="u1", rank=0, item_id="v1")])
        with pytest.raises(StoreError, match="run 999 is not in store"):
            add_recommendations(store, 999, [dict(user_id="u1", rank=1, item_id="v1")])
    assert upgrade_plugin_schema(store_url, SCHEMA, "base", down=True) == ("0001", None)
    assert "recommendations" not in _tables(store_url)
    assert _sql(store_url, "SELECT version_num FROM alembic_version") == [(head_revision(),)]


def test_a_store_without_the_plugin_works_and_a_newer_plugin_schema_is_not_written(store_url):
    with open_store(store_url) as store:                                            # core alone: no plugin table
        run_id = store.start_run("t", "p", {}, seed=0)
        assert "recommendations" not in store.run_counts([run_id])
    assert "recommendations" not in _tables(store_url)
    with open_store(store_url, read_only=True) as reader:
        assert run_recommendations(reader, run_id) == []                            # nothing of the plugin's to read
    upgrade_plugin_schema(store_url, SCHEMA)
    _sql(store_url, "UPDATE alembic_version_recommendation SET version_num = '0099'")  # a newer plugin's
    with open_store(store_url) as store:                                            # core's check ignores it
        with pytest.raises(StoreError, match="recommendation tables are at revision '0099', unknown to this plugin"):
            add_recommendations(store, run_id, [dict(user_id="u1", rank=1, item_id="v1")])
    with open_store(store_url, read_only=True) as reader:
        assert ensure_plugin_schema(reader, SCHEMA) is True and run_recommendations(reader, run_id) == []
