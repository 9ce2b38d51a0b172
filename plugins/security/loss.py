"""The MIL ranking loss of Sultani et al., "Real-world Anomaly Detection in Surveillance Videos" (CVPR 2018).

For a pair of bags (segment scores of one anomalous and one normal video)::

    hinge      = max(0, 1 - max_i f(a_i) + max_i f(n_i))
    sparsity   = lambda_sparsity * sum_i f(a_i)
    smoothness = lambda_smooth   * sum_i (f(a_i) - f(a_{i+1}))^2

averaged over the pairs of a batch. Sultani's defaults: ``lambda_sparsity =
lambda_smooth = 8e-5``.

Example::

    parts = mil_ranking_loss(torch.tensor([[0.1, 0.9]]), torch.tensor([[0.2, 0.3]]))
    parts["loss_hinge"]   # 1 - 0.9 + 0.3 = 0.4
"""
from __future__ import annotations

import torch

from vkit.registry.errors import ConfigError


def mil_ranking_loss(anomalous: torch.Tensor, normal: torch.Tensor, lambda_sparsity: float = 8e-5,
                     lambda_smooth: float = 8e-5) -> dict[str, torch.Tensor]:
    """The three terms of the MIL ranking loss, each averaged over the batch (their sum is the loss).

    Args:
        anomalous: segment scores ``(B, S)`` of anomalous videos.
        normal: segment scores ``(B, S')`` of the normal videos they are paired with.
        lambda_sparsity: weight of the sparsity term (on the anomalous bag).
        lambda_smooth: weight of the temporal smoothness term (on the anomalous bag).

    Returns:
        ``{"loss_hinge", "loss_sparsity", "loss_smooth"}`` scalar tensors
        (mmengine's ``parse_losses`` sums keys containing ``loss``).
    """
    if anomalous.dim() != 2 or normal.dim() != 2 or anomalous.shape[0] != normal.shape[0]:
        raise ConfigError(f"mil_ranking_loss: expected scores (B, S) and (B, S') with the same B, "
                          f"got {tuple(anomalous.shape)} and {tuple(normal.shape)}")
    if lambda_sparsity < 0 or lambda_smooth < 0:
        raise ConfigError(f"mil_ranking_loss: lambdas must be >= 0, got lambda_sparsity={lambda_sparsity}, "
                          f"lambda_smooth={lambda_smooth}")
    hinge = torch.clamp(1.0 - anomalous.max(dim=1).values + normal.max(dim=1).values, min=0.0)
    sparsity = anomalous.sum(dim=1)
    smooth = (anomalous[:, 1:] - anomalous[:, :-1]).pow(2).sum(dim=1)
    return dict(loss_hinge=hinge.mean(), loss_sparsity=lambda_sparsity * sparsity.mean(),
                loss_smooth=lambda_smooth * smooth.mean())
