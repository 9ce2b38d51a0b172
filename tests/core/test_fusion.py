"""Fusion modules: shapes, simplex weights, masks that remove a modality's influence, no NaN."""
from __future__ import annotations

import pytest
import torch

from vkit.core.fusion import Concat, GatedAttention, LateFusion, Mean, Weighted
from vkit.registry.errors import ConfigError, DataError
from vkit.registry.registries import FUSIONS

IN_DIMS = {"video": 6, "audio": 4, "meta": 3}
N = 5

CONFIGS = [
    (dict(type="Concat", dim=8), 24),
    (dict(type="Mean", dim=8), 8),
    (dict(type="Weighted", dim=8), 8),
    (dict(type="Weighted", dim=8, weights=dict(video=2, audio=1, meta=1)), 8),
    (dict(type="GatedAttention", dim=8, hidden=4), 8),
    (dict(type="LateFusion", dim=8, num_classes=3), 3),
]


def _features(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {m: torch.randn(N, d, generator=g) for m, d in IN_DIMS.items()}


def _build(cfg: dict) -> torch.nn.Module:
    torch.manual_seed(0)
    return FUSIONS.build(cfg, default_args=dict(in_dims=IN_DIMS)).eval()


@pytest.mark.parametrize("cfg,out_dim", CONFIGS, ids=lambda c: str(c))
def test_build_shape_and_out_dim(cfg, out_dim):
    fusion = _build(cfg)
    assert fusion.out_dim == out_dim
    assert fusion(_features()).shape == (N, out_dim)


@pytest.mark.parametrize("cfg,out_dim", CONFIGS, ids=lambda c: str(c))
def test_masked_modality_has_no_influence_and_zero_gradient(cfg, out_dim):
    fusion = _build(cfg)
    mask = {"audio": torch.tensor([True, False, True, False, True])}
    feats = _features(0)
    out = fusion(feats, mask=mask)
    changed = dict(feats, audio=feats["audio"] * 100 + 7)
    changed["audio"][1] = float("nan")  # even NaN in a masked sample must not leak
    changed["audio"][3] = float("inf")
    out2 = fusion(changed, mask=mask)
    masked = ~mask["audio"]
    assert torch.equal(out[masked], out2[masked])
    assert not torch.equal(out[~masked], out2[~masked])  # present samples do depend on audio
    audio = feats["audio"].clone().requires_grad_(True)
    fusion(dict(feats, audio=audio), mask=mask).sum().backward()
    assert torch.all(audio.grad[masked] == 0)
    assert torch.any(audio.grad[~masked] != 0)


@pytest.mark.parametrize("cfg,out_dim", CONFIGS, ids=lambda c: str(c))
def test_all_missing_gives_zeros_not_nan(cfg, out_dim):
    fusion = _build(cfg)
    mask = {m: torch.tensor([False, True, True, True, True]) for m in IN_DIMS}
    feats = _features()
    out = fusion(feats, mask=mask)
    assert torch.isfinite(out).all()
    assert torch.equal(out[0], torch.zeros(out_dim))
    x = {m: f.clone().requires_grad_(True) for m, f in feats.items()}
    fusion(x, mask=mask).sum().backward()
    for f in x.values():
        assert torch.isfinite(f.grad).all() and torch.all(f.grad[0] == 0)


def test_absent_modality_equals_fully_masked():
    fusion = _build(dict(type="Mean", dim=8))
    feats = _features()
    absent = {k: v for k, v in feats.items() if k != "meta"}
    masked = fusion(feats, mask={"meta": torch.zeros(N, dtype=torch.bool)})
    assert torch.allclose(fusion(absent), masked)


def test_mean_is_mean_of_present_projections():
    fusion = _build(dict(type="Mean", dim=8))
    feats = _features()
    proj = {m: fusion.proj[m](x) for m, x in feats.items()}
    mask = {"meta": torch.tensor([True, False, True, True, True])}
    out = fusion(feats, mask=mask)
    assert torch.allclose(out[0], (proj["video"][0] + proj["audio"][0] + proj["meta"][0]) / 3, atol=1e-6)
    assert torch.allclose(out[1], (proj["video"][1] + proj["audio"][1]) / 2, atol=1e-6)


def test_concat_puts_zeros_for_a_missing_modality():
    fusion = _build(dict(type="Concat", dim=8))
    out = fusion(_features(), mask={"audio": torch.zeros(N, dtype=torch.bool)})
    assert torch.equal(out[:, 8:16], torch.zeros(N, 8))
    assert out[:, :8].abs().sum() > 0


def test_weighted_fixed_weights_normalised_and_renormalised_over_present():
    fusion = Weighted(IN_DIMS, dim=4, weights=dict(video=2, audio=1, meta=1))
    assert torch.allclose(fusion.weights, torch.tensor([0.5, 0.25, 0.25]))
    assert not any(p is fusion.weights for p in fusion.parameters())
    feats = _features()
    proj = {m: fusion.proj[m](x) for m, x in feats.items()}
    mask = {"meta": torch.zeros(N, dtype=torch.bool)}
    expected = (2 * proj["video"] + proj["audio"]) / 3
    assert torch.allclose(fusion(feats, mask=mask), expected, atol=1e-6)


def test_weighted_learnable_weights_stay_on_simplex_after_optimizer_steps():
    torch.manual_seed(0)
    fusion = Weighted(IN_DIMS, dim=4)
    assert torch.allclose(fusion.weights, torch.full((3,), 1 / 3))
    opt = torch.optim.SGD(fusion.parameters(), lr=5.0)
    feats = _features()
    before = fusion.weights.detach().clone()
    for _ in range(3):
        opt.zero_grad()
        (fusion(feats)[:, 0] * torch.tensor([10.0, -3, 2, 8, 1])).sum().backward()
        opt.step()
        w = fusion.weights.detach()
        assert torch.all(w >= 0) and torch.isclose(w.sum(), torch.tensor(1.0), atol=1e-6)
    assert not torch.allclose(before, fusion.weights.detach())


def test_gated_attention_weights_are_per_sample_and_on_simplex():
    torch.manual_seed(0)
    fusion = GatedAttention(IN_DIMS, dim=8, hidden=4)
    mask = {"video": torch.tensor([True, False, True, True, False]), "audio": torch.tensor([True, True, True, True, False])}
    mask["meta"] = torch.tensor([True, True, False, True, False])
    out, w = fusion(_features(), mask=mask, return_weights=True)
    assert out.shape == (N, 8) and w.shape == (N, 3)
    assert torch.equal(fusion.last_weights, w.detach())
    assert torch.allclose(w[:4].sum(1), torch.ones(4), atol=1e-6) and torch.all(w >= 0)
    assert torch.equal(w[4], torch.zeros(3))  # nothing present
    assert w[1, 0] == 0 and w[2, 2] == 0  # missing -> weight 0
    assert not torch.allclose(w[0], w[3])  # per-sample, not global


def test_late_fusion_averages_per_modality_logits():
    torch.manual_seed(0)
    fusion = LateFusion({"video": 6, "audio": 4}, dim=8, num_classes=3)
    assert fusion.produces_logits and fusion.out_dim == 3
    feats = {"video": torch.randn(N, 6), "audio": torch.randn(N, 4)}
    lv = fusion.heads["video"](fusion.proj["video"](feats["video"]))
    la = fusion.heads["audio"](fusion.proj["audio"](feats["audio"]))
    assert torch.allclose(fusion(feats), (lv + la) / 2, atol=1e-6)
    only_video = fusion(feats, mask={"audio": torch.zeros(N, dtype=torch.bool)})
    assert torch.allclose(only_video, lv, atol=1e-6)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(in_dims={}, dim=4), "in_dims"),
        (dict(in_dims={"video": 0}, dim=4), r"in_dims\['video'\].*got 0"),
        (dict(in_dims={"video": 3}, dim=-1), "dim: expected a positive int, got -1"),
    ],
)
def test_bad_config_errors_show_value(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        Mean(**kwargs)


def test_bad_weights_and_inputs_are_clear_errors():
    with pytest.raises(ConfigError, match="missing \\['meta'\\]"):
        Weighted(IN_DIMS, dim=4, weights=dict(video=1, audio=1))
    with pytest.raises(ConfigError, match="got .*-1"):
        Weighted(IN_DIMS, dim=4, weights=dict(video=1, audio=-1, meta=1))
    fusion = Concat(IN_DIMS, dim=4)
    with pytest.raises(DataError, match="'vidoe'.*did you mean 'video'"):
        fusion({"vidoe": torch.randn(N, 6)})
    with pytest.raises(DataError, match=r"features\['audio'\] has shape \(5, 7\), expected \(5, 4\)"):
        fusion(dict(_features(), audio=torch.randn(N, 7)))
    with pytest.raises(DataError, match="mask\\['audio'\\] must be a bool tensor"):
        fusion(_features(), mask={"audio": torch.ones(N)})
