"""Declared capabilities: what a task and a scorer support, said in a class attribute, never probed.

A task lists its capabilities in ``Task.capabilities`` (:data:`TASK_CAPABILITIES`:
each names the method that backs it); the plugin manager checks them when the
plugin loads (:func:`task_problem`: a declared capability whose method is not
implemented is a plugin error naming the plugin), ``vkit plugins check`` runs
what they promise, and the workflows ask :func:`require_capability` instead of
inspecting the task.

A scorer lists what it supports in its class attribute ``supports``
(:data:`SCORER_CAPABILITIES`: each names the attribute it needs); ``vkit score``
checks them when the task builds the scorer (:func:`scorer_problem`) and the
precision and compression paths ask :func:`require_support`.

A metric lists in ``provides`` what the task evaluator may ask of it
(:data:`METRIC_CAPABILITIES`: its validation-fitted values, store rows, report
sections); ``vkit plugins check`` checks a plugin's metrics (:func:`metric_problem`).

Example::

    class DemoTask(Task):
        capabilities = frozenset({"predict", "skip_bad", "score"})

    class DemoScorer:
        supports = frozenset({"compressed", "int8"})
        compressed_module = "model"          # what --compressed replaces
        int8_module = "model.backbones.rgb"  # what --precision int8 quantizes
"""
from __future__ import annotations

from collections.abc import Set
from typing import Any

from vkit.registry.errors import ConfigError, did_you_mean

#: What a task may declare in ``Task.capabilities``, and the method each needs (overriding the base class's).
TASK_CAPABILITIES: dict[str, str] = dict(
    predict="prediction_dataset",  # vkit predict
    skip_bad="prediction_dataset",  # vkit predict --skip-bad: prediction_dataset(cfg, inputs, skip_bad=True)
    score="build_scorer",  # vkit score
    recommend="recommender",  # vkit recommend
)

#: What a scorer may declare in ``supports``, and the attribute each needs.
SCORER_CAPABILITIES: dict[str, str] = dict(
    compressed="compressed_module",  # vkit score --compressed: the dotted path of the model the chain compressed
    int8="int8_module",  # vkit score --precision int8: the dotted path of the conv backbone to quantize
    validation_clips="validation_clips",  # --precision auto / int8 gate and calibrate on its (clips, labels)
)


#: What a metric class may declare in ``provides`` (what :class:`~vkit.core.evaluation.MetricEvaluator` asks of
#: it), and the method or attribute each needs.
METRIC_CAPABILITIES: dict[str, str] = dict(
    fitted="fitted",  # fitted(): values validation chose for the test split and the checkpoint (a threshold ...)
    prediction_rows="prediction_rows",  # prediction_rows(): one store row per test item
    report_sections="report_sections",  # report_sections(): extra sections of the run report
    roc="last_roc",  # last_roc: (fpr, tpr, auc) of the last split, for the report
    confusion="last_confusion",  # last_confusion: the last split's confusion matrix
)


def metric_provides(metric: Any) -> frozenset[str]:
    """What ``metric`` (an instance or class) declares in its ``provides`` class attribute (nothing if it declares none).

    Example::

        "fitted" in metric_provides(ClassificationMetric)   # True: MetricEvaluator keeps its threshold
    """
    cls = metric if isinstance(metric, type) else type(metric)
    return frozenset(getattr(cls, "provides", frozenset()))


def metric_problem(cls: type) -> str | None:
    """Why metric class ``cls``'s declared ``provides`` do not hold (unknown name, method missing), or ``None``."""
    def missing(name: str, attribute: str) -> str | None:  # last_roc / last_confusion are set by evaluate()
        return None if attribute.startswith("last_") or callable(getattr(cls, attribute, None)) else \
            f"has no {attribute}() method"
    return _declared_problem(cls.__name__, "provides", getattr(cls, "provides", frozenset()), METRIC_CAPABILITIES,
                             missing)


def _names_problem(declared: Any, known: dict[str, str]) -> str | None:
    if not isinstance(declared, Set) or not all(isinstance(c, str) for c in declared):
        return f"{declared!r}; expected a frozenset of names from {sorted(known)}"
    unknown = sorted(set(declared) - set(known))
    if unknown:
        return f"unknown capability {unknown[0]!r}{did_you_mean(unknown[0], known)}; known: {sorted(known)}"
    return None


def task_problem(cls: type, base: type) -> str | None:
    """Why task class ``cls``'s declared capabilities do not hold, or ``None`` (``base``: :class:`vkit.core.task.Task`,
    whose methods a declared capability's method must override).

    Example::

        task_problem(DemoTask, Task)   # "declares capability 'score' but does not implement build_scorer()"
    """
    declared = cls.capabilities
    bad = _names_problem(declared, TASK_CAPABILITIES)
    if bad:
        return f"has capabilities {bad}"
    for name in sorted(declared):
        method = TASK_CAPABILITIES[name]
        if getattr(cls, method) is getattr(base, method):
            return f"declares capability {name!r} but does not implement {method}()"
    if "skip_bad" in declared and "predict" not in declared:
        return "declares capability 'skip_bad' without 'predict'"
    return None


def require_capability(task: Any, name: str, what: str) -> None:
    """Raise a :class:`ConfigError` naming the task and its plugin unless it declares capability ``name``.

    Example::

        require_capability(task, "skip_bad", "skip bad inputs in `vkit predict`")
    """
    if name not in task.capabilities:
        raise ConfigError(f"task {task.name!r} (plugin {task.plugin!r}) cannot {what}: it does not declare the "
                          f"{name!r} capability (its capabilities: {sorted(task.capabilities) or 'none'})")


def scorer_supports(scorer: Any) -> frozenset[str]:
    """What ``scorer`` declares in its ``supports`` class attribute (nothing when it declares none)."""
    return frozenset(getattr(scorer, "supports", frozenset()))  # a wrapper (PrecisionScorer) forwards it


def scorer_problem(scorer: Any) -> str | None:
    """Why ``scorer``'s declared ``supports`` do not hold (unknown name, the attribute it needs missing), or ``None``."""
    def missing(name: str, attribute: str) -> str | None:
        value = getattr(scorer, attribute, None)
        if name == "validation_clips":
            return None if callable(value) else "has no validation_clips()"
        return None if isinstance(value, str) and value else f"its {attribute} is {value!r}"
    return _declared_problem(type(scorer).__name__, "supports", getattr(scorer, "supports", frozenset()),
                             SCORER_CAPABILITIES, missing)


def _declared_problem(owner: str, field: str, declared: Any, known: dict[str, str],
                      missing: Any) -> str | None:
    """The first problem of ``owner``'s ``field`` declaration: bad names, or a name whose ``missing(name, attribute)``
    says what is lacking."""
    bad = _names_problem(declared, known)
    if bad:
        return f"{owner}.{field} is {bad}"
    for name in sorted(declared):
        why = missing(name, known[name])
        if why:
            return f"{owner} declares {name!r} in {field} but {why}"
    return None


def require_support(scorer: Any, name: str, what: str) -> None:
    """Raise a :class:`ConfigError` naming the scorer unless it declares ``name`` in ``supports``."""
    if name not in scorer_supports(scorer):
        attribute = SCORER_CAPABILITIES[name]
        raise ConfigError(f"{what}: {type(scorer).__name__} does not declare {name!r} in its supports "
                          f"(supports = frozenset({{{name!r}}}) with {attribute})")


__all__ = ["METRIC_CAPABILITIES", "SCORER_CAPABILITIES", "TASK_CAPABILITIES", "metric_problem", "metric_provides",
           "require_capability", "require_support", "scorer_problem", "scorer_supports", "task_problem"]
