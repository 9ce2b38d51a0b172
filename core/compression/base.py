"""The stage contract, the context every stage receives, and the compression errors.

Example::

    from vkit.core.compression.base import CompressionContext, Stage
    from vkit.registry.registries import COMPRESSORS

    @COMPRESSORS.register_module()
    class Identity(Stage):
        name = 'Identity'

        def apply(self, model, ctx):
            return model
"""
from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from vkit.registry.errors import ConfigError, VkitError


class CompressionError(VkitError):
    """A compression stage cannot handle the model it was given (the message names the module)."""


class StageSkipped(Exception):
    """Raised by :meth:`Stage.apply` when the stage cannot run here; ``str(err)`` is the reason recorded."""


@dataclass
class CompressionContext:
    """What every stage may use: inputs to measure on, the metric, optional training data.

    Args:
        sample: a sample batch the model is called with (``model(sample)``): a
            tensor, a tuple of tensors or a ``{name: tensor}`` dict.
        evaluate: ``evaluate(model) -> float``, the task metric (better in ``direction``).
        train_dataloader: batches of ``(inputs, labels)`` (or dicts with
            ``inputs``/``labels``); needed by ``Distill`` only.
        latency_runs: timed runs per latency measurement (the median is kept).
        warmup: untimed runs before them.
        work_dir: where stages write files (ONNX model, mmengine logs); a
            temporary directory when ``None``.
        batch_size: clips in ``sample`` (for ms per clip); inferred from the
            first dim of the first tensor when ``None``.
        train: ``train(model, epochs) -> model``: trains ``model`` for ``epochs``
            epochs on the task's train split with the run's Runner settings
            (what a stage's ``recover`` entry uses; e.g.
            :func:`vkit.core.compression.recover.runner_trainer`). ``None``: a
            stage with ``recover`` raises a ConfigError.
        teacher: the model distillation recovery learns from; ``None``: the
            chain's input model (the unpruned one).
        model_config: the MODELS config the model was built from (e.g. the
            task's ``model`` section with ``type='VideoModel'``): stored in each
            saved stage artifact so :func:`vkit.core.compression.load_compressed`
            rebuilds the compressed model without the run's config. ``None``:
            the model's own ``model_config`` attribute if it has one, else
            stages are measured but only ONNX exports are saved.
        timer: the clock latencies are timed with (seconds; ``time.perf_counter``), injectable for tests.
        direction: ``"greater"`` (the default: accuracy, AUC) or ``"less"`` (an error such as MAE): which way
            the metric is better, so ``max_metric_drop`` bounds how much WORSE a stage may make it.
        train_epochs: the run's ``train.epochs``: a ``recover`` entry without ``epochs`` trains a quarter of
            them, rounded up (:func:`vkit.core.compression.recover.recovery_epochs`); ``None``: 1 epoch.
        echo: where the chain's progress lines go (the run's ``ctx.echo``; ``None``: stderr).

    Example::

        ctx = CompressionContext(sample=torch.randn(2, 3, 8, 32, 32), evaluate=lambda m: accuracy(m, val))
    """

    sample: Any
    evaluate: Callable[[nn.Module], float]
    train_dataloader: Iterable | None = None
    latency_runs: int = 20
    warmup: int = 3
    work_dir: str | Path | None = None
    batch_size: int | None = None
    train: Callable[[nn.Module, int], nn.Module] | None = None
    teacher: nn.Module | None = None
    model_config: dict | None = None
    timer: Callable[[], float] = time.perf_counter
    direction: str = "greater"
    train_epochs: int | None = None
    echo: Callable[[str], Any] | None = None
    _tmp: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not callable(self.evaluate):
            raise ConfigError(f"CompressionContext.evaluate: expected a callable evaluate(model) -> float, got {self.evaluate!r}")
        if self.train is not None and not callable(self.train):
            raise ConfigError(f"CompressionContext.train: expected a callable train(model, epochs) -> model, got {self.train!r}")
        if self.model_config is not None and not (isinstance(self.model_config, dict) and "type" in self.model_config):
            raise ConfigError(f"CompressionContext.model_config: expected a MODELS config dict with 'type', got {self.model_config!r}")
        if self.direction not in ("greater", "less"):
            raise ConfigError(f"CompressionContext.direction: expected 'greater' or 'less', got {self.direction!r}")
        for key in ("latency_runs", "warmup"):
            value = getattr(self, key)
            minimum = 1 if key == "latency_runs" else 0
            if not isinstance(value, int) or value < minimum:
                raise ConfigError(f"CompressionContext.{key}: expected an int >= {minimum}, got {value!r}")

    def dir(self) -> Path:
        """The working directory (created on first use)."""
        if self.work_dir is None:
            if self._tmp is None:
                self._tmp = tempfile.TemporaryDirectory(prefix="vkit-compress-")
            return Path(self._tmp.name)
        path = Path(self.work_dir)
        path.mkdir(parents=True, exist_ok=True)
        return path


class Stage:
    """One compression step: ``apply(model, ctx) -> model``.

    The chain hands ``apply`` its own deep copy of the model, so a stage may
    change it in place. A stage that cannot run on this machine raises
    :class:`StageSkipped` with the reason; one that cannot handle the model
    raises :class:`CompressionError` naming the module.

    Attributes:
        name: the name shown in reports (defaults to the class name).
        config_keys: keys a stage config may hold besides the constructor's
            arguments; the chain consumes them (``recover``: see
            :class:`~vkit.core.compression.recover.Recovery`; ``size_only=True``:
            keep the stage for its size even when it is not faster than its input).
    """

    name: str = ""
    config_keys: tuple[str, ...] = ("recover", "size_only")

    def __init__(self) -> None:
        if not self.name:
            self.name = type(self).__name__

    def apply(self, model: nn.Module, ctx: CompressionContext) -> nn.Module:
        """Return the compressed model."""
        raise NotImplementedError(f"{type(self).__name__}.apply")

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if k != "name" and not k.startswith("_"))
        return f"{type(self).__name__}({args})"
