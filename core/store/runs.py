"""Run rows: a run's lifecycle (start, track, finish, reopen, reap), reads and deletes.

Example::

    with store.track_run("demo-classify", "education", cfg, seed=0) as run_id:
        ...                                      # the row is 'finished', 'failed' or 'interrupted' after
    store.get_run(run_id)["status"]
"""
from __future__ import annotations

import os
import socket
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from vkit.core.store.base import StoreBase
from vkit.core.store.engine import mask_secrets
from vkit.core.store.jsonable import to_jsonable
from vkit.core.store.models import RUN_KINDS, TABLES, Artifact, Event, Run, VideoLease, utcnow
from vkit.core.store.provenance import package_versions
from vkit.registry.errors import StoreError

#: Statuses ``finish_run`` may close a run with (``interrupted``: Ctrl-C in ``track_run``, or ``reap_stale_runs``).
_CLOSED_STATUSES = ("finished", "failed", "interrupted")


class RunRows(StoreBase):
    """The ``runs`` table: one row per ``vkit run``, ``score`` or ``predict``."""

    def start_run(
        self,
        task: str,
        plugin: str,
        config: Mapping[str, Any] | Any,
        seed: int | None,
        work_dir: str | Path | None = None,
        versions: Mapping[str, Any] | None = None,
        model_sha256: str | None = None,
        kind: str = "train",
    ) -> int:
        """Record a new run in status ``running`` and return its id; ``host``/``pid`` name this process.

        Args:
            task: the task name (``vkit run NAME``).
            plugin: the plugin that declares the task.
            config: the merged config (dict or mmengine ``Config``), stored as a JSON
                snapshot with credentials in URLs masked.
            seed: the run's seed.
            work_dir: where the run writes its files.
            versions: extra versions (e.g. ``{"plugins": {...}}``), merged over
                the installed vkit/torch/mmengine/mmaction2/monai versions.
            model_sha256: sha256 of the checkpoint a scoring run uses (what resuming keys on).
            kind: what the run does: ``train`` (``vkit run``), ``score``, ``predict`` (``RUN_KINDS``).
        """
        if not task or not isinstance(task, str):
            raise StoreError(f"start_run: task must be a non-empty str, got {task!r}")
        if seed is not None and not isinstance(seed, int):
            raise StoreError(f"start_run({task!r}): seed must be an int or None, got {seed!r}")
        if not kind or not isinstance(kind, str):
            raise StoreError(f"start_run({task!r}): kind must be a non-empty str (one of {RUN_KINDS}), got {kind!r}")
        row = dict(
            task=task, kind=kind, plugin=str(plugin or ""), status="running", config=to_jsonable(config, mask=True), seed=seed,
            versions=to_jsonable({**package_versions(), **dict(versions or {})}),
            work_dir=None if work_dir is None else str(work_dir), model_sha256=model_sha256,
            host=socket.gethostname(), pid=os.getpid(),
        )
        with self.session() as session:
            run = Run(**row)
            session.add(run)
            session.flush()
            return run.id

    def finish_run(
        self,
        run_id: int,
        status: str = "finished",
        error: str | BaseException | None = None,
        *,
        work_dir: str | Path | None = None,
        model_sha256: str | None = None,
    ) -> None:
        """Close run ``run_id`` with ``status`` (``"finished"`` or ``"failed"``) and its error text.

        ``work_dir`` and ``model_sha256`` fill those columns when given; a run
        that still has no ``model_sha256`` takes its newest ``checkpoint``
        artifact's sha256, so every finished training run names its model.
        """
        if status not in _CLOSED_STATUSES:
            raise StoreError(f"finish_run({run_id}): status must be one of {_CLOSED_STATUSES}, got {status!r}")
        if isinstance(error, BaseException):
            error = f"{type(error).__name__}: {error}"
        with self.session() as session:
            run = self._run(session, run_id)
            run.status, run.finished_at = status, utcnow()
            run.error = None if error is None else mask_secrets(str(error))
            if work_dir is not None:
                run.work_dir = str(work_dir)
            run.model_sha256 = model_sha256 or run.model_sha256 or session.scalar(
                sa.select(Artifact.sha256).where(Artifact.run_id == run_id, Artifact.kind == "checkpoint")
                .order_by(Artifact.id.desc()).limit(1)
            )

    def set_work_dir(self, run_id: int, work_dir: str | Path) -> None:
        """Name the folder run ``run_id`` writes into (known only once the run has an id)."""
        with self.session() as session:
            self._run(session, run_id).work_dir = str(work_dir)

    @contextmanager
    def track_run(
        self,
        task: str,
        plugin: str,
        config: Any,
        seed: int | None,
        *,
        resume: int | None = None,
        **kwargs: Any,
    ) -> Iterator[int]:
        """The one lifecycle of a run row (``vkit run``, ``score`` and ``predict`` all use it).

        On entry: :meth:`reap_stale_runs` (this machine's runs whose process
        died become ``interrupted``), then :meth:`start_run` with ``kwargs``
        (``work_dir``, ``versions``, ``model_sha256``, ``kind``), or with
        ``resume=RUN`` :meth:`reopen_run` (``vkit run --resume``). On exit the
        row is closed: ``finished``; ``interrupted`` on ``KeyboardInterrupt``
        (Ctrl-C, SIGINT; SIGTERM where :func:`vkit.core.processes.sigterm_interrupts` is on); ``failed`` with ``Type: message`` and the traceback
        (credentials masked) on any other exception, which is re-raised.

        Example::

            with store.track_run("medical-diagnosis", "medical", cfg, seed=0, kind="train") as run_id:
                ...
        """
        self.reap_stale_runs()
        kind = kwargs.get("kind", "train")
        run_id = (self.reopen_run(resume, task, kind) if resume is not None
                  else self.start_run(task, plugin, config, seed, **kwargs))
        status, error = "finished", None
        try:
            yield run_id
        except KeyboardInterrupt as err:  # Ctrl-C, or SIGTERM as vkit.core.processes.Terminated
            how = f"{type(err).__name__}: {err}" if str(err) else "KeyboardInterrupt: Ctrl-C or SIGINT"
            hint = resume_hint(kwargs.get('kind', 'train'), task, run_id)
            status, error = "interrupted", f"interrupted ({how}); {hint}"
            err.add_note(f"run {run_id} interrupted: {hint}")  # the CLI shows it on stderr (vkit.workflows.cli.main)
            raise
        except BaseException as err:
            status, error = "failed", _error_text(err)
            raise
        finally:
            self.finish_run(run_id, status, error)

    def reopen_run(self, run_id: int, task: str, kind: str = "train") -> int:
        """Put an ``interrupted`` or ``failed`` run of ``task`` and ``kind`` (``train``, ``pretrain``) back to ``running``.

        What ``vkit run TASK --resume RUN`` does before going on with the run's
        epochs; a run that is running, finished, of another task or not a
        training run is a :class:`StoreError` naming what it is.

        Example::

            store.reopen_run(7, "medical-diagnosis")   # run 7 is 'running' again, host/pid this process
        """
        with self.session() as session:
            run = self._run(session, run_id)
            if run.task != task or run.kind != kind:
                what = "training" if kind == "train" else kind
                raise StoreError(f"run {run_id} is a {run.kind} run of task {run.task!r}, not a {what} run of {task!r}")
            reopened = session.execute(
                sa.update(Run).where(Run.id == run_id, Run.status.in_(("interrupted", "failed")))
                .values(status="running", error=None, finished_at=None, host=socket.gethostname(), pid=os.getpid())
            )
            if not reopened.rowcount:
                raise StoreError(f"run {run_id} is {run.status}: only an interrupted or failed run can be resumed")
        return run_id

    def reap_stale_runs(self) -> list[int]:
        """Mark ``interrupted`` every ``running`` run started on this machine by a process that no longer exists.

        A run killed with SIGKILL (or by the OOM killer, or a power loss) cannot
        close its row; this closes it: status ``interrupted``, ``finished_at``
        now and an error naming the process. Only runs whose ``host`` is this
        machine's hostname are judged, by ``os.kill(pid, 0)``; runs of other
        hosts, or without a pid (started before schema 0003), are left alone.
        A pid that is alive keeps its run ``running`` (even if the pid was
        reused by another process). A read-only store does nothing.

        Returns:
            the ids of the runs marked ``interrupted``.
        """
        if self.read_only:
            return []
        host = socket.gethostname()
        running = sa.select(Run.id, Run.pid, Run.kind, Run.task).where(Run.status == "running", Run.host == host,
                                                                       Run.pid.is_not(None))
        with self.session(write=False) as session:
            dead = [(run_id, pid, resume_hint(kind, task, run_id)) for run_id, pid, kind, task in session.execute(running)
                    if not _process_alive(pid)]
        if not dead:
            return []
        reaped: list[int] = []
        now = utcnow()
        with self.session() as session:
            for run_id, pid, hint in dead:
                error = f"process {pid} on {host} ended without finishing the run (killed?); {hint}"
                closed = session.execute(
                    sa.update(Run).where(Run.id == run_id, Run.status == "running")
                    .values(status="interrupted", finished_at=now, error=error)
                )
                if closed.rowcount:
                    reaped.append(run_id)
                    session.execute(sa.update(Event).where(Event.run_id == run_id, Event.status == "open")
                                    .values(status="interrupted", closed_at=now))  # a killed vkit watch's live events
        return reaped

    def delete_run(self, run_id: int) -> bool:
        """Delete run ``run_id`` and everything it logged (cascade). Returns whether it existed."""
        with self.session() as session:
            result = session.execute(sa.delete(Run).where(Run.id == run_id))
            return result.rowcount > 0

    def delete_runs(self, run_ids: Sequence[int]) -> list[dict[str, Any]]:
        """Delete runs ``run_ids`` and every row they logged, all in ONE transaction; returns the deleted run rows.

        Nothing is deleted when one id is unknown or names a ``running`` run
        (stop it first, or let ``reap_stale_runs`` mark it ``interrupted``).
        Videos stay: other runs may have scored them.
        """
        ids = sorted({int(i) for i in run_ids})
        with self.session() as session:
            rows = [dict(r) for r in session.execute(sa.select(Run.__table__).where(Run.id.in_(ids))).mappings()]
            missing = sorted(set(ids) - {r["id"] for r in rows})
            if missing:
                raise StoreError(f"delete: runs {missing} are not in store {self.url}; nothing deleted")
            running = [r["id"] for r in rows if r["status"] == "running"]
            if running:
                raise StoreError(f"delete: runs {running} are still running; stop them first (nothing deleted)")
            children = [m for m in (VideoLease, *TABLES.values()) if "run_id" in m.__table__.columns]
            for child in children:  # every table with a run_id; no reliance on ON DELETE CASCADE
                session.execute(sa.delete(child).where(child.run_id.in_(ids)))
            session.execute(sa.delete(Run).where(Run.id.in_(ids)))
        return sorted(rows, key=lambda r: r["id"])

    def get_run(self, run_id: int) -> dict[str, Any] | None:
        """Run ``run_id`` as a dict, or ``None``."""
        rows = self._select(Run, Run.id == run_id)
        return rows[0] if rows else None

    def list_runs(
        self, limit: int | None = 20, task: str | None = None, status: str | None = None, kind: str | None = None
    ) -> list[dict[str, Any]]:
        """The newest ``limit`` runs (``None``: all), optionally of one ``task``, ``status`` and/or ``kind``."""
        filters = ((Run.task, task), (Run.status, status), (Run.kind, kind))
        where = [column == value for column, value in filters if value]
        return self._select(Run, *where, order_by=(Run.started_at.desc(), Run.id.desc()), limit=limit)


def resume_hint(kind: str, task: str, run_id: int) -> str:
    """What the error of an interrupted run tells its user to do: resume a training run, rerun anything else.

    Example::

        resume_hint("train", "medical-diagnosis", 3)   # '`vkit run medical-diagnosis --resume 3` continues ...'
    """
    if kind == "train":
        return f"`vkit run {task} --resume {run_id}` continues it from its last finished epoch"
    if kind == "pretrain":
        return f"`vkit pretrain --resume {run_id}` continues it from its last finished epoch"
    return "rerun to resume"


def _process_alive(pid: int) -> bool:
    """Whether a process with id ``pid`` exists on this machine (signal 0 checks without signalling)."""
    if pid <= 0:  # 0 and negative pids name process groups, never one process
        return False
    if os.name == "nt":  # os.kill(pid, 0) would terminate it there: cannot tell, leave the run alone
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, owned by another user; anything else: cannot tell, leave it
        return True
    return True


def _error_text(err: BaseException, frames: int = 15) -> str:
    """``Type: message`` then the last ``frames`` frames of its traceback (the store masks credentials)."""
    import traceback

    head = f"{type(err).__name__}: {err}"
    trace = "".join(traceback.format_exception(type(err), err, err.__traceback__, limit=-frames))
    return f"{head}\n\n{trace}".rstrip()
