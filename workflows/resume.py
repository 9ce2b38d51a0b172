"""``vkit run TASK --resume RUN``: which run goes on, with which config, in which folder.

An interrupted (or failed) training run left a resume state in its work dir
after every finished epoch (:mod:`vkit.core.resume`); resuming reopens the same
run row, takes the run's stored config and folder as they were, and the
lifecycle continues from the epoch after the last one saved.

Example::

    cfg, work_dir = resumed_run(store, 7, MedicalDiagnosisTask)
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from vkit.registry.errors import CheckpointError, ConfigError


def resumed_run(store: Any, run_id: int, task_cls: Any) -> tuple[Any, Path]:
    """The stored config (an mmengine ``Config``) and the work dir of run ``run_id``, checked to be resumable.

    Raises:
        ConfigError: no such run, a run of another task or kind, or a run that is running or finished.
        CheckpointError: the run's folder holds no resume state (it stopped before its first epoch ended),
            or it is not the run's own (its ``vkit-run.json`` names another run or store).
    """
    from mmengine.config import Config

    from vkit.core.resume import has_resume_state, resume_path
    from vkit.core.workdir import ownership

    run = store.get_run(run_id)
    if run is None:
        raise ConfigError(f"--resume {run_id}: no run {run_id} in {store.url}")
    if run["task"] != task_cls.name or run["kind"] != "train":
        raise ConfigError(f"--resume {run_id}: run {run_id} is a {run['kind']} run of task {run['task']!r}, "
                          f"not a training run of {task_cls.name!r}"
                          + (f" (`vkit pretrain --resume {run_id}` resumes it)" if run["kind"] == "pretrain" else ""))
    if run["status"] not in ("interrupted", "failed"):
        raise ConfigError(f"--resume {run_id}: run {run_id} is {run['status']}; only an interrupted or failed run "
                          "can be resumed")
    work_dir = Path(run["work_dir"] or "")
    if not run["work_dir"] or not has_resume_state(work_dir):
        raise CheckpointError(f"--resume {run_id}: no resume state {resume_path(work_dir)} (the run stopped before its "
                              f"first epoch ended, or its folder was removed); start it again: vkit run {task_cls.name}")
    not_ours = ownership(work_dir, store.identity, run_id)
    if not_ours:
        raise CheckpointError(f"--resume {run_id}: {work_dir} is not this run's folder ({not_ours})")
    return Config(dict(run["config"])), work_dir


def refuse_changes(run_id: int, **given: Any) -> None:
    """A resumed run keeps its own config and data: ``--config``, ``--set``, ``--data`` and ``--work-dir`` are refused."""
    changed = [f"--{name.replace('_', '-')}" for name, value in given.items() if value]
    if changed:
        raise ConfigError(f"--resume {run_id} goes on with the run's own config, data and folder; "
                          f"{', '.join(changed)} cannot change them (start a new run instead)")


__all__ = ["refuse_changes", "resumed_run"]
