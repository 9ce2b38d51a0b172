"""Generic heads: shapes, losses (label smoothing, BCE), sigmoid scores, validation."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from vkit.core.heads import ClsHead, MLPHead, ScoreHead
from vkit.registry.errors import ConfigError, DataError
from vkit.registry.registries import HEADS


@pytest.mark.parametrize(
    "cfg,x_shape,out_shape",
    [
        (dict(type="ClsHead", num_classes=5), (4, 16), (4, 5)),
        (dict(type="ClsHead", num_classes=5), (4, 16, 2, 3, 3), (4, 5)),
        (dict(type="MLPHead", num_classes=3, hidden_dims=(8, 4)), (4, 16), (4, 3)),
        (dict(type="MLPHead", num_classes=3, hidden_dims=()), (2, 7, 16), (2, 7, 3)),
        (dict(type="ScoreHead"), (4, 16), (4, 1)),
    ],
)
def test_build_from_registry_and_shapes(cfg, x_shape, out_shape):
    head = HEADS.build(cfg, default_args=dict(in_dim=16)).eval()
    assert head(torch.randn(*x_shape)).shape == out_shape


def test_cls_head_pools_extra_dims_and_loss_matches_cross_entropy():
    torch.manual_seed(0)
    head = ClsHead(in_dim=4, num_classes=3, dropout=0.0, label_smoothing=0.2).eval()
    fmap = torch.randn(2, 4, 2, 3, 3)
    assert torch.allclose(head(fmap), head(fmap.mean(dim=(2, 3, 4))), atol=1e-6)
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    labels = torch.tensor([0, 2])
    expected = F.cross_entropy(logits, labels, label_smoothing=0.2)
    assert math.isclose(head.loss(logits, labels).item(), expected.item(), rel_tol=1e-6)
    soft = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    assert math.isclose(head.loss(logits, soft).item(), expected.item(), rel_tol=1e-6)


def test_cls_head_learns_a_separable_problem():
    torch.manual_seed(0)
    x = torch.randn(64, 8)
    y = (x[:, 0] > 0).long()
    head = ClsHead(in_dim=8, num_classes=2, dropout=0.0, init_std=0.1)
    opt = torch.optim.Adam(head.parameters(), lr=0.1)
    for _ in range(50):
        opt.zero_grad()
        head.loss(head(x), y).backward()
        opt.step()
    assert (head(x).argmax(1) == y).float().mean() > 0.95


def test_score_head_sigmoid_scores_and_bce_loss():
    torch.manual_seed(0)
    head = ScoreHead(in_dim=16, dropout=0.0).eval()
    assert [m.out_features for m in head.mlp if isinstance(m, torch.nn.Linear)] == [32, 1]
    x = torch.randn(3, 10, 16)
    scores = head.scores(x)
    assert scores.shape == (3, 10) and torch.all((scores >= 0) & (scores <= 1))
    assert torch.allclose(scores, torch.sigmoid(head(x)).squeeze(-1))
    logits = torch.tensor([[0.5], [-2.0]])
    labels = torch.tensor([1, 0])
    expected = F.binary_cross_entropy_with_logits(logits, torch.tensor([[1.0], [0.0]]))
    assert math.isclose(head.loss(logits, labels).item(), expected.item(), rel_tol=1e-6)


def test_head_errors_name_key_and_value():
    with pytest.raises(ConfigError, match="ClsHead.num_classes: expected a positive int, got 0"):
        ClsHead(in_dim=4, num_classes=0)
    with pytest.raises(ConfigError, match=r"dropout: expected a float in \[0, 1\), got 1.5"):
        MLPHead(in_dim=4, num_classes=2, dropout=1.5)
    with pytest.raises(ConfigError, match=r"hidden_dims\[1\].*got -3"):
        MLPHead(in_dim=4, num_classes=2, hidden_dims=(8, -3))
    with pytest.raises(ConfigError, match="use MLPHead"):
        ScoreHead(in_dim=4, num_classes=3)
    head = ClsHead(in_dim=4, num_classes=3)
    with pytest.raises(DataError, match=r"shape \(2, 5\), expected \(N, 4"):
        head(torch.randn(2, 5))
    with pytest.raises(DataError, match=r"labels must be in \[0, 2\], got range \[0, 3\]"):
        head.loss(torch.randn(2, 3), torch.tensor([0, 3]))
