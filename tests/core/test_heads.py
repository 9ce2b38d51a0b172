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


# ---------------------------------------------------------------------- regression
@pytest.mark.parametrize("cfg, x_shape, out_shape", [
    (dict(type="RegressionHead"), (4, 16), (4, 1)),
    (dict(type="RegressionHead", num_targets=3, hidden_dims=(8,)), (4, 16, 2, 3, 3), (4, 3)),
])
def test_regression_head_shapes_and_declared_output(cfg, x_shape, out_shape):
    from vkit.core.heads import head_output

    head = HEADS.build(cfg, default_args=dict(in_dim=16)).eval()
    assert head(torch.randn(*x_shape)).shape == out_shape
    assert head_output(head) == "value" and head_output(ClsHead) == head_output(MLPHead) == "probs"


@pytest.mark.parametrize("loss, reference", [
    ("mse", lambda p, t: F.mse_loss(p, t)),
    ("l1", lambda p, t: F.l1_loss(p, t)),
    ("smooth_l1", lambda p, t: F.smooth_l1_loss(p, t, beta=0.5)),
])
def test_regression_losses_match_torch_on_scaled_values(loss, reference):
    from vkit.core.heads import RegressionHead

    head = RegressionHead(in_dim=4, loss=loss, beta=0.5, offset=2.0, scale=4.0)
    values = torch.tensor([[1.0], [3.5], [6.0]])
    targets = torch.tensor([1.5, 2.0, 7.25])
    assert head.loss(values, targets).item() == pytest.approx(reference(values / 4.0, targets.reshape(3, 1) / 4.0).item())


def test_regression_head_offset_scale_and_errors():
    from vkit.core.heads import RegressionHead

    head = RegressionHead(in_dim=4, offset=5.0, scale=2.0)
    nn_out = head.mlp(torch.ones(1, 4))
    assert head(torch.ones(1, 4)).item() == pytest.approx(5.0 + 2.0 * nn_out.item())
    with pytest.raises(ConfigError, match=r"RegressionHead.loss: expected one of \('mse', 'l1', 'smooth_l1'\), got 'huber'"):
        RegressionHead(in_dim=4, loss="huber")
    with pytest.raises(ConfigError, match=r"RegressionHead.scale: expected a finite number > 0, got 0"):
        RegressionHead(in_dim=4, scale=0)
    with pytest.raises(DataError, match=r"targets of shape \(2,\) do not match values \(3, 1\)"):
        head.loss(torch.zeros(3, 1), torch.zeros(2))
    with pytest.raises(DataError, match="targets must be finite"):
        head.loss(torch.zeros(2, 1), torch.tensor([1.0, float("nan")]))


def _video_model(head: dict):
    from vkit.core.model import build_model

    return build_model(dict(backbones=dict(video=dict(type="TinyC3D", in_channels=1, widths=(4, 8), num_frames=4,
                                                      input_size=(8, 8))), head=head))


def test_float_labels_reach_the_loss_unchanged_and_outputs_are_not_softmaxed(monkeypatch):
    from vkit.core.heads import RegressionHead

    model = _video_model(dict(type="RegressionHead", offset=3.0))
    seen: list[torch.Tensor] = []
    original = RegressionHead.loss
    monkeypatch.setattr(RegressionHead, "loss", lambda head, v, t: seen.append(t) or original(head, v, t))
    inputs = {"video": torch.rand(3, 1, 4, 8, 8)}
    samples = [dict(label=lbl, case_id=f"c{i}") for i, lbl in enumerate([0.25, 3.5, 7.125])]
    model(inputs, samples, mode="loss")
    assert seen[0].dtype == torch.float32 and seen[0].tolist() == [0.25, 3.5, 7.125]
    out = model(inputs, samples, mode="predict")
    raw = model(inputs, mode="tensor")
    assert "probs" not in out[0] and torch.equal(torch.stack([o["value"] for o in out]), raw.detach())


def test_a_fractional_label_for_a_classifier_is_an_error_not_truncated():
    model = _video_model(dict(type="ClsHead", num_classes=3))
    samples = [dict(label=2.0, case_id="a"), dict(label=1.5, case_id="b")]
    with pytest.raises(DataError, match=r"case 'b': label 1.5 is not a class index; .*RegressionHead"):
        model({"video": torch.rand(2, 1, 4, 8, 8)}, samples, mode="loss")


def test_a_compressed_regression_model_still_predicts_values(tmp_path):
    """An ONNX Runtime stand-in and a cast model keep the regression model's ``output``: values, never softmaxed."""
    import copy

    from vkit.core.compression import CompressionContext
    from vkit.core.compression.quantize import CastModel
    from vkit.core.evaluation import predict
    from vkit.registry.registries import COMPRESSORS

    model = _video_model(dict(type="RegressionHead", offset=3.0)).eval()
    dataset = [dict(inputs=dict(video=torch.rand(1, 4, 8, 8)), label=1.5, case_id=f"c{i}") for i in range(3)]
    want = torch.stack([r["value"] for r in predict(model, dataset, 3)])
    ctx = CompressionContext(sample={"video": torch.rand(2, 1, 4, 8, 8)}, evaluate=lambda m: 0.0, latency_runs=1,
                             warmup=0, work_dir=tmp_path)
    onnx = COMPRESSORS.build(dict(type="OnnxExport")).apply(copy.deepcopy(model), ctx)
    cast = CastModel(copy.deepcopy(model).double(), torch.float64)
    for stand_in in (onnx, cast):
        rows = predict(stand_in, dataset, 3)
        assert "probs" not in rows[0] and torch.allclose(torch.stack([r["value"] for r in rows]), want, atol=1e-4)
