"""Generic heads (HEADS registry): features -> logits, with their loss.

A head has ``forward(features) -> logits`` and ``loss(logits, labels) -> Tensor``
(what :class:`vkit.core.model.VideoModel` calls); ``in_dim`` is filled in by
the model from the fused feature width. Ideas from mmaction2's ``I3DHead``
(average pooling over extra dims, dropout, ``Linear``, small-std init).

Example::

    from vkit.registry.registries import HEADS

    head = HEADS.build(dict(type='ClsHead', num_classes=5, label_smoothing=0.1), default_args=dict(in_dim=432))
    loss = head.loss(head(features), labels)
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vkit.registry.errors import ConfigError, DataError
from vkit.registry.registries import HEADS


def _check_positive_int(owner: str, key: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ConfigError(f"{owner}.{key}: expected a positive int, got {value!r}")


def _check_probability(owner: str, key: str, value: object) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0.0 <= value < 1.0
    if not ok:
        raise ConfigError(f"{owner}.{key}: expected a float in [0, 1), got {value!r}")


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
        _check_positive_int(owner, "in_dim", in_dim)
        _check_positive_int(owner, "num_classes", num_classes)
        for i, width in enumerate(hidden_dims):
            _check_positive_int(owner, f"hidden_dims[{i}]", width)
        _check_probability(owner, "dropout", dropout)
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
