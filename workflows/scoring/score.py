"""``vkit score TASK ARCHIVE... --checkpoint RUN_OR_PATH``: batch scoring of video archives.

Inventory (walk, stat, sha256) → skip what this model already scored → decode
in workers → batched inference → per-segment scores, per-video summary and
events, committed a few videos per transaction (each video's rows all in one)
→ progress bar → summary. Re-running after Ctrl-C or ``kill -9`` scores only
what is left: a video is skipped when a run with the same checkpoint sha256
scored its current content.

Engines: ``local`` decodes in torch ``DataLoader`` worker processes (an
``IterableDataset`` sharded over them) while the main process runs the model;
``ray`` runs the same per-video code in a Ray Data actor pool
(:mod:`vkit.workflows.scoring.ray_engine`). Both write the same rows.

Example::

    summary = score_archive("security-anomaly", ["/archive/cams"], "12", options=ScoreOptions(workers=2))
    summary.scored, summary.failed, summary.run_id, summary.db_url
"""
from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import click

from vkit.registry.errors import ConfigError, DataError

ENGINES = ("local", "ray")


@dataclass
class ScoreOptions:
    """How ``vkit score`` runs.

    Args:
        workers: decoding processes (local engine; 0 decodes in the main
            process) or actors (Ray engine).
        batch_size: clips per inference batch (clips of several videos share a batch), or
            ``"auto"``: the fastest size up to 16, found on the job's first batches.
        device: torch device of the model (``cpu``, ``cuda``, ``cuda:1``).
        engine: ``local`` or ``ray``.
        ray_address: Ray cluster to join (``auto``, ``ray://host:10001``); ``None`` starts a local one.
        commit_every: videos per store transaction (a transaction also closes after ``commit_seconds``).
        commit_seconds: longest wait before finished videos are committed.
        prefetch: decoded videos each worker may hold ready (bounds memory).
        videos_per_task: videos a Ray actor takes per call (Ray engine).
        lease_seconds: how long a claimed video stays this job's without a renewal (renewed every third of it);
            a killed job's videos are taken over after it (at once when the job ran on this machine).
        precision: ``fp32``, ``bf16``, ``int8`` or ``auto`` (the fastest that passes the
            quality gate on validation clips; :mod:`vkit.core.precision`).
        aggregate_only: store per-video summaries (with the scorer's aggregates) and per-group
            aggregates, but no per-segment score rows and no event rows (privacy).
    """

    workers: int = 2
    batch_size: int | str = "auto"
    device: str = "cpu"
    engine: str = "local"
    ray_address: str | None = None
    commit_every: int = 8
    commit_seconds: float = 2.0
    prefetch: int = 2
    videos_per_task: int = 4
    lease_seconds: float = 120.0
    precision: str = "fp32"
    aggregate_only: bool = False

    def __post_init__(self) -> None:
        for name in ("workers", "batch_size", "commit_every", "prefetch", "videos_per_task"):
            value, low = getattr(self, name), 0 if name == "workers" else 1
            auto = name == "batch_size"
            if (auto and value == "auto") or (isinstance(value, int) and not isinstance(value, bool) and value >= low):
                continue
            alternative = " or 'auto'" if auto else ""
            raise ConfigError(f"score: {name} must be an int >= {low}{alternative}, got {value!r}")
        if self.engine not in ENGINES:
            raise ConfigError(f"score: engine={self.engine!r}; expected one of {list(ENGINES)}")
        if self.engine == "ray":  # checked with the options: before any run row exists
            from vkit.core.extras import require_extra

            require_extra("ray", purpose="--engine ray")
        if self.precision != "fp32":  # the default needs no look-up: importing vkit.core.precision imports torch
            from vkit.core.precision import PRECISIONS

            if self.precision not in PRECISIONS:
                raise ConfigError(f"score: precision={self.precision!r}; expected one of {list(PRECISIONS)}")
        if not self.lease_seconds > 0:
            raise ConfigError(f"score: lease_seconds must be > 0, got {self.lease_seconds!r}")
        if not self.commit_seconds > 0:
            raise ConfigError(f"score: commit_seconds must be > 0, got {self.commit_seconds!r}")


@dataclass
class ScoreSummary:
    """What a scoring job did (printed by the CLI, ``--json`` for scripts)."""

    run_id: int
    task: str
    db_url: str
    engine: str
    videos: int = 0
    scored: int = 0
    skipped: int = 0
    failed: int = 0
    left_failed: int = 0  # failed in an earlier run, content unchanged, not retried (--retry-failed retries)
    duplicates: int = 0  # same content (sha256) as a video this model scored at another path: recorded, not scored
    changed: int = 0  # rewritten while being scored, on every try: recorded 'changed' (no rows), scored by the next run
    lost: int = 0  # scored here but taken over by another job meanwhile (its results count, not these)
    held_elsewhere: int = 0  # still leased by other live jobs when this one stopped waiting (3 lease lengths idle)
    clips: int = 0
    seconds: float = 0.0
    batch_size: int | str | None = None  # the size used ('auto' resolved where one process scored)
    precision: str = "fp32"  # the precision used ('auto' resolved)
    aggregates: int = 0  # per-group aggregate rows stored (metrics of the run; scorers with group_aggregates)
    status: str = "running"
    failures: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["videos_per_s"] = round((self.scored + self.failed) / self.seconds, 3) if self.seconds else None
        data["clips_per_s"] = round(self.clips / self.seconds, 3) if self.seconds else None
        return data


# ----------------------------------------------------------------------------- scorer
def build_task_scorer(task_name: str, checkpoint: str, device: str = "cpu", plugins: Sequence[str] = (),
                      compressed: str | None = None) -> Any:
    """The task's :class:`~vkit.core.scoring.VideoScorer` for ``checkpoint`` (picklable via ``functools.partial``);
    ``compressed`` (``"final"`` or a stage name): with the run's compressed model (:mod:`vkit.workflows.compressed`)."""
    from vkit.hooks.manager import get_plugin_manager
    from vkit.workflows.scoring.engine import check_scorer

    manager = get_plugin_manager(extra=tuple(plugins))
    task = manager.get_task(task_name)
    manager.register_components(require=task.plugin)
    scorer = task().build_scorer(Path(checkpoint), device)
    if compressed is not None:
        from vkit.workflows.compressed import use_compressed

        scorer = use_compressed(scorer, Path(checkpoint), compressed, device)
    check_scorer(scorer, f"task {task_name!r} (plugin {task.plugin!r})")
    return scorer


# ----------------------------------------------------------------------------- local engine
def _identity(item: Any) -> Any:
    return item


def local_outcomes(jobs: Sequence[tuple[str, Any]], scorer: Any, options: ScoreOptions,
                   stats: dict[str, float] | None = None, stream: Any = None) -> Iterator[dict[str, Any]]:
    """Outcomes of ``jobs``: decoded in ``options.workers`` processes, scored in batches here, in finishing order.

    ``stream`` replaces the plain ``VideoStream(jobs, scorer)`` (e.g. a
    :class:`~vkit.workflows.scoring.leases.LeasedStream` that claims each video first).
    """
    import multiprocessing
    import os

    from torch.utils.data import DataLoader

    from vkit.core.processes import die_with_parent
    from vkit.workflows.scoring.engine import ClipBatcher, VideoStream, score_items

    workers = min(options.workers, len(jobs))
    context = "fork" if workers and "fork" in multiprocessing.get_all_start_methods() else None
    loader = DataLoader(stream if stream is not None else VideoStream(jobs, scorer), batch_size=None, num_workers=workers, collate_fn=_identity,
                        prefetch_factor=options.prefetch if workers else None, multiprocessing_context=context,
                        worker_init_fn=functools.partial(die_with_parent, os.getpid()))  # no orphan keeps decoding
    batcher = ClipBatcher(scorer, options.batch_size, options.device)
    try:
        for outcome in score_items(iter(loader), batcher):
            if stats is not None:
                stats.update(model_seconds=batcher.model_seconds, batch_size=batcher.batch_size)
            yield outcome
    finally:
        del loader  # shuts the worker processes down


# ----------------------------------------------------------------------------- writing
class ResultWriter:
    """Commits finished videos a few at a time: video rows, then each video's scores + events + summary in one transaction.

    Args:
        store: the open :class:`~vkit.core.store.Store`.
        run_id: the scoring run.
        notify: called with each video's ``vkit_video_scored`` payload after its commit.
        commit_every: videos per transaction.
        commit_seconds: longest a finished video waits for its commit.
        model_sha256: write only videos whose lease this run holds for this model (cooperating jobs);
            the paths of videos another job took over are appended to ``lost``.
        segment_rows: ``False``: write each video's summary (and aggregates) only, no score or event rows.
    """

    def __init__(self, store: Any, run_id: int, notify: Callable[[dict[str, Any]], None], commit_every: int = 8,
                 commit_seconds: float = 2.0, model_sha256: str | None = None, segment_rows: bool = True) -> None:
        self.store, self.run_id, self.notify = store, run_id, notify
        self.commit_every, self.commit_seconds = commit_every, commit_seconds
        self.model_sha256 = model_sha256
        self.segment_rows = segment_rows
        self.lost: list[tuple[str, str]] = []  # (path, status) of outcomes another job took over
        self.unstored: list[dict[str, str]] = []
        self._pending: list[dict[str, Any]] = []
        self._since = time.monotonic()

    def add(self, outcome: dict[str, Any]) -> None:
        """Queue a ``scored`` or ``failed`` outcome; commits when the batch is full or old enough."""
        self._pending.append(outcome)
        if len(self._pending) >= self.commit_every or time.monotonic() - self._since >= self.commit_seconds:
            self.flush()

    def flush(self) -> None:
        """Commit every queued outcome now; a batch the store refuses is retried one video at a time.

        A video whose rows the store still refuses is recorded ``failed`` with
        the store's reason (and listed in ``unstored``); a store that refuses
        even that (unreachable) raises.
        """
        from vkit.registry.errors import StoreError

        pending, self._pending, self._since = self._pending, [], time.monotonic()
        if not pending:
            return
        try:
            self._commit(pending)
            return
        except StoreError:
            if len(pending) == 1 and pending[0]["status"] == "failed":
                raise
        for outcome in pending:
            try:
                self._commit([outcome])
            except StoreError as err:
                reason = f"{outcome['path']}: its results cannot be stored: {err}"
                video = dict(outcome["video"] or dict(path=outcome["path"]), status="failed", error=reason)
                self._commit([dict(outcome, status="failed", error=reason, video=video, scores=[], events=[])])
                self.unstored.append(dict(path=outcome["path"], error=reason, was=outcome["status"]))

    def _commit(self, pending: list[dict[str, Any]]) -> None:
        ids = self.store.upsert_videos([o["video"] for o in pending])
        results = [dict(video_id=ids[o["path"]], status=o["status"], error=o["error"], scores=o["scores"],
                        events=o["events"], aggregates=o.get("aggregates")) for o in pending]
        if self.model_sha256 is None:
            payloads = self.store.add_video_results(self.run_id, results, segment_rows=self.segment_rows)
        else:
            payloads, dropped = self.store.add_leased_results(self.run_id, self.model_sha256, results,
                                                              segment_rows=self.segment_rows)
            outcomes = {ids[o["path"]]: o for o in pending}
            self.lost += [(outcomes[i]["path"], outcomes[i]["status"]) for i in dropped]
        for payload in payloads:
            if payload["status"] in ("scored", "failed"):  # the hook hears of scored and failed videos
                self.notify(payload)


def plan_jobs(store: Any, paths: Sequence[str], model_sha256: str) -> list[tuple[str, str | None]]:
    """Record ``paths`` in the videos table (new ones ``pending``) and pair each with the content this model scored there.

    A job's second item is the sha256 of the video's content when a run with
    checkpoint ``model_sha256`` scored it, else ``None``; the worker skips the
    video if the file still hashes to it. (``vkit score`` itself claims each
    video with a lease instead: :mod:`vkit.workflows.scoring.leases`.)
    """
    from vkit.workflows.scoring.leases import register_videos

    ids, _ = register_videos(store, paths)
    done = store.scored_video_ids(model_sha256)
    shas = {v["id"]: v["sha256"] for v in store.get_videos([p for p in ids if ids[p] in done])}
    return [(p, shas.get(ids[p])) for p in paths if p in ids]


# ----------------------------------------------------------------------------- progress
class _Progress:
    """Scoring progress through :mod:`vkit.core.progress` (a bar with videos/s, clips/s, failures and the ETA on a
    terminal, a closing line when piped, nothing under ``--json``), or nothing when not ``enabled``."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.bar, self.began = None, time.perf_counter()
        if enabled:
            from vkit.core.progress import Progress

            self.bar = Progress("scoring videos", total, unit="videos")

    def update(self, summary: ScoreSummary) -> None:
        if self.bar is None:
            return
        elapsed = max(time.perf_counter() - self.began, 1e-9)
        done = (summary.scored + summary.failed + summary.skipped + summary.left_failed + summary.duplicates
                + summary.changed)
        self.bar.advance(done - self.bar.done, status=f"{summary.clips / elapsed:.1f} clips/s  failed {summary.failed}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# ----------------------------------------------------------------------------- orchestration
def score_archive(
    task_name: str,
    archives: Sequence[str | Path],
    checkpoint: str | Path,
    *,
    db_url: str | None = None,
    plugins: Sequence[str] = (),
    options: ScoreOptions | None = None,
    progress: bool = False,
    retry_failed: bool = False,
    compressed: str | None = None,
) -> ScoreSummary:
    """Score every video under ``archives`` with ``task_name``'s scorer; returns the :class:`ScoreSummary`.

    Args:
        task_name: a task whose ``build_scorer`` returns a VideoScorer.
        archives: folders, files or glob patterns (see :func:`~vkit.workflows.scoring.inventory.find_videos`).
        checkpoint: a run id (its ``checkpoint`` artifact) or a ``.safetensors`` path.
        db_url: the store (default ``$VKIT_DB_URL`` or ``./vkit.db``).
        plugins: extra plugin modules (``--plugin``).
        options: engine, workers, batch size, device, commit cadence.
        progress: show a progress bar on stderr.
        retry_failed: redo videos this model failed on before (by default they
            stay failed while their content is unchanged; the summary counts them).
        compressed: score with the run's saved compressed model (``"final"``: the chain's
            final one, or a stage name such as ``"OnnxExport"``); its artifact's sha256 is the model resumed by.

    Jobs sharing the store and the checkpoint cooperate: each video is leased
    before it is decoded, so it is scored once whichever job gets it, and a
    killed job's videos are taken over (:mod:`vkit.workflows.scoring.leases`).

    Raises:
        ConfigError, CheckpointError, DataError: bad task, checkpoint or archive (before any run row is written).
    """
    from vkit.core.store import open_store
    from vkit.core.store.paths import display_text
    from vkit.hooks.manager import get_plugin_manager
    from vkit.workflows.scoring.inventory import inventory
    from vkit.core.run_checkpoint import resolve_checkpoint

    options = options or ScoreOptions()
    manager = get_plugin_manager(extra=tuple(plugins))
    task_cls = manager.get_task(task_name)
    found = inventory(archives)
    paths = found.files
    if not paths and not found.failures:
        raise DataError(f"archives {[str(a) for a in archives]}: no video files found")
    store = open_store(db_url)
    try:
        files = resolve_checkpoint(checkpoint, store)  # verified against the sha256 the store recorded
        ckpt = files.weights.resolve()
        if compressed is not None:
            from vkit.workflows.compressed import check_precision, stage_meta

            check_precision(stage_meta(files, compressed), options.precision)
        factory = functools.partial(build_task_scorer, task_cls.name, str(ckpt), options.device, tuple(plugins),
                                    compressed)
        scorer, precision = _in_precision(factory, options.precision, paths)
        if precision.precision != "fp32":
            from vkit.core.precision import scorer_in_precision

            factory = functools.partial(scorer_in_precision, factory, precision.precision)
        config = dict(archives=[str(a) for a in archives], checkpoint=str(ckpt), videos=len(paths), **asdict(options),
                      retry_failed=retry_failed, precision_used=precision.to_dict(),
                      compressed=getattr(scorer, "compressed", None) if compressed is not None else None)
        from vkit.workflows.run_finished import announced_run

        with announced_run(store, manager, task_cls, config, kind="score", model_sha256=scorer.model_sha256,
                           versions={"plugins": manager.versions()}) as run_id:
            summary = ScoreSummary(run_id=run_id, task=task_cls.name, db_url=store.url, engine=options.engine,
                                   videos=len(paths) + len(found.failures), precision=precision.precision)
            try:
                score_leased(store, run_id, scorer, factory, paths, found.failures, options, summary, manager,
                             retry_failed, progress)
            except BaseException:
                summary.status = "failed"
                raise
            summary.status = "finished"
    finally:
        store.close()
    for failure in summary.failures:  # names that are not UTF-8 print as \xNN, as stored
        failure["path"], failure["error"] = display_text(failure["path"]), display_text(failure["error"] or "")
    return summary


def score_leased(store: Any, run_id: int, scorer: Any, factory: Callable[[], Any], paths: Sequence[str],
                 unreadable: Sequence[tuple[str, str]], options: ScoreOptions, summary: ScoreSummary, manager: Any,
                 retry_failed: bool, progress: bool) -> None:
    """Score ``paths`` into run ``run_id`` in passes: claim, decode, score, write; then wait for and retry videos
    other jobs held. The engine under ``vkit score`` and ``ctx.score_videos`` (:mod:`vkit.workflows.scoring.video_engine`).

    SIGTERM stops it as Ctrl-C does (finished videos written, the run ``interrupted``, the workers shut down),
    and the decoding workers die with this process whatever kills it."""
    from vkit.core.processes import sigterm_interrupts
    from vkit.workflows.scoring.aggregates import store_group_aggregates
    from vkit.workflows.scoring.leases import Heartbeat, LeaseClaimer, LeasedStream, register_videos

    ids, unrecorded = register_videos(store, paths)
    _record_unreadable(store, run_id, unreadable, summary)
    for path, reason in unrecorded:
        _count(summary, dict(path=path, status="failed", error=f"{path}: {reason}", clips=0))
    url = store.engine.url.render_as_string(hide_password=False)
    claimer = LeaseClaimer(url, run_id, scorer.model_sha256, options.lease_seconds, retry_failed)
    writer = ResultWriter(store, run_id, manager.notify_video_scored, options.commit_every, options.commit_seconds,
                          model_sha256=scorer.model_sha256, segment_rows=not options.aggregate_only)
    bar = _Progress(len(paths), progress)
    stats: dict[str, Any] = {}
    began = time.perf_counter()
    pending = [(p, ids[p]) for p in paths if p in ids]
    progressed = time.monotonic()
    try:
        with sigterm_interrupts(), Heartbeat(store, run_id, options.lease_seconds), _engine_session(options):
            while pending:
                busy: list[tuple[str, int]] = []
                stream = LeasedStream(pending, scorer, claimer)
                if options.engine == "ray":
                    outcomes = _ray_leased(stream, factory, options)
                else:
                    outcomes = local_outcomes(pending, scorer, options, stats, stream=stream)
                for outcome in outcomes:
                    if outcome["status"] == "busy":
                        busy.append((outcome["path"], outcome["video_id"]))
                        continue
                    _count(summary, outcome)
                    if outcome["status"] not in ("skipped",):
                        writer.add(outcome)
                    bar.update(summary)
                writer.flush()
                _uncount_lost(summary, writer)
                if len(busy) < len(pending):
                    progressed = time.monotonic()
                elif time.monotonic() - progressed > 3 * options.lease_seconds:
                    summary.held_elsewhere = len(busy)  # live jobs keep renewing them: theirs to finish
                    break
                if busy:  # held by other live jobs: wait, then claim what is still not done
                    time.sleep(min(options.lease_seconds / 4, 1.0))
                    store.reap_stale_runs()
                pending = busy
        summary.aggregates = store_group_aggregates(store, run_id, scorer, list(ids.values()))
    except BaseException:
        writer.flush()  # every video that finished is kept
        raise
    finally:
        summary.seconds = time.perf_counter() - began
        summary.batch_size = stats.get("batch_size", options.batch_size)
        bar.close()


def _ray_leased(stream: Any, factory: Callable[[], Any], options: ScoreOptions) -> Iterator[dict[str, Any]]:
    """The Ray engine on leased videos: each claimed by an actor right before it decodes it, then scored there."""
    from vkit.workflows.scoring.ray_engine import ray_outcomes

    yield from ray_outcomes(stream.jobs, factory, options, claimer=stream.claimer)


def _engine_session(options: ScoreOptions) -> Any:
    """What stays up across passes: Ray (started once per job, not per pass) for the Ray engine."""
    import contextlib

    if options.engine != "ray":
        return contextlib.nullcontext()
    from vkit.workflows.scoring.ray_engine import ray_session

    return ray_session(options)


def _record_unreadable(store: Any, run_id: int, unreadable: Sequence[tuple[str, str]], summary: ScoreSummary) -> None:
    """Folders the inventory could not read: a ``failed`` video row and summary each, with the reason."""
    if not unreadable:
        return
    ids = store.upsert_videos([dict(path=p, status="failed", error=f"{p}: {why}") for p, why in unreadable])
    store.add_video_results(run_id, [dict(video_id=ids[p], status="failed", error=f"{p}: {why}", scores=[], events=[])
                                     for p, why in unreadable])
    for path, why in unreadable:
        _count(summary, dict(path=path, status="failed", error=f"{path}: {why}", clips=0))


def _uncount_lost(summary: ScoreSummary, writer: ResultWriter) -> None:
    """Videos whose lease another job took over while this one worked (their results were not written), and
    videos whose results the store refused (recorded ``failed``)."""
    for _, status in writer.lost:
        if status == "scored":
            summary.scored -= 1
        elif status == "failed":
            summary.failed -= 1
        elif status == "changed":
            summary.changed -= 1
        else:
            summary.duplicates -= 1
        summary.lost += 1
    for item in writer.unstored:
        if item["was"] == "scored":
            summary.scored -= 1
            _count(summary, dict(path=item["path"], status="failed", error=item["error"], clips=0))
    writer.lost.clear()
    writer.unstored.clear()


def _in_precision(factory: Callable[[], Any], requested: str, paths: Sequence[str]) -> tuple[Any, Any]:
    """The task's scorer in ``requested`` precision and the choice (printed on stderr; gated on the archive's
    first videos unless the scorer has its own ``validation_clips``)."""
    from vkit.core.precision import apply_precision, archive_validation

    scorer = factory()
    return apply_precision(scorer, requested, lambda: archive_validation(scorer, paths),
                           log=lambda line: click.echo(line, err=True))


def _count(summary: ScoreSummary, outcome: dict[str, Any]) -> None:
    status = outcome["status"]
    if status == "skipped" and outcome.get("previous") == "failed":
        summary.left_failed += 1
    elif status == "scored":
        summary.scored += 1
        summary.clips += outcome["clips"]
    elif status == "duplicate":
        summary.duplicates += 1
    elif status in ("failed", "changed"):  # both listed with their reason: not scored, and why
        if status == "failed":
            summary.failed += 1
        else:
            summary.changed += 1
        if len(summary.failures) < 50:
            summary.failures.append(dict(path=outcome["path"], error=outcome["error"]))
    else:
        summary.skipped += 1


# ----------------------------------------------------------------------------- CLI
class _BatchSize(click.ParamType):
    name = "N|auto"

    def convert(self, value: Any, param: Any, ctx: Any) -> int | str:
        if value == "auto" or (isinstance(value, int) and value >= 1):
            return value
        try:
            number = int(value)
        except (TypeError, ValueError):
            number = 0
        if number < 1:
            self.fail(f"{value!r}: expected a positive int or 'auto'", param, ctx)
        return number


BATCH_SIZE = _BatchSize()


@click.command("score")
@click.argument("task")
@click.argument("archives", nargs=-1, required=True)
@click.option("--checkpoint", required=True, metavar="RUN_OR_PATH", help="A run id or a .safetensors file.")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(0), help="Decoding processes (Ray: actors).")
@click.option("--batch-size", default="auto", show_default=True, type=BATCH_SIZE,
              help="Clips per inference batch, or 'auto': the fastest size up to 16, measured on the first batches.")
@click.option("--device", default="cpu", show_default=True, help="Torch device of the model.")
@click.option("--engine", type=click.Choice(ENGINES), default="local", show_default=True)
@click.option("--ray-address", default=None, metavar="ADDR", help="Ray cluster to join (default: start a local one).")
@click.option("--commit-every", default=8, show_default=True, type=click.IntRange(1), help="Videos per transaction.")
@click.option("--precision", type=click.Choice(("auto", "fp32", "bf16", "int8")), default="fp32", show_default=True,
              help="Model precision; auto: the fastest this CPU runs natively that passes the quality gate.")
@click.option("--retry-failed", is_flag=True,
              help="Retry videos this model failed on in earlier runs (by default they stay failed until they change).")
@click.option("--lease-seconds", default=120.0, show_default=True, type=click.FloatRange(min=1.0),
              help="How long a job's claim on a video lasts without renewal (cooperating jobs; a killed job's videos "
                   "are taken over after it).")
@click.option("--compressed", is_flag=True,
              help="Score with the run's compressed model (the chain's final one); resumed as a model of its own.")
@click.option("--stage", default=None, metavar="NAME",
              help="Score with this saved compression stage (e.g. OnnxExport: ONNX Runtime); implies --compressed.")
@click.option("--aggregate-only", is_flag=True,
              help="Privacy: store per-video and per-group aggregates only (no per-segment scores, no event rows).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON (no progress bar).")
@click.pass_context
def score_cmd(ctx: click.Context, task: str, archives: tuple[str, ...], checkpoint: str, workers: int, batch_size: int | str,
              device: str, engine: str, ray_address: str | None, commit_every: int, precision: str,
              retry_failed: bool, lease_seconds: float, compressed: bool, as_json: bool,
              aggregate_only: bool = False, stage: str | None = None) -> None:
    """Score every video in ARCHIVES (folders, files; a path that does not exist is a glob) with a trained TASK model.

    Resumable, and jobs sharing the store and checkpoint split the work (each video is leased before decoding).
    """
    import json

    from vkit.workflows.compressed import compressed_option

    obj = ctx.find_root().obj or {}
    options = ScoreOptions(workers=workers, batch_size=batch_size, device=device, engine=engine,
                           ray_address=ray_address, commit_every=commit_every, precision=precision,
                           lease_seconds=lease_seconds, aggregate_only=aggregate_only)
    summary = score_archive(task, archives, checkpoint, db_url=obj.get("db_url"), plugins=obj.get("plugins", ()),
                            options=options, progress=not as_json and sys.stderr.isatty(), retry_failed=retry_failed,
                            compressed=compressed_option(compressed, stage))
    data = summary.to_dict()
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
        return
    _print_summary(data)


def _print_summary(data: dict[str, Any]) -> None:
    from rich.table import Table

    from vkit.core.console import console as plain_console

    table = Table(title=f"{data['task']}: scoring run {data['run_id']}", title_justify="left")
    table.add_column("")
    table.add_column("value", overflow="fold")
    rows = [("videos", data["videos"]), ("scored", data["scored"]), ("skipped (already scored)", data["skipped"]),
            ("failed", data["failed"]),
            ("left failed (earlier runs)", data["left_failed"]),
            ("duplicates (content scored at another path)", data["duplicates"]),
            ("changed while scoring (scored next run)", data["changed"]),
            ("held by other jobs", data["held_elsewhere"]),
            ("clips", data["clips"]), ("time", f"{data['seconds']:.1f} s"),
            ("videos/s", data["videos_per_s"]), ("clips/s", data["clips_per_s"]), ("batch size", data["batch_size"]),
            ("precision", data["precision"]),
            ("aggregate rows", data["aggregates"]),
            ("engine", data["engine"]),
            ("run id", data["run_id"]), ("database", data["db_url"])]
    for key, value in rows:
        table.add_row(key, "" if value is None else str(value))
    console = plain_console()  # paths and errors print as text, brackets and all
    console.print(table)
    if data["left_failed"]:
        console.print(f"{data['left_failed']} video(s) failed in earlier runs and are unchanged: not retried "
                      f"(--retry-failed retries them; `vkit export` lists the reasons)")
    if data["failures"]:
        failed = Table(title="failed videos", title_justify="left")
        failed.add_column("path", overflow="fold")
        failed.add_column("reason", overflow="fold")
        for row in data["failures"][:20]:
            failed.add_row(row["path"], row["error"] or "")
        console.print(failed)


__all__ = ["ENGINES", "ResultWriter", "ScoreOptions", "ScoreSummary", "build_task_scorer",
           "local_outcomes", "plan_jobs", "score_archive", "score_cmd"]
