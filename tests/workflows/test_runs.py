"""`vkit runs list|show|compare|delete` on SQLite and PostgreSQL: filters, filled rows, diffs, one-transaction deletes."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from vkit.workflows.cli import cli
from vkit.workflows.runs import flatten

TABLES = ("metrics", "artifacts", "predictions", "scores", "events", "video_summaries")


def _vkit(url: str, *args: str, code: int = 0) -> str:
    result = CliRunner().invoke(cli, ["--db", url, *args], env={"COLUMNS": "250"})
    assert result.exit_code == code, result.output
    return result.output


def test_list_filters_by_kind_status_and_task(store, store_url, filled):
    listed = json.loads(_vkit(store_url, "runs", "list", "--json"))
    assert {r["id"]: r["kind"] for r in listed} == {
        filled["train"]: "train", filled["other"]: "train", filled["score"]: "score", filled["predict"]: "predict"}
    for kind in ("train", "score", "predict"):
        ids = {r["id"] for r in json.loads(_vkit(store_url, "runs", "list", "--kind", kind, "--json"))}
        assert ids == {i for k, i in filled.items() if (k if k != "other" else "train") == kind}
    running = store.start_run("other-task", "demo", {}, seed=0)
    assert [r["id"] for r in json.loads(_vkit(store_url, "runs", "list", "--status", "running", "--json"))] == [running]
    assert [r["id"] for r in json.loads(_vkit(store_url, "runs", "list", "--task", "other-task", "--json"))] == [running]
    assert json.loads(_vkit(store_url, "runs", "list", "--task", "demo-task", "--status", "running", "--json")) == []
    assert len(json.loads(_vkit(store_url, "runs", "list", "--limit", "2", "--json"))) == 2
    table = _vkit(store_url, "runs", "list", "--kind", "score")
    assert "score" in table and str(filled["score"]) in table
    assert "--kind" in _vkit(store_url, "runs", "list", "--kind", "bogus", code=2)


def test_show_fills_kind_work_dir_and_model_sha256(store, store_url, filled, db_password):
    shown = json.loads(_vkit(store_url, "runs", "show", str(filled["train"]), "--json"))
    run = shown["run"]
    checkpoint = next(a for a in shown["artifacts"] if a["kind"] == "checkpoint")
    assert run["kind"] == "train" and run["status"] == "finished"
    assert run["work_dir"].endswith("work-train") and Path(run["work_dir"]).is_dir()
    assert run["model_sha256"] == checkpoint["sha256"] and len(run["model_sha256"]) == 64
    assert shown["rows"]["predictions"] == 24 and shown["rows"]["metrics"] == 3 * 3 + 3 + 2
    scored = json.loads(_vkit(store_url, "runs", "show", str(filled["score"]), "--json"))
    assert scored["run"]["kind"] == "score" and scored["run"]["model_sha256"] == "ab" * 32
    assert scored["scoring"]["counts"]["segments"] == 24 and scored["rows"]["scores"] == 24
    text = _vkit(store_url, "runs", "show", str(filled["train"]))
    assert "model_sha256" in text and "work-train" in text and "auc" in text
    assert "cfg-s3cret" not in text and db_password not in text
    with store.engine.connect() as conn:  # nor in the runs table itself
        raw = repr(conn.exec_driver_sql("SELECT * FROM runs").fetchall())
    assert "cfg-s3cret" not in raw and db_password not in raw and "bob:***@db.local" in raw
    missing = CliRunner().invoke(cli, ["--db", store_url, "runs", "show", "9999"])
    assert missing.exit_code != 0 and "run 9999 is not in the store" in str(missing.exception or missing.output)


def test_compare_shows_metric_deltas_and_config_differences(store_url, filled):
    a, b = filled["train"], filled["other"]
    data = json.loads(_vkit(store_url, "runs", "compare", str(a), str(b), "--json"))
    assert [r["id"] for r in data["runs"]] == [a, b]
    metrics = {m["key"]: m for m in data["metrics"]}
    assert metrics["test/auc"]["values"] == [pytest.approx(0.81), pytest.approx(0.9)]
    assert metrics["test/auc"]["deltas"] == [0.0, pytest.approx(0.09)]
    assert metrics["val/auc"]["values"][1] is None and metrics["val/auc"]["deltas"] == [0.0, None]
    config = {c["key"]: c["values"] for c in data["config"]}
    assert config == {"train.epochs": [3, 5], "extra.flag": ["<missing>", True]}  # lr, seed, model identical: not shown
    text = _vkit(store_url, "runs", "compare", str(a), str(b))
    assert "train.epochs" in text and "+0.0900" in text and "extra.flag" in text and "<missing>" in text
    same = _vkit(store_url, "runs", "compare", str(a), str(a))
    assert "configs: identical" in same
    assert "at least two runs" in str(CliRunner().invoke(cli, ["--db", store_url, "runs", "compare", str(a)]).exception)


def test_flatten_nested_config():
    assert flatten({"a": {"b": {"c": 1}, "d": [1, 2]}, "e": {}, "f": None}) == {"a.b.c": 1, "a.d": [1, 2], "e": {}, "f": None}


def _counts(store, run_ids) -> dict[str, int]:
    return {k: v for k, v in store.run_counts(run_ids).items() if k in TABLES}


def test_delete_removes_every_row_in_one_transaction(store, store_url, filled):
    before_all = store.counts()
    doomed = [filled["train"], filled["score"]]
    mine = _counts(store, doomed)
    assert mine == {"metrics": 14, "artifacts": 1, "predictions": 24, "scores": 24, "events": 2, "video_summaries": 3}
    kept = _counts(store, [filled["other"], filled["predict"]])
    result = json.loads(_vkit(store_url, "runs", "delete", *map(str, doomed), "--yes", "--json"))
    assert result["runs"] == sorted(doomed) and result["rows"]["runs"] == 2
    assert {k: result["rows"][k] for k in TABLES} == mine
    after_all = store.counts()
    assert after_all["runs"] == before_all["runs"] - 2
    for table in TABLES:
        assert after_all[table] == before_all[table] - mine[table], table
    assert after_all["videos"] == before_all["videos"]  # videos are the archive's, not the run's
    assert _counts(store, doomed) == dict.fromkeys(TABLES, 0)
    assert _counts(store, [filled["other"], filled["predict"]]) == kept
    assert store.get_run(filled["train"]) is None and store.get_run(filled["other"]) is not None


def test_delete_refuses_a_running_run_and_unknown_ids_deleting_nothing(store, store_url, filled):
    running = store.start_run("t", "p", {}, seed=0)
    before = store.counts()
    out = CliRunner().invoke(cli, ["--db", store_url, "runs", "delete", str(filled["train"]), str(running)])
    assert out.exit_code != 0 and f"runs [{running}] are still running" in str(out.exception)
    out = CliRunner().invoke(cli, ["--db", store_url, "runs", "delete", str(filled["train"]), "9999"])
    assert out.exit_code != 0 and "runs [9999] are not in store" in str(out.exception)
    assert store.counts() == before


def test_delete_work_dir_only_on_request(store, store_url, filled):
    work = Path(store.get_run(filled["train"])["work_dir"])
    text = _vkit(store_url, "runs", "delete", str(filled["train"]), "--yes")
    assert f"deleted runs [{filled['train']}]" in text and "predictions 24" in text
    assert work.is_dir()
    store.finish_run(filled["other"], "finished", work_dir=work)
    text = _vkit(store_url, "runs", "delete", str(filled["other"]), "--work-dir", "-y")  # no sidecar names the run: kept
    assert f"kept {work}: no vkit-run.json or recorded model.json names run {filled['other']}" in text and work.is_dir()


def test_delete_work_dir_removes_the_runs_own_unshared_folder(store, store_url, tmp_path):
    from vkit.core.workdir import mark_work_dir

    shared, own = tmp_path / "shared", tmp_path / "own"
    first = store.start_run("demo-task", "demo", {}, seed=0, work_dir=shared)
    mark_work_dir(shared, store.identity, first, "demo-task")
    second = store.start_run("demo-task", "demo", {}, seed=0, work_dir=shared)  # shares first's folder
    third = store.start_run("demo-task", "demo", {}, seed=0, work_dir=own)
    mark_work_dir(own, store.identity, third, "demo-task")
    for run in (first, second, third):
        store.finish_run(run, "finished")
    out = json.loads(_vkit(store_url, "runs", "delete", str(first), str(third), "--work-dir", "--yes", "--json"))
    assert out["removed"] == [str(own)] and not own.exists()
    assert out["kept"] == [dict(path=str(shared), reason=f"also used by run(s) {second}")] and shared.is_dir()
    out = json.loads(_vkit(store_url, "runs", "delete", str(second), "--work-dir", "--yes", "--json"))
    assert out["kept"][0]["reason"].startswith(f"its vkit-run.json names run {first} of store {store.identity}")


def test_installed_cli_runs_commands(tmp_path, fill_runs):
    import subprocess
    import sys

    from vkit.core.store import open_store

    url = f"sqlite:///{tmp_path / 'v.db'}"
    with open_store(url) as store:
        ids = fill_runs(store, tmp_path / "runs")
    vkit = Path(sys.executable).with_name("vkit")
    proc = subprocess.run([str(vkit), "--db", url, "runs", "compare", str(ids["train"]), str(ids["other"]), "--json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert {c["key"] for c in json.loads(proc.stdout)["config"]} == {"train.epochs", "extra.flag"}
    proc = subprocess.run([str(vkit), "--db", url, "runs", "delete", "424242"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and proc.stderr.startswith("Error: delete: runs [424242] are not in store")
