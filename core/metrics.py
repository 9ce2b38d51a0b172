"""Classification and regression metrics shared by the verticals (mmengine ``BaseMetric``s registered in ``METRICS``).

Every metric declares, per key it reports, which way is better (``directions``:
``{"auc": "greater", "mae": "less"}``; :func:`metric_direction`): best-checkpoint selection
and the compression gate follow it. It also declares which model output it reads
(``output``: ``"probs"``, or ``"value"`` for :class:`RegressionMetric`; :func:`metric_output`).

The model's per-case outputs reach a metric as ``data_samples``: a list of
``{"probs": Tensor (num_classes,) softmax probabilities, "label": int, "case_id": str}`` (and optionally
``"path"``, the case's source file, kept in the prediction rows for the report's thumbnails).
Scores come from scikit-learn (ROC-AUC, ROC curve, confusion matrix, balanced
accuracy); nothing here re-implements them.

Example::

    from vkit.registry.registries import METRICS
    metric = METRICS.build(dict(type="ClassificationMetric", prefix="test"))
    metric.process({}, [{"probs": torch.tensor([0.2, 0.8]), "label": 1, "case_id": "a"}, ...])
    metric.evaluate(size=n)       # {"test/auc": ..., "test/sensitivity": ..., ...}
    metric.last_predictions       # [{"case_id", "label", "probs", "pred", "path"}] for the store
    metric.last_roc               # (fpr, tpr, auc) for the report
"""
from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log

from vkit.registry.errors import ConfigError, DataError
from vkit.registry.registries import METRICS


#: The two ways a metric key can be better.
DIRECTIONS = ("greater", "less")


def metric_direction(metric: Any, key: str) -> str | None:
    """Which way ``key`` of ``metric`` (an instance or class) is better: ``"greater"``, ``"less"``, or ``None`` when
    the metric does not declare it (its class attribute ``directions``, ``{key: direction}``).

    Example::

        metric_direction(RegressionMetric, "mae"), metric_direction(ClassificationMetric, "auc")   # ('less', 'greater')
    """
    cls = metric if isinstance(metric, type) else type(metric)
    declared = getattr(cls, "directions", None) or {}
    direction = declared.get(key.split("/")[-1])
    if direction is not None and direction not in DIRECTIONS:
        raise ConfigError(f"metric {cls.__name__}: directions[{key!r}] = {direction!r}; expected one of {DIRECTIONS}")
    return direction


def metric_output(metric: Any) -> str:
    """The model output ``metric`` (an instance or class) reads: ``"probs"`` (the default) or ``"value"``
    (its class attribute ``output``; see :func:`vkit.core.model.model_outputs`)."""
    from vkit.core.heads import OUTPUTS

    cls = metric if isinstance(metric, type) else type(metric)
    output = getattr(cls, "output", "probs")
    if output not in OUTPUTS:
        raise ConfigError(f"metric {cls.__name__}: output = {output!r}; expected one of {OUTPUTS}")
    return output


def _field(sample: Any, key: str) -> Any:
    if isinstance(sample, Mapping):
        if key not in sample:
            raise DataError(f"ClassificationMetric: a data sample has no {key!r}; got keys {sorted(sample)}")
        return sample[key]
    if not hasattr(sample, key):
        raise DataError(f"ClassificationMetric: a data sample ({type(sample).__name__}) has no {key!r}")
    return getattr(sample, key)


def _as_probs(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().float().cpu().numpy()
    return np.asarray(value, dtype=np.float64).reshape(-1)


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den else float("nan")


def youden_threshold(labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray) -> float:
    """The score threshold maximising Youden's J = sensitivity + specificity - 1 (predict positive if ``score >= t``).

    Ties go to the highest threshold. Needs both classes in ``labels``.

    Args:
        labels: 0/1 ground truth.
        scores: the positive class's probability per case.

    Example::

        youden_threshold([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])  # 0.8 (J = 0.5)
    """
    from sklearn.metrics import roc_curve

    labels = np.asarray(labels)
    if len(np.unique(labels)) < 2:
        raise DataError(f"youden_threshold: needs both classes in the labels, got only {np.unique(labels).tolist()}")
    fpr, tpr, thresholds = roc_curve(labels, np.asarray(scores, dtype=np.float64), drop_intermediate=False)
    j = tpr - fpr
    best = int(np.argmax(j[1:])) + 1  # thresholds[0] is +inf (nothing positive)
    return float(thresholds[best])


@METRICS.register_module()
class ClassificationMetric(BaseMetric):
    """ROC-AUC, sensitivity, specificity, accuracy, balanced accuracy (+ confusion matrix, ROC, per-case rows).

    Binary (2 probabilities per case): the positive-class probability is compared
    with ``threshold`` when given (e.g. chosen on validation), else with the
    Youden-J optimal threshold of the current split (reported as ``threshold``).
    Multi-class: prediction is the arg-max, AUC is the macro one-vs-rest AUC,
    sensitivity and specificity are macro averages over classes.

    Metric keys: ``auc``, ``accuracy``, ``balanced_accuracy``, ``sensitivity``,
    ``specificity`` and, when binary, ``threshold`` (mmengine's ``prefix`` is
    prepended as ``prefix/key``). A value that is undefined on the split (e.g.
    AUC with one class present) is ``nan`` with a warning.

    After ``evaluate`` these hold the last split's details:
    ``last_predictions`` (``[{"case_id", "label", "probs", "pred"}]``),
    ``last_confusion`` (``(num_classes, num_classes)`` int array, rows = truth),
    ``last_roc`` (``(fpr, tpr, auc)``; the micro-averaged one-vs-rest curve when
    multi-class, ``None`` when undefined), ``last_threshold`` and ``last_metrics``.

    Args:
        num_classes: expected length of ``probs``; ``None`` takes it from the data.
        threshold: fixed decision threshold for the binary case, in [0, 1].
        positive_class: which index is "positive" in the binary case.
        collect_device, prefix, collect_dir: as mmengine's ``BaseMetric``.

    Example::

        METRICS.build(dict(type="ClassificationMetric", threshold=0.37, prefix="test"))
    """

    default_prefix: str | None = ""  # no prefix unless given (and no mmengine warning about it)
    directions: ClassVar[dict[str, str]] = dict(auc="greater", accuracy="greater", balanced_accuracy="greater",
                                                sensitivity="greater", specificity="greater")
    #: What the evaluator may ask of it (:data:`vkit.core.capabilities.METRIC_CAPABILITIES`).
    provides: ClassVar[frozenset[str]] = frozenset({"fitted", "prediction_rows", "report_sections", "roc", "confusion"})

    def __init__(
        self,
        num_classes: int | None = None,
        threshold: float | None = None,
        positive_class: int = 1,
        collect_device: str = "cpu",
        prefix: str | None = None,
        collect_dir: str | None = None,
    ) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix, collect_dir=collect_dir)
        if num_classes is not None and (not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 2):
            raise ConfigError(f"ClassificationMetric.num_classes: expected an int >= 2 or None, got {num_classes!r}")
        if threshold is not None and not (isinstance(threshold, (int, float)) and 0.0 <= threshold <= 1.0):
            raise ConfigError(f"ClassificationMetric.threshold: expected a probability in [0, 1] or None, got {threshold!r}")
        if positive_class not in (0, 1):
            raise ConfigError(f"ClassificationMetric.positive_class: expected 0 or 1, got {positive_class!r}")
        self.num_classes = num_classes
        self.threshold = None if threshold is None else float(threshold)
        self.positive_class = positive_class
        self.last_predictions: list[dict[str, Any]] = []
        self.last_confusion: np.ndarray | None = None
        self.last_roc: tuple[np.ndarray, np.ndarray, float] | None = None
        self.last_threshold: float | None = None
        self.last_metrics: dict[str, float] = {}

    def process(self, data_batch: Any, data_samples: Sequence[Any]) -> None:
        """Keep ``(case_id, label, probs)`` of each sample; ``data_batch`` is not used."""
        for sample in data_samples:
            probs = _as_probs(_field(sample, "probs"))
            label = int(_field(sample, "label"))
            case_id = str(sample.get("case_id", "")) if isinstance(sample, Mapping) else str(getattr(sample, "case_id", ""))
            path = sample.get("path") if isinstance(sample, Mapping) else getattr(sample, "path", None)
            self.results.append({"case_id": case_id, "label": label, "probs": probs,
                                 "path": None if path is None else str(path)})

    def compute_metrics(self, results: list[dict[str, Any]]) -> dict[str, float]:
        """Scores of the whole split from the collected per-case results."""
        if not results:
            raise DataError("ClassificationMetric: no predictions were collected for this split (empty data set?)")
        probs, labels = self._stack(results)
        n_classes = probs.shape[1]
        if n_classes == 2:
            metrics, preds = self._binary(labels, probs[:, self.positive_class])
        else:
            metrics, preds = self._multiclass(labels, probs)
        self.last_predictions = [
            {"case_id": r["case_id"], "label": int(r["label"]), "probs": [float(p) for p in r["probs"]], "pred": int(p),
             "path": r.get("path")}
            for r, p in zip(results, preds)
        ]
        self.last_metrics = dict(metrics)
        return metrics

    # ------------------------------------------------------------------ the lifecycle's contract
    def fitted(self) -> dict[str, Any]:
        """What this (validation) split chose for the test split: ``{"threshold": t}`` when binary."""
        return {} if self.last_threshold is None else {"threshold": self.last_threshold}

    def prediction_rows(self) -> list[dict[str, Any]]:
        """Store rows of the last split: ``item_id``, ``label``, ``prediction`` (thresholded), ``values.probs``
        and ``values.path`` (the case's source file, when its sample carried ``path``)."""
        return [dict(item_id=p["case_id"], label=p["label"], prediction=p["pred"],
                     values=dict(probs=p["probs"], **({"path": p["path"]} if p.get("path") else {})))
                for p in self.last_predictions]

    def report_sections(self) -> list[Any]:
        """No extra sections: the report draws ROC and confusion from ``last_roc`` / ``last_confusion``."""
        return []

    # ------------------------------------------------------------------ helpers
    def _stack(self, results: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
        lengths = {len(r["probs"]) for r in results}
        if len(lengths) != 1:
            raise DataError(f"ClassificationMetric: probs of different lengths across cases: {sorted(lengths)}")
        n_classes = lengths.pop()
        if n_classes < 2 or (self.num_classes is not None and n_classes != self.num_classes):
            expected = self.num_classes if self.num_classes is not None else ">= 2"
            raise DataError(f"ClassificationMetric: expected {expected} class probabilities per case, got {n_classes}")
        labels = np.asarray([r["label"] for r in results], dtype=np.int64)
        bad = sorted({int(v) for v in labels if not 0 <= v < n_classes})
        if bad:
            raise DataError(f"ClassificationMetric: labels {bad} are outside 0..{n_classes - 1} (from {n_classes} probabilities)")
        return np.stack([r["probs"] for r in results]), labels

    def _common(self, labels: np.ndarray, preds: np.ndarray, n_classes: int) -> dict[str, float]:
        from sklearn.metrics import balanced_accuracy_score, confusion_matrix

        cm = confusion_matrix(labels, preds, labels=list(range(n_classes)))
        self.last_confusion = cm
        tp = np.diag(cm).astype(float)
        fn = cm.sum(axis=1) - tp
        fp = cm.sum(axis=0) - tp
        tn = cm.sum() - tp - fn - fp
        if n_classes == 2:
            k = self.positive_class
            sens, spec = _ratio(tp[k], tp[k] + fn[k]), _ratio(tn[k], tn[k] + fp[k])
        else:
            present = cm.sum(axis=1) > 0
            sens = float(np.mean(tp[present] / (tp + fn)[present]))
            spec = float(np.mean([_ratio(tn[c], tn[c] + fp[c]) for c in range(n_classes)]))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # sklearn warns on one-class splits; _binary/_multiclass report it
            balanced = float(balanced_accuracy_score(labels, preds))
        return {
            "accuracy": float(np.mean(labels == preds)),
            "balanced_accuracy": balanced,
            "sensitivity": sens,
            "specificity": spec,
        }

    def _binary(self, labels: np.ndarray, scores: np.ndarray) -> tuple[dict[str, float], np.ndarray]:
        from sklearn.metrics import roc_auc_score, roc_curve

        target = (labels == self.positive_class).astype(int)
        both = len(np.unique(target)) == 2
        if self.threshold is not None:
            threshold = self.threshold
        elif both:
            threshold = youden_threshold(target, scores)
        else:
            threshold = 0.5
            self._warn(f"only class {int(labels[0])} is present; no Youden threshold, using 0.5")
        positive = scores >= threshold
        preds = np.where(positive, self.positive_class, 1 - self.positive_class)
        if both:
            auc = float(roc_auc_score(target, scores))
            fpr, tpr, _ = roc_curve(target, scores)
            self.last_roc = (fpr, tpr, auc)
        else:
            auc, self.last_roc = float("nan"), None
            self._warn("ROC-AUC is undefined with one class present; reporting nan")
        self.last_threshold = float(threshold)
        metrics = {"auc": auc, **self._common(labels, preds, 2), "threshold": float(threshold)}
        return metrics, preds

    def _multiclass(self, labels: np.ndarray, probs: np.ndarray) -> tuple[dict[str, float], np.ndarray]:
        from sklearn.metrics import auc as area, roc_auc_score, roc_curve

        n_classes = probs.shape[1]
        preds = probs.argmax(axis=1)
        onehot = np.eye(n_classes, dtype=int)[labels]
        present = [c for c in range(n_classes) if 0 < onehot[:, c].sum() < len(labels)]
        if len(present) == n_classes:
            auc = float(roc_auc_score(labels, probs, multi_class="ovr", average="macro", labels=list(range(n_classes))))
        elif present:
            auc = float(np.mean([roc_auc_score(onehot[:, c], probs[:, c]) for c in present]))
            self._warn(f"classes {sorted(set(range(n_classes)) - set(present))} absent: macro AUC over classes {present}")
        else:
            auc = float("nan")
            self._warn("ROC-AUC is undefined with one class present; reporting nan")
        if present:
            fpr, tpr, _ = roc_curve(onehot.ravel(), probs.ravel())
            self.last_roc = (fpr, tpr, float(area(fpr, tpr)))
        else:
            self.last_roc = None
        self.last_threshold = None
        return {"auc": auc, **self._common(labels, preds, n_classes)}, preds

    @staticmethod
    def _warn(message: str) -> None:
        print_log(f"ClassificationMetric: {message}", logger="current", level=logging.WARNING)


@METRICS.register_module()
class RegressionMetric(BaseMetric):
    """MAE, RMSE, R² and Spearman's rank correlation of predicted values against float targets.

    Reads the model's ``value`` outputs (``output = "value"``: a
    :class:`~vkit.core.heads.RegressionHead`), one or ``K`` values per case; with
    ``K > 1`` each key is the mean over the targets. Keys (bare): ``mae``, ``rmse``
    (lower is better), ``r2``, ``spearman`` (higher is better), as declared in
    ``directions``. R² needs two cases and targets that vary, Spearman predictions
    that vary too; otherwise the key is ``nan`` with a warning. The scores come from
    scikit-learn (MAE, MSE, R²) and SciPy (Spearman).

    After ``evaluate``: ``last_metrics`` and :meth:`prediction_rows` (``prediction`` is the
    predicted value, the first one when ``K > 1``; ``values.value`` holds all ``K``).

    Args:
        collect_device, prefix, collect_dir: as mmengine's ``BaseMetric``.

    Example::

        metric = METRICS.build(dict(type="RegressionMetric"))
        metric.process({}, [dict(value=torch.tensor([2.5]), label=3.0, case_id="a"),
                            dict(value=torch.tensor([4.0]), label=4.0, case_id="b")])
        metric.evaluate(2)     # {"mae": 0.25, "rmse": 0.3536, "r2": 0.5, "spearman": 1.0}
    """

    default_prefix: str | None = ""
    output: ClassVar[str] = "value"
    directions: ClassVar[dict[str, str]] = dict(mae="less", rmse="less", r2="greater", spearman="greater")
    #: What the evaluator may ask of it (:data:`vkit.core.capabilities.METRIC_CAPABILITIES`).
    provides: ClassVar[frozenset[str]] = frozenset({"fitted", "prediction_rows", "report_sections"})

    def __init__(self, collect_device: str = "cpu", prefix: str | None = None, collect_dir: str | None = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix, collect_dir=collect_dir)
        self.last_metrics: dict[str, float] = {}
        self._rows: list[dict[str, Any]] = []

    def process(self, data_batch: Any, data_samples: Sequence[Any]) -> None:
        """Keep ``(case_id, label, value)`` of each sample; ``data_batch`` is not used."""
        for sample in data_samples:
            if not isinstance(sample, Mapping) or "value" not in sample or "label" not in sample:
                keys = sorted(sample) if isinstance(sample, Mapping) else type(sample).__name__
                raise DataError(f"RegressionMetric: a data sample needs 'value' (a regression head's output) and "
                                f"'label'; got {keys}")
            path = sample.get("path")
            self.results.append(dict(case_id=str(sample.get("case_id", "")), value=_as_probs(sample["value"]),
                                     label=_as_probs(sample["label"]), path=None if path is None else str(path)))

    def compute_metrics(self, results: list[dict[str, Any]]) -> dict[str, float]:
        """The scores of the whole split."""
        if not results:
            raise DataError("RegressionMetric: no predictions were collected for this split (empty data set?)")
        widths = {(len(r["value"]), len(r["label"])) for r in results}
        if len(widths) != 1 or len(next(iter(widths))) != 2 or len(set(next(iter(widths)))) != 1:
            raise DataError(f"RegressionMetric: (values, targets) per case of different lengths: {sorted(widths)}")
        preds = np.stack([r["value"] for r in results])
        labels = np.stack([r["label"] for r in results])
        if not (np.isfinite(labels).all() and np.isfinite(preds).all()):
            bad = next(r["case_id"] for r in results if not (np.isfinite(r["label"]).all() and np.isfinite(r["value"]).all()))
            raise DataError(f"RegressionMetric: case {bad!r} has a target or prediction that is not finite")
        self.last_metrics = regression_scores(labels, preds, warn=self._warn)
        self._rows = [dict(item_id=r["case_id"], label=float(r["label"][0]), prediction=float(r["value"][0]),
                           values=dict(value=[float(v) for v in r["value"]],
                                       **({"target": [float(v) for v in r["label"]]} if len(r["label"]) > 1 else {}),
                                       **({"path": r["path"]} if r.get("path") else {})))
                      for r in results]
        return dict(self.last_metrics)

    def fitted(self) -> dict[str, Any]:
        """Nothing: a value is its own decision (no threshold to carry to the test split)."""
        return {}

    def prediction_rows(self) -> list[dict[str, Any]]:
        """Store rows of the last split: ``item_id``, ``label`` (target), ``prediction`` (value), ``values.value``."""
        return list(self._rows)

    def report_sections(self) -> list[Any]:
        """The cases predicted worst (largest absolute error on the first target), at most ``WORST`` rows."""
        from vkit.core.reporting import ReportSection

        if not self._rows:
            return []
        worst = sorted(self._rows, key=lambda r: -abs(r["prediction"] - r["label"]))[: self.WORST]
        table = [dict(case=r["item_id"], target=round(r["label"], 4), predicted=round(r["prediction"], 4),
                      error=round(r["prediction"] - r["label"], 4)) for r in worst]
        return [ReportSection(title="largest errors (test)", table=table)]

    #: Rows of the report's "largest errors" table.
    WORST: ClassVar[int] = 10

    @staticmethod
    def _warn(message: str) -> None:
        print_log(f"RegressionMetric: {message}", logger="current", level=logging.WARNING)


def regression_scores(targets: np.ndarray, preds: np.ndarray, warn: Any = None) -> dict[str, float]:
    """``mae``, ``rmse``, ``r2``, ``spearman`` of ``preds`` against ``targets`` (``(N,)`` or ``(N, K)``: mean over K).

    Undefined values (R² of fewer than two cases or of constant targets, Spearman of a constant
    column) are ``nan``, each reported through ``warn(message)`` when given.

    Example::

        regression_scores(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 4.0]))["rmse"]   # 0.5774
    """
    from scipy.stats import spearmanr
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    y = np.asarray(targets, np.float64).reshape(len(targets), -1)
    p = np.asarray(preds, np.float64).reshape(len(preds), -1)
    say = warn or (lambda message: None)
    out = dict(mae=float(mean_absolute_error(y, p)), rmse=float(np.sqrt(mean_squared_error(y, p))))
    varies = [len(y) > 1 and float(np.ptp(y[:, k])) > 0 for k in range(y.shape[1])]
    if all(varies):
        out["r2"] = float(r2_score(y, p))
    else:
        out["r2"] = float("nan")
        say("R² is undefined: fewer than two cases or constant targets; reporting nan")
    ranks = []
    for k in range(y.shape[1]):
        if varies[k] and float(np.ptp(p[:, k])) > 0:
            ranks.append(float(spearmanr(y[:, k], p[:, k]).statistic))
    if len(ranks) == y.shape[1]:
        out["spearman"] = float(np.mean(ranks))
    else:
        out["spearman"] = float("nan")
        say("Spearman correlation is undefined: constant targets or predictions; reporting nan")
    return out


__all__ = ["DIRECTIONS", "ClassificationMetric", "RegressionMetric", "metric_direction", "metric_output", "regression_scores", "youden_threshold"]
