"""The ``Store`` facade: what the rest of vkit calls to record runs, metrics, artifacts, predictions and scores.

Every write is one transaction and idempotent (re-running it updates rows in
place); every read returns plain dicts, so no caller holds an ORM object past
its session. Timestamps are timezone-aware UTC.

Example::

    store = open_store()                       # ./vkit.db or $VKIT_DB_URL
    with store.track_run("demo-classify", "education", cfg, seed=0) as run_id:
        store.log_metrics(run_id, {"acc": 0.91}, step=1, split="val")
        store.add_artifact(run_id, "checkpoint", "work/model.safetensors")
    print(store.url, store.final_metrics(run_id))   # {'val/acc': 0.91}
"""
from __future__ import annotations

import math
import os
import socket
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine
from sqlalchemy.orm import Session

from vkit.core.store.engine import (
    ENV_VAR,
    SQLITE_BEGIN_OPTION,
    create_store_engine,
    mask_secrets,
    mask_url,
    resolve_url,
    sqlite_path,
)
from vkit.core.store.jsonable import to_jsonable
from vkit.core.store.migrate import SchemaState, describe_db_error, ensure_schema
from vkit.core.store.models import (
    RUN_KINDS,
    SCORED_STATUSES,
    TABLES,
    VIDEO_STATUSES,
    Artifact,
    Event,
    Metric,
    Prediction,
    Run,
    Score,
    Video,
    VideoLease,
    VideoSummary,
    utcnow,
)
from vkit.core.store.paths import display_path, display_text
from vkit.core.store.provenance import package_versions, sha256_file
from vkit.core.store.upsert import _INSERTS, upsert
from vkit.registry.errors import StoreError

_PREDICTION_FIELDS = ("item_id", "label", "prediction", "values")
_VIDEO_FIELDS = ("path", "sha256", "size", "duration", "fps", "frames", "status", "error")
_SCORE_FIELDS = ("video_id", "segment", "start", "end", "score", "values")
_EVENT_FIELDS = ("video_id", "kind", "start", "end", "score")
_FIELD_SETS = {f: frozenset(f) for f in (_PREDICTION_FIELDS, _VIDEO_FIELDS, _SCORE_FIELDS, _EVENT_FIELDS)}
_SCORE_KEYS = _FIELD_SETS[_SCORE_FIELDS]
#: Statuses ``finish_run`` may close a run with (``interrupted``: Ctrl-C in ``track_run``, or ``reap_stale_runs``).
_CLOSED_STATUSES = ("finished", "failed", "interrupted")


def open_store(url: str | URL | None = None, *, create: bool = True, read_only: bool = False) -> Store:
    """Open the store at ``url`` (default ``$VKIT_DB_URL`` or SQLite ``./vkit.db``) after checking its schema.

    Args:
        url: a SQLAlchemy URL (``sqlite:///path.db``, ``postgresql+psycopg://user@host/db``).
        create: create the tables at head when the database has none; ``False``: a missing
            SQLite file is a ``StoreError`` naming it (a command that needs a stored run).
        read_only: accept a database migrated by a newer vkit; every write then raises. A
            missing SQLite file then opens as an empty store in memory unless ``create=False``
            (a listing shows nothing); nothing is made on disk either way.

    Raises:
        StoreError: unreachable database, older schema (run ``vkit db upgrade``),
            newer schema unless ``read_only``, or no store and ``create=False``.
    """
    resolved = resolve_url(url)
    path = sqlite_path(resolved)
    if path is not None and not path.exists() and (read_only or not create):
        if not create:
            raise StoreError(f"no vkit store at {path} (the file does not exist; nothing was created); create it "
                             f"with `vkit db upgrade` or any command that writes (`vkit run`, `vkit score`), or check "
                             f"--db / {ENV_VAR}")
        return _empty_store(resolved)
    engine = create_store_engine(resolved, create=create and not read_only, read_only=read_only)
    try:
        state = ensure_schema(engine, create=create and not read_only, read_only=read_only)
    except BaseException:
        engine.dispose()
        raise
    store = Store(engine, state, read_only=read_only or state.newer)
    store.shown_url = mask_url(resolved)
    return store


def _empty_store(url: URL) -> Store:
    """What a reading command sees where no SQLite store exists: an empty store in memory, nothing made on disk."""
    from sqlalchemy.pool import StaticPool

    engine = create_store_engine(resolve_url("sqlite://"), poolclass=StaticPool)
    store = Store(engine, ensure_schema(engine, create=True), read_only=True)
    store.shown_url, store.exists = mask_url(url), False
    return store


class Store:
    """A vkit store on one database; open it with :func:`open_store`.

    Args:
        engine: the engine (made by :func:`~vkit.core.store.engine.create_store_engine`).
        schema: the schema state found at open.
        read_only: refuse every write with a :class:`StoreError`.
    """

    def __init__(self, engine: Engine, schema: SchemaState, *, read_only: bool = False) -> None:
        self.engine = engine
        self.schema = schema
        self.read_only = read_only
        self._writer = engine.execution_options(**{SQLITE_BEGIN_OPTION: "IMMEDIATE"})
        #: ``False`` when no store exists at the URL (a reading command got an empty one; nothing was created).
        self.exists = True
        self.shown_url: str | None = None

    def __repr__(self) -> str:
        return f"Store({self.url!r}, revision={self.schema.current!r}{', read_only' if self.read_only else ''})"

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def url(self) -> str:
        """The database URL for display, password masked."""
        if self.shown_url is None and self.engine.url.query.get("mode") == "ro":
            self.shown_url = f"sqlite:///{sqlite_path(self.engine.url)}"
        return self.shown_url or mask_url(self.engine.url)

    @property
    def identity(self) -> str:
        """Eight hex digits naming this database (:func:`~vkit.core.store.identity.store_identity`); work folders
        and checkpoint sidecars carry it."""
        from vkit.core.store.identity import store_identity

        return store_identity(self.engine.url)

    def close(self) -> None:
        """Release the connection pool."""
        self.engine.dispose()

    @contextmanager
    def session(self, *, write: bool = True) -> Iterator[Session]:
        """An ORM session in one transaction: committed on success, rolled back on error.

        Args:
            write: take the write lock at ``BEGIN`` (SQLite), so the
                transaction never fails half-way on a concurrent writer.

        Raises:
            StoreError: a database error (message names the masked URL), or
                ``write`` on a read-only store.
        """
        if write:
            self._check_writable()
        session = Session(self._writer if write else self.engine, expire_on_commit=False)
        try:
            yield session
            session.commit()
        except sa.exc.SQLAlchemyError as err:
            session.rollback()
            raise StoreError(f"store {self.url}: {describe_db_error(err)}{self._readonly_hint(err)}") from None
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    # ---------------------------------------------------------------- runs

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
        run_id = self.reopen_run(resume, task) if resume is not None else self.start_run(task, plugin, config, seed, **kwargs)
        status, error = "finished", None
        try:
            yield run_id
        except KeyboardInterrupt as err:  # Ctrl-C, or SIGTERM as vkit.core.processes.Terminated
            how = f"{type(err).__name__}: {err}" if str(err) else "KeyboardInterrupt: Ctrl-C or SIGINT"
            status, error = "interrupted", f"interrupted ({how}); {resume_hint(kwargs.get('kind', 'train'), task, run_id)}"
            raise
        except BaseException as err:
            status, error = "failed", _error_text(err)
            raise
        finally:
            self.finish_run(run_id, status, error)

    def reopen_run(self, run_id: int, task: str) -> int:
        """Put an ``interrupted`` or ``failed`` training run of ``task`` back to ``running`` in this process.

        What ``vkit run TASK --resume RUN`` does before going on with the run's
        epochs; a run that is running, finished, of another task or not a
        training run is a :class:`StoreError` naming what it is.

        Example::

            store.reopen_run(7, "medical-diagnosis")   # run 7 is 'running' again, host/pid this process
        """
        with self.session() as session:
            run = self._run(session, run_id)
            if run.task != task or run.kind != "train":
                raise StoreError(f"run {run_id} is a {run.kind} run of task {run.task!r}, not a training run of {task!r}")
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

    # ------------------------------------------------------------- metrics

    def log_metrics(self, run_id: int, metrics: Mapping[str, Any], step: int, split: str) -> None:
        """Record ``metrics`` (``{key: number}``) of ``split`` at ``step`` in one transaction; NaN is kept as NaN."""
        now = utcnow()
        rows = [
            dict(run_id=run_id, key=str(key), value=_metric_value(run_id, key, value), step=int(step),
                 split=str(split), logged_at=now)
            for key, value in metrics.items()
        ]
        with self.session() as session:
            self._run(session, run_id)
            upsert(session, Metric.__table__, rows, keys=("run_id", "split", "key", "step"))

    def run_metrics(self, run_id: int, split: str | None = None) -> list[dict[str, Any]]:
        """Every metric row of run ``run_id`` (by split, step, key)."""
        where = [Metric.run_id == run_id] + ([Metric.split == split] if split else [])
        rows = self._select(Metric, *where, order_by=(Metric.split, Metric.step, Metric.key))
        for row in rows:
            row["value"] = math.nan if row["value"] is None else row["value"]
        return rows

    def final_metrics(self, run_id: int) -> dict[str, float]:
        """``{"split/key": value}`` at the last step each metric was logged."""
        return {f"{row['split']}/{row['key']}": row["value"] for row in self.run_metrics(run_id)}

    # ----------------------------------------------------------- artifacts

    def add_artifact(self, run_id: int, kind: str, path: str | Path) -> dict[str, Any]:
        """Record the file at ``path`` (absolute) with its streamed sha256 and size; returns the row."""
        file = Path(path).expanduser().resolve()
        if not file.is_file():
            raise StoreError(f"add_artifact(run {run_id}, {kind!r}): {file} is not a file")
        digest, size = sha256_file(file)
        row = dict(run_id=run_id, kind=str(kind), path=str(file), sha256=digest, bytes=size, created_at=utcnow())
        with self.session() as session:
            self._run(session, run_id)
            upsert(session, Artifact.__table__, [row], keys=("run_id", "path"))
        return next(a for a in self.run_artifacts(run_id) if a["path"] == str(file))

    def run_artifacts(self, run_id: int) -> list[dict[str, Any]]:
        """Every artifact of run ``run_id``."""
        return self._select(Artifact, Artifact.run_id == run_id, order_by=(Artifact.id,))

    def artifacts_at(self, path: str | Path) -> list[dict[str, Any]]:
        """Every artifact recorded at ``path`` (resolved), by any run, oldest first."""
        file = str(Path(path).expanduser().resolve())
        return self._select(Artifact, Artifact.path == file, order_by=(Artifact.id,))

    def folder_references(self, folder: str | Path) -> set[int]:
        """Ids of the runs whose work dir is ``folder`` (resolved) or that recorded an artifact inside it."""
        root = str(Path(folder).expanduser().resolve())
        inside = root.rstrip("/") + "/"
        with self.session(write=False) as session:
            runs = session.scalars(sa.select(Run.id).where(Run.work_dir == root))
            files = session.execute(sa.select(Artifact.run_id, Artifact.path).where(
                sa.func.substr(Artifact.path, 1, len(inside)) == inside))
            return {*runs, *(run_id for run_id, _ in files)}

    # --------------------------------------------------------- predictions

    def add_predictions(self, run_id: int, split: str, rows: Iterable[Mapping[str, Any]]) -> int:
        """Record per-case rows (``item_id``, ``label``, ``prediction``, ``values``); same item again updates it."""
        clean = [
            dict(_pick(row, _PREDICTION_FIELDS, "predictions", required=("item_id",)), run_id=run_id, split=str(split))
            for row in rows
        ]
        for row in clean:  # values (JSON) are encoded by upsert
            row["item_id"] = str(row["item_id"])
        with self.session() as session:
            self._run(session, run_id)
            return upsert(session, Prediction.__table__, clean, keys=("run_id", "split", "item_id"), owned=True)

    def run_predictions(self, run_id: int, split: str | None = None) -> list[dict[str, Any]]:
        """Every prediction of run ``run_id`` (optionally one split), by item id."""
        where = [Prediction.run_id == run_id] + ([Prediction.split == split] if split else [])
        return self._select(Prediction, *where, order_by=(Prediction.split, Prediction.item_id))

    # -------------------------------------------------------------- videos

    def upsert_videos(self, rows: Iterable[Mapping[str, Any]]) -> dict[str, int]:
        """Insert or update videos by ``path``; returns ``{path: video_id}``.

        A row carries ``path`` and any of ``sha256``, ``size``, ``duration``,
        ``fps``, ``frames``, ``status`` (one of ``VIDEO_STATUSES``: ``pending``,
        ``ok``, ``failed``, ``duplicate``, ``changed``) and ``error``; columns a
        row leaves out keep their stored value.
        """
        rows = list(rows)
        clean = [_video_row(row) for row in rows]
        given = [str(row["path"]) for row in rows]
        paths = [row["path"] for row in clean]
        with self.session() as session:
            upsert(session, Video.__table__, clean, keys=("path",))
            found: dict[str, int] = {}
            for start in range(0, len(paths), 500):
                chunk = paths[start : start + 500]
                found.update(_pairs(session, sa.select(Video.path, Video.id).where(Video.path.in_(chunk))))
        return {name: found[path] for name, path in zip(given, paths)}

    def get_videos(self, paths: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Every video (or those at ``paths``), by path."""
        where = [Video.path.in_([display_path(str(p))[0] for p in paths])] if paths is not None else []
        return self._select(Video, *where, order_by=(Video.path,))

    # -------------------------------------------------------------- scores

    def add_scores(self, run_id: int, rows: Iterable[Mapping[str, Any]]) -> int:
        """Record segment scores (``video_id``, ``segment``, ``start``, ``end``, ``score``, ``values``); idempotent."""
        clean = [_score_row(run_id, row) for row in rows]
        with self.session() as session:
            self._check_refs(session, run_id, {row["video_id"] for row in clean})
            return upsert(session, Score.__table__, clean, keys=("run_id", "video_id", "segment"), owned=True)

    def add_events(self, run_id: int, rows: Iterable[Mapping[str, Any]]) -> int:
        """Record events (``video_id``, ``kind``, ``start``, ``end``, ``score``); same (video, kind, start) updates."""
        clean = [_event_row(run_id, row) for row in rows]
        with self.session() as session:
            self._check_refs(session, run_id, {row["video_id"] for row in clean})
            return upsert(session, Event.__table__, clean, keys=("run_id", "video_id", "kind", "start"))

    def add_video_results(self, run_id: int, results: Iterable[Mapping[str, Any]], *,
                          segment_rows: bool = True) -> list[dict[str, Any]]:
        """Record a batch of scored (or failed) videos in ONE transaction: scores, events and a summary each.

        Each result carries ``video_id``, ``status`` (``scored``/``failed``),
        optional ``error``, lists ``scores`` and ``events`` (rows as for
        :meth:`add_scores` / :meth:`add_events`, without ``video_id``) and optional
        ``aggregates`` (name -> number, kept in the summary's ``values`` with the
        event count). ``segment_rows=False`` (``vkit score --aggregate-only``)
        writes only the summaries: computed from the scores and events, which
        are then dropped.

        Returns:
            one dict per video, the payload of the ``vkit_video_scored`` hook:
            ``path``, ``sha256``, ``status``, ``error``, ``max_score``,
            ``mean_score`` and ``events`` (``start``/``end``/``score``).
        """
        with self.session() as session:
            return self._write_results(session, run_id, [dict(r) for r in results], segment_rows)

    def _write_results(self, session: Session, run_id: int, results: list[dict[str, Any]],
                       segment_rows: bool = True) -> list[dict[str, Any]]:
        if not results:
            return []
        scores, events, summaries = [], [], []
        for result in results:
            video_id = result.get("video_id")
            scores += [_score_row(run_id, {**s, "video_id": video_id}) for s in result.get("scores", ())]
            events += [_event_row(run_id, {**e, "video_id": video_id}) for e in result.get("events", ())]
            summaries.append(_summary_row(run_id, result))
        self._check_refs(session, run_id, {s["video_id"] for s in summaries})
        shas = _pairs(session, sa.select(Video.id, Video.sha256).where(Video.id.in_([s["video_id"] for s in summaries])))
        paths = _pairs(session, sa.select(Video.id, Video.path).where(Video.id.in_(list(shas))))
        for summary in summaries:
            summary["video_sha256"] = shas[summary["video_id"]]
        if segment_rows:
            upsert(session, Score.__table__, scores, keys=("run_id", "video_id", "segment"), owned=True)
            upsert(session, Event.__table__, events, keys=("run_id", "video_id", "kind", "start"))
        else:
            events = []
        upsert(session, VideoSummary.__table__, summaries, keys=("run_id", "video_id"))
        return [_hook_payload(s, paths, events) for s in summaries]

    # -------------------------------------------------------------- leases

    def claim_video(self, run_id: int, model_sha256: str, video_id: int, seconds: float = 60.0) -> dict[str, Any] | None:
        """Take the lease of (``model_sha256``, ``video_id``) for run ``run_id`` for ``seconds``; ``None`` if held.

        One ``INSERT ... ON CONFLICT DO UPDATE ... WHERE`` (atomic on SQLite and
        PostgreSQL) takes a lease nobody holds, one that expired, one whose run
        is no longer ``running`` (finished, failed, reaped as ``interrupted``)
        or this run's own; another live run's lease is left alone. In the same
        transaction, after the claim, reads what this model already did with
        the video, so a video another job finished meanwhile is not redone.

        Returns:
            ``None`` when another live run holds the video, else
            ``dict(scored_sha256=..., failed=bool, failed_sha256=...)``: the
            content sha256 of this model's newest ``scored`` summary (or
            ``None``), and whether its newest summary is ``failed`` (with the
            content it failed on).
        """
        table = VideoLease.__table__
        now = utcnow()
        expires = now + _seconds(seconds)
        dead = sa.select(Run.id).where(Run.status != "running").scalar_subquery()
        with self.session() as session:
            insert = _INSERTS[session.get_bind().dialect.name](table)
            stmt = insert.values(model_sha256=model_sha256, video_id=video_id, run_id=run_id, expires_at=expires)
            stmt = stmt.on_conflict_do_update(
                index_elements=["model_sha256", "video_id"],
                set_=dict(run_id=stmt.excluded.run_id, expires_at=stmt.excluded.expires_at, video_sha256=None),
                where=sa.or_(table.c.expires_at < now, table.c.run_id == run_id, table.c.run_id.in_(dead)),
            ).returning(table.c.run_id)
            if session.execute(stmt).scalar() != run_id:
                return None
            return self._previous_outcome(session, model_sha256, video_id)

    def claim_content(self, run_id: int, model_sha256: str, video_id: int, sha256: str) -> dict[str, Any] | None:
        """Extend run ``run_id``'s lease on ``video_id`` to its content ``sha256``; ``None`` if that content is held.

        Call it after :meth:`claim_video`, once the file is hashed. The lease
        row takes ``video_sha256``, unique per model: a live lease of another
        video with the same content (another job's, or this run's own at
        another path still being scored) makes the update fail and the claim
        return ``None``; stale holders (expired, or their run no longer
        ``running``) are cleared first. In the same transaction, reads whether
        this model already scored the content.

        Returns:
            ``None`` when the content is held (or this run lost its lease on
            ``video_id``), else ``dict(scored_path=..., scored_run_id=...,
            scored_video_id=..., recorded=bool)``: where this model's newest
            ``scored`` summary of that content is (all ``None`` if nowhere),
            and ``recorded``: this video already has a ``duplicate`` summary
            of that content (nothing to write again).
        """
        lease = VideoLease.__table__
        now = utcnow()
        dead = sa.select(Run.id).where(Run.status != "running").scalar_subquery()
        with self.session() as session:
            session.execute(sa.update(lease).where(
                lease.c.model_sha256 == model_sha256, lease.c.video_sha256 == sha256, lease.c.run_id != run_id,
                sa.or_(lease.c.expires_at < now, lease.c.run_id.in_(dead))).values(video_sha256=None))
            try:
                with session.begin_nested():  # a savepoint: the unique key refuses a second live holder
                    mine = session.execute(sa.update(lease).where(
                        lease.c.model_sha256 == model_sha256, lease.c.video_id == video_id, lease.c.run_id == run_id,
                    ).values(video_sha256=sha256))
            except sa.exc.IntegrityError:
                return None
            if not mine.rowcount:
                return None
            return self._content_outcome(session, model_sha256, video_id, sha256)

    def _content_outcome(self, session: Session, model_sha256: str, video_id: int, sha256: str) -> dict[str, Any]:
        done = (
            sa.select(VideoSummary.status, VideoSummary.video_id, VideoSummary.run_id, Video.path)
            .join(Run, Run.id == VideoSummary.run_id).join(Video, Video.id == VideoSummary.video_id)
            .where(Run.model_sha256 == model_sha256, VideoSummary.video_sha256 == sha256,
                   VideoSummary.status.in_(("scored", "duplicate")))
            .order_by(VideoSummary.scored_at.desc(), VideoSummary.id.desc())
        )
        rows = session.execute(done).all()
        scored = next((r for r in rows if r.status == "scored"), None)
        recorded = any(r.status == "duplicate" and r.video_id == video_id for r in rows)
        return dict(scored_path=scored.path if scored else None, scored_run_id=scored.run_id if scored else None,
                    scored_video_id=scored.video_id if scored else None, recorded=recorded and scored is not None)

    def _previous_outcome(self, session: Session, model_sha256: str, video_id: int) -> dict[str, Any]:
        query = (
            sa.select(VideoSummary.status, VideoSummary.video_sha256)
            .join(Run, Run.id == VideoSummary.run_id)
            .where(Run.model_sha256 == model_sha256, VideoSummary.video_id == video_id)
            .order_by(VideoSummary.scored_at.desc(), VideoSummary.id.desc())
        )
        rows = session.execute(query).all()
        scored = next((sha for status, sha in rows if status == "scored"), None)
        newest = rows[0] if rows else None
        failed = newest is not None and newest[0] == "failed"
        return dict(scored_sha256=scored, failed=failed, failed_sha256=newest[1] if failed else None)

    def renew_leases(self, run_id: int, seconds: float = 60.0) -> int:
        """Push the expiry of every lease run ``run_id`` holds ``seconds`` ahead; returns how many it holds."""
        with self.session() as session:
            result = session.execute(sa.update(VideoLease).where(VideoLease.run_id == run_id)
                                     .values(expires_at=utcnow() + _seconds(seconds)))
            return result.rowcount

    def release_leases(self, run_id: int, video_ids: Sequence[int] | None = None) -> int:
        """Drop run ``run_id``'s leases (on ``video_ids``, or all); returns how many were dropped."""
        where = [VideoLease.run_id == run_id] + ([VideoLease.video_id.in_(list(video_ids))] if video_ids is not None else [])
        with self.session() as session:
            return session.execute(sa.delete(VideoLease).where(*where)).rowcount

    def add_leased_results(self, run_id: int, model_sha256: str, results: Iterable[Mapping[str, Any]], *,
                           segment_rows: bool = True) -> tuple[list[dict[str, Any]], list[int]]:
        """Like :meth:`add_video_results`, but only for videos whose lease run ``run_id`` still holds.

        The leases are locked (``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite
        writes one at a time), results of videos another run took over are
        dropped, and the leases of the written videos are released, all in one
        transaction: a video's results are never written twice for one model.

        Returns:
            ``(hook payloads of the written videos, ids of the dropped videos)``.
        """
        results = [dict(r) for r in results]
        ids = [r.get("video_id") for r in results]
        with self.session() as session:
            held = set(session.scalars(
                sa.select(VideoLease.video_id)
                .where(VideoLease.model_sha256 == model_sha256, VideoLease.video_id.in_(ids),
                       VideoLease.run_id == run_id)
                .with_for_update()
            ))
            keep = [r for r in results if r.get("video_id") in held]
            payloads = self._write_results(session, run_id, keep, segment_rows)
            if held:
                session.execute(sa.delete(VideoLease).where(VideoLease.model_sha256 == model_sha256,
                                                            VideoLease.run_id == run_id,
                                                            VideoLease.video_id.in_(list(held))))
        return payloads, [i for i in ids if i not in held]

    def scored_video_ids(self, model_sha256: str) -> set[int]:
        """Ids of videos already scored by the model with checkpoint sha256 ``model_sha256`` (in any run).

        A video counts only if its summary is ``scored`` and its content
        (sha256) has not changed since; failed videos are retried.
        """
        query = (
            sa.select(VideoSummary.video_id)
            .join(Run, Run.id == VideoSummary.run_id)
            .join(Video, Video.id == VideoSummary.video_id)
            .where(Run.model_sha256 == model_sha256, VideoSummary.status == "scored")
            .where(VideoSummary.video_sha256.is_not_distinct_from(Video.sha256))
        )
        with self.session(write=False) as session:
            return set(session.scalars(query))

    def video_scores(self, run_id: int, video_id: int | None = None) -> list[dict[str, Any]]:
        """Segment scores of run ``run_id`` (optionally one video), by video and segment."""
        where = [Score.run_id == run_id] + ([Score.video_id == video_id] if video_id is not None else [])
        return self._select(Score, *where, order_by=(Score.video_id, Score.segment))

    def run_events(self, run_id: int, video_id: int | None = None) -> list[dict[str, Any]]:
        """Events of run ``run_id`` (optionally one video), by video and start."""
        where = [Event.run_id == run_id] + ([Event.video_id == video_id] if video_id is not None else [])
        return self._select(Event, *where, order_by=(Event.video_id, Event.start, Event.kind))

    def video_summaries(self, run_id: int) -> list[dict[str, Any]]:
        """Per-video summaries of scoring run ``run_id``, by video id."""
        return self._select(VideoSummary, VideoSummary.run_id == run_id, order_by=(VideoSummary.video_id,))

    def model_summaries(self, model_sha256: str, video_ids: Sequence[int]) -> list[dict[str, Any]]:
        """The newest ``scored`` summary of each of ``video_ids`` by this model (any run) whose content is unchanged.

        What a resumed job aggregates over: videos scored in earlier runs count with their stored summary.
        Each row is a ``video_summaries`` row plus the video's ``path`` and ``duration``.
        """
        query = (
            sa.select(VideoSummary, Video.path, Video.duration)
            .join(Run, Run.id == VideoSummary.run_id)
            .join(Video, Video.id == VideoSummary.video_id)
            .where(Run.model_sha256 == model_sha256, VideoSummary.status == "scored",
                   VideoSummary.video_id.in_([int(i) for i in video_ids]))
            .where(VideoSummary.video_sha256.is_not_distinct_from(Video.sha256))
            .order_by(VideoSummary.scored_at, VideoSummary.id)
        )
        newest: dict[int, dict[str, Any]] = {}
        with self.session(write=False) as session:
            for summary, path, duration in session.execute(query):
                row = {c.name: getattr(summary, c.key) for c in VideoSummary.__table__.columns}
                newest[summary.video_id] = dict(row, path=path, duration=duration)
        return [newest[i] for i in sorted(newest)]

    def run_counts(self, run_ids: Sequence[int]) -> dict[str, int]:
        """Rows that runs ``run_ids`` own in each child table (``metrics``, ``predictions``, ``scores``, ...), plugins'
        tables in this database included (:meth:`plugin_tables`: e.g. ``recommendations``)."""
        ids = [int(i) for i in run_ids]
        tables = [m.__table__ for m in TABLES.values() if "run_id" in m.__table__.columns] + self.plugin_tables()
        with self.session(write=False) as session:
            return {t.name: session.scalar(sa.select(sa.func.count()).select_from(t).where(t.c.run_id.in_(ids)))
                    for t in tables}

    def counts(self) -> dict[str, int]:
        """Number of rows of every table, plugins' included (for ``vkit db current`` and checks)."""
        tables = [m.__table__ for m in TABLES.values()] + self.plugin_tables()
        with self.session(write=False) as session:
            return {t.name: session.scalar(sa.select(sa.func.count()).select_from(t)) for t in tables}

    def plugin_tables(self) -> list[sa.TableClause]:
        """The tables of this database that belong to runs but not to core (a plugin's, e.g. ``recommendations``;
        read from the database, so they count whether or not their plugin is loaded)."""
        with self.engine.connect() as conn:
            inspector = sa.inspect(conn)
            names = sorted(set(inspector.get_table_names()) - set(TABLES) - {"video_leases"})
            return [sa.table(name, sa.column("run_id")) for name in names
                    if not name.startswith("alembic_version")
                    and "run_id" in {c["name"] for c in inspector.get_columns(name)}]

    # ------------------------------------------------------------ helpers

    def _readonly_hint(self, err: BaseException) -> str:
        path = sqlite_path(self.engine.url)
        if path is None or "readonly database" not in str(err):
            return ""
        return (f" (SQLite writes its journal next to the file: is the folder {path.parent} writable by this user? "
                f"Reading commands open such a store read-only)")

    def _check_writable(self) -> None:
        if self.read_only:
            raise StoreError(
                f"store {self.url} is open read-only (schema revision {self.schema.current!r}, this vkit's head "
                f"{self.schema.head!r}); refusing to write"
            )

    def _run(self, session: Session, run_id: int) -> Run:
        run = session.get(Run, run_id)
        if run is None:
            raise StoreError(f"run {run_id!r} is not in store {self.url}; create it with start_run() first")
        return run

    def _check_refs(self, session: Session, run_id: int, video_ids: set[int]) -> None:
        self._run(session, run_id)
        found = set(session.scalars(sa.select(Video.id).where(Video.id.in_(list(video_ids)))))
        missing = sorted(video_ids - found)
        if missing:
            raise StoreError(f"videos {missing[:5]} are not in store {self.url}; add them with upsert_videos() first")

    def _select(self, model: type, *where: Any, order_by: Sequence[Any] = (), limit: int | None = None) -> list[dict[str, Any]]:
        query = sa.select(model.__table__).where(*where).order_by(*order_by).limit(limit)
        with self.session(write=False) as session:
            return [dict(row) for row in session.execute(query).mappings()]


def resume_hint(kind: str, task: str, run_id: int) -> str:
    """What the error of an interrupted run tells its user to do: resume a training run, rerun anything else.

    Example::

        resume_hint("train", "medical-diagnosis", 3)   # '`vkit run medical-diagnosis --resume 3` continues ...'
    """
    if kind == "train":
        return f"`vkit run {task} --resume {run_id}` continues it from its last finished epoch"
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


def _seconds(value: float) -> Any:
    import datetime as dt

    return dt.timedelta(seconds=float(value))


def _pairs(session: Session, query: sa.Select[Any]) -> dict[Any, Any]:
    """``{first column: second column}`` of a two-column query."""
    return {key: value for key, value in session.execute(query)}


def _pick(row: Mapping[str, Any], fields: Sequence[str], table: str, required: Sequence[str] = ()) -> dict[str, Any]:
    if row.keys() <= (_FIELD_SETS.get(fields) or frozenset(fields)) and None not in [*map(row.get, required)]:
        return dict(row)
    unknown = set(row) - set(fields)
    if unknown:
        raise StoreError(f"{table} row {dict(row)!r}: unknown fields {sorted(unknown)}; expected some of {list(fields)}")
    missing = [f for f in required if row.get(f) is None]
    if missing:
        raise StoreError(f"{table} row {dict(row)!r}: missing {missing}")
    return dict(row)


def _metric_value(run_id: int, key: Any, value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise StoreError(f"log_metrics(run {run_id}): metric {key!r} must be a number, got {value!r}") from None
    return None if math.isnan(number) else number


def _video_row(row: Mapping[str, Any]) -> dict[str, Any]:
    clean = _pick(row, _VIDEO_FIELDS, "videos", required=("path",))
    clean["path"], raw = display_path(str(clean["path"]))
    if raw is not None:
        clean["path_bytes"] = raw
    if clean.get("error") is not None:
        clean["error"] = display_text(str(clean["error"]))
    if "status" in clean and clean["status"] not in VIDEO_STATUSES:
        raise StoreError(f"videos row {clean['path']!r}: status must be one of {VIDEO_STATUSES}, got {clean['status']!r}")
    clean["updated_at"] = utcnow()
    return clean


def _score_row(run_id: int, row: Mapping[str, Any]) -> dict[str, Any]:
    """The hot path of bulk writes: checks inline (``_pick`` only to word the error); ``values`` are encoded by upsert."""
    get = row.get
    if (not row.keys() <= _SCORE_KEYS or get("video_id") is None or get("segment") is None or get("start") is None
            or get("end") is None):
        _pick(row, _SCORE_FIELDS, "scores", required=("video_id", "segment", "start", "end"))
    clean = {**row, "run_id": run_id}
    score = clean.get("score")
    if score is not None and type(score) is not float:
        clean["score"] = float(score)
    return clean


def _event_row(run_id: int, row: Mapping[str, Any]) -> dict[str, Any]:
    clean = _pick(row, _EVENT_FIELDS, "events", required=("video_id", "kind", "start", "end"))
    return dict(clean, run_id=run_id, start=float(clean["start"]), end=float(clean["end"]))


def _summary_row(run_id: int, result: Mapping[str, Any]) -> dict[str, Any]:
    status, video_id = result.get("status"), result.get("video_id")
    if video_id is None or status not in SCORED_STATUSES:
        raise StoreError(f"video result {dict(result)!r}: needs 'video_id' and status one of {SCORED_STATUSES}")
    values = [float(s["score"]) for s in result.get("scores", ()) if s.get("score") is not None]
    finite = [v for v in values if math.isfinite(v)]
    error = result.get("error")
    return dict(
        run_id=run_id, video_id=video_id, status=status,
        error=None if error is None else display_text(mask_secrets(str(error))),
        segments=len(result.get("scores", ())), max_score=max(finite) if finite else None,
        mean_score=sum(finite) / len(finite) if finite else None, scored_at=utcnow(),
        values=_summary_values(result) if status == "scored" else None,
    )


def _summary_values(result: Mapping[str, Any]) -> dict[str, Any]:
    """``{"events": count, **aggregates}``; an aggregate must be a finite number (or None)."""
    values: dict[str, Any] = {"events": len(result.get("events", ()))}
    aggregates = result.get("aggregates") or {}
    if not isinstance(aggregates, Mapping):
        raise StoreError(f"video {result.get('video_id')}: aggregates must map names to numbers, got {aggregates!r}")
    for key, value in aggregates.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not math.isfinite(value)):
            raise StoreError(f"video {result.get('video_id')}: aggregate {key!r} must be a finite number, got {value!r}")
        values[str(key)] = value
    return values


def _hook_payload(summary: dict[str, Any], paths: dict[int, str], events: list[dict[str, Any]]) -> dict[str, Any]:
    mine = [e for e in events if e["video_id"] == summary["video_id"]]
    return dict(
        path=paths[summary["video_id"]], sha256=summary["video_sha256"], status=summary["status"],
        error=summary["error"], max_score=summary["max_score"], mean_score=summary["mean_score"],
        events=[dict(start=e["start"], end=e["end"], score=e.get("score")) for e in sorted(mine, key=lambda e: e["start"])],
    )
