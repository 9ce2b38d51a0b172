"""What evaluates a trained model: the :class:`TaskEvaluator` contract, its result and the default metric evaluator.

A task's evaluator turns a trained model and the test split into an
:class:`Evaluation` (metrics under bare names, per-item prediction rows, report
sections); :func:`vkit.core.lifecycle.run_lifecycle` stores them. The default,
:class:`MetricEvaluator`, runs one METRICS metric on validation (in the
Runner's val loop) and on test::

    evaluator = MetricEvaluator(dict(type="ClassificationMetric"))
    evaluation = evaluator.evaluate(model, dict(test=test_set), cfg, ctx)
    evaluation.metrics["auc"], evaluation.predictions[0]["prediction"]
"""
from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from vkit.core.reporting import ReportSection
from vkit.registry.errors import ConfigError
from vkit.registry.registries import METRICS

if TYPE_CHECKING:  # pragma: no cover
    from vkit.core.task import RunContext


# ---------------------------------------------------------------------- results
@dataclass
class Evaluation:
    """What a :class:`TaskEvaluator` returns for the test split.

    Attributes:
        metrics: ``{bare name: value}``; stored with split ``test``, shown as ``test/<name>``.
        predictions: per-item rows (``item_id``, ``label``, ``prediction``, ``values``) for the store.
        sections: extra report sections.
        fitted: values chosen on validation (e.g. ``{"threshold": 0.41}``), kept in the checkpoint meta.
    """

    metrics: dict[str, float]
    predictions: list[dict[str, Any]] = field(default_factory=list)
    sections: list[ReportSection] = field(default_factory=list)
    fitted: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------- evaluators
class TaskEvaluator:
    """Turns a trained model and the test split into an :class:`Evaluation`; the Runner's val loop uses ``val_metrics``.

    Subclass it when the task is not "model(inputs) → one prediction per item"
    (ranking, MIL over segments). ``evaluate`` is also how the compression chain
    measures a candidate: it is then called with ``ctx=None`` and must write nothing.

    Example::

        class RankingEvaluator(TaskEvaluator):
            def evaluate(self, model, datasets, cfg, ctx):
                recall = full_ranking_recall(model, datasets["test"], k=10)
                return Evaluation(metrics={"recall@10": recall})
    """

    def val_metrics(self) -> list[Any]:
        """mmengine ``BaseMetric`` instances for the Runner's val loop (``[]``: no val loop)."""
        return []

    def evaluate(self, model: torch.nn.Module, datasets: dict[str, Any], cfg: Any, ctx: RunContext | None) -> Evaluation:
        """Evaluate ``model`` on ``datasets["test"]``; write nothing when ``ctx`` is ``None``."""
        raise NotImplementedError(f"{type(self).__name__}.evaluate")

    def direction(self, key: str) -> str | None:
        """Which way metric ``key`` is better, ``"greater"`` or ``"less"``; ``None``: not declared (taken as greater).

        Best-checkpoint selection and the compression gate follow it. The default asks the
        :meth:`val_metrics` (their ``directions``, :func:`vkit.core.metrics.metric_direction`).
        """
        from vkit.core.metrics import metric_direction

        return next((d for d in (metric_direction(m, key) for m in self.val_metrics()) if d is not None), None)


class MetricEvaluator(TaskEvaluator):
    """The default evaluator: one METRICS metric for validation, the same metric (with what validation fitted) for test.

    The metric follows mmengine's ``BaseMetric`` and returns bare keys; after
    ``evaluate`` it may offer ``prediction_rows()``, ``report_sections()``,
    ``fitted()`` (e.g. the validation threshold) and ``last_roc`` / ``last_confusion``.

    Args:
        metric: a METRICS config (``dict(type="ClassificationMetric")``).
        batch_size: items per inference batch on the test split.
    """

    def __init__(self, metric: dict, batch_size: int = 8) -> None:
        if not isinstance(metric, dict) or "type" not in metric:
            raise ConfigError(f"metric: expected a METRICS config with 'type', got {metric!r}")
        self.metric_cfg = dict(metric)
        self.batch_size = int(batch_size)
        self._val = METRICS.build(copy.deepcopy(self.metric_cfg))

    def val_metrics(self) -> list[Any]:
        return [self._val]

    def fitted(self) -> dict[str, Any]:
        """What the validation metric chose (``{}`` before validation or for metrics that fit nothing)."""
        from vkit.core.capabilities import metric_provides

        return dict(self._val.fitted()) if "fitted" in metric_provides(self._val) else {}

    def evaluate(self, model: torch.nn.Module, datasets: dict[str, Any], cfg: Any, ctx: RunContext | None) -> Evaluation:
        fitted = self.fitted()
        from vkit.core.metrics import metric_output

        metric = METRICS.build({**copy.deepcopy(self.metric_cfg), **fitted})
        test = datasets["test"]
        metric.process({}, predict(model, test, self.batch_size, output=metric_output(metric)))
        metrics = {k.split("/")[-1]: float(v) for k, v in metric.evaluate(len(test)).items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool)}
        from vkit.core.capabilities import metric_provides

        provides = metric_provides(metric)  # what the metric class declares (vkit.core.capabilities)
        rows = metric.prediction_rows() if "prediction_rows" in provides else []
        sections = metric.report_sections() if "report_sections" in provides else []
        return Evaluation(metrics=metrics, predictions=rows, sections=list(sections), fitted=fitted)


# ---------------------------------------------------------------------- inference helpers
def batches(dataset: Any, batch_size: int) -> Iterator[Any]:
    """``default_collate``d batches of ``dataset`` in order."""
    from mmengine.dataset import default_collate

    for start in range(0, len(dataset), batch_size):
        yield default_collate([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])


@torch.inference_mode()
def predict(model: torch.nn.Module, dataset: Any, batch_size: int = 8, *, preprocessor: Any = None,
            output: str | None = None) -> list[dict]:
    """Per-sample ``{"case_id", "label", "probs"}`` of ``model`` on ``dataset`` (eval mode, no gradient).

    ``model`` is called as ``model(inputs)`` on the output of ``preprocessor``
    (default: ``model.data_preprocessor``), so a compressed stand-in (e.g. an
    ONNX Runtime session wrapper) is evaluated with the original's preprocessing.
    ``output`` is what the model's outputs are (:func:`vkit.core.model.model_outputs`): ``"probs"``
    (logits, softmaxed) or ``"value"`` (a regression model's values, kept as they are, under the key
    ``"value"``); ``None``: the model's own ``output`` (a ``VideoModel`` takes it from its head), else ``"probs"``.
    """
    from vkit.core.model import model_outputs

    preprocessor = preprocessor if preprocessor is not None else model.data_preprocessor
    output = output or getattr(model, "output", None) or "probs"
    if hasattr(model, "eval"):
        model.eval()
    out: list[dict] = []
    for batch in batches(dataset, batch_size):
        data = preprocessor(batch, False)
        key, values = model_outputs(torch.as_tensor(model(data["inputs"])), output)
        out.extend(dict(sample, **{key: v}) for sample, v in zip(data["data_samples"], values.cpu()))
    return out


__all__ = ["Evaluation", "MetricEvaluator", "ReportSection", "TaskEvaluator", "batches", "predict"]
