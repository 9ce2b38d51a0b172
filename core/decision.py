"""A trained model's decision: how its outputs become the prediction ``vkit predict`` prints and stores.

The run's metric owns it. A metric class declares what kind of decision it
makes in the class attribute ``decides`` (:data:`KINDS`; a metric that reads a
model's values, ``output = "value"``, decides ``"value"`` without saying so):

- ``"classes"`` (the default, also for a metric that declares nothing): the most
  probable class, or, when validation fitted a ``threshold`` on a binary model,
  ``P(class 1) >= threshold``;
- ``"ordinal"``: a level by the metric's ``decision`` rule
  (:func:`vkit.core.ordinal.ordinal_decision`: ``median``, ``argmax``, ``expected``);
- ``"value"``: the model's outputs are the prediction (regression: no class, no threshold).

:func:`metric_decision` turns the run's metric config and what validation fitted
into one :class:`Decision`; :func:`vkit.core.lifecycle.save_run_checkpoint` stores
it in the sidecar (``decision``) and :func:`vkit.core.trained.load_trained` reads
it back, so ``vkit predict``, ``vkit score`` and a plugin's scorer decide as the
run's test split did.

Example (a metric of a new plugin)::

    @METRICS.register_module()
    class CountMetric(BaseMetric):
        decides = "value"             # its model predicts counts: vkit predict prints them as they are

    decision = metric_decision(dict(type="ClassificationMetric"), {"threshold": 0.41})
    decision.decide([0.55, 0.45])      # 1: P(class 1) = 0.45 >= 0.41
    decision.describe(["negative", "positive"])   # 'positive if P(positive) >= 0.4100, else negative'
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from vkit.registry.errors import CheckpointError, ConfigError

#: What a metric class may declare in ``decides``.
KINDS = ("classes", "ordinal", "value")
#: The rules a :class:`Decision` applies (``classes`` becomes ``argmax`` or ``threshold``).
RULES = ("argmax", "threshold", "ordinal", "value")


@dataclass(frozen=True)
class Decision:
    """One decision rule over a model's outputs.

    Args:
        rule: ``"argmax"``, ``"threshold"`` (binary: class 1 when ``P(class 1) >= threshold``),
            ``"ordinal"`` (:func:`~vkit.core.ordinal.ordinal_decision` by ``ordinal``) or ``"value"``
            (the outputs as they are).
        threshold: the threshold of rule ``"threshold"``, in [0, 1].
        ordinal: the ordinal rule of rule ``"ordinal"`` (``"median"``, ``"argmax"``, ``"expected"``).
    """

    rule: str = "argmax"
    threshold: float | None = None
    ordinal: str | None = None

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise ConfigError(f"decision rule {self.rule!r}: expected one of {RULES}")
        if self.rule == "threshold" and not (isinstance(self.threshold, (int, float)) and 0.0 <= self.threshold <= 1.0):
            raise ConfigError(f"decision threshold {self.threshold!r}: expected a probability in [0, 1]")
        if self.rule == "ordinal":
            from vkit.core.ordinal import DECISIONS

            if self.ordinal not in DECISIONS:
                raise ConfigError(f"ordinal decision rule {self.ordinal!r}: expected one of {DECISIONS}")

    @property
    def output(self) -> str:
        """The key of the model's outputs this decision reads: ``"value"`` or ``"probs"``."""
        return "value" if self.rule == "value" else "probs"

    def decide(self, outputs: Sequence[float] | float) -> int | float | list[float]:
        """The prediction of one item from its outputs (class probabilities, or values).

        Example::

            Decision("threshold", threshold=0.25).decide([0.7, 0.3])     # 1
            Decision("value").decide([3.5])                               # 3.5
        """
        if self.rule == "value":
            values = [float(v) for v in outputs] if isinstance(outputs, Sequence) or hasattr(outputs, "tolist") \
                else [float(outputs)]
            return values[0] if len(values) == 1 else values
        probs = [float(p) for p in outputs]  # type: ignore[union-attr]
        if self.rule == "threshold" and len(probs) == 2:
            return int(probs[1] >= float(self.threshold))  # type: ignore[arg-type]
        if self.rule == "ordinal":
            from vkit.core.ordinal import ordinal_decision

            return int(ordinal_decision([probs], str(self.ordinal))[0])
        return max(range(len(probs)), key=probs.__getitem__)

    def describe(self, classes: Sequence[str] = ()) -> str:
        """The rule in words, with the class names when given (what ``vkit predict`` prints)."""
        if self.rule == "threshold":
            pos, neg = (str(classes[1]), str(classes[0])) if len(classes) >= 2 else ("class 1", "class 0")
            return f"{pos} if P({pos}) >= {float(self.threshold):.4f}, else {neg}"  # type: ignore[arg-type]
        if self.rule == "ordinal":
            return f"ordinal rule {self.ordinal!r} over the level probabilities"
        if self.rule == "value":
            return "the predicted value"
        return "the most probable class"

    def to_dict(self) -> dict[str, Any]:
        """The JSON the checkpoint sidecar keeps under ``decision``."""
        out: dict[str, Any] = dict(rule=self.rule)
        if self.threshold is not None:
            out["threshold"] = float(self.threshold)
        if self.ordinal is not None:
            out["ordinal"] = self.ordinal
        return out

    @classmethod
    def from_dict(cls, value: Mapping[str, Any], where: str = "decision") -> Decision:
        """The decision a sidecar stored; a malformed one is a :class:`CheckpointError` naming ``where``."""
        unknown = set(value) - {"rule", "threshold", "ordinal"}
        if unknown:
            raise CheckpointError(f"{where}: unknown key(s) {sorted(unknown)}; expected rule, threshold, ordinal")
        try:
            return cls(str(value.get("rule", "")), value.get("threshold"), value.get("ordinal"))
        except ConfigError as err:
            raise CheckpointError(f"{where}: {err}") from None


def metric_decision(metric_cfg: Mapping[str, Any] | None, fitted: Mapping[str, Any] | None = None) -> Decision:
    """The decision of the metric ``metric_cfg`` (a METRICS config) with what validation ``fitted``.

    The metric class's declared ``decides`` (:data:`KINDS`) picks the rule; a
    metric that declares nothing decides by ``"classes"``.

    Example::

        metric_decision(dict(type="OrdinalMetric", decision="median")).to_dict()   # {'rule': 'ordinal', 'ordinal': 'median'}
    """
    from vkit.registry.registries import METRICS

    fitted = dict(fitted or {})
    metric = dict(metric_cfg or {})
    cls = METRICS.get(metric["type"]) if isinstance(metric.get("type"), str) else None
    # declared class attributes: ``decides``; else a metric reading a model's values (``output = "value"``,
    # a regression metric) decides "value"; else "classes"
    default = "value" if getattr(cls, "output", "probs") == "value" else "classes"
    kind = getattr(cls, "decides", default) if cls is not None else "classes"
    if kind not in KINDS:
        raise ConfigError(f"metric {metric.get('type')!r}: decides = {kind!r}; expected one of {KINDS}")
    if kind == "value":
        return Decision("value")
    if kind == "ordinal":
        return Decision("ordinal", ordinal=str(fitted.get("decision") or metric.get("decision") or "median"))
    threshold = fitted.get("threshold")
    return Decision("threshold", threshold=float(threshold)) if threshold is not None else Decision("argmax")


def sidecar_decision(meta: Mapping[str, Any]) -> Decision:
    """The decision a checkpoint sidecar records; a sidecar written before decisions were stored gets the one
    its ``fitted`` values imply (a binary ``threshold``, an ordinal ``decision`` rule, else the most probable class).

    Example::

        sidecar_decision(load_meta("work/model.safetensors")).describe(["negative", "positive"])
    """
    stored = meta.get("decision")
    if isinstance(stored, Mapping):
        return Decision.from_dict(stored, f"checkpoint sidecar of run {meta.get('run_id', '?')}: decision")
    fitted = meta.get("fitted") if isinstance(meta.get("fitted"), Mapping) else {}
    if fitted.get("threshold") is not None:
        return Decision("threshold", threshold=float(fitted["threshold"]))
    rule = fitted.get("decision") or (stored if isinstance(stored, str) else None)  # education wrote it at the top
    return Decision("ordinal", ordinal=str(rule)) if rule else Decision("argmax")


__all__ = ["KINDS", "RULES", "Decision", "metric_decision", "sidecar_decision"]
