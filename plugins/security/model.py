"""The MIL scoring head (Sultani et al.) and its mmengine training wrapper.

``MILScoringHead`` (HEADS): standardise features → FC ``feature_dim``→512 →
ReLU → dropout → FC 512→32 → dropout → FC 32→1 → sigmoid, one anomaly score
in [0, 1] per segment. The standardisation statistics are buffers set from the
training features (:meth:`MILScoringHead.fit_normalizer`), so they travel
with the checkpoint.

``MILAnomalyModel`` (MODELS): an mmengine ``BaseModel`` whose ``train_step``
takes a batch of (anomalous bag, normal bag) pairs and returns the MIL ranking
loss terms, so mmengine's Runner trains it like any other model.

Example::

    model = MILAnomalyModel(head=dict(type="MILScoringHead", in_channels=128))
    losses = model(anomalous=torch.randn(4, 32, 128), normal=torch.randn(4, 32, 128), mode="loss")
    scores = model(features=torch.randn(2, 32, 128), mode="predict")      # (2, 32)
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from mmengine.model import BaseModel
from torch import nn

from vkit.plugins.security.loss import mil_ranking_loss
from vkit.registry.errors import ConfigError
from vkit.registry.registries import HEADS


class MILScoringHead(nn.Module):
    """Per-segment anomaly scores from segment features: ``(..., D)`` → ``(...)`` in [0, 1].

    Args:
        in_channels: ``D``, the backbone's feature dimension.
        hidden: widths of the hidden FC layers (Sultani: ``(512, 32)``).
        dropout: dropout after each hidden layer (Sultani: 0.6).
    """

    @classmethod
    def smoke_config(cls) -> dict[str, Any]:
        """A tiny head for ``vkit plugins check``."""
        return dict(in_channels=8, hidden=(4,))

    def __init__(self, in_channels: int, hidden: Sequence[int] = (512, 32), dropout: float = 0.6) -> None:
        super().__init__()
        if int(in_channels) < 1:
            raise ConfigError(f"MILScoringHead: in_channels={in_channels!r}; expected a positive int")
        if not 0.0 <= float(dropout) < 1.0:
            raise ConfigError(f"MILScoringHead: dropout={dropout!r}; expected 0 <= dropout < 1")
        widths = [int(in_channels), *(int(h) for h in hidden)]
        if min(widths) < 1:
            raise ConfigError(f"MILScoringHead: hidden={tuple(hidden)!r}; expected positive ints")
        layers: list[nn.Module] = []
        for i, (cin, cout) in enumerate(zip(widths[:-1], widths[1:])):
            layers += [nn.Linear(cin, cout)] + ([nn.ReLU(inplace=True)] if i == 0 else []) + [nn.Dropout(float(dropout))]
        layers.append(nn.Linear(widths[-1], 1))
        self.mlp = nn.Sequential(*layers)
        self.in_channels = int(in_channels)
        self.register_buffer("feature_mean", torch.zeros(self.in_channels))
        self.register_buffer("feature_std", torch.ones(self.in_channels))

    def fit_normalizer(self, features: np.ndarray | torch.Tensor) -> None:
        """Set the standardisation buffers from training features ``(N, ..., D)``."""
        flat = torch.as_tensor(np.asarray(features), dtype=torch.float32).reshape(-1, self.in_channels)
        self.feature_mean.copy_(flat.mean(0))
        std = flat.std(0)
        self.feature_std.copy_(std.clamp_min(max(float(std.mean()), 1e-6)))  # rarely active dims are not blown up

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if features.shape[-1] != self.in_channels:
            raise ConfigError(f"MILScoringHead: expected features (..., {self.in_channels}), got {tuple(features.shape)}")
        x = (features - self.feature_mean) / self.feature_std
        return torch.sigmoid(self.mlp(x)).squeeze(-1)


class MILAnomalyModel(BaseModel):
    """MIL training wrapper: ``mode='loss'`` on bag pairs, ``'predict'``/``'tensor'`` on feature bags.

    Args:
        head: a HEADS config (``type`` defaults to ``MILScoringHead``) or a built module.
        lambda_sparsity, lambda_smooth: weights of the loss's regularisers (see :func:`mil_ranking_loss`).
    """

    @classmethod
    def smoke_config(cls) -> dict[str, Any]:
        """A tiny model for ``vkit plugins check``."""
        return dict(head=dict(in_channels=8, hidden=(4,)))

    def __init__(self, head: dict | nn.Module, lambda_sparsity: float = 8e-5, lambda_smooth: float = 8e-5) -> None:
        super().__init__()
        if isinstance(head, dict):
            head = MILScoringHead(**head) if "type" not in head else HEADS.build(head)
        self.head = head
        self.lambda_sparsity, self.lambda_smooth = float(lambda_sparsity), float(lambda_smooth)

    def forward(self, anomalous: torch.Tensor | None = None, normal: torch.Tensor | None = None,
                features: torch.Tensor | None = None, mode: str = "tensor", **_: Any) -> Any:
        if mode == "loss":
            if anomalous is None or normal is None:
                raise ConfigError("MILAnomalyModel: mode='loss' needs anomalous and normal bags (B, S, D)")
            return mil_ranking_loss(self.head(anomalous), self.head(normal), self.lambda_sparsity, self.lambda_smooth)
        if mode in ("predict", "tensor"):
            if features is None:
                raise ConfigError(f"MILAnomalyModel: mode={mode!r} needs features (B, S, D)")
            return self.head(features)
        raise ConfigError(f"MILAnomalyModel: mode={mode!r}; expected 'loss', 'predict' or 'tensor'")
