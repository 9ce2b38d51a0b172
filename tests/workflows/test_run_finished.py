"""``vkit score`` and ``vkit predict`` runs fire ``vkit_run_finished`` once their row is closed, as ``vkit run`` does;
a plugin raising in it does not fail the finished command."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
import test_score_support as support  # noqa: E402

from vkit.core.store import open_store  # noqa: E402
from vkit.hooks.manager import get_plugin_manager  # noqa: E402
from vkit.registry.errors import DataError  # noqa: E402
from vkit.workflows.run_finished import announced_run  # noqa: E402
from vkit.workflows.scoring.score import ScoreOptions, score_archive  # noqa: E402

#: A plugin that writes each ``run`` it hears (with the run row's status at that moment) and then, when
#: ``VKIT_TEST_FINISHED_RAISE`` is set, raises.
LISTENER = '''
import json, os
import sqlalchemy as sa
from vkit import hookimpl

@hookimpl
def vkit_run_finished(run):
    url = os.environ["VKIT_TEST_FINISHED_DB"]
    with sa.create_engine(url).connect() as conn:
        row = conn.execute(sa.text("SELECT status FROM runs WHERE id = :i"), dict(i=run["id"])).one()
    with open(os.environ["VKIT_TEST_FINISHED_LOG"], "a") as out:
        out.write(json.dumps(dict(run, row_status=row[0])) + "\\n")
    if os.environ.get("VKIT_TEST_FINISHED_RAISE"):
        raise RuntimeError("listener exploded")
'''


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    monkeypatch.setenv("VKIT_NO_AUTOLOAD", "1")
    (tmp_path / "vkit_fx_finished_listener.py").write_text(LISTENER)
    monkeypatch.syspath_prepend(str(tmp_path))
    url = f"sqlite:///{tmp_path / 'vkit.db'}"
    monkeypatch.setenv("VKIT_TEST_FINISHED_DB", url)
    monkeypatch.setenv("VKIT_TEST_FINISHED_LOG", str(tmp_path / "finished.jsonl"))
    return dict(url=url, log=tmp_path / "finished.jsonl", tmp=tmp_path)


def _heard(env: dict) -> list[dict]:
    return [json.loads(line) for line in env["log"].read_text().splitlines()] if env["log"].exists() else []


def test_score_fires_run_finished_after_its_row_is_closed(env: dict) -> None:
    support.make_archive(env["tmp"] / "archive", good=2, bad=False)
    ckpt = support.make_checkpoint(env["tmp"] / "model.safetensors")
    summary = score_archive("demo-score", [str(env["tmp"] / "archive")], str(ckpt), db_url=env["url"],
                            plugins=["test_score_support", "vkit_fx_finished_listener"],
                            options=ScoreOptions(workers=0))
    assert summary.status == "finished" and summary.scored == 2
    [run] = _heard(env)
    assert run["id"] == summary.run_id and run["kind"] == "score" and run["task"] == "demo-score"
    assert (run["status"], run["error"], run["row_status"], run["report"]) == ("finished", None, "finished", None)
    assert run["db"] == open_store(env["url"]).url


def test_a_raising_listener_does_not_fail_the_finished_score(env: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VKIT_TEST_FINISHED_RAISE", "1")
    support.make_archive(env["tmp"] / "archive", good=1, bad=False)
    ckpt = support.make_checkpoint(env["tmp"] / "model.safetensors")
    plugins = ["test_score_support", "vkit_fx_finished_listener"]
    summary = score_archive("demo-score", [str(env["tmp"] / "archive")], str(ckpt), db_url=env["url"],
                            plugins=plugins, options=ScoreOptions(workers=0))
    assert summary.status == "finished" and summary.scored == 1
    assert open_store(env["url"]).get_run(summary.run_id)["status"] == "finished"
    assert [r["id"] for r in _heard(env)] == [summary.run_id]
    errors = [e.message for e in get_plugin_manager(extra=tuple(plugins)).errors]
    assert any("raised in vkit_run_finished: RuntimeError: listener exploded" in m for m in errors), errors


def test_announced_run_reports_a_failed_predict_with_its_error_and_re_raises(env: dict) -> None:
    manager = get_plugin_manager(extra=("vkit_fx_finished_listener",))
    store = open_store(env["url"])
    task = type("PredictTask", (), dict(name="demo-predict", plugin="demo"))
    with pytest.raises(DataError, match="case 3 unreadable"):
        with announced_run(store, manager, task, dict(inputs=["a.mp4"]), kind="predict", model_sha256="ab" * 32):
            raise DataError("case 3 unreadable")
    [run] = _heard(env)
    assert (run["kind"], run["task"], run["status"], run["row_status"]) == ("predict", "demo-predict", "failed", "failed")
    assert run["error"] == "DataError: case 3 unreadable"
    assert store.get_run(run["id"])["kind"] == "predict"


def test_announced_run_passes_the_runs_stored_metrics(env: dict) -> None:
    manager = get_plugin_manager(extra=("vkit_fx_finished_listener",))
    store = open_store(env["url"])
    task = type("ScoreTask", (), dict(name="demo-score", plugin="demo"))
    with announced_run(store, manager, task, {}, kind="score") as run_id:
        store.log_metrics(run_id, {"events_per_hour": 2.5}, step=0, split="aggregate")
    [run] = _heard(env)
    assert run["id"] == run_id and run["metrics"] == {"aggregate/events_per_hour": 2.5}
    assert (run["status"], run["row_status"]) == ("finished", "finished")
