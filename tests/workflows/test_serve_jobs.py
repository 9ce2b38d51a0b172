"""Scoring jobs of `vkit serve`: the installed `vkit score` in a child process (no shell, the store URL in its
environment), its run id returned once recorded, its progress read from the store, one job at a time by default.

The demo-watch plugin of the watch tests supplies a real scorer (a saved 1x1x1 conv) so no model is trained here.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import test_watch_support as support  # noqa: E402

from vkit.core.store import open_store  # noqa: E402
from vkit.registry.errors import ConfigError, StoreError  # noqa: E402
from vkit.workflows.serve.jobs import JobsFull, ScoreJobs, run_progress  # noqa: E402


def test_a_score_job_runs_vkit_score_and_reports_its_progress(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VKIT_NO_AUTOLOAD", "1")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.chdir(tmp_path)
    model = support.make_checkpoint(tmp_path / "model.safetensors")
    folder = tmp_path / "cams"
    for i in range(2):
        support.write_clip(folder / f"cam{i}.mp4", support.bright_middle(), seed=i)
    url = f"sqlite:///{tmp_path / 'vkit.db'}"
    store = open_store(url)
    jobs = ScoreJobs(store, url, max_jobs=1, plugins=("test_watch_support",))
    try:
        run_id = jobs.start("demo-watch", folder, str(model))
        assert jobs.running() == 1                                          # it has just recorded its run
        with pytest.raises(JobsFull, match=r"1 scoring job\(s\) running already"):
            jobs.start("demo-watch", folder, str(model))
        deadline = time.monotonic() + 120
        while (progress := run_progress(store, run_id))["status"] == "running" and time.monotonic() < deadline:
            time.sleep(0.2)
        assert progress["kind"] == "score" and progress["status"] == "finished", progress
        assert progress["progress"] == dict(videos=2, done=2, by_status={"scored": 2}, fraction=1.0)
        assert len(store.run_events(run_id)) == 2                          # each clip's bright stretch
        assert jobs.procs[run_id].wait(60) == 0 and jobs.running() == 0
        with pytest.raises(ConfigError, match=r"scoring job ended \(exit code 1\) before it recorded a run: "
                                              r"Error: .*no-such-task"):
            jobs.start("no-such-task", folder, str(model))
        with pytest.raises(StoreError, match="no run 999"):
            run_progress(store, 999)
    finally:
        jobs.stop()
        store.close()
