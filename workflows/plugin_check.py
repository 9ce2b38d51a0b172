"""``vkit plugins check NAME``: does a plugin conform? One line per check, pass or fail with the reason.

Checks, in order:

1. **loads**: the plugin is discovered, imports and matches the hookspecs.
2. **hook NAME**: each hook it implements returns what its spec says
   (``vkit_tasks``: Task subclasses or ``None``; ``vkit_cli_commands``:
   ``click`` commands or ``None``; the others: ``None``) without raising.
3. **component REGISTRY.NAME**: every registered component builds from its
   default config (``dict(type=NAME)``, or ``smoke_config()`` when the class
   has that classmethod; heads get ``in_dim`` and fusions ``in_dims`` the way
   ``VideoModel`` passes them).
4. **metric NAME**: the metric class has its own docstring and no other
   METRICS registry in the tree (mmengine's, mmaction2's) holds its name.
5. **task NAME config / smoke run**: the default config plus
   ``Task.smoke_overrides`` validates, and the task runs once on tiny data
   against a temporary SQLite store (:func:`run_task_smoke`).
   **task NAME predict** (a task declaring ``predict``): ``vkit predict``
   of one file of that run's data gives the run's own test prediction for it
   (its probabilities and class, or a regression model's value; :func:`predict_smoke`).
   **task NAME score** (a task declaring ``score``):
   ``vkit score`` (local engine) scores two videos of that data and a re-run
   skips both (:func:`score_smoke`).
6. **no clashes**: no task, command or component name of this plugin clashes with another plugin's.

Example::

    results = check_plugin("acme")
    print(format_results(results))
    assert all(r.ok for r in results)
"""
from __future__ import annotations

import inspect
import json
import logging
import tempfile
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import click

from vkit.registry.errors import ConfigError, VkitError, did_you_mean

__all__ = ["CheckResult", "check_plugin", "format_results", "plugins_check_cmd", "predict_smoke", "run_task_smoke",
           "score_smoke"]

log = logging.getLogger("vkit.plugins.check")

#: Sample payloads the notification hooks are called with (marked as coming from the check).
SAMPLE_RUN = dict(id=0, task="vkit-plugins-check", status="finished", error=None, metrics={"test/accuracy": 1.0},
                  db="sqlite:///:memory:", report=None)
SAMPLE_VIDEO = dict(path="vkit-plugins-check.mp4", sha256="0" * 64, status="scored", error=None, max_score=0.5,
                    mean_score=0.25, events=[])
_CLASH_WORDS = ("already declared by", "already registered by", "overrode")


@dataclass(frozen=True)
class CheckResult:
    """One line of the report.

    Attributes:
        check: what was checked, e.g. ``"component HEADS.AcmeHead"``.
        ok: passed.
        reason: why it failed, or a short note on what passed.
        traceback: the formatted traceback of the failure, if one raised (``vkit --debug plugins check`` prints it).
    """

    check: str
    ok: bool
    reason: str = ""
    traceback: str = ""

    def line(self) -> str:
        """``PASS check: reason`` / ``FAIL check: reason``."""
        return f"{'PASS' if self.ok else 'FAIL'}  {self.check}" + (f": {self.reason}" if self.reason else "")


# ---------------------------------------------------------------------- smoke runs
def run_task_smoke(task: str | type, overrides: Sequence[str] = (), tmp_path: str | Path | None = None, *,
                   plugins: Sequence[str] = (), db_url: str | None = None) -> Any:
    """Run a task once on tiny settings through ``vkit run``'s workflow; return its finished ``RunResult``.

    The task's ``smoke_overrides`` come first, then ``overrides``. The store is
    SQLite under ``tmp_path`` (or ``db_url``), the work dir and the data cache
    too. A task that raises re-raises; a run that does not end ``finished``
    is an ``AssertionError``.

    Args:
        task: a task name or a ``Task`` subclass declared by a loaded plugin.
        overrides: extra ``--set`` strings.
        tmp_path: folder for the store, work dir and data (a new temporary folder when ``None``).
        plugins: module paths to load as plugins (``--plugin``).
        db_url: a store URL instead of ``tmp_path/vkit.db`` (e.g. ``vkit_store.url``).

    Example::

        result = run_task_smoke("acme-task", ["train.lr=0.01"], tmp_path=tmp_path)
        assert result.metrics["test/accuracy"] >= 0
    """
    from vkit.hooks.manager import get_plugin_manager
    from vkit.workflows.run import run_task

    manager = get_plugin_manager(extra=plugins)
    name = task if isinstance(task, str) else getattr(task, "name", "")
    task_cls = manager.get_task(name) if isinstance(task, str) else manager.tasks().get(name)
    if task_cls is None or (not isinstance(task, str) and task_cls is not task):
        raise ConfigError(f"run_task_smoke: task class {task!r} (name {name!r}) is not declared by a loaded plugin; "
                          f"install the plugin or pass plugins=['your.plugin.module']")
    root = Path(tmp_path) if tmp_path is not None else Path(tempfile.mkdtemp(prefix="vkit-smoke-"))
    root.mkdir(parents=True, exist_ok=True)
    result = run_task(task_cls.name, overrides=[*task_cls.smoke_overrides, *overrides],
                      db_url=db_url or f"sqlite:///{root / 'vkit.db'}",
                      work_dir=tempfile.mkdtemp(prefix="work-", dir=root),  # a fresh folder each call
                      data_root=root / "data", plugins=plugins,
                      echo=lambda *args, **kwargs: log.debug("%s", " ".join(map(str, args))))
    if result.status != "finished":
        raise AssertionError(f"task {task_cls.name!r}: run {result.run_id} ended {result.status!r}: {result.error}")
    return result


# ---------------------------------------------------------------------- checks
def _hook_checks(manager: Any, name: str) -> list[CheckResult]:
    """Call each hook ``name`` implements on its own and compare the result with the spec.

    The manager's own findings for that hook (a bad task name, a command
    without a name) count too; clashes are reported by :func:`_clash_check`.
    """
    import click as click_module

    from vkit.core.task import Task

    item_checks: dict[str, Callable[[Any], bool]] = {
        "vkit_tasks": lambda obj: isinstance(obj, type) and issubclass(obj, Task),
        "vkit_cli_commands": lambda obj: isinstance(obj, click_module.Command),
    }
    expected = {"vkit_tasks": "a list of Task subclasses or None",
                "vkit_cli_commands": "a list of click.Command or None"}
    from vkit.core.reporting import ReportSection

    item_checks["vkit_report_sections"] = lambda obj: isinstance(obj, ReportSection)
    expected["vkit_report_sections"] = "a list of vkit.core.reporting.ReportSection or None"
    kwargs = dict(run=dict(SAMPLE_RUN), video=dict(SAMPLE_VIDEO), registries=None, store=None,
                  path=Path(SAMPLE_VIDEO["path"]))  # vkit_preview: a missing file gives None; the sample run is no task's
    results = []
    for hook in sorted(h for h in dir(manager.pm.hook) if h.startswith("vkit_")):
        impls = [i for i in getattr(manager.pm.hook, hook).get_hookimpls() if i.plugin_name == name]
        for impl in impls:
            if hook == "vkit_register_components":
                continue  # called through the manager below (it records clashes and rolls back)
            try:
                value = impl.function(*(kwargs[arg] for arg in impl.argnames))
            except Exception as err:
                results.append(CheckResult(f"hook {hook}", False, f"raised {type(err).__name__}: {err}", _tb(err)))
                continue
            if hook in item_checks:
                items = value if isinstance(value, list | tuple) else None
                bad = ([] if value is None else [value]) if items is None else [o for o in items if not item_checks[hook](o)]
                why = f"returned {_short(bad[0])}, expected {expected[hook]}" if bad else ""
            elif hook == "vkit_store_schema":
                from vkit.core.store.plugin_schema import PluginSchema

                why = ("" if value is None or isinstance(value, PluginSchema)
                       else f"returned {_short(value)}, expected a vkit.core.store.plugin_schema.PluginSchema or None")
            else:
                why = "" if value is None else f"returned {_short(value)}, expected None"
            found = [f.message for f in manager.errors if f.plugin == name and f.stage == hook
                     and not any(w in f.message for w in _CLASH_WORDS)]
            why = "; ".join([why, *found] if why else found)
            results.append(CheckResult(f"hook {hook}", not why, why or "returns what its spec says"))
    return results


def _default_args(key: str, cls: type) -> dict[str, Any]:
    """What ``VideoModel`` fills in when it builds a head (``in_dim``) or a fusion (``in_dims``)."""
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return {}
    if key == "HEADS" and "in_dim" in params:
        return dict(in_dim=8)
    if key == "FUSIONS" and "in_dims" in params:
        return dict(in_dims={"video": 8, "audio": 4})
    return {}


def _component_checks(manager: Any, name: str, registered: dict[str, list[str]]) -> list[CheckResult]:
    from vkit.registry.registries import REGISTRIES

    results = []
    for key, names in sorted(registered.items()):
        registry = REGISTRIES[key]
        for component in names:
            label = f"component {key}.{component}"
            cls = registry.module_dict.get(component)
            if not inspect.isclass(cls):
                results.append(CheckResult(label, True, "a function, not built"))
                continue
            smoke = getattr(cls, "smoke_config", None)
            try:
                cfg = dict(smoke()) if callable(smoke) else {}
                registry.build(dict(cfg, type=component), default_args=_default_args(key, cls))
            except Exception as err:
                how = "smoke_config()" if callable(smoke) else "dict(type=...) (add a smoke_config() classmethod)"
                results.append(CheckResult(label, False, f"does not build from {how}: {type(err).__name__}: {err}",
                                           _tb(err)))
                continue
            results.append(CheckResult(label, True, "builds from " + ("smoke_config()" if callable(smoke) else "its defaults")))
            if key == "METRICS":
                results.append(_metric_check(component, cls, registry))
    return results


def _metric_check(component: str, cls: type, registry: Any) -> CheckResult:
    label = f"metric {component}"
    if not (cls.__dict__.get("__doc__") or "").strip():
        return CheckResult(label, False, f"class {cls.__module__}.{cls.__qualname__} has no docstring; "
                                         "say what it computes and the keys it reports")
    root = registry.parent
    others = [r for r in [root, *(root.children.values() if root is not None else [])]
              if r is not None and r is not registry and component in r.module_dict]
    if others:
        where = ", ".join(f"{r.name!r} (scope {r.scope!r})" for r in others)
        return CheckResult(label, False, f"name {component!r} is also registered in {where}; pick a unique name")
    from vkit.core.capabilities import metric_problem

    why = metric_problem(cls)  # what it declares in ``provides`` must be there
    if why:
        return CheckResult(label, False, why)
    return CheckResult(label, True, "documented, unique name")


def _task_checks(manager: Any, name: str, smoke: bool, tmp_dir: Path | None, extra: Sequence[str]) -> list[CheckResult]:
    from vkit.core.task import Task
    from vkit.workflows.config import build_config

    results = []
    for task in sorted((t for t in manager.tasks().values() if t.plugin == name), key=lambda t: t.name):
        try:
            build_config(task.default_config, None, list(task.smoke_overrides), free_keys=task.free_keys)
        except VkitError as err:
            results.append(CheckResult(f"task {task.name} config", False, f"default config + smoke_overrides: {err}"))
            continue
        results.append(CheckResult(f"task {task.name} config", True, "default config and smoke_overrides validate"))
        if task.datasets is Task.datasets:
            results.append(CheckResult(f"task {task.name} smoke run", False,
                                       "the task does not implement datasets(cfg, ctx) (the lifecycle needs its data)"))
            continue
        if not smoke:
            continue
        with tempfile.TemporaryDirectory(prefix="vkit-check-", dir=tmp_dir) as folder:
            result = _guarded(results, f"task {task.name} smoke run", lambda: run_task_smoke(task, tmp_path=folder,
                                                                                            plugins=extra))
            if result is None:
                continue
            shown = ", ".join(f"{k}={v:.3g}" for k, v in sorted(result.metrics.items())[:3])
            results[-1] = CheckResult(f"task {task.name} smoke run", True, f"finished ({shown or 'no metrics'})")
            if "predict" in task.capabilities:  # declared, and checked against the methods when the plugin loaded
                _guarded(results, f"task {task.name} predict", lambda: predict_smoke(task, result, plugins=extra))
            if "score" in task.capabilities:
                # a store of its own: the run's evaluator may have scored the same videos (a content this model
                # scored is recorded as a duplicate, not scored again)
                fresh = f"sqlite:///{Path(folder) / 'score-check.db'}"
                _guarded(results, f"task {task.name} score",
                         lambda: score_smoke(task, result, Path(folder), plugins=extra, db_url=fresh))
    return results


def _guarded(results: list[CheckResult], label: str, step: Callable[[], Any]) -> Any:
    """Run ``step``; append a PASS (its ``str`` result as the note) or a FAIL with the error; return its value."""
    try:
        value = step()
    except BaseException as err:  # noqa: BLE001 - a crashing step is what the check reports
        if isinstance(err, KeyboardInterrupt):
            raise
        results.append(CheckResult(label, False, f"{type(err).__name__}: {err}", _tb(err)))
        return None
    results.append(CheckResult(label, True, value if isinstance(value, str) else ""))
    return value


# ---------------------------------------------------------------------- score and predict smoke checks
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v")
#: How far ``vkit predict`` may differ from the run's own test prediction for the same file.
PREDICT_TOLERANCE = 1e-4


def _checkpoint(result: Any) -> Path:
    path = Path(result.summary.get("checkpoint") or Path(result.work_dir) / "model.safetensors")
    if not path.is_file():
        raise AssertionError(f"run {result.run_id} wrote no checkpoint at {path}")
    return path


def _data_files(result: Any, suffixes: Sequence[str] | None = None) -> list[Path]:
    """The files of the smoke run's data (``summary["data"]``: its index file or folder), sorted; index files left out."""
    data = result.summary.get("data")
    if not data:
        return []
    root = Path(data) if Path(data).is_dir() else Path(data).parent
    files = sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")
                   and p.suffix.lower() not in (".json", ".csv", ".txt"))
    return [p for p in files if suffixes is None or p.suffix.lower() in suffixes]


def predict_smoke(task: Any, result: Any, *, plugins: Sequence[str] = ()) -> str:
    """``vkit predict`` one file of a finished smoke run's data and compare it with that run's own test prediction.

    The file is one whose name (up to its first ``.``) is the ``item_id`` of a
    test prediction row of the run: ``prediction_dataset`` must read it as the
    task's dataset did (same frames, same preprocessing), give it the same
    ``case_id``, and the decision must use the run's fitted threshold.
    Returns a note; raises ``AssertionError`` (or the task's error) on a difference.

    Example::

        result = run_task_smoke("acme-task", tmp_path=tmp_path)
        predict_smoke(manager.get_task("acme-task"), result)
    """
    from vkit.core.store import open_store
    from vkit.workflows.predict import predict_task

    tested = {row["item_id"]: row for row in open_store(result.db_url).run_predictions(result.run_id, "test")}
    if not tested:
        raise AssertionError(f"run {result.run_id} stored no test predictions (the metric's prediction_rows())")
    files = [p for p in _data_files(result) if p.name.split(".")[0] in tested]
    if not files:
        raise AssertionError(f"no file of the smoke data ({result.summary.get('data')}) is named after a test item "
                             f"(e.g. {sorted(tested)[0]!r}); name the files by their case_id, so predict can be compared")
    path = files[0]
    _, rows = predict_task(task.name, _checkpoint(result), [str(path)], db_url=result.db_url, plugins=plugins)
    if len(rows) != 1:
        raise AssertionError(f"predict {path.name}: expected 1 row, got {len(rows)}")
    got, want = rows[0], tested[path.name.split(".")[0]]
    if got["item_id"] != want["item_id"]:
        raise AssertionError(f"predict {path.name}: item_id {got['item_id']!r}, the run's test row says {want['item_id']!r}")
    key = "value" if "value" in (want.get("values") or {}) else "probs"  # a regression model's values, or probs
    mine, theirs = got["values"].get(key), (want.get("values") or {}).get(key)
    if theirs is None or mine is None or len(mine) != len(theirs):
        raise AssertionError(f"predict {path.name}: {key} {mine!r} cannot be compared with the test row's {theirs!r}")
    diff = max(abs(float(a) - float(b)) for a, b in zip(mine, theirs))
    if key == "value":
        if not diff <= PREDICT_TOLERANCE * max(1.0, *(abs(float(v)) for v in theirs)):
            raise AssertionError(f"predict {path.name}: values {[round(float(v), 4) for v in mine]} differ from the "
                                 f"run's test row {[round(float(v), 4) for v in theirs]} (max diff {diff:.2g}); the "
                                 "prediction dataset must sample and preprocess like the task's dataset")
        return f"{path.name}: same predicted value as the run's test row (max diff {diff:.1g})"
    if diff > PREDICT_TOLERANCE or got["prediction"] != want["prediction"]:
        raise AssertionError(f"predict {path.name}: probs {[round(float(v), 4) for v in mine]} / class {got['prediction']} "
                             f"differ from the run's test row {[round(float(v), 4) for v in theirs]} / class "
                             f"{want['prediction']} (max diff {diff:.2g}); the prediction dataset must sample and "
                             "preprocess like the task's dataset, and decide with the run's fitted threshold")
    return f"{path.name}: same probabilities and class as the run's test row (max diff {diff:.1g})"


def score_smoke(task: Any, result: Any, folder: Path, *, plugins: Sequence[str] = (),
                db_url: str | None = None) -> str:
    """Score two videos of a finished smoke run's data with ``vkit score`` (local engine), then again: all skipped.

    Args:
        task: the task class.
        result: the smoke run's ``RunResult`` (its checkpoint and data are used).
        folder: a scratch folder (the two videos are copied under it).
        plugins: ``--plugin`` modules.
        db_url: the store to score into (default: the run's; a video whose content the run's model already
            scored there, e.g. in the run's own evaluation, is a duplicate and not scored again).

    Example::

        score_smoke(manager.get_task("acme-task"), result, tmp_path)   # 'scored 2 videos (8 segments), ...'
    """
    import shutil

    from vkit.core.store import open_store
    from vkit.workflows.scoring.score import ScoreOptions, score_archive

    videos = _data_files(result, VIDEO_SUFFIXES)[:2]
    if len(videos) < 2:
        raise AssertionError(f"the smoke data ({result.summary.get('data')}) holds {len(videos)} video(s); "
                             "the score check needs 2 (generate_data should write videos the scorer reads)")
    archive = folder / "score-check"
    archive.mkdir(exist_ok=True)
    for video in videos:
        shutil.copy2(video, archive / video.name)
    options = ScoreOptions(workers=0, batch_size=2)
    db_url = db_url or result.db_url
    args = dict(db_url=db_url, plugins=plugins, options=options)
    first = score_archive(task.name, [archive], _checkpoint(result), **args)
    if (first.scored, first.failed) != (2, 0):
        raise AssertionError(f"vkit score: scored {first.scored}, failed {first.failed} of 2 videos: {first.failures}")
    rows = open_store(db_url, read_only=True).video_scores(first.run_id)
    if len(rows) != first.clips:
        raise AssertionError(f"vkit score: {first.clips} segments scored but {len(rows)} score rows stored")
    again = score_archive(task.name, [archive], _checkpoint(result), **args)
    if (again.scored, again.skipped) != (0, 2):
        raise AssertionError(f"vkit score re-run: scored {again.scored}, skipped {again.skipped} (expected 0 and 2: "
                             "a video this model scored is skipped)")
    return f"scored 2 videos ({first.clips} segments stored); the re-run skipped both"


def _clash_check(manager: Any, name: str) -> CheckResult:
    mine = [f.message for f in manager.errors if any(w in f.message for w in _CLASH_WORDS)
            and (f.plugin == name or f'plugin "{name}"' in f.message or f"declared by {name};" in f.message)]
    return CheckResult("no clashes", not mine, "; ".join(mine) or "no task, command or component name clashes")


def check_plugin(name: str, *, extra: Sequence[str] = (), smoke: bool = True,
                 tmp_dir: str | Path | None = None, reserved: Sequence[str] = ()) -> list[CheckResult]:
    """Run every conformance check on the plugin ``name``; see the module docstring for the list.

    Args:
        name: the plugin's name (its entry-point name, or the module path given with ``--plugin``).
        extra: module paths to load as plugins (``--plugin``).
        smoke: run each task once on tiny data (the slow part).
        tmp_dir: where the smoke runs' temporary folders go.
        reserved: command names a plugin command must not take (the CLI's built-ins).
    """
    from vkit.hooks.manager import get_plugin_manager

    manager = get_plugin_manager(extra=extra)
    infos = {info.name: info for info in manager.plugins()}
    if name not in infos:
        return [CheckResult("loads", False, f"no plugin {name!r}{did_you_mean(name, infos)}; "
                                            f"discovered: {', '.join(infos) or 'none'}")]
    info = infos[name]
    if info.status == "disabled":
        return [CheckResult("loads", False, f"plugin {name!r} is disabled; `vkit plugins enable {name}`")]
    load_errors = [f for f in manager.errors if f.plugin == name and f.stage in ("import", "validate")]
    if load_errors:
        return [CheckResult("loads", False, "; ".join(f.message for f in load_errors),
                            "".join(f.traceback for f in load_errors))]
    results = [CheckResult("loads", True, f"version {info.version}, {info.source}, hooks: {', '.join(info.hooks) or 'none'}")]
    manager.tasks()
    manager.cli_commands(reserved=reserved)
    results += _hook_checks(manager, name)
    registered = manager.register_components().get(name, {})
    if "vkit_register_components" in info.hooks:
        failed = [f for f in manager.errors if f.plugin == name and f.stage == "vkit_register_components"]
        results.append(CheckResult("hook vkit_register_components", not failed,
                                   "; ".join(f.message for f in failed)
                                   or f"registered {sum(map(len, registered.values()))} component(s)",
                                   "".join(f.traceback for f in failed)))
    results += _component_checks(manager, name, registered)
    results += _task_checks(manager, name, smoke, Path(tmp_dir) if tmp_dir else None, extra)
    results.append(_clash_check(manager, name))
    return results


def format_results(results: Sequence[CheckResult], *, tracebacks: bool = False) -> str:
    """One line per check and a closing ``N passed, M failed`` line; ``tracebacks`` adds each failure's, indented."""
    failed = sum(not r.ok for r in results)
    lines = []
    for r in results:
        lines.append(r.line())
        if tracebacks and not r.ok and r.traceback:
            lines += ["    " + line for line in r.traceback.rstrip().splitlines()]
    return "\n".join([*lines, f"{len(results) - failed} passed, {failed} failed"])


def _tb(err: BaseException) -> str:
    return "".join(traceback.format_exception(err))


def _short(obj: Any, limit: int = 80) -> str:
    text = repr(obj)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@click.command("check")
@click.argument("name")
@click.option("--no-smoke", is_flag=True, help="Skip the tasks' smoke runs (the slow part).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_context
def plugins_check_cmd(ctx: click.Context, name: str, no_smoke: bool, as_json: bool) -> None:
    """Check that plugin NAME conforms: hooks, components, tasks (one smoke run each), clashes.

    Exits 0 when every check passes, 1 when any fails; `vkit --debug plugins check NAME`
    prints each failure's traceback under its line.
    """
    obj = ctx.find_root().obj or {}
    results = check_plugin(name, extra=obj.get("plugins", ()), smoke=not no_smoke,
                           reserved=sorted(ctx.find_root().command.commands))
    ok = all(r.ok for r in results)
    if as_json:
        debug = bool(obj.get("debug"))
        checks = [{k: v for k, v in asdict(r).items() if debug or k != "traceback"} for r in results]
        click.echo(json.dumps(dict(plugin=name, ok=ok, checks=checks), indent=2))
    else:
        click.echo(format_results(results, tracebacks=bool(obj.get("debug"))))
    if not ok:
        ctx.exit(1)
