"""``vkit run TASK``: resolve the task, merge its config, open a store row, run the core lifecycle, report.

Example::

    result = run_task("medical-diagnosis", overrides=["train.epochs=2"])
    print(result.run_id, result.metrics["test/auc"], result.db_url)

Whatever happens inside the task, the run row ends ``finished`` or
``failed`` with the error — never left ``running`` — and every plugin's
``vkit_run_finished`` hook hears about it.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class RunResult:
    """What a finished run hands back to the CLI (and to scripts)."""

    run_id: int
    task: str
    status: str
    metrics: dict[str, float]
    db_url: str
    work_dir: Path
    summary: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def default_data_root() -> Path:
    """Where embedded data sets are generated: ``$VKIT_DATA`` or ``~/.cache/vkit/data``."""
    return Path(os.environ.get("VKIT_DATA", Path.home() / ".cache" / "vkit" / "data"))


def run_task(
    task_name: str,
    *,
    config_file: str | Path | None = None,
    overrides: Sequence[str] = (),
    data: str | Path | None = None,
    db_url: str | None = None,
    work_dir: str | Path | None = None,
    data_root: str | Path | None = None,
    regenerate: bool = False,
    skip_bad: bool = False,
    plugins: Sequence[str] = (),
    echo: Callable[[str], Any] = print,
    score_options: Any = None,
    resume: int | None = None,
) -> RunResult:
    """Run ``task_name`` end to end and return its :class:`RunResult`; raises VkitError on bad input.

    ``data`` is the user's own data (a datalist, a folder): it sets the task's ``data_key``.
    ``work_dir``: the run's folder, made absolute and refused when it already holds a run's
    files; by default a fresh ``<cwd>/work_dirs/<task>-run<N>-<store identity>``
    (:mod:`vkit.core.workdir`). Either way it gets a ``vkit-run.json`` naming the store and run.
    ``score_options`` (a :class:`~vkit.workflows.scoring.score.ScoreOptions`: engine ``local``/``ray``,
    workers, batch size) is how videos a task scores through ``ctx.score_videos`` run: on the
    engine of ``vkit score`` (:mod:`vkit.workflows.scoring.video_engine`).

    ``resume`` (``vkit run TASK --resume RUN``) continues interrupted run ``RUN`` in its own row, folder
    and config from the epoch after its last finished one (:mod:`vkit.workflows.resume`).

    A failure inside the task is recorded on the run row and re-raised.
    """
    from vkit.core.store import open_store
    from vkit.hooks.manager import get_plugin_manager
    from vkit.workflows.config import build_config, parse_overrides

    manager = get_plugin_manager(extra=plugins)
    task_cls = manager.get_task(task_name)
    if resume is not None:
        from vkit.workflows.resume import refuse_changes

        refuse_changes(resume, config=config_file, set=overrides, data=data, work_dir=work_dir)
    values = parse_overrides(overrides)  # a bad --set fails here, before the plugins import torch
    if data is not None:
        values[task_cls.data_key] = os.path.abspath(data)  # a path: never parsed as a value (a comma stays a comma)
    if not str(config_file or "").lower().endswith(".py"):  # keys first, before plugins register (a .py config runs once)
        build_config(task_cls.default_config, config_file, values, free_keys=task_cls.free_keys, check_args=False)
    manager.register_components(require=task_cls.plugin)  # then plugin components' arguments are checked too
    cfg = build_config(task_cls.default_config, config_file, values, free_keys=task_cls.free_keys)
    from vkit.core.extras import check_config_extras

    check_config_extras(cfg)  # e.g. an OnnxExport stage without vkit[onnx]: refused before the run row
    store = open_store(db_url)
    resume_dir = None
    if resume is not None:
        from vkit.workflows.resume import resumed_run

        cfg, resume_dir = resumed_run(store, resume, task_cls)  # the run's own config and (checked) folder
    from vkit.core.lifecycle import run_lifecycle
    from vkit.core.processes import sigterm_interrupts
    from vkit.core.progress import above_bars, lines_to
    from vkit.core.task import RunContext
    from vkit.core.weights.check import check_weights
    from vkit.core.workdir import check_work_dir_free, mark_work_dir, new_work_dir

    task = task_cls()
    chosen = resume_dir or (check_work_dir_free(work_dir) if work_dir else None)  # before the run row: a refused folder adds none
    checked = check_weights(cfg, store)  # every pretrained= read and verified before the run row: a bad one adds none
    result: RunResult | None = None
    ctx: RunContext | None = None
    try:
        with sigterm_interrupts(), store.track_run(  # `kill` stops a run as Ctrl-C does: interrupted, resumable
                task=task_cls.name, plugin=task_cls.plugin, config=cfg.to_dict(), seed=cfg.get("seed"),
                versions={"plugins": manager.versions()}, resume=resume) as run_id:
            work = chosen or new_work_dir("work_dirs", task_cls.name, run_id, store.identity)
            if resume_dir is None:
                mark_work_dir(work, store.identity, run_id, task_cls.name)  # the folder's sidecar: whose it is
            store.set_work_dir(run_id, work)
            ctx = RunContext(store, run_id, work, Path(data_root) if data_root else default_data_root(),
                             regenerate=regenerate, skip_bad=skip_bad, echo=above_bars(echo))
            ctx.resume = resume is not None
            ctx.checked_weights = checked  # recorded on the run by the lifecycle, its files reused for the build
            ctx.video_engine = _video_engine(store, task_cls, manager, score_options, run_id, plugins)
            result = RunResult(run_id=run_id, task=task_cls.name, status="running", metrics={}, db_url=store.url,
                               work_dir=work)
            with lines_to(ctx.echo):  # generators' and feature extraction's lines go where the run's do
                result.metrics = run_lifecycle(task, cfg, ctx)
        result.status = "finished"
    except BaseException as err:
        if result is not None:
            result.status = "interrupted" if isinstance(err, KeyboardInterrupt) else "failed"
            result.error = f"{type(err).__name__}: {err}"
        raise
    else:  # after the row is closed: the page shows the run's final status and end time
        report = _write_report(ctx, result, manager)  # never raises: a failed report does not fail the run
        if report is not None:
            ctx.summary["report"] = report
    finally:
        if result is not None and ctx is not None:
            result.summary = ctx.summary
            manager.notify_run_finished(
                dict(id=result.run_id, task=task_cls.name, kind="train", status=result.status, error=result.error,
                     metrics=result.metrics, db=store.url,
                     report=str(ctx.summary["report"]) if ctx.summary.get("report") else None))
    return result


def _video_engine(store: Any, task_cls: Any, manager: Any, options: Any, run_id: int, plugins: Sequence[str]) -> Any:
    """``ctx.video_engine``: the engine of ``vkit score`` with this run's options."""
    import functools

    from vkit.workflows.scoring.score import ScoreOptions
    from vkit.workflows.scoring.video_engine import engine_score_videos

    return functools.partial(engine_score_videos, store=store, task=task_cls.name, plugin=task_cls.plugin,
                             manager=manager, options=options or ScoreOptions(), parent_run=run_id,
                             plugins=tuple(plugins))


def _write_report(ctx: Any, result: RunResult, manager: Any) -> Path | None:
    """The run's HTML report under ``work_dir/report``, built from the store plus the task's own sections.

    The work is done by now: a report that fails is recorded on the run (``report-error`` artifact, the
    summary's ``report error``), warned about, and ``None`` is returned; the run still ends ``finished``.
    """
    from vkit.core.reporting import record_report_error
    from vkit.workflows.report import write_run_report

    try:
        sections = list(dict(ctx.report).get("sections", ()))
        return write_run_report(ctx.store, result.run_id, ctx.work_dir / "report", sections, manager=manager,
                                warn=lambda line: ctx.echo(f"warning: {line}"))
    except Exception as err:  # noqa: BLE001 - any report failure; Ctrl-C still interrupts the run
        ctx.summary["report error"] = record_report_error(ctx.store, result.run_id, ctx.work_dir, err, ctx.echo)
        return None


__all__ = ["RunResult", "default_data_root", "run_task"]
