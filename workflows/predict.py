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

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vkit.registry.errors import CheckpointError, ConfigError, DataError


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
    from mmengine.config import Config

    from vkit.core.checkpoint import load_checkpoint, load_meta
    from vkit.core.precision import predict_in_precision
    from vkit.core.run_checkpoint import resolve_checkpoint as resolve
    from vkit.core.store import open_store
    from vkit.hooks.manager import get_plugin_manager

    manager = get_plugin_manager(extra=plugins)
    task = manager.get_task(task_name)()
    store = open_store(db_url)
    files = resolve(checkpoint, store)
    path = files.weights
    meta = load_meta(path)
    _check_task(meta, task, path)
    if "config" not in meta:
        raise CheckpointError(f"{path}: its JSON sidecar has no 'config'; it was not written by `vkit run`")
    cfg = Config(meta["config"])
    manager.register_components(require=task.plugin)
    try:
        model = task.build_model(cfg, None)
    except KeyError as err:
        raise CheckpointError(f"{path}: its config has no {err} that task {task.name!r} needs; it was trained by "
                              f"task {meta.get('task', '(unknown)')!r}") from None
    load_checkpoint(path, model)
    model_sha256 = meta.get("sha256")
    if compressed is not None:
        from vkit.workflows.compressed import check_precision, compressed_model

        model, compressed_meta = compressed_model(files, compressed)
        check_precision(compressed_meta, precision)
        model_sha256 = str(compressed_meta["sha256"])
    dataset = _prediction_dataset(task, cfg, [str(i) for i in inputs], skip_bad)
    skipped = [dict(s) for s in getattr(dataset, "skipped", None) or []]
    for item in skipped:
        click.echo(f"skipped {item.get('path') or item.get('case')}: {item.get('reason')}", err=True)
    if len(dataset) == 0:
        raise DataError(f"no usable inputs among {len(inputs)} given ({len(skipped)} skipped: reasons above)")
    predictions, choice = predict_in_precision(model, dataset, batch_size, precision,
                                               log=lambda line: click.echo(line, err=True))
    rows = prediction_rows(predictions, meta.get("fitted") or {})
    config = dict(checkpoint=str(path), inputs=list(inputs), precision_used=choice.to_dict(), skip_bad=skip_bad,
                  skipped=skipped, compressed=compressed)
    with store.track_run(task=task.name, plugin=task.plugin, config=config,
                         seed=None, kind="predict", model_sha256=model_sha256) as run_id:
        store.add_predictions(run_id, "predict", rows)
    classes = meta.get("classes") or []
    for row in rows:
        row["class"] = classes[row["prediction"]] if row["prediction"] < len(classes) else row["prediction"]
    return run_id, rows


def _check_task(meta: dict[str, Any], task: Any, path: Path) -> None:
    """A checkpoint written for another task is refused by name (not a ``KeyError`` deep in the model build)."""
    owner = meta.get("task")
    if owner and owner != task.name:
        plugin = f" (plugin {meta['plugin']!r})" if meta.get("plugin") else ""
        raise CheckpointError(f"--checkpoint {path}: trained by task {owner!r}{plugin}, not {task.name!r}; "
                              f"use `vkit predict {owner} ...` or a {task.name} checkpoint")


def _prediction_dataset(task: Any, cfg: Any, inputs: list[str], skip_bad: bool) -> Any:
    """``task.prediction_dataset``, passing ``skip_bad`` to a task that takes it (and refusing it otherwise)."""
    import inspect

    if not skip_bad:
        return task.prediction_dataset(cfg, inputs)
    if "skip_bad" not in inspect.signature(task.prediction_dataset).parameters:
        raise ConfigError(f"task {task.name!r} (plugin {task.plugin!r}) cannot skip bad inputs in `vkit predict`: "
                          f"its prediction_dataset(cfg, inputs) takes no skip_bad argument")
    return task.prediction_dataset(cfg, inputs, skip_bad=True)


def prediction_rows(predictions: list[dict], fitted: dict[str, Any]) -> list[dict]:
    """Store rows from ``predict`` outputs; a binary model uses the run's validation ``threshold`` when it has one,
    an ordinal one the run's ``decision`` rule (:func:`vkit.core.ordinal.ordinal_decision`, e.g. ``"median"``).

    Example::

        prediction_rows([{"case_id": "a", "label": None, "probs": [0.7, 0.3]}], {"threshold": 0.25})[0]["prediction"]  # 1
    """
    threshold = fitted.get("threshold")
    decision = fitted.get("decision")
    rows = []
    for p in predictions:
        probs = [float(x) for x in p["probs"]]
        if threshold is not None and len(probs) == 2:
            prediction = int(probs[1] >= float(threshold))
        elif decision is not None:
            from vkit.core.ordinal import ordinal_decision

            prediction = int(ordinal_decision([probs], str(decision))[0])
        else:
            prediction = max(range(len(probs)), key=probs.__getitem__)
        label = p.get("label")
        rows.append(dict(item_id=str(p["case_id"]), label=None if label is None or int(label) < 0 else int(label),
                         prediction=prediction, values=dict(probs=probs)))
    return rows
