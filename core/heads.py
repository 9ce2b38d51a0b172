"""Generic heads (HEADS registry): features -> logits (or values), with their loss.

A head has ``forward(features) -> logits`` and ``loss(logits, labels) -> Tensor``
(what :class:`vkit.core.model.VideoModel` calls); ``in_dim`` is filled in by
the model from the fused feature width. Ideas from mmaction2's ``I3DHead``
(average pooling over extra dims, dropout, ``Linear``, small-std init).

A head declares what its outputs are in the class attribute ``output``
(:data:`OUTPUTS`): ``"probs"`` (the default, also for heads that do not declare it): logits,
turned into class probabilities by softmax (sigmoid for one logit) before a metric sees them;
``"value"``: the predictions themselves (:class:`RegressionHead`), passed on unchanged, with
float targets.

Example::

    from vkit.registry.registries import HEADS

    head = HEADS.build(dict(type='ClsHead', num_classes=5, label_smoothing=0.1), default_args=dict(in_dim=432))
    loss = head.loss(head(features), labels)
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vkit.registry.errors import ConfigError, DataError
from vkit.registry.registries import HEADS

#: What a head's ``forward`` returns (its ``output`` class attribute): class logits or predicted values.
OUTPUTS = ("probs", "value")


def head_output(head: Any) -> str:
    """The declared ``output`` of a head (class or instance): ``"probs"`` unless it declares ``"value"``.

    Example::

        head_output(RegressionHead), head_output(ClsHead)    # ('value', 'probs')
    """
    cls = head if isinstance(head, type) else type(head)
    output = getattr(cls, "output", "probs")
    if output not in OUTPUTS:
        raise ConfigError(f"head {cls.__name__}: output = {output!r}; expected one of {OUTPUTS}")
    return output


def _check_positive_int(owner: str, key: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ConfigError(f"{owner}.{key}: expected a positive int, got {value!r}")


def _check_probability(owner: str, key: str, value: object) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0.0 <= value < 1.0
    if not ok:
        raise ConfigError(f"{owner}.{key}: expected a float in [0, 1), got {value!r}")


def _check_mlp(owner: str, in_dim: object, out_key: str, out: object, hidden_dims: Sequence[int], dropout: object) -> None:
    """The arguments every MLP-shaped head shares: widths are positive ints, dropout a probability."""
    _check_positive_int(owner, "in_dim", in_dim)
    _check_positive_int(owner, out_key, out)
    for i, width in enumerate(hidden_dims):
        _check_positive_int(owner, f"hidden_dims[{i}]", width)
    _check_probability(owner, "dropout", dropout)


def _classification_loss(owner: str, logits: Tensor, labels: Tensor, label_smoothing: float) -> Tensor:
    """Cross-entropy for ``(N, C)`` logits (``C > 1``), binary cross-entropy for one logit per sample."""
    if logits.dim() == 1 or logits.shape[-1] == 1:
        target = labels.to(logits.dtype).reshape(logits.shape)
        if label_smoothing:
            target = target * (1 - label_smoothing) + 0.5 * label_smoothing
        return F.binary_cross_entropy_with_logits(logits, target)
    if labels.dim() == logits.dim() and labels.shape == logits.shape:  # soft labels (probabilities)
        return F.cross_entropy(logits, labels.to(logits.dtype), label_smoothing=label_smoothing)
    if labels.dim() != 1 or labels.shape[0] != logits.shape[0]:
        raise DataError(f"{owner}.loss: labels of shape {tuple(labels.shape)} do not match logits {tuple(logits.shape)}")
    if labels.numel() and (labels.min() < 0 or labels.max() >= logits.shape[-1]):
        raise DataError(
            f"{owner}.loss: labels must be in [0, {logits.shape[-1] - 1}], got range "
            f"[{int(labels.min())}, {int(labels.max())}]"
        )
    return F.cross_entropy(logits, labels.long(), label_smoothing=label_smoothing)


@HEADS.register_module()
class ClsHead(nn.Module):
    """Dropout + ``Linear`` to ``num_classes``; cross-entropy loss with optional label smoothing.

    Inputs of shape ``(N, in_dim, *extra)`` (e.g. a 3D-conv feature map) are
    averaged over the extra dims first, as mmaction2's ``I3DHead`` does.

    Args:
        in_dim: feature width.
        num_classes: number of classes (1 means one binary logit, trained with BCE).
        dropout: dropout probability before the ``Linear``, in [0, 1).
        label_smoothing: label smoothing of the loss, in [0, 1).
        init_std: std of the normal init of the ``Linear`` weight.

    Example::

        head = ClsHead(in_dim=432, num_classes=5, dropout=0.5)
        logits = head(torch.randn(8, 432))            # (8, 5)
        loss = head.loss(logits, torch.randint(0, 5, (8,)))
    """

    output: ClassVar[str] = "probs"

    def __init__(
        self,
        in_dim: int,
        num_classes: int,
        dropout: float = 0.5,
        label_smoothing: float = 0.0,
        init_std: float = 0.01,
    ) -> None:
        super().__init__()
        _check_positive_int("ClsHead", "in_dim", in_dim)
        _check_positive_int("ClsHead", "num_classes", num_classes)
        _check_probability("ClsHead", "dropout", dropout)
        _check_probability("ClsHead", "label_smoothing", label_smoothing)
        self.in_dim = in_dim
        self.num_classes = num_classes
        self.label_smoothing = float(label_smoothing)
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        self.fc = nn.Linear(in_dim, num_classes)
        nn.init.normal_(self.fc.weight, std=init_std)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(N, num_classes)`` from features ``(N, in_dim)`` or ``(N, in_dim, *extra)``."""
        if x.dim() > 2:
            x = x.flatten(2).mean(dim=2)
        width = self.fc.in_features  # the layer's own width (a channel-pruned model has fewer than in_dim)
        if x.dim() != 2 or x.shape[1] != width:
            raise DataError(f"ClsHead: features of shape {tuple(x.shape)}, expected (N, {width}, ...)")
        return self.fc(self.dropout(x))

    def loss(self, logits: Tensor, labels: Tensor) -> Tensor:
        """Cross-entropy of ``logits`` against class indices ``(N,)`` or probabilities ``(N, C)``."""
        return _classification_loss("ClsHead", logits, labels, self.label_smoothing)


@HEADS.register_module()
class MLPHead(nn.Module):
    """A small MLP head: ``Linear -> ReLU -> Dropout`` per hidden width, then ``Linear`` to ``num_classes``.

    Applies to the last dim, so ``(N, in_dim)`` and per-segment ``(N, T, in_dim)``
    features both work.

    Args:
        in_dim: feature width.
        num_classes: output width (1: one binary logit trained with BCE).
        hidden_dims: widths of the hidden layers (may be empty).
        dropout: dropout probability after each hidden layer, in [0, 1).
        label_smoothing: label smoothing of the loss, in [0, 1).

    Example::

        head = MLPHead(in_dim=512, num_classes=3, hidden_dims=(128, 32), dropout=0.5)
    """

    output: ClassVar[str] = "probs"

    def __init__(
        self,
        in_dim: int,
        num_classes: int,
        hidden_dims: Sequence[int] = (32,),
        dropout: float = 0.6,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        _check_mlp(owner, in_dim, "num_classes", num_classes, hidden_dims, dropout)
        _check_probability(owner, "label_smoothing", label_smoothing)
        self.in_dim = in_dim
        self.num_classes = num_classes
        self.label_smoothing = float(label_smoothing)
        layers: list[nn.Module] = []
        width = in_dim
        for hidden in hidden_dims:
            layers += [nn.Linear(width, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            width = hidden
        layers.append(nn.Linear(width, num_classes))
        self.mlp = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(..., num_classes)`` from features ``(..., in_dim)``."""
        width = self.mlp[0].in_features  # the layer's own width (a channel-pruned model has fewer than in_dim)
        if x.shape[-1] != width:
            raise DataError(f"{type(self).__name__}: features of shape {tuple(x.shape)}, expected (..., {width})")
        return self.mlp(x)

    def loss(self, logits: Tensor, labels: Tensor) -> Tensor:
        """Cross-entropy (``num_classes > 1``) or binary cross-entropy on logits (``num_classes == 1``)."""
        return _classification_loss(type(self).__name__, logits, labels, self.label_smoothing)


@HEADS.register_module()
class ScoreHead(MLPHead):
    """An anomaly/engagement-style score head: FC ``in_dim -> 32 -> 1`` with dropout, sigmoid scores.

    ``forward`` returns one logit per sample (or per segment); ``scores``
    turns them into sigmoid scores in [0, 1]; ``loss`` is binary
    cross-entropy on the logits against 0/1 (or soft) targets.

    Args:
        in_dim: feature width (e.g. 512).
        hidden_dims: hidden widths (default ``(32,)``).
        dropout: dropout probability after each hidden layer.

    Example::

        head = ScoreHead(in_dim=512)
        scores = head.scores(torch.randn(4, 10, 512))   # (4, 10), per-segment scores
    """

    def __init__(self, in_dim: int, hidden_dims: Sequence[int] = (32,), dropout: float = 0.6, num_classes: int = 1) -> None:
        if num_classes != 1:
            raise ConfigError(f"ScoreHead.num_classes: a score head has one output, got {num_classes!r}; use MLPHead")
        super().__init__(in_dim, 1, hidden_dims=hidden_dims, dropout=dropout)

    def scores(self, x: Tensor) -> Tensor:
        """Sigmoid scores in [0, 1] of shape ``x.shape[:-1]``."""
        return torch.sigmoid(self(x)).squeeze(-1)


#: The losses of :class:`RegressionHead`, from ``torch.nn.functional``.
REGRESSION_LOSSES = ("mse", "l1", "smooth_l1")


@HEADS.register_module()
class RegressionHead(nn.Module):
    """Dropout + optional hidden layers + ``Linear`` to ``num_targets`` values; MSE, L1 or smooth-L1 loss on float targets.

    Outputs are the predicted values (``output = "value"``): no softmax, and the
    float labels reach :meth:`loss` as they are (a count of 3.5 stays 3.5).
    Predictions are ``offset + scale * Linear(features)``; ``offset`` and ``scale``
    (e.g. the training targets' mean and spread) let the ``Linear`` learn unit-sized
    numbers, and the loss is taken on ``(prediction - target) / scale``.

    Args:
        in_dim: feature width.
        num_targets: values per sample (one for a count or a score).
        hidden_dims: widths of hidden ``Linear -> ReLU`` layers (may be empty).
        dropout: dropout probability before each ``Linear``, in [0, 1).
        loss: ``"mse"``, ``"l1"`` or ``"smooth_l1"`` (:data:`REGRESSION_LOSSES`).
        beta: the smooth-L1 switch point (``torch.nn.functional.smooth_l1_loss``).
        offset: added to every prediction.
        scale: multiplies every prediction (> 0).

    Example::

        head = RegressionHead(in_dim=432, loss="smooth_l1", offset=5.0, scale=3.0)
        counts = head(torch.randn(8, 432))                        # (8, 1) predicted counts
        loss = head.loss(counts, torch.tensor([3.0, 7.5, 4.0, 5.0, 6.0, 2.0, 8.0, 5.5]))
    """

    output: ClassVar[str] = "value"

    def __init__(self, in_dim: int, num_targets: int = 1, hidden_dims: Sequence[int] = (), dropout: float = 0.0,
                 loss: str = "mse", beta: float = 1.0, offset: float = 0.0, scale: float = 1.0) -> None:
        super().__init__()
        owner = type(self).__name__
        _check_mlp(owner, in_dim, "num_targets", num_targets, hidden_dims, dropout)
        if loss not in REGRESSION_LOSSES:
            raise ConfigError(f"{owner}.loss: expected one of {REGRESSION_LOSSES}, got {loss!r}")
        for key, value, positive in (("beta", beta, True), ("offset", offset, False), ("scale", scale, True)):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            if not ok or (positive and value <= 0):
                raise ConfigError(f"{owner}.{key}: expected a finite number{' > 0' if positive else ''}, got {value!r}")
        self.in_dim, self.num_targets = in_dim, num_targets
        self.loss_name, self.beta = loss, float(beta)
        self.offset, self.scale = float(offset), float(scale)
        layers: list[nn.Module] = []
        width = in_dim
        for hidden in hidden_dims:
            layers += [nn.Dropout(dropout), nn.Linear(width, hidden), nn.ReLU(inplace=True)]
            width = hidden
        layers += [nn.Dropout(dropout), nn.Linear(width, num_targets)]
        self.mlp = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """Values ``(N, num_targets)`` from features ``(N, in_dim)`` or ``(N, in_dim, *extra)`` (averaged)."""
        if x.dim() > 2:
            x = x.flatten(2).mean(dim=2)
        width = self.mlp[1].in_features  # the layer's own width (a channel-pruned model has fewer than in_dim)
        if x.dim() != 2 or x.shape[1] != width:
            raise DataError(f"{type(self).__name__}: features of shape {tuple(x.shape)}, expected (N, {width}, ...)")
        return self.offset + self.scale * self.mlp(x)

    def loss(self, values: Tensor, targets: Tensor) -> Tensor:
        """The configured loss of ``values`` ``(N, num_targets)`` against float ``targets`` ``(N,)`` or ``(N, num_targets)``."""
        owner = type(self).__name__
        if targets.numel() != values.numel() or targets.shape[0] != values.shape[0]:
            raise DataError(f"{owner}.loss: targets of shape {tuple(targets.shape)} do not match values {tuple(values.shape)}")
        if not targets.is_floating_point() and targets.dtype != torch.int64 and targets.dtype != torch.int32:
            raise DataError(f"{owner}.loss: expected numeric targets, got {targets.dtype}")
        target = targets.to(values.dtype).reshape(values.shape)
        if not torch.isfinite(target).all():
            raise DataError(f"{owner}.loss: targets must be finite, got {target.flatten()[:8].tolist()}")
        pred, target = values / self.scale, target / self.scale
        if self.loss_name == "l1":
            return F.l1_loss(pred, target)
        if self.loss_name == "smooth_l1":
            return F.smooth_l1_loss(pred, target, beta=self.beta)
        return F.mse_loss(pred, target)
