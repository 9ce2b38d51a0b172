"""``run_task(..., resume=RUN)``: what cannot be resumed is refused before anything runs, naming the run."""
from __future__ import annotations

from pathlib import Path

import pytest

from vkit.core.store import open_store
from vkit.registry.errors import CheckpointError, ConfigError


def _resume(url: str, run_id: int, task: str = "medical-diagnosis", **kw):
    from vkit.workflows.run import run_task

    return run_task(task, db_url=url, resume=run_id, echo=lambda *_: None, **kw)


def test_runs_that_cannot_be_resumed_are_refused(tmp_path: Path, store_url: str) -> None:
    store = open_store(store_url)
    finished = store.start_run("medical-diagnosis", "medical", {}, seed=0, work_dir=tmp_path / "a")
    store.finish_run(finished, "finished")
    early = store.start_run("medical-diagnosis", "medical", {}, seed=0, work_dir=tmp_path / "b")
    store.finish_run(early, "interrupted", "interrupted (KeyboardInterrupt)")
    with pytest.raises(ConfigError, match="--resume 999: no run 999 in"):
        _resume(store_url, 999)
    with pytest.raises(ConfigError, match=f"run {finished} is finished; only an interrupted or failed run"):
        _resume(store_url, finished)
    with pytest.raises(ConfigError, match=f"run {early} is a train run of task 'medical-diagnosis', not a training "
                                          "run of 'security-anomaly'"):
        _resume(store_url, early, task="security-anomaly")
    with pytest.raises(CheckpointError, match=r"no resume state .*b/resume/state.safetensors \(the run stopped before "
                                              r"its first epoch ended"):
        _resume(store_url, early)
    with pytest.raises(ConfigError, match=r"--set, --work-dir cannot change them"):
        _resume(store_url, early, overrides=["train.epochs=3"], work_dir=tmp_path / "c")
    assert store.get_run(early)["status"] == "interrupted"  # nothing was reopened
