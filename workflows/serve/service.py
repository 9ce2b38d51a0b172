"""The state of one ``vkit serve`` process: settings, the served models and their batchers, the recorder, the jobs.

:class:`ServeSettings` holds the command's options, checked before anything
loads (a token is required off localhost; limits must be positive).
:class:`ServeService` loads each ``--checkpoint`` once per replica, starts a
``serve`` run for it, batches predictions across requests
(:class:`~vkit.workflows.serve.batcher.MicroBatcher`), swaps models on reload
without dropping what is queued or running, and closes everything in order.

Example::

    service = ServeService(ServeSettings(checkpoints=["7"], data_root=Path("/data")))
    result = await service.predict("medical-diagnosis", Input(path="/data/a.nii.gz", name="a.nii.gz"))
    service.close()
"""
from __future__ import annotations

import asyncio
import os
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vkit.registry.errors import ConfigError
from vkit.workflows.web_access import check_binding

__all__ = ["ServeService", "ServeSettings"]


@dataclass
class ServeSettings:
    """``vkit serve``'s options.

    Args:
        checkpoints: run ids or ``.safetensors`` paths, one per task.
        host, port: where to listen (anything but loopback needs ``token``).
        token: the bearer token requests must carry (``None``: none, loopback only).
        db_url: the store (``None``: ``$VKIT_DB_URL`` or ``./vkit.db``).
        data_root: the folder JSON paths and score jobs may name (``None``: uploads only, no score jobs).
        stage: serve the run's compressed model (``"final"`` or a stage name).
        precision: ``fp32``, ``bf16`` or ``auto``.
        replicas: model copies per task, each with its own thread.
        loaders: processes that read and transform inputs (:mod:`~vkit.workflows.serve.loaders`); ``0`` (default):
            threads of the server process (measured faster on 2 cores, docs/serve.md); ``None``: one per core.
        max_batch, max_wait_ms: the micro-batcher's limits.
        max_upload_mb: largest request body.
        max_seconds: longest video accepted (seconds).
        max_jobs: scoring jobs at once.
        request_timeout: longest a prediction waits (then 503).
        flush_seconds: longest a prediction row waits before it is stored.
        plugins: extra plugin modules.
    """

    checkpoints: list[str]
    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = None
    db_url: str | None = None
    data_root: Path | None = None
    stage: str | None = None
    precision: str = "fp32"
    replicas: int = 1
    loaders: int | None = 0
    max_batch: int = 8
    max_wait_ms: float = 5.0
    max_upload_mb: float = 256.0
    max_seconds: float | None = 60.0
    max_jobs: int = 1
    request_timeout: float = 120.0
    flush_seconds: float = 1.0
    plugins: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.checkpoints:
            raise ConfigError("vkit serve: give at least one --checkpoint RUN")
        check_binding(self.host, self.token, what="vkit serve")
        for name in ("replicas", "max_batch", "max_jobs"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"vkit serve: --{name.replace('_', '-')} must be an int >= 1, got {value!r}")
        for name in ("max_upload_mb", "request_timeout", "flush_seconds"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"vkit serve: --{name.replace('_', '-')} must be > 0, got {getattr(self, name)!r}")
        if self.loaders is None:  # one per core this process may run on
            self.loaders = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        if not isinstance(self.loaders, int) or isinstance(self.loaders, bool) or self.loaders < 0:
            raise ConfigError(f"vkit serve: --loaders must be an int >= 0, got {self.loaders!r}")
        if self.max_wait_ms < 0:
            raise ConfigError(f"vkit serve: --max-wait-ms must be >= 0, got {self.max_wait_ms!r}")
        if self.data_root is not None:
            root = Path(self.data_root).expanduser()
            if not root.is_dir():
                raise ConfigError(f"vkit serve: --data-root {str(root)!r} is not a folder")
            self.data_root = root.resolve()

    @property
    def upload_limit(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


class ServeService:
    """The served models and everything around them (built by :func:`~vkit.workflows.serve.app.build_app`)."""

    def __init__(self, settings: ServeSettings) -> None:
        from vkit.core.store import open_store
        from vkit.hooks.manager import get_plugin_manager
        from vkit.workflows.serve.jobs import ScoreJobs
        from vkit.workflows.serve.metrics import ServeMetrics
        from vkit.workflows.serve.models import choose_precision, warm_loading
        from vkit.workflows.serve.recorder import PredictionRecorder

        self.settings = settings
        self.metrics = ServeMetrics()
        self.store = open_store(settings.db_url)
        self.manager = get_plugin_manager(extra=tuple(settings.plugins))
        self.precision, self.precision_reason = choose_precision(settings.precision)
        self.tasks: dict[str, Any] = {}
        self.batchers: dict[str, Any] = {}
        self.runs: dict[str, int] = {}
        self.run_of_model: dict[tuple[str, str], int] = {}  # (task, model sha256) -> its serve run
        self.recommenders: dict[str, Any] = {}
        self._recommending: dict[str, tuple[Any, Any]] = {}  # task -> (served, its recommender), swapped as one
        self._reload_lock = threading.Lock()
        self.upload_dir = Path(tempfile.mkdtemp(prefix="vkit-serve-uploads-"))
        self.recorder = PredictionRecorder(self.store, flush_seconds=settings.flush_seconds)
        self.jobs = ScoreJobs(self.store, settings.db_url, max_jobs=settings.max_jobs,
                              plugins=tuple(settings.plugins))
        self.loaders: Any = None
        try:
            self._check(settings.checkpoints)  # every checkpoint, before a model loads or a serve run is recorded
            for served in [self._load(ref) for ref in settings.checkpoints]:
                self._add(served)
            if not settings.loaders:  # inputs load on threads of this process: warm that here, not on a request
                for name in self.batchers:
                    warm_loading(self.tasks[name].task, self.tasks[name].trained.config)
            elif self.batchers:
                from vkit.workflows.serve.loaders import LoaderPool

                models = {name: (self.tasks[name].sha256, self.tasks[name].trained.config) for name in self.batchers}
                self.loaders = LoaderPool(settings.loaders, models=models, plugins=tuple(settings.plugins),
                                          timeout=settings.request_timeout)
                self.loaders.warm()
        except BaseException:
            self.close("failed")
            raise

    # ------------------------------------------------------------------ models
    def _load(self, ref: str, expect_task: str | None = None, option: str = "--checkpoint") -> Any:
        from vkit.workflows.serve.models import ServedTask, load_replicas

        task, replicas = load_replicas(ref, store=self.store, manager=self.manager, replicas=self.settings.replicas,
                                       stage=self.settings.stage, precision=self.precision, expect_task=expect_task,
                                       option=option)
        return ServedTask(name=task.name, task=task, replicas=replicas, checkpoint=str(ref),
                          stage=self.settings.stage, precision=self.precision, precision_reason=self.precision_reason)

    def _check(self, refs: list[str]) -> None:
        """Each checkpoint resolved and its task read (no model loaded); two of one task are refused."""
        from vkit.workflows.serve.models import checkpoint_task

        seen: dict[str, str] = {}
        for ref in refs:
            _, task = checkpoint_task(ref, self.store)
            if task in seen:
                raise ConfigError(f"vkit serve: two checkpoints of task {task!r} (--checkpoint {seen[task]} and "
                                  f"--checkpoint {ref}); serve one model per task (another task's checkpoint may be "
                                  f"added; a second model of one task needs its own `vkit serve --port`)")
            seen[task] = ref

    def _add(self, served: Any) -> None:
        from vkit.workflows.serve.batcher import MicroBatcher

        self.tasks[served.name] = served
        if served.can("predict"):
            self.batchers[served.name] = MicroBatcher(
                [r.predict_loaded for r in served.replicas], max_batch=self.settings.max_batch,
                max_wait=self.settings.max_wait_ms / 1000, timeout=self.settings.request_timeout,
                on_batch=self.metrics.batch.labels(served.name).observe)
        if served.can("recommend"):
            self.recommenders[served.name] = served.task.recommender(served.trained)
            self._recommending[served.name] = (served, self.recommenders[served.name])
        self.runs[served.name] = self.recorder.start_run(served, self._run_config(served))
        self.run_of_model[(served.name, served.sha256)] = self.runs[served.name]
        self.metrics.set_model(served.name, served.sha256, served.precision, len(served.replicas))

    def _run_config(self, served: Any) -> dict[str, Any]:
        s = self.settings
        return dict(checkpoint=served.checkpoint, weights=str(served.trained.files.weights), stage=served.stage,
                    precision_used=dict(requested=s.precision, precision=served.precision,
                                        reason=served.precision_reason),
                    host=s.host, port=s.port, replicas=s.replicas, loaders=s.loaders, max_batch=s.max_batch,
                    max_wait_ms=s.max_wait_ms,
                    data_root=None if s.data_root is None else str(s.data_root), token=s.token is not None)

    def reload(self, task: str, ref: str | None = None) -> dict[str, Any]:
        """Load ``ref`` (default: the same checkpoint again) for ``task`` and swap it in; requests queued or running
        keep going (running batches finish on the old model, the next ones use the new). Returns what is served."""
        if task not in self.tasks:
            raise KeyError(task)
        with self._reload_lock:
            old = self.tasks[task]
            new = self._load(ref or old.checkpoint, expect_task=task, option="'checkpoint'")
            old_run = self.runs[task]
            self.runs[task] = self.recorder.start_run(new, self._run_config(new))
            self.run_of_model[(task, new.sha256)] = self.runs[task]
            self.tasks[task] = new
            old_generation = None
            if task in self.batchers:
                old_generation = self.batchers[task].replace([r.predict_loaded for r in new.replicas])
            if task in self.recommenders:
                self.recommenders[task] = new.task.recommender(new.trained)
                self._recommending[task] = (new, self.recommenders[task])
            self.metrics.set_model(task, new.sha256, new.precision, len(new.replicas))
        if old_generation is not None:  # batches the old model is running finish first
            self.batchers[task].wait_finished(old_generation, self.settings.request_timeout)
        if old_run != self.runs[task]:
            self.recorder.finish_run(old_run)
        return dict(task=task, checkpoint=new.checkpoint, model_sha256=new.sha256, previous_sha256=old.sha256,
                    run_id=self.runs[task], previous_run_id=old_run)

    # ------------------------------------------------------------------ predictions
    async def predict(self, task: str, item: Any) -> dict[str, Any]:
        """``item``'s prediction by ``task``'s model, stored with the run of the model that made it.

        The file is checked (a video's duration), read and transformed in a loader process (``--loaders``; or a
        thread of its own with ``--loaders 0``), so requests load in parallel; only the model's forward pass is
        batched. The batcher knows the request is on its way meanwhile (it waits for it, not for a lone client)."""
        from vkit.workflows.serve.inputs import VIDEO_SUFFIXES, check_duration

        batcher, replica = self.batchers[task], self.tasks[task].replicas[0]
        with batcher.arriving():
            if Path(item.path).suffix.lower() in VIDEO_SUFFIXES:
                await asyncio.to_thread(check_duration, Path(item.path), item.name, self.settings.max_seconds)
            if self.loaders is not None:
                loaded = await self.loaders.load(task, replica.sha256, replica.trained.config, item)
                if isinstance(loaded, BaseException):
                    raise loaded
            else:
                loaded = await asyncio.to_thread(replica.load, item)
        result = await batcher.submit((item, loaded))
        row = dict(result.pop("_row"))
        row["item_id"] = f"{item.request_id}:{item.name}"
        row["values"] = dict(row["values"], source=item.source, name=item.name, sha256=result["model_sha256"])
        run_id = self.run_of_model.get((task, result["model_sha256"]), self.runs[task])  # the model that made it
        self.recorder.add(run_id, row)
        return result

    def recommend(self, user_id: str, k: int) -> dict[str, Any]:
        """The first served recommendation model's top-``k`` for ``user_id`` (blocking: call it on a thread), stored
        as a row of split ``recommend`` in the run of the model that answered (``item_id`` ``<request id>:<user>``;
        ``values``: the user, ``k``, items, scores, ``known``, ``note``, the model, its sha256)."""
        import uuid

        from vkit.workflows.serve.recorder import RECOMMEND

        name = sorted(self._recommending)[0]
        served, recommender = self._recommending[name]
        result = recommender.recommend(user_id, k)
        request_id = uuid.uuid4().hex[:16]
        items = result["items"]
        self.recorder.add(self.run_of_model.get((name, served.sha256), self.runs[name]), dict(
            item_id=f"{request_id}:{user_id}", label=None, prediction=None,
            values=dict(user=str(user_id), k=int(k), items=[i["item_id"] for i in items],
                        scores=[i["score"] for i in items], known=result.get("known"), note=result.get("note"),
                        model=result.get("model"), sha256=served.sha256)), split=RECOMMEND)
        return dict(task=name, model_sha256=served.sha256, request_id=request_id, **result)

    def refresh_gauges(self) -> None:
        for name, batcher in self.batchers.items():
            self.metrics.queue.labels(name).set(batcher.depth)
        self.metrics.stored.set(self.recorder.written)
        self.metrics.jobs.set(self.jobs.running())

    # ------------------------------------------------------------------ lifecycle
    async def aclose(self, status: str = "finished") -> None:
        for batcher in self.batchers.values():
            await batcher.close()
        await asyncio.to_thread(self.close, status)

    def close(self, status: str = "finished") -> None:
        """Stop scoring jobs and loaders, write waiting rows, close the runs and the store, remove uploads left over."""
        self.jobs.stop()
        if self.loaders is not None:
            self.loaders.close()
        self.recorder.close(status)
        import shutil

        shutil.rmtree(self.upload_dir, ignore_errors=True)
        self.store.close()

    def health(self) -> dict[str, Any]:
        return dict(status="ok", pid=os.getpid(), precision=self.precision,
                    loaders=dict(processes=self.settings.loaders, restarts=self.loaders.restarts)
                    if self.loaders is not None else dict(processes=0, restarts=0),
                    models={name: dict(sha256=t.sha256, replicas=len(t.replicas), checkpoint=t.checkpoint,
                                       run_id=self.runs.get(name))
                            for name, t in self.tasks.items()},
                    store_errors=self.recorder.errors)
