"""Asynchronous scoring jobs of ``vkit serve`` (``POST /v1/{task}/score``): ``vkit score`` in a child process.

A job is the installed ``vkit score`` itself (same inventory, leases, resume
and store rows as on the command line), started as a child process with an
argument list (never a shell) and the store URL in its environment (never on
its command line, where ``ps`` would show a password). Its run id is the
``score`` run the child records with its own pid; the request returns once
that row exists. At most ``max_jobs`` run at once (HTTP 429 beyond); a job's
progress and summary are read from the store (:func:`run_progress`), so
``GET /v1/runs/{id}`` works for any run, a job of an earlier server too. The
server stops its jobs with SIGTERM when it stops (each ends ``interrupted``,
resumable by a rerun).

Example::

    jobs = ScoreJobs(store, db_url, max_jobs=1)
    run_id = jobs.start("security-anomaly", "/data/cams", checkpoint="7")
    run_progress(store, run_id)    # {"status": "running", "videos": 12, "done": 3, ...}
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from vkit.registry.errors import ConfigError, StoreError

__all__ = ["JobsFull", "ScoreJobs", "run_progress"]

_CLI = "import sys; from vkit.workflows.cli import main; sys.exit(main())"


class JobsFull(ConfigError):
    """``max_jobs`` scoring jobs are running already (HTTP 429)."""


class ScoreJobs:
    """The scoring jobs a server started.

    Args:
        store: the open store (the jobs write to the same one).
        db_url: the store's URL as given (handed to each child in ``VKIT_DB_URL``).
        max_jobs: jobs running at once.
        workers: ``vkit score --workers`` of each job.
        plugins: ``--plugin`` modules the jobs load too.
    """

    def __init__(self, store: Any, db_url: str | None, *, max_jobs: int = 1, workers: int = 1,
                 plugins: tuple[str, ...] = ()) -> None:
        self.store, self.db_url, self.max_jobs, self.workers = store, db_url, int(max_jobs), int(workers)
        self.plugins = tuple(plugins)
        self.procs: dict[int, subprocess.Popen] = {}
        self._lock = threading.Lock()

    def running(self) -> int:
        """Jobs still running."""
        return sum(1 for proc in self.procs.values() if proc.poll() is None)

    def start(self, task: str, folder: Path, checkpoint: str, stage: str | None = None,
              timeout: float = 120.0) -> int:
        """Start ``vkit score TASK FOLDER --checkpoint CHECKPOINT`` and return its run id once it has one.

        Raises:
            JobsFull: ``max_jobs`` are running.
            ConfigError: the job ended before recording its run (its error output's last line is in the message).
        """
        with self._lock:
            if self.running() >= self.max_jobs:
                raise JobsFull(f"{self.max_jobs} scoring job(s) running already (--max-jobs); retry later")
            plugins = [arg for module in self.plugins for arg in ("--plugin", module)]
            argv = [sys.executable, "-c", _CLI, *plugins, "score", task, str(folder), "--checkpoint", str(checkpoint),
                    "--workers", str(self.workers), "--json"]
            if stage is not None:
                argv[-1:-1] = ["--stage", stage]
            env = dict(os.environ)
            if self.db_url:
                env["VKIT_DB_URL"] = str(self.db_url)
            proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE, start_new_session=True)
            run_id = self._run_of(proc, timeout)
            self.procs[run_id] = proc
            threading.Thread(target=self._drain, args=(proc,), daemon=True).start()
            return run_id

    def _run_of(self, proc: subprocess.Popen, timeout: float) -> int:
        """The ``score`` run the child recorded with its pid."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.store.session(write=False) as session:
                from vkit.core.store.models import Run

                found = session.scalar(sa.select(Run.id).where(Run.pid == proc.pid, Run.kind == "score")
                                       .order_by(Run.id.desc()).limit(1))
            if found is not None:
                return int(found)
            if proc.poll() is not None:
                tail = (proc.stderr.read() or b"").decode("utf-8", "replace").strip().splitlines()
                raise ConfigError(f"scoring job ended (exit code {proc.returncode}) before it recorded a run: "
                                  f"{tail[-1] if tail else 'no error output'}")
            time.sleep(0.1)
        proc.terminate()
        raise ConfigError(f"scoring job recorded no run within {timeout:g} s; stopped it")

    @staticmethod
    def _drain(proc: subprocess.Popen) -> None:
        """Read the child's error output so it never blocks on a full pipe."""
        try:
            for _ in proc.stderr:
                pass
        except (OSError, ValueError):
            pass

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM every running job (it ends ``interrupted``), then SIGKILL what did not stop in ``timeout``."""
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def run_progress(store: Any, run_id: int) -> dict[str, Any]:
    """A run's status, progress and summary from the store: any kind (``score``: videos done of the inventoried,
    by status; ``serve``/``predict``: predictions stored; every kind: its final metrics).

    Raises:
        StoreError: no such run.
    """
    from vkit.core.store.models import Prediction, VideoSummary

    run = store.get_run(int(run_id))
    if run is None:
        raise StoreError(f"no run {run_id} in the store")
    with store.session(write=False) as session:
        statuses = Counter(dict(session.execute(sa.select(VideoSummary.status, sa.func.count())
                                                .where(VideoSummary.run_id == run["id"])
                                                .group_by(VideoSummary.status)).all()))
        predictions = session.scalar(sa.select(sa.func.count()).select_from(Prediction)
                                     .where(Prediction.run_id == run["id"]))
    config = run.get("config") or {}
    out: dict[str, Any] = dict(
        id=run["id"], task=run["task"], kind=run["kind"], status=run["status"], error=run["error"],
        started_at=run["started_at"].isoformat() if run["started_at"] else None,
        finished_at=run["finished_at"].isoformat() if run["finished_at"] else None,
        model_sha256=run["model_sha256"])
    if run["kind"] == "score":
        total = config.get("videos")
        done = sum(statuses.values())
        out["progress"] = dict(videos=total, done=done, by_status=dict(statuses),
                               fraction=round(done / total, 4) if total else None)
    if predictions:
        out["predictions"] = int(predictions)
    out["metrics"] = store.final_metrics(run["id"])
    return out
