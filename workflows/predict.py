"""``vkit predict TASK --checkpoint RUN_OR_PATH INPUT...``: per-case probabilities from a trained model.

The checkpoint is a run id (its ``checkpoint`` artifact in the store) or a
``.safetensors`` path; its JSON sidecar carries the config the model was
trained with, so the same preprocessing runs. Results are printed and stored
as a ``predict`` run with one prediction row per case.

Example::

    rows = predict_task("medical-diagnosis", "3", ["scan1.nii.gz", "scan2.nii.gz"])
    rows[0]["values"]["probs"]   # [p(negative), p(positive)]
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vkit.core.capabilities import require_capability
from vkit.registry.errors import DataError

if TYPE_CHECKING:  # pragma: no cover
    from vkit.core.decision import Decision


def resolve_checkpoint(ref: str | Path, store: Any) -> Path:
    """The weights of ``--checkpoint REF`` (a run id or a path), verified against the store
    (:func:`vkit.core.run_checkpoint.resolve_checkpoint`)."""
    from vkit.core.run_checkpoint import resolve_checkpoint as resolve

    return resolve(ref, store).weights


def predict_task(
    task_name: str,
    checkpoint: str | Path,
    inputs: Sequence[str],
    *,
    db_url: str | None = None,
    plugins: Sequence[str] = (),
    batch_size: int = 8,
    precision: str = "fp32",
    skip_bad: bool = False,
    compressed: str | None = None,
) -> tuple[int, list[dict[str, Any]]]:
    """Predict ``inputs`` (files, or one datalist) with the checkpoint; returns ``(run_id, rows)``.

    ``skip_bad``: inputs that cannot be read are left out (each named with its
    reason on stderr and in the run's config) instead of stopping at the first.

    ``precision``: ``fp32``, ``bf16`` or ``auto`` (:func:`vkit.core.precision.predict_in_precision`;
    the choice is printed on stderr and recorded in the run's config).

    ``compressed``: run the run's compressed model instead (``"final"``: the
    chain's final model, or a stage name), loaded from ``<work_dir>/compression``
    without the config; classes and the fitted threshold still come from the checkpoint.

    A run id's weights, sidecar and compressed stage must have the sha256 the
    store recorded for that run (:mod:`vkit.core.run_checkpoint`).
    """
    import click

    from vkit.core.precision import predict_in_precision
    from vkit.core.store import open_store
    from vkit.core.trained import load_trained
    from vkit.hooks.manager import get_plugin_manager

    manager = get_plugin_manager(extra=plugins)
    task = manager.get_task(task_name)()
    require_capability(task, "predict", "predict files (`vkit predict`)")
    store = open_store(db_url)
    manager.register_components(require=task.plugin)
    trained = load_trained(checkpoint, store=store, task=task, stage=compressed)
    if trained.stage is not None:
        from vkit.workflows.compressed import check_precision

        check_precision(trained.stage, precision)
    cfg = trained.config
    dataset = _prediction_dataset(task, cfg, [str(i) for i in inputs], skip_bad)
    skipped = [dict(s) for s in getattr(dataset, "skipped", None) or []]
    for item in skipped:
        click.echo(f"skipped {item.get('path') or item.get('case')}: {item.get('reason')}", err=True)
    if len(dataset) == 0:
        raise DataError(f"no usable inputs among {len(inputs)} given ({len(skipped)} skipped: reasons above)")
    predictions, choice = predict_in_precision(trained.model, dataset, batch_size, precision,
                                               log=lambda line: click.echo(line, err=True))
    rows = prediction_rows(predictions, trained.decision)
    path = trained.files.weights
    config = dict(checkpoint=str(path), inputs=list(inputs), precision_used=choice.to_dict(), skip_bad=skip_bad,
                  skipped=skipped, compressed=compressed)
    from vkit.workflows.run_finished import announced_run

    with announced_run(store, manager, task, config, kind="predict", model_sha256=trained.sha256 or None) as run_id:
        store.add_predictions(run_id, "predict", rows)
    for row in rows:
        row["class"] = trained.class_name(row["prediction"]) if isinstance(row["prediction"], int) else row["prediction"]
        if "probs" in row["values"]:
            row["labelled"] = trained.labelled(row["values"]["probs"])
            row["decided"] = decision_reason(trained.decision, row["values"]["probs"], row["class"])
        row["decision"] = trained.decision.describe(trained.classes)
    return run_id, rows


def decision_reason(decision: Decision, probs: Sequence[float], name: str | int) -> str:
    """The predicted class with the numbers that chose it: ``"positive (p=0.71 >= 0.50)"`` for a threshold
    (``p``: the probability of class 1), ``"cat (p=0.62, the most probable)"``, ``"2 (ordinal rule 'median')"``.

    Example::

        decision_reason(Decision("threshold", threshold=0.5), [0.29, 0.71], "positive")   # 'positive (p=0.71 >= 0.50)'
    """
    probs = [float(p) for p in probs]
    if decision.rule == "threshold" and len(probs) == 2:
        p, t = probs[1], float(decision.threshold)  # type: ignore[arg-type]
        digits = 2 if f"{p:.2f}" != f"{t:.2f}" else 4  # never "p=0.41 < 0.41"
        return f"{name} (p={p:.{digits}f} {'>=' if p >= t else '<'} {t:.{digits}f})"
    if decision.rule == "ordinal":
        return f"{name} (ordinal rule {decision.ordinal!r})"
    return f"{name} (p={max(probs):.2f}, the most probable)"


def _prediction_dataset(task: Any, cfg: Any, inputs: list[str], skip_bad: bool) -> Any:
    """``task.prediction_dataset``, with ``skip_bad`` for a task that declares the ``skip_bad`` capability
    (refused by name otherwise)."""
    if not skip_bad:
        return task.prediction_dataset(cfg, inputs)
    require_capability(task, "skip_bad", "skip bad inputs in `vkit predict`")
    return task.prediction_dataset(cfg, inputs, skip_bad=True)


def prediction_rows(predictions: list[dict], decision: Decision | dict[str, Any]) -> list[dict]:
    """Store rows from ``predict`` outputs, each item decided by the run's :class:`~vkit.core.decision.Decision`
    (a binary threshold, an ordinal rule, the most probable class, or a regression's value); a dict is a
    sidecar's ``fitted`` values (:func:`vkit.core.decision.sidecar_decision`).

    Example::

        prediction_rows([{"case_id": "a", "label": None, "probs": [0.7, 0.3]}], Decision("threshold", threshold=0.25))[0]["prediction"]  # 1
    """
    from vkit.core.decision import Decision, sidecar_decision

    if not isinstance(decision, Decision):
        decision = sidecar_decision(dict(fitted=decision))
    rows = []
    for p in predictions:
        key = "value" if "value" in p and "probs" not in p else "probs"
        raw = p[key]
        outputs = raw.tolist() if hasattr(raw, "tolist") else raw
        outputs = [float(x) for x in (outputs if isinstance(outputs, list) else [outputs])]
        prediction = Decision("value").decide(outputs) if key == "value" else decision.decide(outputs)
        label = p.get("label")
        if key == "value":  # a regression target; unknown (nan, as a plugin's unlabelled files carry) is None
            label = None if label is None or not math.isfinite(float(label)) else float(label)
        else:
            label = None if label is None or int(label) < 0 else int(label)
        rows.append(dict(item_id=str(p["case_id"]), label=label, prediction=prediction, values={key: outputs}))
    return rows
