"""``Store.track_run``: the one run-row lifecycle (reap, start, finished / failed with traceback / interrupted)."""
from __future__ import annotations

import subprocess
import sys

import pytest


def test_ctrl_c_marks_the_run_interrupted(store) -> None:
    with pytest.raises(KeyboardInterrupt):
        with store.track_run("t", "p", {}, seed=1, kind="score") as run_id:
            raise KeyboardInterrupt
    run = store.get_run(run_id)
    assert run["status"] == "interrupted" and "KeyboardInterrupt" in run["error"] and run["kind"] == "score"
    with store.track_run("t", "p", {}, seed=1) as ok:
        pass
    assert store.get_run(ok)["status"] == "finished" and store.get_run(ok)["error"] is None


def test_entering_reaps_this_machines_dead_runs(store) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = store.start_run("t", "p", {}, seed=None)
    import sqlalchemy as sa

    from vkit.core.store.models import Run

    with store.session() as session:                       # as if the dead process had started it
        session.execute(sa.update(Run).where(Run.id == stale).values(pid=dead.pid))
    with store.track_run("t", "p", {}, seed=None) as run_id:
        assert store.get_run(stale)["status"] == "interrupted"
        assert store.get_run(run_id)["status"] == "running"
    assert f"process {dead.pid} on" in store.get_run(stale)["error"]
