"""``vkit runs list|show|compare|delete``: look at, compare and remove stored runs.

Every command reads the store named by ``--db`` / ``$VKIT_DB_URL``; runs whose
process died on this machine are first marked ``interrupted``. ``--json``
prints the same data for scripts.

Example::

    vkit runs list --kind train --status finished     # with each run's main metric (e.g. test auc)
    vkit runs compare 3 7 --json        # metrics side by side (delta vs run 3), config differences
    vkit runs delete 3 --work-dir       # asks first (--yes: does not); its rows in one transaction, then its folder
"""
from __future__ import annotations

import json
import math
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import click

from vkit.core.run_checkpoint import MAX_RUN_ID
from vkit.registry.errors import StoreError, VkitError

#: ``--kind`` choices (``runs.kind``).
KINDS = ("train", "score", "predict", "watch", "pretrain", "serve")


# ----------------------------------------------------------------------------- output helpers
def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def _table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    from vkit.core.console import print_table

    print_table(title, columns, rows)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4f}"
    return "" if value is None else str(value)


def _store(ctx: click.Context, write: bool = False, listing: bool = False) -> Any:
    """The store of ``--db``, runs whose process died on this machine first marked ``interrupted``.

    For reading, a store migrated by a newer vkit is opened read-only and
    left as it is (a user who may only read still gets the listing). No
    command here creates a store: a missing SQLite file lists as empty
    (``listing``) or is a ``StoreError`` naming it.
    """
    from vkit.core.store import Store, open_store

    url = ctx.find_root().obj["db_url"]
    if write:
        store = open_store(url, create=False)
    else:
        store = open_store(url, read_only=True, create=listing)
        if store.schema.newer:
            return store
        store = Store(store.engine, store.schema)  # this vkit's schema: writable
    try:
        store.reap_stale_runs()
    except StoreError as err:
        click.echo(f"note: could not mark dead runs interrupted: {err}", err=True)
    return store


def _get_run(store: Any, run_id: int) -> dict[str, Any]:
    run = store.get_run(run_id)
    if run is None:
        raise StoreError(f"run {run_id} is not in the store at {store.url} (see `vkit runs list`)")
    return run


# ----------------------------------------------------------------------------- data
def flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    """A nested config as ``{"a.b.c": leaf}`` (lists are leaves).

    Example::

        >>> flatten({"train": {"epochs": 3, "lr": 0.1}, "seed": 0})
        {'train.epochs': 3, 'train.lr': 0.1, 'seed': 0}
    """
    if not isinstance(config, Mapping) or (prefix and not config):
        return {prefix: config} if prefix else {}
    flat: dict[str, Any] = {}
    for key, value in config.items():
        flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


_MISSING = "<missing>"


def compare_runs(store: Any, run_ids: Sequence[int]) -> dict[str, Any]:
    """Runs ``run_ids`` side by side: their rows, final metrics with deltas against the first, config differences.

    Returns:
        ``runs`` (id, task, kind, status, started_at), ``metrics`` (one row per
        ``split/key``, compression stages left out: ``values`` per run, ``deltas`` = value - first run's value,
        ``None`` where a run lacks it) and ``config`` (one row per flat key whose
        value differs: ``values`` per run, ``"<missing>"`` where a run lacks it).
    """
    if len(run_ids) < 2:
        raise VkitError(f"runs compare: give at least two runs, got {list(run_ids)}")
    runs = [_get_run(store, run_id) for run_id in run_ids]
    metrics = [{k: v for k, v in store.final_metrics(run_id).items() if not k.startswith("compression/")}
               for run_id in run_ids]  # the compression chain's per-stage rows are the report's table, not a result
    metric_rows = []
    for key in sorted(set().union(*metrics)):
        values = [m.get(key) for m in metrics]
        base = values[0]
        deltas = [None if base is None or v is None else v - base for v in values]
        metric_rows.append(dict(key=key, values=values, deltas=deltas))
    configs = [flatten(run["config"] or {}) for run in runs]
    config_rows = []
    for key in sorted(set().union(*configs)):
        values = [c.get(key, _MISSING) for c in configs]
        if any(json.dumps(v, sort_keys=True, default=str) != json.dumps(values[0], sort_keys=True, default=str)
               for v in values[1:]):
            config_rows.append(dict(key=key, values=values))
    brief = [{k: run[k] for k in ("id", "task", "kind", "status", "started_at", "model_sha256")} for run in runs]
    return dict(runs=brief, metrics=metric_rows, config=config_rows)


def main_metric(run: Mapping[str, Any], metrics: Mapping[str, float]) -> tuple[str, float] | None:
    """A run's headline ``(split/key, value)``: the metric its config chose (``checkpoint.metric``, else
    ``compression.metric``) on the test split, else on validation; else its first test metric; a
    pretraining run's last ``train/loss``; ``None`` when it logged none (a scoring or predict run).

    Example::

        main_metric(dict(config=dict(checkpoint=dict(metric="auc"))), {"test/auc": 0.98, "val/auc": 0.97})
        # ('test/auc', 0.98)
    """
    config = run.get("config") or {}
    chosen = [section.get("metric") for section in (config.get("checkpoint"), config.get("compression"))
              if isinstance(section, Mapping) and isinstance(section.get("metric"), str)]
    for key in [f"{split}/{name}" for name in chosen for split in ("test", "val")]:
        if key in metrics:
            return key, metrics[key]
    tests = sorted(k for k in metrics if k.startswith("test/"))
    if not tests and run.get("kind") == "pretrain" and "train/loss" in metrics:  # no test split: its last loss
        return "train/loss", metrics["train/loss"]
    return (tests[0], metrics[tests[0]]) if tests else None


def _metric_text(found: tuple[str, float] | None) -> str:
    if found is None:
        return ""
    split, key = found[0].split("/", 1)
    return f"{key} {_fmt(found[1])}" + ("" if split == "test" else f" ({split})")


def _safe_to_remove(folder: Path) -> bool:
    """Whether ``folder`` may be removed: not ``/``, the home folder, or the working directory or one of its parents."""
    resolved = folder.resolve()
    protected = {Path("/").resolve(), Path.home().resolve(), *Path.cwd().resolve().parents, Path.cwd().resolve()}
    return resolved not in protected


def delete_runs(store: Any, run_ids: Sequence[int], work_dir: bool = False) -> dict[str, Any]:
    """Delete runs ``run_ids`` with all their rows in one transaction, then (``work_dir``) their work folders.

    A folder is removed only when it is the run's own (its ``vkit-run.json``
    names this run and store, :func:`vkit.core.workdir.ownership`) and no run
    left in the store uses it; otherwise its files stay and ``kept`` says why.

    Returns:
        ``runs`` (ids), ``rows`` (rows removed per table) and ``removed``
        (work folders deleted) and ``kept`` (``{"path", "reason"}`` of each folder left).
    """
    counts = store.run_counts(run_ids)
    plans = {int(i): _folder_plan(store, int(i), run_ids) for i in run_ids} if work_dir else {}
    deleted = store.delete_runs(run_ids)
    removed, kept = [], []
    for run in deleted:
        plan = plans.get(run["id"])
        if plan is None:
            continue
        folder, reason = plan
        if reason is None and not _safe_to_remove(folder):
            reason = "the root, home or working folder (or one of its parents)"
        if reason is None:
            shutil.rmtree(folder)
            removed.append(str(folder))
        else:
            kept.append(dict(path=str(folder), reason=reason))
    return dict(runs=[r["id"] for r in deleted], rows=dict(counts, runs=len(deleted)), removed=removed, kept=kept)


def _folder_plan(store: Any, run_id: int, deleting: Sequence[int]) -> tuple[Path, str | None] | None:
    """Run ``run_id``'s work folder (absolute) and why it must stay (``None``: it may go); ``None``: it has none."""
    from vkit.core.workdir import ownership

    run = store.get_run(run_id)
    if run is None or not run.get("work_dir"):
        return None
    artifacts = store.run_artifacts(run_id)
    folder = Path(run["work_dir"])
    if not folder.is_absolute():  # recorded by an older vkit: the checkpoint's (absolute) folder tells which
        models = [Path(a["path"]).parent for a in artifacts if a["kind"] == "checkpoint"]
        if not models:
            return folder, "recorded relative to the folder the run started in, which is unknown"
        folder = models[-1]
    meta = [a["sha256"] for a in artifacts if a["kind"] == "checkpoint-meta"]
    reason = ownership(folder, store.identity, run_id, meta[-1] if meta else None)
    others = sorted(store.folder_references(folder) - {int(i) for i in deleting}) if reason is None else []
    if others:
        reason = f"also used by run(s) {', '.join(map(str, others))}"
    return folder, reason


# ----------------------------------------------------------------------------- commands
@click.group("runs")
def runs_group() -> None:
    """Inspect, compare and delete runs in the store."""


@runs_group.command("list")
@click.option("--task", help="Only runs of this task.")
@click.option("--status", type=click.Choice(("running", "finished", "failed", "interrupted")), help="Only runs in this status.")
@click.option("--kind", type=click.Choice(KINDS), help="Only training (vkit run), scoring, predict, watch, pretraining or serve runs.")
@click.option("--limit", default=20, show_default=True, help="At most this many (newest first; 0: all).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_context
def runs_list(ctx: click.Context, task: str | None, status: str | None, kind: str | None, limit: int,
              as_json: bool) -> None:
    """The most recent runs (``interrupted``: its process died without finishing it)."""
    store = _store(ctx, listing=True)
    runs = store.list_runs(limit=limit or None, task=task, status=status, kind=kind)
    for run in runs:
        found = main_metric(run, store.final_metrics(run["id"]))
        run["metric"] = dict(key=found[0], value=found[1]) if found else None
    if as_json:
        return _echo_json(runs)
    _table("runs", ["id", "task", "kind", "plugin", "status", "main metric", "started (UTC)", "finished (UTC)"],
           [[r["id"], r["task"], r["kind"], r["plugin"], r["status"],
             _metric_text((r["metric"]["key"], r["metric"]["value"]) if r["metric"] else None),
             _when(r["started_at"]), _when(r["finished_at"])] for r in runs])


def _when(moment: Any) -> str:
    """A timestamp as ``YYYY-MM-DD HH:MM:SS`` (UTC)."""
    return "" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S")


@runs_group.command("show")
@click.argument("run_id", type=click.IntRange(1, MAX_RUN_ID))
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_context
def runs_show(ctx: click.Context, run_id: int, as_json: bool) -> None:
    """One run: its row (kind, work dir, model sha256), final metrics, artifacts, row counts, scoring summary."""
    from vkit.workflows.export import describe_scoring_run

    store = _store(ctx)
    run = _get_run(store, run_id)
    metrics, artifacts = store.run_metrics(run_id), store.run_artifacts(run_id)
    scoring = describe_scoring_run(store, run_id)
    counts = store.run_counts([run_id])
    if as_json:
        return _echo_json(dict(run=run, metrics=metrics, artifacts=artifacts, rows=counts, scoring=scoring))
    _table(f"run {run_id}", ["field", "value"], [[k, v] for k, v in run.items() if k != "config"])
    last: dict[tuple[str, str], Any] = {}
    for m in metrics:
        last[(m["split"], m["key"])] = m
    _table("metrics (last step)", ["split", "key", "value", "step"],
           [[s, k, _fmt(m["value"]), m["step"]] for (s, k), m in sorted(last.items())])
    _table("artifacts", ["kind", "path", "bytes", "sha256"],
           [[a["kind"], a["path"], a["bytes"], a["sha256"][:12]] for a in artifacts])
    _table("rows", ["table", "rows"], [[k, v] for k, v in counts.items() if v])
    if scoring:
        _show_scoring(scoring)


def _show_scoring(scoring: dict[str, Any]) -> None:
    """The scoring part of `vkit runs show`: counts, top videos, top events, failures."""
    _table("scoring", ["", "count"], [[k, v] for k, v in scoring.get("counts", {}).items()])
    _table("top videos", ["path", "max", "mean", "events"],
           [[v.get("path"), _fmt(v.get("max_score")), _fmt(v.get("mean_score")), v.get("events")]
            for v in scoring.get("top_videos", [])])
    _table("top events", ["path", "kind", "start s", "end s", "score"],
           [[e.get("path"), e.get("kind"), _fmt(e.get("start")), _fmt(e.get("end")), _fmt(e.get("score"))]
            for e in scoring.get("top_events", [])])
    if scoring.get("failures"):
        _table("failed videos", ["path", "reason"], [[f.get("path"), f.get("error")] for f in scoring["failures"]])
    if scoring.get("duplicates"):
        _table("duplicates (content scored at another path, not rescored)", ["path", "of"],
               [[d.get("path"), d.get("error")] for d in scoring["duplicates"]])


@runs_group.command("compare")
@click.argument("run_ids", type=click.IntRange(1, MAX_RUN_ID), nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_context
def runs_compare(ctx: click.Context, run_ids: tuple[int, ...], as_json: bool) -> None:
    """Final metrics of RUN_IDS side by side (delta against the first) and their config differences."""
    data = compare_runs(_store(ctx), run_ids)
    if as_json:
        return _echo_json(data)
    first = run_ids[0]
    columns = ["metric", *[f"run {i}" for i in run_ids], *[f"Δ {i}-{first}" for i in run_ids[1:]]]
    _table("metrics (last step)", columns,
           [[m["key"], *map(_fmt, m["values"]), *[_signed(d) for d in m["deltas"][1:]]] for m in data["metrics"]])
    if data["config"]:
        _table("config differences", ["key", *[f"run {i}" for i in run_ids]],
               [[c["key"], *[json.dumps(v, default=str) if v != _MISSING else v for v in c["values"]]]
                for c in data["config"]])
    else:
        click.echo("configs: identical")


def _signed(delta: float | None) -> str:
    return "" if delta is None else ("nan" if math.isnan(delta) else f"{delta:+.4f}")


@runs_group.command("delete")
@click.argument("run_ids", type=click.IntRange(1, MAX_RUN_ID), nargs=-1, required=True)
@click.option("--work-dir", "work_dir", is_flag=True,
              help="Also remove each run's work folder (checkpoints, report), when its vkit-run.json names the run "
                   "and no other run uses it.")
@click.option("--yes", "-y", is_flag=True, help="Delete without asking (needed when stdin is not a terminal).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_context
def runs_delete(ctx: click.Context, run_ids: tuple[int, ...], work_dir: bool, yes: bool, as_json: bool) -> None:
    """Delete RUN_IDS and all their rows in one transaction (refused while one is running); asks first unless --yes."""
    store = _store(ctx, write=True)
    runs = _deletable(store, run_ids)
    if not yes:
        _confirm_delete(runs, work_dir)
    result = delete_runs(store, run_ids, work_dir=work_dir)
    if as_json:
        return _echo_json(result)
    rows = ", ".join(f"{table} {n}" for table, n in result["rows"].items() if n)
    click.echo(f"deleted runs {result['runs']}: {rows}")
    for folder in result["removed"]:
        click.echo(f"removed {folder}")
    for folder in result["kept"]:
        click.echo(f"kept {folder['path']}: {folder['reason']}")


def _deletable(store: Any, run_ids: Sequence[int]) -> list[dict[str, Any]]:
    """The runs to delete, checked as ``Store.delete_runs`` checks them (before asking): all known, none running."""
    ids = sorted({int(i) for i in run_ids})
    runs = {i: store.get_run(i) for i in ids}
    missing = [i for i, run in runs.items() if run is None]
    if missing:
        raise StoreError(f"delete: runs {missing} are not in store {store.url}; nothing deleted")
    running = [i for i, run in runs.items() if run["status"] == "running"]
    if running:
        raise StoreError(f"delete: runs {running} are still running; stop them first (nothing deleted)")
    return [runs[i] for i in ids]


def _interactive() -> bool:
    """Whether stdin is a terminal a question can be asked on."""
    import sys

    try:
        return bool(sys.stdin.isatty())
    except (AttributeError, ValueError):
        return False


def _confirm_delete(runs: Sequence[Mapping[str, Any]], work_dir: bool) -> None:
    """Ask on the terminal; refuse (a VkitError, exit 1) when stdin is not one: a script must say ``--yes``."""
    from vkit.core.console import console

    what = "their rows" + (" and their own work folders" if work_dir else "")
    if not _interactive():
        raise VkitError(f"runs delete: not deleting runs {[r['id'] for r in runs]} without confirmation: stdin is not "
                        "a terminal to ask on; add --yes to delete without asking")
    for run in runs:
        console().print(f"run {run['id']}: {run['kind']} {run['task']} ({run['status']}, started {_when(run['started_at'])})",
                        soft_wrap=True)
    if not click.confirm(f"Delete {len(runs)} run(s) and {what}?", default=False):
        click.echo("nothing deleted", err=True)
        raise click.exceptions.Exit(1)


__all__ = ["compare_runs", "delete_runs", "flatten", "main_metric", "runs_group"]
