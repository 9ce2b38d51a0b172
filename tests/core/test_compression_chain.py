"""CompressionChain: per-stage reports, the max_metric_drop gate, skipped stages, building from config."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import vkit.core.compression.quantize as quantize_mod
from vkit.core.compression import REPORT_KEYS, CompressionChain, CompressionContext, sparsity
from vkit.registry.errors import ConfigError, RegistryError
from vkit.registry.registries import COMPRESSORS

G = torch.Generator().manual_seed(0)
X = torch.randn(400, 8, generator=G)
Y = (X[:, :2].sum(1) > 0).long()  # separable through two of eight inputs


@pytest.fixture(scope="module")
def trained() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 2))
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(150):
        opt.zero_grad()
        nn.functional.cross_entropy(model(X), Y).backward()
        opt.step()
    return model.eval()


def accuracy(model: nn.Module) -> float:
    with torch.no_grad():
        return float((model(X).argmax(1) == Y).float().mean())


def _ctx(tmp_path) -> CompressionContext:
    return CompressionContext(sample=X[:16], evaluate=accuracy, latency_runs=3, warmup=1, work_dir=tmp_path)


def test_chain_reports_every_stage(trained, tmp_path):
    assert accuracy(trained) > 0.97
    chain = CompressionChain(
        [dict(type="ChannelPrune", amount=0.25), dict(type="MagnitudePrune", amount=0.3), dict(type="OnnxExport")],
        max_metric_drop=0.05,
    )
    result = chain.run(trained, _ctx(tmp_path))
    assert [r["stage"] for r in result.reports] == ["ChannelPrune", "MagnitudePrune", "OnnxExport"]
    assert [r["status"] for r in result.reports] == ["ok", "ok", "ok"]
    assert all(set(r) == set(REPORT_KEYS) for r in result.rows())
    base, cp, mp, ox = result.rows()
    assert base["stage"] == "original" and base["metric_after"] == result.original_metric == accuracy(trained)
    assert cp["params"] < base["params"] and cp["bytes"] < base["bytes"] and cp["size_ratio"] > 1
    assert abs(mp["sparsity"] - 0.3) < 0.01 and mp["params"] == cp["params"]
    assert ox["bytes"] == (tmp_path / "model.onnx").stat().st_size
    assert mp["metric_before"] == cp["metric_after"] and math.isclose(mp["delta"], mp["metric_after"] - cp["metric_after"])
    assert all(r["latency_ms"] > 0 for r in result.rows())
    assert result.model(X[:3]).shape == (3, 2) and result.stopped_at is None
    assert "3/3 stages applied" in result.message and "OnnxExport" in result.format_table()
    assert accuracy(trained) == base["metric_after"]  # the original model is left as it was
    assert sparsity(trained) == 0.0


def test_gate_stops_the_chain_and_keeps_the_last_good_model(trained, tmp_path):
    chain = CompressionChain.from_config(dict(
        stages=[dict(type="MagnitudePrune", amount=0.3), dict(type="MagnitudePrune", amount=0.99), dict(type="DynamicQuantize")],
        max_metric_drop=0.05,
    ))
    result = chain.run(trained, _ctx(tmp_path))
    first, second, third = result.reports
    assert [first["status"], second["status"], third["status"]] == ["ok", "stopped", "skipped"]
    assert second["drop"] > 0.05 and second["metric_after"] < 0.8
    assert "below the original" in second["reason"] and "max_metric_drop 0.05" in second["reason"]
    assert "not run: chain stopped at 'MagnitudePrune'" in third["reason"]
    assert result.stopped_at == "MagnitudePrune" and "stopped at stage 2" in result.message
    assert abs(sparsity(result.model) - 0.3) < 0.01  # the model after stage 1, not after stage 2
    assert accuracy(result.model) == first["metric_after"]


def test_a_stage_that_cannot_run_here_is_skipped_with_its_reason(trained, tmp_path, monkeypatch):
    monkeypatch.setattr(quantize_mod, "cpu_supports", lambda d: (False, "CPU lacks avx512_fp16 / amx_fp16"))
    result = CompressionChain([dict(type="CastFP16"), dict(type="DynamicQuantize")]).run(trained, _ctx(tmp_path))
    skipped, quantized = result.reports
    assert skipped["status"] == "skipped" and skipped["reason"] == "CPU lacks avx512_fp16 / amx_fp16"
    assert skipped["bytes"] is None
    assert quantized["status"] == "ok" and quantized["size_ratio"] > 2.5
    assert abs(quantized["metric_after"] - result.original_metric) <= 0.01


def test_chain_config_errors():
    with pytest.raises(ConfigError, match="compression.max_metirc_drop: unknown key.*did you mean 'max_metric_drop'"):
        CompressionChain.from_config(dict(stages=[dict(type="MagnitudePrune")], max_metirc_drop=0.1))
    with pytest.raises(ConfigError, match="expected a non-empty list of stage configs, got \\[\\]"):
        CompressionChain([])
    with pytest.raises(ConfigError, match="max_metric_drop: expected a number >= 0 or None, got -1"):
        CompressionChain([dict(type="MagnitudePrune")], max_metric_drop=-1)
    with pytest.raises(RegistryError, match="'MagnitudePrun'.*did you mean 'MagnitudePrune'"):
        CompressionChain([dict(type="MagnitudePrun")])
    chain = COMPRESSORS.build(dict(type="CompressionChain", stages=[dict(type="ChannelPrune", amount=0.5)]))
    assert chain.stages[0].amount == 0.5 and chain.max_metric_drop is None
