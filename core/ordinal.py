"""Ordinal levels: a cumulative-link head (HEADS) and its metric (METRICS) for labels with an order (0 < 1 < 2 < 3).

``OrdinalHead`` is CORAL-style (Cao, Mirjalili & Raschka 2020): one shared
score ``s = w·x`` and ``K - 1`` ordered thresholds ``θ_1 < ... < θ_{K-1}``;
the cumulative logits ``s - θ_k`` give ``P(y >= k)``. The thresholds are
kept ordered by construction (``θ_{k+1} = θ_k + softplus(g_k)``), so the
cumulative probabilities never cross and the predicted level (the number of
``P(y >= k) > 0.5``, i.e. the median level) rises monotonically with the score.

``OrdinalMetric`` reports accuracy, macro-F1, quadratic weighted kappa (QWK)
and mean absolute level error, with the confusion matrix.

Example::

    from vkit.registry.registries import HEADS, METRICS

    head = HEADS.build(dict(type="OrdinalHead", num_classes=4, class_weights=[4.0, 2.0, 1.0, 1.0]),
                       default_args=dict(in_dim=48))
    log_probs = head(features)                # (N, 4) class log-probabilities (softmax of them = probabilities)
    loss = head.loss(log_probs, labels)       # weighted binary cross-entropy on the K-1 cumulative targets
    metric = METRICS.build(dict(type="OrdinalMetric", num_classes=4))
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.evaluator import BaseMetric
from torch import Tensor, nn

from vkit.registry.errors import ConfigError, DataError
from vkit.registry.registries import HEADS, METRICS

DECISIONS = ("median", "argmax", "expected")


def ordinal_decision(probs: np.ndarray, rule: str = "median") -> np.ndarray:
    """Levels ``(N,)`` from class probabilities ``(N, K)``.

    Args:
        probs: rows of class probabilities.
        rule: ``'median'`` (the first level whose cumulative probability reaches 0.5; minimises the expected
            absolute error and equals the CORAL count rule for an ``OrdinalHead``), ``'argmax'`` (the most
            probable level) or ``'expected'`` (the rounded expected level).

    Example::

        ordinal_decision(np.array([[0.3, 0.1, 0.3, 0.3]]))   # [2]: P(y <= 2) = 0.7 >= 0.5
    """
    probs = np.asarray(probs, dtype=np.float64)
    if rule == "median":
        return np.minimum((np.cumsum(probs, axis=1) < 0.5 - 1e-9).sum(axis=1), probs.shape[1] - 1)
    if rule == "argmax":
        return probs.argmax(axis=1)
    if rule == "expected":
        return np.rint(probs @ np.arange(probs.shape[1])).astype(np.int64)
    raise ConfigError(f"ordinal decision rule {rule!r}: expected one of {DECISIONS}")


def _check_weights(value: object, num_classes: int) -> list[float]:
    ok = isinstance(value, Sequence) and not isinstance(value, str) and len(value) == num_classes
    weights = [float(w) for w in value] if ok else []  # type: ignore[union-attr]
    if not ok or min(weights) <= 0 or not all(np.isfinite(weights)):
        raise ConfigError(f"OrdinalHead.class_weights: expected {num_classes} finite weights > 0 or None, got {value!r}")
    return weights


class OrdinalHead(nn.Module):
    """Cumulative-link (CORAL) head with ordered thresholds and optional class weights.

    ``forward`` returns class log-probabilities ``(N, K)``, so the model's usual
    softmax gives the class probabilities and every classification metric works
    unchanged; :meth:`cumulative_logits` gives the ``(N, K - 1)`` logits of
    ``P(y >= k)``, non-increasing in ``k`` for every sample.

    Args:
        in_dim: feature width.
        num_classes: number of ordered levels ``K`` (>= 2).
        dropout: dropout before the shared score, in [0, 1).
        hidden_dim: width of an optional hidden ``Linear -> ReLU`` layer before the score (``None``: linear).
        class_weights: ``K`` weights > 0 for the loss of each true level (class imbalance), or ``None``.

    Example::

        head = OrdinalHead(in_dim=48, num_classes=4)
        head.cumulative_logits(torch.randn(2, 48)).shape   # (2, 3)
    """

    def __init__(self, in_dim: int, num_classes: int = 4, dropout: float = 0.0, hidden_dim: int | None = None,
                 class_weights: Sequence[float] | None = None) -> None:
        super().__init__()
        for key, value in (("in_dim", in_dim), ("num_classes", num_classes)):
            if not isinstance(value, int) or isinstance(value, bool) or value < (2 if key == "num_classes" else 1):
                raise ConfigError(f"OrdinalHead.{key}: expected an int >= {2 if key == 'num_classes' else 1}, got {value!r}")
        if not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
            raise ConfigError(f"OrdinalHead.dropout: expected a float in [0, 1), got {dropout!r}")
        if hidden_dim is not None and (not isinstance(hidden_dim, int) or hidden_dim < 1):
            raise ConfigError(f"OrdinalHead.hidden_dim: expected a positive int or None, got {hidden_dim!r}")
        weights = None if class_weights is None else _check_weights(class_weights, num_classes)
        self.in_dim, self.num_classes = in_dim, num_classes
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        layers: list[nn.Module] = [nn.Linear(in_dim, hidden_dim), nn.ReLU(inplace=True)] if hidden_dim else []
        self.hidden = nn.Sequential(*layers)
        self.score = nn.Linear(hidden_dim or in_dim, 1)
        self.first = nn.Parameter(torch.tensor([-(num_classes - 2) / 2.0]))  # thresholds start at -1, 0, 1 for K=4
        self.gaps = nn.Parameter(torch.full((num_classes - 2,), float(np.log(np.expm1(1.0)))))  # softplus(g) = 1
        self.register_buffer("class_weights", torch.tensor(weights) if weights is not None else torch.ones(num_classes))

    def thresholds(self) -> Tensor:
        """The ``K - 1`` strictly increasing thresholds."""
        return torch.cat([self.first, self.first + torch.cumsum(F.softplus(self.gaps), 0)])

    def cumulative_logits(self, x: Tensor) -> Tensor:
        """Logits of ``P(y >= k)`` for ``k = 1 .. K-1``, shape ``(N, K - 1)``."""
        if x.dim() > 2:
            x = x.flatten(2).mean(dim=2)
        width = self.hidden[0].in_features if len(self.hidden) else self.score.in_features
        if x.dim() != 2 or x.shape[1] != width:
            raise DataError(f"OrdinalHead: features of shape {tuple(x.shape)}, expected (N, {width})")
        return self.score(self.hidden(self.dropout(x))) - self.thresholds()

    def forward(self, x: Tensor) -> Tensor:
        """Class log-probabilities ``(N, K)`` from features ``(N, in_dim)`` (or ``(N, in_dim, *extra)``, averaged)."""
        c = self.cumulative_logits(x)
        first = F.logsigmoid(-c[:, :1])  # log P(y = 0)
        last = F.logsigmoid(c[:, -1:])  # log P(y = K-1)
        # log(σ(a) - σ(b)) = log σ(a) + log σ(-b) + log(1 - exp(b - a)), with a - b = softplus(gap) > 0
        gap = (c[:, :-1] - c[:, 1:]).clamp_min(1e-6)
        middle = F.logsigmoid(c[:, :-1]) + F.logsigmoid(-c[:, 1:]) + torch.log(-torch.expm1(-gap))
        return torch.cat([first, middle, last], dim=1)

    def loss(self, log_probs: Tensor, labels: Tensor) -> Tensor:
        """Class-weighted mean binary cross-entropy over the ``K - 1`` targets ``1[y >= k]``."""
        k = self.num_classes
        if log_probs.dim() != 2 or log_probs.shape[1] != k:
            raise DataError(f"OrdinalHead.loss: expected (N, {k}) log-probabilities, got {tuple(log_probs.shape)}")
        labels = labels.long().reshape(-1)
        if labels.numel() != log_probs.shape[0] or (labels.numel() and (labels.min() < 0 or labels.max() >= k)):
            raise DataError(f"OrdinalHead.loss: labels must be {log_probs.shape[0]} levels in [0, {k - 1}], got {labels.tolist()}")
        # log P(y >= j) and log P(y < j) for j = 1..K-1, from the class log-probabilities
        at_least = torch.stack([torch.logsumexp(log_probs[:, j:], dim=1) for j in range(1, k)], dim=1)
        below = torch.stack([torch.logsumexp(log_probs[:, :j], dim=1) for j in range(1, k)], dim=1)
        target = (labels[:, None] >= torch.arange(1, k, device=labels.device)[None, :]).to(log_probs.dtype)
        nll = -(target * at_least + (1 - target) * below).mean(dim=1)
        weights = self.class_weights.to(log_probs.dtype)[labels]
        return (weights * nll).sum() / weights.sum()

    @classmethod
    def smoke_config(cls) -> dict[str, Any]:
        return dict(num_classes=4)


def balanced_class_weights(labels: Sequence[int], num_classes: int, power: float = 0.5) -> list[float]:
    """Inverse-frequency weights ``(n / (K n_c)) ** power``, normalised to mean 1 over the labels (absent classes: 1).

    Example::

        balanced_class_weights([2, 2, 2, 3, 0], 4, power=1.0)
    """
    counts = np.bincount(np.asarray(list(labels), dtype=np.int64), minlength=num_classes).astype(np.float64)
    if counts.sum() == 0:
        raise DataError("balanced_class_weights: no labels")
    raw = np.where(counts > 0, (counts.sum() / (num_classes * np.maximum(counts, 1))) ** power, 1.0)
    raw /= float((raw * counts).sum() / counts.sum())
    return [round(float(w), 6) for w in raw]


def quadratic_weighted_kappa(labels: Sequence[int], preds: Sequence[int], num_classes: int) -> float:
    """Cohen's kappa with quadratic weights (scikit-learn), over the levels ``0 .. num_classes - 1``; ``nan`` if undefined."""
    import warnings

    from sklearn.metrics import cohen_kappa_score

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(cohen_kappa_score(labels, preds, labels=list(range(num_classes)), weights="quadratic"))


class OrdinalMetric(BaseMetric):
    """Accuracy, macro-F1, quadratic weighted kappa and mean absolute level error of ordinal predictions.

    Keys (bare): ``accuracy``, ``macro_f1``, ``qwk``, ``mae`` (mean ``|predicted - true|`` in levels).
    Each item's level comes from its probabilities by ``decision`` (see
    :func:`ordinal_decision`). After ``evaluate``: ``last_metrics``,
    ``last_confusion`` (rows = true level), :meth:`prediction_rows` and
    :meth:`report_sections`.

    Args:
        num_classes: number of levels ``K``.
        decision: ``'median'`` (default), ``'argmax'`` or ``'expected'``.
        level_names: a name per level for the report (default ``0 .. K-1``).
        collect_device, prefix, collect_dir: as mmengine's ``BaseMetric``.

    Example::

        metric = METRICS.build(dict(type="OrdinalMetric", num_classes=4))
        metric.process({}, [dict(probs=torch.tensor([.1, .2, .6, .1]), label=2, case_id="c1")])
        metric.evaluate(1)    # {"accuracy": 1.0, "macro_f1": ..., "qwk": ..., "mae": 0.0}
    """

    default_prefix: str | None = ""
    directions: ClassVar[dict[str, str]] = dict(accuracy="greater", macro_f1="greater", qwk="greater", mae="less")
    #: Its decision: a level by ``decision`` (:func:`vkit.core.decision.metric_decision`, stored with the checkpoint).
    decides: ClassVar[str] = "ordinal"
    #: What the evaluator may ask of it (:data:`vkit.core.capabilities.METRIC_CAPABILITIES`).
    provides: ClassVar[frozenset[str]] = frozenset({"fitted", "prediction_rows", "report_sections", "confusion"})

    def __init__(self, num_classes: int = 4, decision: str = "median", level_names: Sequence[str] | None = None,
                 collect_device: str = "cpu", prefix: str | None = None, collect_dir: str | None = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix, collect_dir=collect_dir)
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 2:
            raise ConfigError(f"OrdinalMetric.num_classes: expected an int >= 2, got {num_classes!r}")
        if decision not in DECISIONS:
            raise ConfigError(f"OrdinalMetric.decision: expected one of {DECISIONS}, got {decision!r}")
        if level_names is not None and len(level_names) != num_classes:
            raise ConfigError(f"OrdinalMetric.level_names: expected {num_classes} names, got {list(level_names)!r}")
        self.num_classes, self.decision = num_classes, decision
        self.level_names = [str(n) for n in level_names] if level_names is not None else [str(i) for i in range(num_classes)]
        self.last_metrics: dict[str, float] = {}
        self.last_confusion: np.ndarray | None = None
        self._rows: list[dict[str, Any]] = []

    def process(self, data_batch: Any, data_samples: Sequence[Any]) -> None:
        """Keep ``(case_id, label, probs)`` of each sample."""
        for sample in data_samples:
            if not isinstance(sample, Mapping) or "probs" not in sample or "label" not in sample:
                raise DataError(f"OrdinalMetric: a data sample needs 'probs' and 'label', got {sample!r:.120}")
            probs = sample["probs"]
            probs = probs.detach().float().cpu().numpy() if hasattr(probs, "detach") else np.asarray(probs, np.float64)
            self.results.append(dict(case_id=str(sample.get("case_id", "")), label=int(sample["label"]),
                                     probs=np.asarray(probs, np.float64).reshape(-1), path=sample.get("path")))

    def compute_metrics(self, results: list[dict[str, Any]]) -> dict[str, float]:
        from sklearn.metrics import confusion_matrix, f1_score

        if not results:
            raise DataError("OrdinalMetric: no predictions were collected for this split (empty data set?)")
        probs = np.stack([r["probs"] for r in results])
        if probs.shape[1] != self.num_classes:
            raise DataError(f"OrdinalMetric: expected {self.num_classes} level probabilities per item, got {probs.shape[1]}")
        labels = np.asarray([r["label"] for r in results], np.int64)
        bad = sorted({int(v) for v in labels if not 0 <= v < self.num_classes})
        if bad:
            raise DataError(f"OrdinalMetric: labels {bad} are outside 0..{self.num_classes - 1}")
        preds = ordinal_decision(probs, self.decision)
        levels = list(range(self.num_classes))
        self.last_confusion = confusion_matrix(labels, preds, labels=levels)
        expected = probs @ np.arange(self.num_classes)
        self._rows = [dict(item_id=r["case_id"], label=int(r["label"]), prediction=int(p),
                           values=dict(probs=[round(float(v), 6) for v in r["probs"]], expected_level=round(float(e), 4),
                                       **({"path": str(r["path"])} if r.get("path") else {})))
                      for r, p, e in zip(results, preds, expected)]
        self.last_metrics = dict(
            accuracy=float(np.mean(preds == labels)),
            macro_f1=float(f1_score(labels, preds, labels=levels, average="macro", zero_division=0)),
            qwk=quadratic_weighted_kappa(labels, preds, self.num_classes),
            mae=float(np.mean(np.abs(preds - labels))),
        )
        return dict(self.last_metrics)

    def prediction_rows(self) -> list[dict[str, Any]]:
        """Per-item rows of the last split: ``item_id``, ``label``, ``prediction`` (level) and ``values``
        (probs, expected level, and ``path`` when the sample carried its clip's path)."""
        return list(self._rows)

    def fitted(self) -> dict[str, Any]:
        """The decision rule (kept in the checkpoint meta, so ``vkit predict`` decides as the run did)."""
        return dict(decision=self.decision)

    def report_sections(self) -> list[Any]:
        """The confusion matrix (rows: true level, columns: predicted level) with per-level recall."""
        from vkit.core.reporting import ReportSection

        if self.last_confusion is None:
            return []
        table = []
        for i, row in enumerate(self.last_confusion):
            entry = {"true level": f"{i} {self.level_names[i]}".strip() if self.level_names[i] != str(i) else str(i)}
            entry.update({f"pred {j}": int(v) for j, v in enumerate(row)})
            entry["recall"] = round(float(row[i] / row.sum()), 3) if row.sum() else None
            table.append(entry)
        return [ReportSection(title="confusion matrix per level (test)", table=table)]


HEADS.register_module(module=OrdinalHead)
METRICS.register_module(module=OrdinalMetric)

__all__ = ["OrdinalHead", "OrdinalMetric", "balanced_class_weights", "ordinal_decision", "quadratic_weighted_kappa"]
