"""VICReg (Bardes, Ponce, LeCun, ICLR 2022) on clip embeddings: works with any registered backbone.

Two augmented clips of the same video go through the backbone (pooled
features) and an expander MLP; the loss pulls the two embeddings together
(invariance: mean squared distance), keeps every embedding dimension's
standard deviation above 1 over the batch (variance: a hinge) and
decorrelates the dimensions (covariance: the squared off-diagonal entries).
No negatives, no momentum encoder, no large batches: what a small CPU job can
afford.

Example::

    objective = VICReg(backbone)
    loss, parts = objective.loss([view1, view2])     # parts: invariance, variance, covariance
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
import torch.nn.functional as F

from vkit.registry.errors import ConfigError

__all__ = ["VICReg", "vicreg_loss"]


def vicreg_loss(z1: torch.Tensor, z2: torch.Tensor, sim: float = 25.0, var: float = 25.0,
                cov: float = 1.0) -> tuple[torch.Tensor, dict[str, float]]:
    """The VICReg loss of two embedding batches ``(N, E)`` and its three terms (unweighted, as floats).

    Example::

        loss, parts = vicreg_loss(torch.randn(8, 16), torch.randn(8, 16))
    """
    if z1.shape != z2.shape or z1.dim() != 2 or z1.shape[0] < 2:
        raise ConfigError(f"vicreg: expected two (N >= 2, E) embeddings of one shape, got {tuple(z1.shape)} "
                          f"and {tuple(z2.shape)} (a batch needs at least 2 clips)")
    n, e = z1.shape
    invariance = F.mse_loss(z1, z2)
    variance = z1.new_zeros(())
    covariance = z1.new_zeros(())
    for z in (z1, z2):
        z = z - z.mean(0)
        std = torch.sqrt(z.var(0) + 1e-4)
        variance = variance + F.relu(1 - std).mean() / 2
        c = (z.T @ z) / (n - 1)
        off = c - torch.diag(torch.diag(c))
        covariance = covariance + off.pow(2).sum() / e
    loss = sim * invariance + var * variance + cov * covariance
    return loss, dict(invariance=float(invariance.detach()), variance=float(variance.detach()),
                      covariance=float(covariance.detach()))


class VICReg(nn.Module):
    """A backbone plus VICReg's expander; :meth:`loss` of two views.

    Args:
        backbone: any :class:`~vkit.core.backbones.Backbone` (pooled features ``(N, D)``).
        expander: widths of the expander MLP (Linear-BN-ReLU blocks, the last a plain Linear).
        sim, var, cov: weights of the invariance, variance and covariance terms (the paper's 25, 25, 1).
    """

    views = 2

    def __init__(self, backbone: nn.Module, expander: Sequence[int] = (256, 256), sim: float = 25.0,
                 var: float = 25.0, cov: float = 1.0) -> None:
        super().__init__()
        widths = [int(backbone.feature_dim), *(int(w) for w in expander)]
        if len(widths) < 2 or min(widths) < 1:
            raise ConfigError(f"vicreg: expander={expander!r}; expected a non-empty list of positive widths")
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(widths, widths[1:])):
            layers.append(nn.Linear(a, b))
            if i < len(widths) - 2:
                layers += [nn.BatchNorm1d(b), nn.ReLU(inplace=True)]
        self.backbone, self.expander = backbone, nn.Sequential(*layers)
        self.weights = (float(sim), float(var), float(cov))

    def loss(self, views: Sequence[torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """VICReg loss of two normalised views ``(N, C, T, H, W)`` of the same N videos."""
        if len(views) != 2:
            raise ConfigError(f"vicreg: needs 2 views per video, got {len(views)}")
        both = torch.cat(list(views))  # one backbone pass (BatchNorm sees both views)
        z = self.expander(self.backbone(both, temporal=False))
        z1, z2 = z.chunk(2)
        return vicreg_loss(z1, z2, *self.weights)
