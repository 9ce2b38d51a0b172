"""The classification pipeline verticals share: train → pick threshold on val → test → store → compress.

A task hands it datasets and its config; everything else (Runner, metrics,
safetensors checkpoint, per-case predictions, compression gate) is here once::

    metrics = run_classification(cfg, ctx, train_set=train, val_set=val, test_set=test,
                                 classes=["negative", "positive"])

``cfg`` needs ``model`` (a VideoModel config without ``type``), ``train``
(see :data:`vkit.core.engine.DEFAULT_TRAIN`), ``metric`` (a METRICS config)
and optionally ``compression`` (``stages`` and ``max_metric_drop``) and
``seed``. The report inputs (ROC curve, confusion matrix, compression table)
are left in ``ctx.report`` for the run workflow.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch

from vkit.core.engine import build_runner
from vkit.core.task import RunContext
from vkit.registry.registries import METRICS, MODELS


def build_model(model_cfg: dict) -> torch.nn.Module:
    """A ``VideoModel`` from a task's ``model`` section (``type`` defaults to ``VideoModel``)."""
    cfg = copy.deepcopy(dict(model_cfg))
    cfg.setdefault("type", "VideoModel")
    return MODELS.build(cfg)


def _metric(cfg: dict, **overrides: Any) -> Any:
    metric_cfg = copy.deepcopy(dict(cfg))
    metric_cfg.update(overrides)
    return METRICS.build(metric_cfg)


def _batches(dataset: Any, batch_size: int) -> Any:
    from mmengine.dataset import default_collate

    for start in range(0, len(dataset), batch_size):
        yield default_collate([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])


@torch.inference_mode()
def predict(model: torch.nn.Module, dataset: Any, batch_size: int = 8, *, preprocessor: Any = None) -> list[dict]:
    """Per-sample ``{"case_id", "label", "probs"}`` of ``model`` on ``dataset`` (eval mode, no gradient).

    ``model`` is called as ``model(inputs)`` on the output of ``preprocessor``
    (default: ``model.data_preprocessor``), so a compressed stand-in (e.g. an
    ONNX Runtime session wrapper) can be evaluated with the original's preprocessing.
    """
    from vkit.core.model import _probabilities

    preprocessor = preprocessor if preprocessor is not None else model.data_preprocessor
    if hasattr(model, "eval"):
        model.eval()
    out: list[dict] = []
    for batch in _batches(dataset, batch_size):
        data = preprocessor(batch, False)
        probs = _probabilities(torch.as_tensor(model(data["inputs"]))).cpu()
        out.extend(dict(sample, probs=p) for sample, p in zip(data["data_samples"], probs))
    return out


def prediction_rows(predictions: list[dict]) -> list[dict]:
    """Store rows (``item_id``, ``label``, ``prediction``, ``values.probs``) from ``predict`` outputs."""
    rows = []
    for p in predictions:
        probs = [float(x) for x in torch.as_tensor(p["probs"]).flatten()]
        rows.append(dict(item_id=str(p["case_id"]), label=int(p["label"]) if p.get("label") is not None else None,
                         prediction=int(max(range(len(probs)), key=probs.__getitem__)), values=dict(probs=probs)))
    return rows


def run_classification(
    cfg: Any,
    ctx: RunContext,
    *,
    train_set: Any,
    val_set: Any,
    test_set: Any,
    classes: list[str],
) -> dict[str, float]:
    """Train, evaluate and (optionally) compress a classifier; returns ``{"val/…", "test/…"}`` metrics."""
    seed = cfg.get("seed", 0)
    if seed is not None:  # the model's initial weights too, not only the Runner's loops
        from mmengine.runner import set_random_seed

        set_random_seed(int(seed))
    model = build_model(cfg["model"])
    val_metric = _metric(cfg["metric"])
    runner = build_runner(
        model, work_dir=ctx.work_dir, train_set=train_set, val_set=val_set, val_metrics=[val_metric],
        train=cfg["train"], store=ctx.store, run_id=ctx.run_id, seed=seed, echo=ctx.echo,
    )
    runner.train()
    threshold = getattr(val_metric, "last_threshold", None)
    test_metric = _metric(cfg["metric"], threshold=threshold)
    test_runner = build_runner(
        runner.model, work_dir=ctx.work_dir, test_set=test_set, test_metrics=[test_metric],
        train=cfg["train"], store=ctx.store, run_id=ctx.run_id, seed=seed, checkpoint=False,
    )
    test_metrics = test_runner.test()
    ctx.store.add_predictions(ctx.run_id, "test", prediction_rows(test_metric.last_predictions))
    metrics = {f"test/{k.split('/')[-1]}": float(v) for k, v in test_metrics.items() if isinstance(v, (int, float))}
    if threshold is not None:
        metrics["val/threshold"] = float(threshold)
    checkpoint = _save_checkpoint(runner.model, ctx, cfg, classes, metrics)
    ctx.summary["checkpoint"] = str(checkpoint)
    ctx.report = dict(roc=getattr(test_metric, "last_roc", None), confusion=getattr(test_metric, "last_confusion", None),
                      classes=classes)
    compression = cfg.get("compression") or {}
    if compression.get("stages"):
        ctx.report["compression"] = _compress(runner.model, compression, test_set, cfg, threshold, ctx)
    return metrics


def _save_checkpoint(model: torch.nn.Module, ctx: RunContext, cfg: Any, classes: list[str], metrics: dict) -> Path:
    from vkit.core.checkpoint import save_checkpoint

    path = save_checkpoint(model, ctx.work_dir / "model.safetensors",
                           meta=dict(config=cfg.to_dict(), classes=classes, metrics=metrics, run_id=ctx.run_id))
    ctx.store.add_artifact(ctx.run_id, "checkpoint", path)
    ctx.store.add_artifact(ctx.run_id, "checkpoint-meta", path.with_suffix(".json"))
    return path


def _compress(model: torch.nn.Module, compression: dict, test_set: Any, cfg: Any, threshold: Any, ctx: RunContext) -> list[dict]:
    """Run the configured compression chain, gated on the test metric named by ``compression.metric``."""
    from vkit.core.compression import CompressionChain, CompressionContext

    chain_cfg = dict(compression)
    key = chain_cfg.pop("metric", "auc")
    preprocessor = model.data_preprocessor

    def evaluate(candidate: torch.nn.Module) -> float:
        metric = _metric(cfg["metric"], threshold=threshold)
        metric.process({}, predict(candidate, test_set, preprocessor=preprocessor))
        return float(metric.compute_metrics(metric.results)[key])

    sample = preprocessor(next(_batches(test_set, 1)), False)["inputs"]
    result = CompressionChain.from_config(chain_cfg).run(
        model, CompressionContext(sample=sample, evaluate=evaluate, work_dir=ctx.work_dir / "compression"))
    rows = result.rows()
    for step, row in enumerate(rows):
        values = {k: float(v) for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v}
        ctx.store.log_metrics(ctx.run_id, {f"{row['stage']}/{k}": v for k, v in values.items()}, step=step, split="compression")
    ctx.summary["compression"] = result.message
    ctx.echo(result.format_table())
    return rows
