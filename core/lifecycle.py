"""The task lifecycle: core owns the run, a vertical supplies components.

Learned from anomalib's ``Engine`` (fit/test/export are the engine's, a model
folder says only what differs) and MONAI's ``BundleWorkflow`` (required
properties checked before anything runs). :func:`run_lifecycle` does, in order:

1. check the task's required properties (``datasets`` implemented, config sections present), then load
   every ``pretrained=`` once and check ``train``'s fine-tuning keys, recording the weights on the run
   (:func:`vkit.core.weights.check.check_run_weights`): a bad one names its key before any data is read
   (``vkit run`` checks before it opens the run row); the model is built from the bytes that check read;
2. data: the user's (the task's ``data_key``) or the embedded set, generated once
   by ``Task.generate_data`` and cached by generator version + seed + params (:func:`prepare_data`);
3. seed (mmengine ``set_random_seed``) → ``Task.datasets`` → ``Task.build_model``;
4. one mmengine Runner trains (train + val loops; ``StoreHook`` logs every metric under its bare name;
   a resume state is written after every epoch, and a resumed run, ``ctx.resume``, starts from it:
   :mod:`vkit.core.resume`);
5. the task's :class:`TaskEvaluator` evaluates the test split → :class:`Evaluation`
   (metrics split ``test``, per-item prediction rows, report sections);
6. one checkpoint, ``model.safetensors`` + JSON sidecar, recorded with its sha256
   (the best validation epoch's weights by default, or the last: ``checkpoint.save``; the sidecar's
   ``fitted`` values, e.g. the threshold, and ``epoch`` belong to those weights);
7. the compression chain (gated on ``compression.metric``);
8. the run report.

A vertical only says what differs (see :class:`vkit.core.task.Task`)::

    class EngagementTask(Task):
        name = "education-engagement"
        def generate_data(self, root, seed, **params): ...      # embedded data
        def datasets(self, cfg, ctx): return dict(train=..., val=..., test=...)
        # model config, metric config and evaluator come from default_config / evaluator()
"""
from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from vkit.core.evaluation import Evaluation, MetricEvaluator, ReportSection, TaskEvaluator, batches, predict
from vkit.core.model import build_model
from vkit.registry.errors import ConfigError, DataError

if TYPE_CHECKING:  # pragma: no cover
    from mmengine.config import Config

    from vkit.core.task import RunContext, Task

#: The stamp beside an embedded data set: what generated it (a mismatch regenerates it).
DATA_STAMP = ".vkit_data.json"


# ---------------------------------------------------------------------- data
def prepare_data(task: Task, cfg: Any, ctx: RunContext) -> Path | None:
    """The user's data (``cfg`` at ``task.data_key``) or the embedded data set, generated once and cached.

    The cache is ``ctx.data_root / task.name`` with a :data:`DATA_STAMP` naming
    the generator (task class, ``generator_version``), the seed and the
    ``data.synthetic`` params; any difference (or ``ctx.regenerate``) rebuilds
    it in a temporary folder that replaces the old one only when complete.
    """
    user = _get(cfg, task.data_key)
    if user:
        path = Path(str(user)).expanduser()
        if not path.exists():
            raise ConfigError(f"{task.data_key}: {str(path)!r} does not exist")
        return path
    from vkit.core.task import Task

    if type(task).generate_data is Task.generate_data:
        return None  # the task ships no embedded data: only the user's
    params = dict(_get(cfg, task.synthetic_key) or {})
    stamp = dict(generator=f"{type(task).__module__}.{type(task).__qualname__}", version=str(task.generator_version),
                 seed=int(cfg.get("seed") or 0), params=_plain(params))
    root = ctx.data_root / task.name
    cached = _read_stamp(root)
    if not ctx.regenerate and cached is not None and {k: cached.get(k) for k in stamp} == stamp:
        ctx.echo(f"embedded data set: {root}")
        return root / cached["index"] if cached.get("index") else root
    ctx.echo(f"generating the embedded data set into {root}")
    tmp = root.with_name(f".{root.name}.generating")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    index = task.generate_data(tmp, stamp["seed"], **params)
    if index is None and not any(tmp.iterdir()):
        shutil.rmtree(tmp)
        return None  # the task has no embedded data
    rel = Path(index).resolve().relative_to(tmp.resolve()).as_posix() if index is not None else ""
    (tmp / DATA_STAMP).write_text(json.dumps(dict(stamp, index=rel), indent=1))
    shutil.rmtree(root, ignore_errors=True)
    tmp.rename(root)
    return root / rel if rel else root


def _read_stamp(root: Path) -> dict[str, Any] | None:
    try:
        return json.loads((root / DATA_STAMP).read_text())
    except (OSError, ValueError):
        return None


def _plain(value: Any) -> Any:
    """Tuples → lists (as JSON reads them back), so a stamp compares equal after a round trip."""
    return json.loads(json.dumps(value, default=list))


def _get(cfg: Any, dotted: str) -> Any:
    node = cfg
    for part in dotted.split("."):
        if node is None or part not in node:
            return None
        node = node[part]
    return node


# ---------------------------------------------------------------------- training
class _BestState:
    """Keeps the model's weights (in memory) from the epoch with the best validation ``metric``."""

    def __init__(self, metric: str, rule: str) -> None:
        from mmengine.hooks import Hook

        outer = self

        class BestStateHook(Hook):
            priority = "LOW"

            def after_val_epoch(self, runner: Any, metrics: dict[str, float] | None = None) -> None:
                outer.update(runner, metrics or {})

        self.hook = BestStateHook()
        self.metric, self.rule = metric, rule
        self.best: float | None = None
        self.state: dict[str, torch.Tensor] | None = None
        self.epoch: int | None = None

    def update(self, runner: Any, metrics: dict[str, float]) -> None:
        from mmengine.model import is_model_wrapper

        bare = {k.split("/")[-1]: v for k, v in metrics.items()}
        if self.metric not in bare:
            raise ConfigError(f"checkpoint.metric: no validation metric {self.metric!r}; the metrics are {sorted(bare)}")
        value = float(bare[self.metric])
        if self.best is None or (value > self.best if self.rule == "greater" else value < self.best):
            model = runner.model.module if is_model_wrapper(runner.model) else runner.model
            self.best, self.epoch = value, runner.epoch
            self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs to go on choosing (:class:`vkit.core.resume.ResumeStateHook` saves it)."""
        return dict(best=self.best, epoch=self.epoch, state=self.state)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.epoch, self.state = state["best"], state["epoch"], state["state"]


def fit(model: torch.nn.Module, train_set: Any, val_set: Any, cfg: Any, ctx: RunContext | None, *,
        val_metrics: Sequence[Any] = (), checkpoint: dict | None = None) -> torch.nn.Module:
    """Train ``model`` with one mmengine Runner (``cfg.train``); returns the trained (best or last) model.

    Args:
        model: an mmengine ``BaseModel``.
        train_set, val_set: datasets (``val_set`` may be ``None``: no val loop).
        cfg: the run config (``train``, ``seed``).
        ctx: the run (its store, run id, work dir); ``None`` trains without logging.
        val_metrics: metric instances for the val loop.
        checkpoint: ``dict(save="best"|"last", metric=..., rule=None|"greater"|"less", keep_epochs=False)``
            (:func:`checkpoint_policy`). With ``"best"`` the best epoch's weights are restored and the val
            metrics re-run on them (:func:`revalidate`), so what they fitted belongs to the saved weights.
    """
    from vkit.core.engine import build_runner

    policy = checkpoint_policy(checkpoint)
    best = _BestState(policy["metric"], best_rule(policy, val_metrics)) if policy["save"] == "best" else None
    if best is not None and (val_set is None or not val_metrics):
        raise ConfigError("checkpoint.save='best' needs a validation split and metric; use checkpoint.save='last'")
    work_dir = ctx.work_dir if ctx is not None else Path(cfg.get("work_dir") or "work_dirs/fit")
    hooks: list[Any] = [best.hook] if best is not None else []
    resume = getattr(ctx, "resume", None)  # None: no resume state (e.g. a comparison model's quiet context)
    if resume is not None:
        from vkit.core.resume import RESUME_DIR, ResumeStateHook

        hooks.append(ResumeStateHook(Path(work_dir) / RESUME_DIR, load=bool(resume), extra=best))
    runner = build_runner(
        model, work_dir=work_dir, train_set=train_set, val_set=val_set, val_metrics=list(val_metrics),
        train=dict(cfg["train"]), store=ctx.store if ctx else None, run_id=ctx.run_id if ctx else None,
        seed=cfg.get("seed", 0), checkpoint=bool(policy["keep_epochs"]), echo=ctx.echo if ctx else None,
        extra_hooks=hooks,
    )
    runner.train()
    if resume:
        ctx.summary["resumed"] = f"after epoch {hooks[-1].resumed_epoch} of {runner.max_epochs}"
    trained = runner.model.module if hasattr(runner.model, "module") else runner.model
    if best is not None and best.state is not None:
        trained.load_state_dict(best.state)
        if best.epoch != runner.epoch:
            revalidate(runner)  # the val metrics last fitted (threshold, ...) on the last epoch's weights
        epoch, why = best.epoch, f"best {policy['metric']} {best.best:.4f}"
    else:
        epoch, why = runner.epoch, "last"
    if ctx is not None:
        ctx.summary["checkpoint epoch"] = f"{epoch} ({why})"
        ctx.checkpoint_epoch = epoch
    return trained


@torch.no_grad()
def revalidate(runner: Any) -> dict[str, float]:
    """Run the val loop's metrics again on the runner's model as it is now, without hooks (nothing is logged).

    What a validation metric fits (the binary ``threshold``, ...) then comes from
    these weights: after :func:`fit` restores the best epoch's weights, the
    evaluator's ``fitted()`` describes the model that is saved, not the last epoch.

    Example::

        trained.load_state_dict(best_state)
        revalidate(runner)["auc"]     # the best epoch's validation AUC again
    """
    runner.model.eval()
    for batch in runner.val_dataloader:
        runner.val_evaluator.process(data_samples=runner.model.val_step(batch), data_batch=batch)
    metrics = runner.val_evaluator.evaluate(len(runner.val_dataloader.dataset))
    return {k.split("/")[-1]: v for k, v in metrics.items()}


def best_rule(policy: dict[str, Any], val_metrics: Sequence[Any]) -> str:
    """How the best epoch is chosen: ``policy["rule"]`` when the config sets it, else the direction the
    validation metric declares for ``policy["metric"]`` (``mae``: ``"less"``), else ``"greater"``.

    Example::

        best_rule(checkpoint_policy(dict(metric="rmse")), [RegressionMetric()])   # 'less'
    """
    from vkit.core.metrics import metric_direction

    if policy["rule"] is not None:
        return str(policy["rule"])
    declared = (metric_direction(m, str(policy["metric"])) for m in val_metrics)
    return next((d for d in declared if d is not None), "greater")


def checkpoint_policy(checkpoint: dict | None) -> dict[str, Any]:
    """The ``checkpoint`` section with its defaults, checked: which epoch's weights become ``model.safetensors``.

    ``save="best"`` (the default of :data:`vkit.core.task.DEFAULT_CHECKPOINT`) keeps the epoch with the best
    validation ``metric`` by ``rule``; ``"last"`` the last epoch. No section at all means ``"last"``
    (the task declared no validation metric). ``rule=None`` (the default) follows the direction the
    metric declares (:func:`best_rule`); ``"greater"`` or ``"less"`` overrides it.

    Example::

        checkpoint_policy(dict(save="best", metric="auc"))["rule"]   # None: the metric's declared direction
    """
    from vkit.core.task import DEFAULT_CHECKPOINT

    policy = dict(DEFAULT_CHECKPOINT, save="best" if checkpoint else "last")
    for key, value in (checkpoint or {}).items():
        if key not in policy:
            from vkit.registry.errors import did_you_mean

            raise ConfigError(f"checkpoint.{key}: unknown key{did_you_mean(key, policy)}; known: {sorted(policy)}")
        policy[key] = value
    if policy["save"] not in ("last", "best"):
        raise ConfigError(f"checkpoint.save: expected 'last' or 'best', got {policy['save']!r}")
    if policy["save"] == "best" and not policy["metric"]:
        raise ConfigError("checkpoint.save='best' needs checkpoint.metric, a validation metric name (e.g. 'auc')")
    if policy["rule"] not in (None, "greater", "less"):
        raise ConfigError(f"checkpoint.rule: expected 'greater', 'less' or None (the metric's declared direction), "
                          f"got {policy['rule']!r}")
    return policy


# ---------------------------------------------------------------------- the run
def run_lifecycle(task: Task, cfg: Config, ctx: RunContext) -> dict[str, float]:
    """Run ``task`` end to end (see the module docstring); returns ``{"test/<name>": value}``."""
    check_task(task, cfg)
    from vkit.core.weights.check import check_run_weights
    from vkit.core.weights.load import reuse_weights

    # every pretrained= loads (or fails naming its key) before any data is read; the model is built from that read
    checked = check_run_weights(cfg, ctx, ctx.checked_weights)
    with reuse_weights(checked.files):
        return _run_checked(task, cfg, ctx)


def _run_checked(task: Task, cfg: Config, ctx: RunContext) -> dict[str, float]:
    """:func:`run_lifecycle` after its checks: data, training, evaluation, checkpoint, compression."""
    from mmengine.runner import set_random_seed

    ctx.data = prepare_data(task, cfg, ctx)
    if ctx.data is not None:
        ctx.summary["data"] = str(ctx.data)
    seed = cfg.get("seed")
    if seed is not None:
        set_random_seed(int(seed))
    datasets = task.datasets(cfg, ctx)
    if not datasets.get("train") or len(datasets["train"]) == 0:
        skipped = ctx.summary.get("skipped", 0)
        raise DataError(f"task {task.name!r}: no usable training cases"
                        + (f" ({skipped} skipped: see `vkit runs show {ctx.run_id}`)" if skipped else ""))
    model = task.build_model(cfg, datasets)
    evaluator = task.evaluator(cfg)
    model = fit(model, datasets["train"], datasets.get("val"), cfg, ctx, val_metrics=evaluator.val_metrics(),
                checkpoint=cfg.get("checkpoint"))
    evaluation = evaluator.evaluate(model, datasets, cfg, ctx)
    ctx.store.log_metrics(ctx.run_id, evaluation.metrics, step=int(cfg["train"]["epochs"]), split="test")
    if evaluation.predictions:
        ctx.store.add_predictions(ctx.run_id, "test", evaluation.predictions)
    metrics = {f"test/{k}": float(v) for k, v in evaluation.metrics.items()}
    checkpoint = save_run_checkpoint(model, task, cfg, ctx, datasets, evaluation)
    ctx.summary["checkpoint"] = str(checkpoint)
    ctx.report = dict(sections=[*evaluation.sections, *_task_sections(task, cfg, evaluation, ctx)])
    compression = cfg.get("compression") or {}
    if compression.get("stages"):
        compress(model, compression, lambda m: evaluator.evaluate(m, datasets, cfg, None), datasets, cfg, ctx,
                 direction=evaluator.direction(str(compression.get("metric", "auc"))))
    ctx.echo("test: " + "  ".join(f"{k} {v:.4f}" for k, v in sorted(evaluation.metrics.items())))
    from vkit.core.resume import discard_resume_state

    discard_resume_state(ctx.work_dir)  # the run is done: nothing left to resume
    return metrics


def _task_sections(task: Task, cfg: Any, evaluation: Evaluation, ctx: RunContext) -> list[Any]:
    """The task's report sections; ones that fail are recorded on the run and warned about, and the run goes on."""
    from vkit.core.reporting import record_report_error

    try:
        return list(task.report_sections(cfg, evaluation))
    except Exception as err:  # noqa: BLE001 - the model is trained and saved: a report part never fails the run
        ctx.summary["report error"] = record_report_error(ctx.store, ctx.run_id, ctx.work_dir, err, ctx.echo)
        return []


def check_task(task: Task, cfg: Any) -> None:
    """Required properties, checked before anything runs (MONAI ``BundleWorkflow`` style)."""
    from vkit.core.task import Task

    if type(task).datasets is Task.datasets:
        raise ConfigError(f"task {task.name!r} (plugin {task.plugin!r}) does not implement datasets(cfg, ctx); "
                          "a task supplies its datasets, the lifecycle does the rest (docs/plugins.md)")
    missing = [key for key in ("train",) if key not in cfg]
    if missing:
        raise ConfigError(f"task {task.name!r}: default_config lacks {missing} (start from vkit.core.task.DEFAULT_TRAIN)")


def save_run_checkpoint(model: torch.nn.Module, task: Task, cfg: Any, ctx: RunContext, datasets: dict[str, Any],
                        evaluation: Evaluation) -> Path:
    """``model.safetensors`` + sidecar in the work dir, recorded as artifacts with their sha256.

    The sidecar holds what :func:`vkit.core.trained.load_trained` rebuilds the model from: ``model_config``
    (the MODELS config :func:`vkit.core.model.build_model` recorded on the model) and the metric's
    ``decision`` (:func:`vkit.core.decision.metric_decision`, with what validation fitted), beside the
    run's config, metrics and the task's :meth:`~vkit.core.task.Task.checkpoint_meta`.
    """
    from vkit.core.checkpoint import save_checkpoint
    from vkit.core.decision import metric_decision

    decision = metric_decision(cfg.get("metric"), evaluation.fitted).to_dict() if cfg.get("metric") else None
    meta = dict(task=task.name, plugin=task.plugin, run_id=ctx.run_id, config=cfg.to_dict(), epoch=ctx.checkpoint_epoch,
                metrics=evaluation.metrics, fitted=evaluation.fitted, model_config=getattr(model, "model_config", None),
                decision=decision, **task.checkpoint_meta(cfg, datasets))
    path = save_checkpoint(model, ctx.work_dir / "model.safetensors", meta=meta)
    ctx.store.add_artifact(ctx.run_id, "checkpoint", path)  # finish_run names the run's model by its sha256
    ctx.store.add_artifact(ctx.run_id, "checkpoint-meta", path.with_suffix(".json"))
    return path


def compress(model: torch.nn.Module, compression: dict, evaluate: Any, datasets: dict[str, Any], cfg: Any,
             ctx: RunContext, *, direction: str | None = None) -> list[dict]:
    """Run the configured chain, gated on the bare test metric ``compression.metric``.

    ``direction`` is which way that metric is better (``"less"`` for an error such as ``mae``; ``None``:
    ``"greater"``): ``max_metric_drop`` bounds how much worse a stage may make it.

    A stage's ``recover`` entry fine-tunes (or distils) on the train split with
    the run's ``train`` settings (for ``recover.epochs``, or a quarter of ``train.epochs`` when unset); each applied stage's model is saved under
    ``work_dir/compression`` (loadable by :func:`vkit.core.compression.load_compressed`
    without the run config) and recorded as a ``compressed`` artifact; one metric row per stage.
    """
    from vkit.core.compression import CompressionChain, CompressionContext
    from vkit.core.compression.recover import runner_trainer

    chain_cfg = dict(compression)
    key = chain_cfg.pop("metric", "auc")
    preprocessor = model.data_preprocessor

    def measure(candidate: torch.nn.Module) -> float:
        values = evaluate(candidate).metrics
        if key not in values:
            raise ConfigError(f"compression.metric: {key!r} is not a test metric; the metrics are {sorted(values)}")
        return float(values[key])

    sample = preprocessor(next(batches(datasets["test"], 1)), False)["inputs"]
    folder = ctx.work_dir / "compression"
    train = runner_trainer(datasets["train"], train=dict(cfg["train"]), work_dir=folder / "recover", seed=cfg.get("seed", 0),
                           echo=ctx.echo)
    result = CompressionChain.from_config(chain_cfg).run(
        model, CompressionContext(sample=sample, evaluate=measure, work_dir=folder, train=train,
                                  direction=direction or "greater", train_epochs=int(cfg["train"]["epochs"]),
                                  echo=ctx.echo))
    for _stage, sidecar, weights in result.saved():
        ctx.store.add_artifact(ctx.run_id, "compressed", weights)
        ctx.store.add_artifact(ctx.run_id, "compressed-meta", sidecar)
    rows = result.rows()
    for step, row in enumerate(rows):
        values = {k: float(v) for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v}
        ctx.store.log_metrics(ctx.run_id, {f"{row['stage']}/{k}": v for k, v in values.items()}, step=step, split="compression")
    ctx.summary["compression"] = result.message
    ctx.echo(result.format_table())
    return rows


__all__ = ["DATA_STAMP", "Evaluation", "MetricEvaluator", "ReportSection", "TaskEvaluator", "batches", "best_rule",
           "build_model", "check_task", "checkpoint_policy", "compress", "fit", "predict", "prepare_data", "revalidate",
           "run_lifecycle", "save_run_checkpoint"]
