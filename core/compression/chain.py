"""``CompressionChain``: runs stages in order, measures each, stops when the metric drops too far,
skips a stage that is not faster than its input (unless it is kept for its size).

Example::

    chain = CompressionChain.from_config(dict(
        stages=[dict(type='MagnitudePrune', amount=0.5), dict(type='DynamicQuantize')],
        max_metric_drop=0.01,
    ))
    result = chain.run(model, CompressionContext(sample=x, evaluate=accuracy))
    result.model        # the last model within max_metric_drop of the original
    print(result.format_table())
"""
from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from vkit.core.compression.artifact import save_stage, write_index
from vkit.core.compression.base import CompressionContext, Stage, StageSkipped
from vkit.core.compression.measure import measure, side_by_side
from vkit.core.compression.recover import Recovery
from vkit.core.progress import Progress
from vkit.registry.errors import ConfigError, did_you_mean
from vkit.registry.registries import COMPRESSORS

#: The keys of every report row, in table order.
REPORT_KEYS = (
    "stage", "status", "params", "bytes", "sparsity", "latency_ms", "speedup", "input_speedup", "size_ratio",
    "metric_before", "metric_unrecovered", "recovery_s", "metric_after", "delta", "drop", "precision", "artifact", "sha256",
    "reason",
)


@dataclass
class CompressionResult:
    """What a chain run produced.

    Attributes:
        model: the last good model (the original when the first stage already failed the gate).
        original_metric: the metric of the original model.
        baseline: the row measured on the original model (``stage='original'``).
        reports: one row per stage (keys :data:`REPORT_KEYS`); ``status`` is
            ``'ok'``, ``'skipped'`` (could not run here, not faster than its input
            by ``min_speedup``, or not run after a stop; ``reason`` says which)
            or ``'stopped'`` (dropped the metric too far; its model was discarded).
        stopped_at: the name of the stage that stopped the chain, or ``None``.
        message: one line saying how the chain ended.
        artifact: the JSON sidecar of the saved final model (load it with
            :func:`~vkit.core.compression.load_compressed`); ``None`` when
            nothing was saved or no stage was applied.
        index: the chain folder's ``index.json`` (``None`` when nothing was saved).
    """

    model: nn.Module
    original_metric: float
    baseline: dict[str, Any]
    reports: list[dict[str, Any]] = field(default_factory=list)
    stopped_at: str | None = None
    message: str = ""
    artifact: Path | None = None
    index: Path | None = None

    def saved(self) -> list[tuple[str, Path, Path]]:
        """``(stage, sidecar, weights file)`` of every saved stage, in order (to record as run artifacts)."""
        if self.index is None:
            return []
        folder = self.index.parent
        out = []
        for r in self.reports:
            if r["artifact"]:
                meta = _read_json(folder / r["artifact"])
                out.append((r["stage"], folder / r["artifact"], folder / meta["weights"]))
        return out

    def rows(self) -> list[dict[str, Any]]:
        """The baseline row followed by the stage rows."""
        return [self.baseline, *self.reports]

    def format_table(self) -> str:
        """A plain-text table of :meth:`rows` (bytes in MB, latency in ms per clip)."""
        head = (f"{'stage':<16} {'status':<8} {'params':>11} {'MB':>9} {'sparsity':>8} {'ms/clip':>9} {'speedup':>7} "
                f"{'vs in':>6} {'smaller':>7} {'unrecov.':>8} {'recov s':>7} {'metric':>8} {'delta':>8}")
        lines = [head, "-" * len(head)]
        for r in self.rows():
            def num(key: str, fmt: str, scale: float = 1.0) -> str:
                value = r.get(key)
                return format(value / scale, fmt) if isinstance(value, (int, float)) else "-"

            lines.append(
                f"{r['stage'][:16]:<16} {r['status']:<8} {num('params', '11,.0f'):>11} {num('bytes', '9.3f', 1e6):>9} "
                f"{num('sparsity', '8.3f'):>8} {num('latency_ms', '9.3f'):>9} {num('speedup', '7.2f'):>7} "
                f"{num('input_speedup', '6.2f'):>6} {num('size_ratio', '7.2f'):>7} {num('metric_unrecovered', '8.4f'):>8} {num('recovery_s', '7.1f'):>7} "
                f"{num('metric_after', '8.4f'):>8} {num('delta', '+8.4f'):>8}"
            )
        lines += [f"  {r['stage']}: {r['reason']}" for r in self.reports if r["reason"]]
        lines.append(self.message)
        return "\n".join(lines)


def _row(stage: str, status: str, **values: Any) -> dict[str, Any]:
    row = dict.fromkeys(REPORT_KEYS)
    row.update(stage=stage, status=status, reason="")
    row.update(values)
    return row


@COMPRESSORS.register_module()
class CompressionChain:
    """Runs compression stages in order on a trained model, each measured, optionally recovered, gated and saved.

    For every stage: parameters, bytes on disk, sparsity, median latency per
    clip on ``ctx.sample`` and the metric (``ctx.evaluate``) before and after.
    A stage config with a ``recover`` entry (see
    :class:`~vkit.core.compression.recover.Recovery`) is followed by a short
    fine-tune or a distillation from the unpruned model through ``ctx.train``;
    its row keeps the metric before recovery (``metric_unrecovered``) and the
    recovery time, and the gate judges the recovered model. A stage whose
    model scores more than ``max_metric_drop`` (absolute) worse than the ORIGINAL
    model stops the chain: its model is discarded, the last good one kept, and
    the remaining stages are reported as skipped. Worse is lower, or higher when
    ``ctx.direction`` is ``"less"`` (an error metric such as MAE); the row's ``drop``
    is that worsening.

    Speed gate: a stage must also be faster than its input by ``min_speedup``,
    timed side by side in this process (interleaved pairs, median ratio:
    :func:`~vkit.core.compression.measure.side_by_side`). A slower stage is
    skipped (its model discarded, the chain goes on from its input) with the
    measured ratio as its reason, unless size-only stages are allowed: the
    chain's ``allow_size_only=True`` or the stage config's ``size_only=True``
    keeps it for its size, and its reason says so.

    With ``ctx.work_dir`` set, every stage that passes is saved there as an
    artifact (:func:`~vkit.core.compression.artifact.save_stage`: weights +
    JSON sidecar with the architecture, pruned shapes, precision, sha256 and
    measured row) and ``index.json`` names the final model, which
    :func:`~vkit.core.compression.load_compressed` loads without the run's config.

    Args:
        stages: stage configs (COMPRESSORS registry, e.g. ``dict(type='ChannelPrune', amount=0.5,
            recover=dict(epochs=2))``) or stage objects.
        max_metric_drop: the largest allowed worsening of the original metric, in the
            direction of ``ctx.direction`` (``None``: no gate).
        min_speedup: how much faster than its input a stage must be to be kept (a ratio > 0; default 1.05).
        allow_size_only: keep stages that are not faster too (for their size), saying so.

    Example::

        chain = CompressionChain([dict(type='ChannelPrune', amount=0.5, recover=dict(epochs=2, mode='distill')),
                                  dict(type='CastBF16')], max_metric_drop=0.01)
        result = chain.run(model, ctx)     # ctx.train: the run's trainer; ctx.model_config: the MODELS config
    """

    def __init__(self, stages: Sequence[dict | Stage], max_metric_drop: float | None = None, min_speedup: float = 1.05,
                 allow_size_only: bool = False) -> None:
        if isinstance(stages, (str, dict)) or not isinstance(stages, Sequence) or not stages:
            raise ConfigError(f"compression.stages: expected a non-empty list of stage configs, got {stages!r}")
        built, recoveries, size_only = [], [], []
        for i, cfg in enumerate(stages):
            recovery, sized = None, False
            if isinstance(cfg, dict):
                cfg = dict(cfg)
                if "recover" in cfg:
                    recovery = Recovery.from_config(cfg.pop("recover"), owner=f"compression.stages[{i}]")
                sized = _flag(cfg.pop("size_only", False), f"compression.stages[{i}].size_only")
                stage = COMPRESSORS.build(cfg)
            else:
                stage, sized = cfg, getattr(cfg, "size_only", False) is True
            if not callable(getattr(stage, "apply", None)) or isinstance(stage, CompressionChain):
                raise ConfigError(f"compression.stages[{i}]: expected a stage with apply(model, ctx), got {stage!r}")
            built.append(stage)
            recoveries.append(recovery)
            size_only.append(sized)
        if max_metric_drop is not None and (
            not isinstance(max_metric_drop, (int, float)) or isinstance(max_metric_drop, bool) or max_metric_drop < 0
        ):
            raise ConfigError(f"compression.max_metric_drop: expected a number >= 0 or None, got {max_metric_drop!r}")
        self.stages = built
        self.recoveries: list[Recovery | None] = recoveries
        self.max_metric_drop = None if max_metric_drop is None else float(max_metric_drop)
        if not isinstance(min_speedup, (int, float)) or isinstance(min_speedup, bool) or not min_speedup > 0:
            raise ConfigError(f"compression.min_speedup: expected a ratio > 0 (e.g. 1.05), got {min_speedup!r}")
        self.min_speedup = float(min_speedup)
        self.allow_size_only = _flag(allow_size_only, "compression.allow_size_only")
        self.size_only: list[bool] = size_only

    @classmethod
    def from_config(cls, cfg: dict) -> CompressionChain:
        """Build from ``dict(stages=[...], max_metric_drop=...)`` (``type`` optional)."""
        args = {k: v for k, v in dict(cfg).items() if k != "type"}
        allowed = ("stages", "max_metric_drop", "min_speedup", "allow_size_only")
        for key in args:
            if key not in allowed:
                raise ConfigError(f"compression.{key}: unknown key{did_you_mean(key, allowed)}; expected {list(allowed)}")
        if "stages" not in args:
            raise ConfigError("compression: missing 'stages' (a list of stage configs)")
        return cls(**args)

    def run(self, model: nn.Module, ctx: CompressionContext) -> CompressionResult:
        """Apply every stage to a copy of the last good model; return the result with one report row per stage."""
        model.eval()
        if any(self.recoveries) and ctx.train is None:
            i = next(i for i, r in enumerate(self.recoveries) if r)
            raise ConfigError(
                f"compression.stages[{i}].recover: recovery needs the training data, but the compression context has no "
                "train(model, epochs) (run the chain from `vkit run`, or pass CompressionContext(train=runner_trainer(train_set)))")
        original = float(ctx.evaluate(model))
        base = measure(model, ctx)
        result = CompressionResult(
            model=model, original_metric=original,
            baseline=_row("original", "ok", **base, speedup=1.0, size_ratio=1.0, metric_before=original,
                          metric_after=original, delta=0.0, drop=0.0),
        )
        teacher = ctx.teacher if ctx.teacher is not None else model
        model_config = ctx.model_config or getattr(model, "model_config", None)  # what core.model.build_model may record
        folder = ctx.dir() if ctx.work_dir is not None else None
        current, current_metric, final = model, original, None
        bar = Progress("compression", len(self.stages), unit="stages", echo=ctx.echo)
        for i, stage in enumerate(self.stages):
            bar.describe(f"compression: {stage.name} ({i + 1}/{len(self.stages)})")
            rows = len(result.reports)
            try:
                try:
                    candidate = stage.apply(copy.deepcopy(current), ctx)
                except StageSkipped as err:
                    result.reports.append(_row(stage.name, "skipped", metric_before=current_metric, reason=str(err)))
                    continue
                candidate.eval()
                metric = float(ctx.evaluate(candidate))
                recovery = self.recoveries[i]
                extra: dict[str, Any] = {}
                if recovery is not None:
                    start = time.perf_counter()
                    candidate = recovery.run(candidate, teacher, ctx, owner=f"compression.stages[{i}]")
                    extra = dict(metric_unrecovered=metric, recovery_s=time.perf_counter() - start)
                    metric = float(ctx.evaluate(candidate))
                timing = side_by_side(current, candidate, ctx.sample, ctx.latency_runs, ctx.warmup, ctx.batch_size, ctx.timer)
                values = dict(measure(candidate, ctx, latency=False), latency_ms=timing["candidate_ms"])
                drop = original - metric if ctx.direction == "greater" else metric - original  # how much worse
                row = _row(
                    stage.name, "ok", **values, **extra, input_speedup=timing["speedup"],
                    speedup=base["latency_ms"] / values["latency_ms"] if values["latency_ms"] else math.inf,
                    size_ratio=base["bytes"] / values["bytes"] if values["bytes"] else math.inf,
                    metric_before=current_metric, metric_after=metric, delta=metric - current_metric, drop=drop,
                    reason=getattr(stage, "notes", ""),
                )
                if self.max_metric_drop is not None and not drop <= self.max_metric_drop:
                    row.update(status="stopped", reason=(
                        f"metric {metric:.4f} is {drop:.4f} {'below' if ctx.direction == 'greater' else 'above'} "
                        f"the original {original:.4f} ({'higher' if ctx.direction == 'greater' else 'lower'} is better) "
                        f"(max_metric_drop {self.max_metric_drop:g}); kept the model from before this stage"
                    ))
                    result.reports.append(row)
                    result.stopped_at = stage.name
                    result.message = f"chain stopped at stage {i + 1} {stage.name!r}: metric drop {drop:.4f} > {self.max_metric_drop:g}"
                    for rest in self.stages[i + 1:]:
                        result.reports.append(_row(rest.name, "skipped", reason=f"not run: chain stopped at {stage.name!r}"))
                    break
                if not self._fast_enough(row, i, ctx.latency_runs):
                    result.reports.append(row)
                    continue
                if folder is not None:
                    sidecar = save_stage(candidate, folder, index=i + 1, stage=stage.name, sample=ctx.sample,
                                         model_config=model_config, row=row, notes=row["reason"])
                    if sidecar is not None:
                        meta = _read_json(sidecar)
                        row.update(artifact=sidecar.name, sha256=meta["sha256"], precision=meta["precision"])
                    final = row["artifact"]
                result.reports.append(row)
                current, current_metric = candidate, metric
            finally:
                row = result.reports[rows] if len(result.reports) > rows else None
                bar.advance(note=f"compression stage {i + 1}/{len(self.stages)} {stage.name}: "
                                 f"{row['status'] if row else 'failed'}")
        bar.close()
        result.model = current
        if folder is not None:
            entries = [dict(stage=r["stage"], status=r["status"], artifact=r["artifact"]) for r in result.reports]
            result.index = write_index(folder, entries, final)
            result.artifact = folder / final if final else None
        if not result.message:
            done = sum(r["status"] == "ok" for r in result.reports)
            slow = [f"{r['stage']} {r['input_speedup']:.2f}x" for r in result.reports
                    if r["status"] == "skipped" and r["input_speedup"] is not None]
            skipped = f" ({', '.join(slow)} skipped: not {self.min_speedup:g}x faster than its input)" if slow else ""
            result.message = (f"chain finished: {done}/{len(self.stages)} stages applied{skipped}, "
                              f"metric {original:.4f} -> {current_metric:.4f}")
        return result

    def _fast_enough(self, row: dict[str, Any], i: int, runs: int) -> bool:
        """The speed gate: is stage ``i`` (its ``row``) ``min_speedup`` faster than its input, or kept for its size?

        Updates ``row`` (status, reason) when it is not faster.
        """
        ratio = row["input_speedup"]
        if ratio >= self.min_speedup:
            return True
        allowed = "compression.allow_size_only" if self.allow_size_only else (
            f"compression.stages[{i}].size_only" if self.size_only[i] else None)
        measured = (f"{ratio:.2f}x the speed of its input (timed side by side, median of {runs} pairs) "
                    f"< min_speedup {self.min_speedup:g}")
        if allowed:
            row.update(reason="; ".join(filter(None, [row["reason"], f"kept for its size ({allowed}): {measured}"])))
            return True
        row.update(status="skipped", artifact=None, reason=(
            f"skipped: {measured}; its model was discarded (set compression.allow_size_only=True or the stage's "
            f"size_only=True to keep a stage for its size)"))
        return False


def _flag(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{key}: expected True or False, got {value!r}")
    return value


def _read_json(path: Path) -> dict[str, Any]:
    import json

    return json.loads(path.read_text(encoding="utf-8"))
