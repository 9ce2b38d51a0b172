"""The training engine every vertical uses: an mmengine ``Runner`` built from vkit's ``train`` config.

The Runner owns the loops (optimizer wrapper, param schedulers, logger);
hooks own the side effects: :class:`StoreHook` writes every metric to the SQL
store, ``VkitSafetensorsCheckpointHook`` writes safetensors checkpoints.

Example::

    runner = build_runner(model, work_dir="work_dirs/r1", train_set=train, val_set=val,
                          val_metrics=[dict(type='ClassificationMetric')],
                          train=dict(epochs=5, batch_size=8, lr=1e-3),
                          store=store, run_id=run_id, seed=0)
    runner.train()
"""
from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mmengine.dist import master_only
from mmengine.evaluator import BaseMetric, Evaluator
from mmengine.hooks import Hook
from mmengine.runner import Runner
from torch import nn

from vkit.core import compat, progress
from vkit.core.task import DEFAULT_TRAIN
from vkit.registry.errors import ConfigError
from vkit.registry.registries import METRICS, MODELS


_RUNNERS = itertools.count(1)


class StoreHook(Hook):
    """Logs every metric to the SQL store with its step and split (train loss, val and test metrics).

    Args:
        store: an open :class:`vkit.core.store.Store`.
        run_id: the run the rows belong to.
        interval: log the training loss every ``interval`` iterations (and each epoch's mean).
        echo: optional callable that receives each epoch's validation metrics (the epoch line, with its
            loss, rate and ETA, is :class:`ProgressHook`'s).
    """

    priority = "LOW"

    def __init__(self, store: Any, run_id: int, interval: int = 10, echo: Callable[[str], Any] | None = None) -> None:
        self.store = store
        self.run_id = run_id
        self.interval = max(1, int(interval))
        self.echo = echo
        self._epoch_losses: list[float] = []

    @master_only
    def after_train_iter(self, runner: Runner, batch_idx: int, data_batch: Any = None, outputs: dict | None = None) -> None:
        if not outputs or "loss" not in outputs:
            return
        loss = float(outputs["loss"].detach())
        self._epoch_losses.append(loss)
        if (runner.iter + 1) % self.interval == 0:
            self.store.log_metrics(self.run_id, {"loss": loss}, step=runner.iter + 1, split="train")

    @master_only
    def after_train_epoch(self, runner: Runner) -> None:
        if self._epoch_losses:
            mean = sum(self._epoch_losses) / len(self._epoch_losses)
            epoch = runner.epoch + 1  # mmengine counts the epoch as done only after this hook
            self.store.log_metrics(self.run_id, {"epoch_loss": mean}, step=epoch, split="train")
        self._epoch_losses = []

    @master_only
    def after_val_epoch(self, runner: Runner, metrics: dict[str, float] | None = None) -> None:
        self._log(runner, metrics, "val")

    @master_only
    def after_test_epoch(self, runner: Runner, metrics: dict[str, float] | None = None) -> None:
        self._log(runner, metrics, "test")

    def _log(self, runner: Runner, metrics: dict[str, Any] | None, split: str) -> None:
        # One name per metric: the bare key (a metric's ``prefix/`` is dropped), the split says val or test.
        scalars = {k.split("/")[-1]: float(v) for k, v in (metrics or {}).items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if scalars:
            self.store.log_metrics(self.run_id, scalars, step=runner.epoch, split=split)
            if self.echo and split == "val":
                shown = "  ".join(f"{k} {v:.4f}" for k, v in sorted(scalars.items()))
                self.echo(f"  val  {shown}")


class ProgressHook(Hook):
    """Training progress for an mmengine Runner: a bar over all iterations (epoch, loss, rate, ETA of the run),
    and one line per epoch (``epoch 2/12  loss 0.4312  (80/480 it, 3.10 it/s, ETA 2m 09s)``).

    Args:
        label: what the Runner trains (``"train"``; ``"recover"`` for a compression stage's recovery).
        echo: where the epoch lines go (the run's ``ctx.echo``); ``None``: stderr.
    """

    priority = "BELOW_NORMAL"

    def __init__(self, label: str = "train", echo: Callable[[str], Any] | None = None) -> None:
        self.label, self.echo = label, echo
        self.progress: Any = None
        self._losses: list[float] = []
        self._val: Any = None

    @master_only  # one bar for a distributed run: the other ranks leave self.progress None
    def before_train(self, runner: Any) -> None:
        self.progress = progress.Progress(self.label, int(runner.max_iters), unit="it", echo=self.echo,
                                          start=int(runner.iter), closing_line=False)
        self._describe(runner)

    def _describe(self, runner: Any) -> None:
        if self.progress is not None:
            self.progress.describe(f"{self.label} epoch {runner.epoch + 1}/{runner.max_epochs}")

    def after_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: dict | None = None) -> None:
        status = None
        if outputs and "loss" in outputs:
            self._losses.append(float(outputs["loss"].detach()))
            status = f"loss {self._losses[-1]:.4f}"
        if self.progress is not None:
            self.progress.advance(status=status)

    def after_train_epoch(self, runner: Any) -> None:
        epoch = runner.epoch + 1  # mmengine counts the epoch as done only after its hooks
        prefix = "epoch" if self.label == "train" else f"{self.label} epoch"
        line = f"{prefix} {epoch}/{runner.max_epochs}"
        if self._losses:
            line += f"  loss {sum(self._losses) / len(self._losses):.4f}"
        self._losses = []
        if self.progress is not None:
            self.progress.note(line)
            if epoch < runner.max_epochs:
                self.progress.describe(f"{self.label} epoch {epoch + 1}/{runner.max_epochs}")

    def before_val_epoch(self, runner: Any) -> None:
        loader = runner.val_dataloader
        self._val = [0, len(loader) if hasattr(loader, "__len__") else "?"]

    def after_val_iter(self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Any = None) -> None:
        if self._val is not None and self.progress is not None:  # the bar says validation is under way
            self._val[0] += 1
            self.progress.advance(0, status=f"validation {self._val[0]}/{self._val[1]}")

    def after_val_epoch(self, runner: Any, metrics: dict | None = None) -> None:
        self._val = None

    def after_train(self, runner: Any) -> None:
        if self.progress is not None:
            self.progress.close()
            self.progress = None

    def after_run(self, runner: Any) -> None:
        self.after_train(runner)  # a run that failed closes its bar through progress.close_all (the CLI calls it)


def build_metrics(metrics: Sequence[dict | BaseMetric]) -> Evaluator:
    """An mmengine ``Evaluator`` over metrics from the METRICS registry (configs or instances)."""
    built = [m if isinstance(m, BaseMetric) else METRICS.build(m) for m in metrics]
    return Evaluator(built)


def _dataloader(dataset: Any, batch_size: int, num_workers: int, shuffle: bool, seed: int | None) -> dict:
    return dict(
        dataset=dataset,
        batch_size=batch_size,
        num_workers=num_workers,
        persistent_workers=False,
        sampler=dict(type="DefaultSampler", shuffle=shuffle, seed=seed),
        collate_fn=dict(type="default_collate"),
    )


def _init_cpu_process_group() -> None:
    """Join the torchrun process group with gloo ourselves when there is no GPU.

    mmengine's ``pytorch`` launcher calls ``torch.cuda.set_device`` first, which
    fails on a CPU-only torch; with the group already initialised the Runner
    skips its own set-up and uses ours.
    """
    import torch
    import torch.distributed as dist

    if dist.is_initialized() or torch.cuda.is_available():
        return
    missing = [v for v in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if v not in os.environ]
    if missing:
        raise ConfigError(f"train.launcher='pytorch' needs torchrun's environment; missing {missing} "
                          "(start with: torchrun --nproc_per_node N ...)")
    dist.init_process_group(backend="gloo")


def train_settings(train: dict | None) -> dict:
    """``DEFAULT_TRAIN`` updated with ``train``; unknown keys are a ConfigError with did-you-mean."""
    from vkit.registry.errors import did_you_mean

    settings = dict(DEFAULT_TRAIN)
    for key, value in (train or {}).items():
        if key not in DEFAULT_TRAIN:
            raise ConfigError(f"train.{key}: unknown key{did_you_mean(key, DEFAULT_TRAIN)}; known: {sorted(DEFAULT_TRAIN)}")
        settings[key] = value
    if int(settings["epochs"]) < 1:
        raise ConfigError(f"train.epochs: expected a positive int, got {settings['epochs']!r}")
    if int(settings["batch_size"]) < 1:
        raise ConfigError(f"train.batch_size: expected a positive int, got {settings['batch_size']!r}")
    return settings


def build_runner(
    model: nn.Module | dict,
    *,
    work_dir: str | Path,
    train_set: Any = None,
    val_set: Any = None,
    test_set: Any = None,
    val_metrics: Sequence[dict | BaseMetric] = (),
    test_metrics: Sequence[dict | BaseMetric] = (),
    train: dict | None = None,
    store: Any = None,
    run_id: int | None = None,
    seed: int | None = 0,
    checkpoint: bool = True,
    echo: Callable[[str], Any] | None = None,
    extra_hooks: Sequence[Hook] = (),
    progress_label: str = "train",
) -> Runner:
    """An mmengine ``Runner`` for ``model`` with vkit's hooks; call ``.train()``, ``.val()`` or ``.test()``.

    Args:
        model: a built ``nn.Module`` (an mmengine ``BaseModel``) or a MODELS config.
        work_dir: where the Runner writes logs and checkpoints.
        train_set, val_set, test_set: datasets (objects) for the three loops.
        val_metrics, test_metrics: METRICS configs or ``BaseMetric`` instances.
        train: the ``train`` section (see ``DEFAULT_TRAIN``).
        store, run_id: where :class:`StoreHook` writes metrics (both or neither).
        seed: seeds python, numpy and torch (mmengine ``randomness``).
        checkpoint: write ``epoch_N`` and ``last.safetensors`` (+ JSON) into ``work_dir``.
        echo: receives a one-line summary per epoch (loss, rate, ETA: :class:`ProgressHook`) and the val metrics.
        extra_hooks: more hook instances (e.g. the lifecycle's best-weights keeper).
        progress_label: what the progress bar and epoch lines call this training (``"recover"`` for a
            compression stage's recovery).
    """
    compat.apply()
    settings = train_settings(train)
    if settings["launcher"] == "pytorch":
        _init_cpu_process_group()
        # DDP on CPU takes no device ids (mmengine's default passes LOCAL_RANK).
        kwargs_ddp = dict(cfg=dict(model_wrapper_cfg=dict(type="MMDistributedDataParallel", device_ids=None)))
    else:
        kwargs_ddp = {}
    if isinstance(model, dict):
        model = MODELS.build(model)
    batch_size, workers = int(settings["batch_size"]), int(settings["num_workers"])
    epochs = int(settings["epochs"])
    hooks: list[Hook] = [ProgressHook(progress_label, echo)]
    if store is not None and run_id is not None:
        hooks.append(StoreHook(store, run_id, interval=int(settings["log_interval"]), echo=echo))
    if checkpoint:
        from vkit.core.checkpoint import SafetensorsCheckpointHook

        hooks.append(SafetensorsCheckpointHook())
    hooks.extend(extra_hooks)
    kwargs: dict[str, Any] = dict(kwargs_ddp)
    if train_set is not None:
        from vkit.core.finetune import apply_finetune

        optim_extra, scheduler = apply_finetune(model, settings)  # freeze, paramwise_cfg, warm-up + scheduler
        kwargs.update(
            train_dataloader=_dataloader(train_set, batch_size, workers, True, seed),
            train_cfg=dict(by_epoch=True, max_epochs=epochs, val_interval=1 if val_set is not None else epochs + 1),
            optim_wrapper=dict(
                optimizer=dict(type=settings["optimizer"], lr=float(settings["lr"]), weight_decay=float(settings["weight_decay"])),
                **optim_extra,
            ),
            param_scheduler=scheduler or None,
        )
    if val_set is not None:
        kwargs.update(val_dataloader=_dataloader(val_set, batch_size, workers, False, seed), val_cfg=dict(),
                      val_evaluator=build_metrics(val_metrics))
    if test_set is not None:
        kwargs.update(test_dataloader=_dataloader(test_set, batch_size, workers, False, seed), test_cfg=dict(),
                      test_evaluator=build_metrics(test_metrics))
    runner = Runner(
        model=model,
        work_dir=str(work_dir),
        # mmengine names its logger, message hub and visualizer after the experiment (by default the second it
        # started): two Runners of one process in the same second would share them and write into the first's
        # folder, so every Runner gets its own name.
        experiment_name=f"vkit-{os.getpid()}-{next(_RUNNERS)}",
        default_hooks=dict(
            checkpoint=None,
            logger=dict(type="LoggerHook", interval=int(settings["log_interval"])),
        ),
        custom_hooks=hooks,
        randomness=dict(seed=seed, deterministic=False),
        launcher=settings["launcher"],
        env_cfg=dict(cudnn_benchmark=False, dist_cfg=dict(backend="gloo")),
        log_level=settings["log_level"],
        default_scope="mmengine",
        **kwargs,
    )
    # mmengine warns "Dataset X has no metainfo" for every dataset without a ``metainfo`` attribute; vkit's
    # datasets carry their meta elsewhere, so the line is noise on every run.
    runner.logger.addFilter(lambda record: "has no metainfo" not in record.getMessage())
    return runner
