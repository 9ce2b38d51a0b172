"""CompressionChain: per-stage reports, the max_metric_drop gate, the speed gate, skipped stages, building from config."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import vkit.core.compression.quantize as quantize_mod
from vkit.core.compression import REPORT_KEYS, CompressionChain, CompressionContext, Stage, sparsity
from vkit.core.compression.measure import side_by_side
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
        max_metric_drop=0.05, allow_size_only=True,  # unstructured pruning is not faster: kept for the test
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
        max_metric_drop=0.05, allow_size_only=True,
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
    result = CompressionChain([dict(type="CastFP16"), dict(type="DynamicQuantize")], allow_size_only=True).run(
        trained, _ctx(tmp_path))
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


class Clock:
    """A fake clock the models below advance by their cost per call: timings without real time."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def __deepcopy__(self, memo: dict) -> Clock:
        return self  # the chain deep-copies models: their copies keep ticking this clock


class Costly(nn.Module):
    """``inner`` plus a cost on ``clock`` per call (``spikes``: extra cost on the calls with those indices)."""

    def __init__(self, inner: nn.Module, clock: Clock, cost: float, spikes: dict[int, float] | None = None) -> None:
        super().__init__()
        self.inner, self.clock, self.cost, self.spikes, self.calls = inner, clock, cost, dict(spikes or {}), 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.clock.now += self.cost + self.spikes.get(self.calls, 0.0)
        self.calls += 1
        return self.inner(x)


class SetCost(Stage):
    """Same weights, another cost per call."""

    def __init__(self, cost: float, size_only: bool = False) -> None:
        super().__init__()
        self.cost, self.size_only = cost, size_only
        self.name = f"SetCost{cost:g}"

    def apply(self, model: nn.Module, ctx: CompressionContext) -> nn.Module:
        model.cost = self.cost
        return model


def test_side_by_side_is_the_median_of_interleaved_pairs() -> None:
    clock = Clock()
    ref = Costly(nn.Identity(), clock, 1.0, spikes={4: 50.0, 5: 50.0})  # a load spike on two calls
    cand = Costly(nn.Identity(), clock, 2.0)
    timing = side_by_side(ref, cand, torch.zeros(2, 3), runs=7, warmup=1, timer=clock)
    assert timing["speedup"] == pytest.approx(0.5) and timing["candidate_ms"] == pytest.approx(1000.0)  # 2 s / 2 clips
    assert ref.calls == cand.calls == 8


def test_speed_gate_skips_a_slower_stage_and_goes_on_from_its_input(trained, tmp_path):
    clock = Clock()
    model = Costly(trained, clock, 1.0)
    ctx = CompressionContext(sample=X[:4], evaluate=accuracy, latency_runs=5, warmup=1, timer=clock)
    result = CompressionChain([SetCost(2.0), SetCost(1.02), SetCost(0.5)], min_speedup=1.05).run(model, ctx)
    slower, level, faster = result.reports
    assert [r["status"] for r in result.reports] == ["skipped", "skipped", "ok"]
    assert slower["input_speedup"] == pytest.approx(0.5) and level["input_speedup"] == pytest.approx(1 / 1.02)
    assert "0.50x the speed of its input (timed side by side, median of 5 pairs) < min_speedup 1.05" in slower["reason"]
    assert "compression.allow_size_only=True" in slower["reason"]
    assert faster["input_speedup"] == pytest.approx(2.0) and result.model.cost == 0.5  # judged against cost 1.0
    assert result.message.startswith("chain finished: 1/3 stages applied (SetCost2 0.50x, SetCost1.02 0.98x skipped: "
                                     "not 1.05x faster than its input)")
    assert "SetCost2: skipped: 0.50x" in result.format_table()


def test_size_only_stages_are_kept_when_allowed_and_say_so(trained):
    clock = Clock()
    ctx = CompressionContext(sample=X[:4], evaluate=accuracy, latency_runs=3, warmup=0, timer=clock)
    one = CompressionChain([SetCost(3.0, size_only=True)]).run(Costly(trained, clock, 1.0), ctx).reports[0]
    assert one["status"] == "ok" and one["reason"].startswith("kept for its size (compression.stages[0].size_only)")
    every = CompressionChain([dict(type="MagnitudePrune", amount=0.1)], allow_size_only=True, min_speedup=1e9)
    row = every.run(Costly(trained, clock, 1.0), ctx).reports[0]
    assert row["status"] == "ok" and "kept for its size (compression.allow_size_only)" in row["reason"]
    with pytest.raises(ConfigError, match=r"compression.stages\[0\].size_only: expected True or False, got 'yes'"):
        CompressionChain([dict(type="MagnitudePrune", size_only="yes")])
    with pytest.raises(ConfigError, match=r"compression.min_speedup: expected a ratio > 0 \(e.g. 1.05\), got 0"):
        CompressionChain.from_config(dict(stages=[dict(type="MagnitudePrune")], min_speedup=0))
