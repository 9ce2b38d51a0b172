"""Recovery after a lossy stage (pruning): a short fine-tune, or distillation from the unpruned model.

A stage config in a chain takes a ``recover`` entry; the chain then measures
the stage's model, recovers it with ``ctx.train`` (the run's Runner on the
task's train split) and gates the RECOVERED model::

    CompressionChain([dict(type='ChannelPrune', amount=0.5, recover=dict(epochs=2, mode='distill'))],
                     max_metric_drop=0.01)

Outside a run, :func:`runner_trainer` builds ``ctx.train`` from a dataset::

    ctx = CompressionContext(sample=x, evaluate=auc, train=runner_trainer(train_set, train=dict(lr=1e-3)))
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from torch import nn

from vkit.core.compression.base import CompressionContext
from vkit.core.compression.distill import KDModel
from vkit.registry.errors import ConfigError, did_you_mean

MODES = ("finetune", "distill")


@dataclass(frozen=True)
class Recovery:
    """How a stage's model is recovered: ``epochs`` of fine-tuning, or of distillation from the teacher.

    Args:
        epochs: training epochs (>= 1) through ``ctx.train``; ``None`` (the default): they follow the run's
            ``train.epochs`` (:func:`recovery_epochs`: a quarter, rounded up — 3 of 12, 1 of 2).
        mode: ``'finetune'`` (the task loss on the labels) or ``'distill'``
            (``alpha * T^2 * KL(teacher || student) + (1 - alpha) * CE``, the
            teacher being ``ctx.teacher`` or the chain's unpruned input model).
        temperature: distillation temperature (> 0).
        alpha: weight of the distillation term, in [0, 1].

    Example::

        Recovery.from_config(dict(epochs=2, mode='finetune'), owner='compression.stages[0]')
    """

    epochs: int | None = None
    mode: str = "distill"
    temperature: float = 4.0
    alpha: float = 0.7

    @classmethod
    def from_config(cls, cfg: Any, owner: str) -> Recovery:
        """Validated from a ``recover`` dict; errors name ``owner.recover.<key>``."""
        if not isinstance(cfg, Mapping):
            raise ConfigError(f"{owner}.recover: expected a dict such as dict(epochs=2, mode='distill'), got {cfg!r}")
        known = [f.name for f in fields(cls)]
        for key in cfg:
            if key not in known:
                raise ConfigError(f"{owner}.recover.{key}: unknown key{did_you_mean(str(key), known)}; expected some of {known}")
        rec = cls(**dict(cfg))
        if rec.epochs is not None and (not isinstance(rec.epochs, int) or isinstance(rec.epochs, bool) or rec.epochs < 1):
            raise ConfigError(f"{owner}.recover.epochs: expected an int >= 1, got {rec.epochs!r} "
                              "(or leave it out: a quarter of train.epochs)")
        if rec.mode not in MODES:
            raise ConfigError(f"{owner}.recover.mode: expected one of {list(MODES)}, got {rec.mode!r}")
        if not isinstance(rec.temperature, (int, float)) or rec.temperature <= 0:
            raise ConfigError(f"{owner}.recover.temperature: expected a positive number, got {rec.temperature!r}")
        if not isinstance(rec.alpha, (int, float)) or not 0 <= rec.alpha <= 1:
            raise ConfigError(f"{owner}.recover.alpha: expected a number in [0, 1], got {rec.alpha!r}")
        return rec

    def run(self, model: nn.Module, teacher: nn.Module, ctx: CompressionContext, owner: str) -> nn.Module:
        """The recovered ``model`` (trained in place through ``ctx.train``), in eval mode."""
        if ctx.train is None:
            raise ConfigError(
                f"{owner}.recover: recovery needs the training data, but the compression context has no "
                "train(model, epochs) (run the chain from `vkit run`, or pass CompressionContext(train=runner_trainer(train_set)))")
        _mark_initialised(model)  # mmengine's Runner calls init_weights(): never re-initialise a trained model
        epochs = self.epochs if self.epochs is not None else recovery_epochs(ctx.train_epochs)
        if self.mode == "finetune":
            return ctx.train(model, epochs).eval()
        kd = KDModel(teacher, model, self.temperature, self.alpha)
        trained = ctx.train(kd, epochs)
        return getattr(trained, "student", kd.student).eval()


def recovery_epochs(train_epochs: int | None) -> int:
    """The recovery budget when a ``recover`` entry sets no ``epochs``: a quarter of the run's ``train.epochs``,
    rounded up (12 → 3, 2 → 1); 1 when the run's epochs are unknown.

    Example::

        recovery_epochs(12)   # 3
    """
    return max(1, -(-int(train_epochs) // 4)) if train_epochs else 1


def _mark_initialised(model: nn.Module) -> None:
    for module in model.modules():
        if hasattr(module, "_is_init"):  # mmengine BaseModule
            module._is_init = True


def runner_trainer(
    train_set: Any, *, train: dict | None = None, work_dir: str | Path | None = None, seed: int | None = 0,
    echo: Callable[[str], Any] | None = None,
) -> Callable[[nn.Module, int], nn.Module]:
    """``train(model, epochs) -> model`` over ``train_set`` with vkit's Runner (:func:`vkit.core.engine.build_runner`).

    Args:
        train_set: the dataset (items as the model's data preprocessor expects).
        train: the ``train`` section (``DEFAULT_TRAIN`` keys: lr, batch_size ...); ``epochs`` is set per call.
        work_dir: the Runner's log folder (a temporary one when ``None``).
        seed: the Runner's seed.
        echo: where the recovery's epoch lines go (the run's ``ctx.echo``; ``None``: stderr).

    Example::

        ctx = CompressionContext(sample=x, evaluate=auc, train=runner_trainer(train_set, train=dict(lr=1e-3)))
    """
    import tempfile

    from vkit.core.engine import build_runner

    def fit(model: nn.Module, epochs: int) -> nn.Module:
        with tempfile.TemporaryDirectory(prefix="vkit-recover-") as tmp:
            runner = build_runner(model, work_dir=work_dir or tmp, train_set=train_set,
                                  train=dict(train or {}, epochs=epochs), seed=seed, checkpoint=False,
                                  echo=echo, progress_label="recover")
            runner.train()
            return runner.model

    return fit
