"""Reduced precision for scoring: CPU capabilities, the quality gate, auto's choice, resume identity."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch

from vkit.core.precision import (
    Capabilities,
    PrecisionScorer,
    Validation,
    apply_precision,
    archive_validation,
    capabilities,
    precision_sha256,
    quality_gate,
)
from vkit.registry.errors import ConfigError

SHA = "ab" * 32
BF16_CPU = Capabilities("test CPU", ("avx512_bf16",), True, "", False, "CPU lacks avx512_vnni")
OLD_CPU = Capabilities("old CPU", (), False, "CPU lacks avx512_bf16 / amx_bf16: bf16 would be emulated", False, "no vnni")


class FakeScorer:
    """Scores clips by their mean; under bf16 autocast the scores get ``perturb`` noise; fp32 sleeps ``fp32_delay``."""

    num_segments = 2
    model_sha256 = SHA

    def __init__(self, perturb: float = 0.0, fp32_delay: float = 0.004, bf16_delay: float = 0.0) -> None:
        self.perturb, self.fp32_delay, self.bf16_delay, self.calls = perturb, fp32_delay, bf16_delay, []

    def decode(self, path: str) -> np.ndarray:
        return np.zeros((2, 3, 2, 4, 4), np.float32)

    def score(self, clips: torch.Tensor) -> torch.Tensor:
        reduced = torch.is_autocast_enabled("cpu")
        self.calls.append("bf16" if reduced else "fp32")
        time.sleep(self.bf16_delay if reduced else self.fp32_delay)   # fp32 is the slow one, as on a CPU with AMX
        scores = torch.sigmoid(clips.float().mean(dim=(1, 2, 3, 4)))
        if reduced and self.perturb:
            gen = torch.Generator().manual_seed(len(clips))
            scores = scores + self.perturb * torch.randn(len(clips), generator=gen)
        return scores

    def summarize(self, segment_scores: np.ndarray, info: object) -> dict:
        return dict(events=[])


def _validation(n: int = 24, labelled: bool = True) -> Validation:
    levels = torch.linspace(-2, 2, n).view(n, 1, 1, 1, 1)
    clips = levels + 0.01 * torch.randn(n, 3, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    labels = (np.arange(n) % 3 == 0).astype(int) if labelled else None
    return Validation(clips, labels)


def test_capabilities_follow_the_cpu_flags() -> None:
    old = capabilities({"avx2", "fma"})
    assert not old.bf16 and "avx512_bf16" in old.bf16_reason
    assert not old.int8 and "avx512_vnni" in old.int8_reason
    assert capabilities({"avx512_bf16"}).bf16 == bool(torch.backends.mkldnn.is_available())
    assert "avx512_bf16" in capabilities({"avx512_bf16", "amx_tile"}).describe()


def test_precision_sha256_keeps_fp32_and_separates_the_others() -> None:
    assert precision_sha256(SHA, "fp32") == SHA
    others = {precision_sha256(SHA, p) for p in ("bf16", "int8")}
    assert len(others) == 2 and SHA not in others and all(len(s) == 64 for s in others)
    with pytest.raises(ConfigError, match="once resolved"):
        precision_sha256(SHA, "auto")


def test_gate_passes_equal_scores_and_names_what_failed() -> None:
    ref = np.linspace(0.1, 0.9, 20)
    labels = (np.arange(20) >= 10).astype(int)
    ok = quality_gate("bf16", ref, ref + 1e-4, labels)
    assert ok.passed and ok.spearman == pytest.approx(1.0) and ok.metric_delta == pytest.approx(0.0)
    shuffled = ref.copy()
    shuffled[[2, 15]] = shuffled[[15, 2]]                 # two ranks swapped: Spearman drops, AUC moves
    bad = quality_gate("bf16", ref, shuffled, labels)
    assert not bad.passed and "Spearman" in bad.reason
    unlabelled = quality_gate("bf16", ref, ref + 0.01)    # ranks equal, but scores move 0.01 > 0.005
    assert not unlabelled.passed and "no labels of both classes, and scores differ" in unlabelled.reason
    with pytest.raises(ConfigError, match="equal-length"):
        quality_gate("bf16", ref, ref[:3])


def test_gate_rejects_a_metric_shift_even_with_high_spearman() -> None:
    ref = np.linspace(0.0, 1.0, 2000)
    labels = (np.arange(2000) % 2).astype(int)
    cand = ref.copy()
    cand[1::2] += 0.006                                   # each positive passes ~6 negatives: ranks barely move
    gate = quality_gate("int8", ref, cand, labels)
    assert gate.spearman > 0.999 and gate.metric_delta > 0.005 and not gate.passed and "AUC moved" in gate.reason


def test_auto_falls_back_to_fp32_when_bf16_scores_disagree(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    scorer = FakeScorer(perturb=0.3)
    lines: list[str] = []
    chosen, choice = apply_precision(scorer, "auto", _validation(), caps=BF16_CPU, cache_dir=tmp_path, log=lines.append)
    assert chosen is scorer and choice.precision == "fp32"
    assert "bf16 rejected: Spearman" in choice.reason and choice.gates[0].spearman < 0.999
    assert any("precision gate" in line for line in lines) and "precision fp32" in lines[-1]
    assert chosen.model_sha256 == SHA


def test_auto_takes_bf16_when_it_passes_and_remembers(tmp_path: Path) -> None:
    scorer = FakeScorer(perturb=0.0)
    chosen, choice = apply_precision(scorer, "auto", _validation(), caps=BF16_CPU, cache_dir=tmp_path)
    assert choice.precision == "bf16" and isinstance(chosen, PrecisionScorer) and not choice.cached
    assert choice.gates[0].passed and choice.gates[0].metric_delta <= 0.005
    assert chosen.model_sha256 == precision_sha256(SHA, "bf16")
    scorer.calls.clear()
    out = chosen.score(torch.zeros(3, 3, 2, 4, 4))
    assert scorer.calls == ["bf16"] and out.dtype == torch.float32 and out.shape == (3,)
    made: list[int] = []

    def lazy() -> Validation:                           # a cached decision needs no validation clips
        made.append(1)
        return _validation()

    again, second = apply_precision(FakeScorer(perturb=0.3), "auto", lazy, caps=BF16_CPU, cache_dir=tmp_path)
    assert second.cached and second.precision == "bf16" and not made
    assert again.model_sha256 == chosen.model_sha256


def test_auto_rejects_a_precision_that_is_not_faster(tmp_path: Path) -> None:
    scorer = FakeScorer(perturb=0.0, fp32_delay=0.0, bf16_delay=0.004)   # a CPU where bf16 is emulated
    chosen, choice = apply_precision(scorer, "auto", _validation(), caps=BF16_CPU, cache_dir=tmp_path)
    assert chosen is scorer and choice.precision == "fp32" and "not faster than fp32" in choice.reason


def test_explicit_bf16_without_native_support_says_so_and_runs_fp32(tmp_path: Path) -> None:
    scorer = FakeScorer()
    lines: list[str] = []
    chosen, choice = apply_precision(scorer, "bf16", caps=OLD_CPU, cache_dir=tmp_path, log=lines.append)
    assert chosen is scorer and choice.precision == "fp32" and "lacks avx512_bf16" in choice.reason
    assert "running fp32" in lines[0]


def test_fp32_is_the_scorer_itself_and_bad_names_are_errors(tmp_path: Path) -> None:
    scorer = FakeScorer()
    chosen, choice = apply_precision(scorer, "fp32", caps=BF16_CPU, cache_dir=tmp_path)
    assert chosen is scorer and choice.precision == "fp32"
    with pytest.raises(ConfigError, match="expected one of"):
        apply_precision(scorer, "fp16")
    with pytest.raises(ConfigError, match="int8"):
        apply_precision(scorer, "int8", caps=OLD_CPU, cache_dir=tmp_path)


def test_auto_without_candidates_or_clips_stays_fp32(tmp_path: Path) -> None:
    _, choice = apply_precision(FakeScorer(), "auto", _validation(), caps=OLD_CPU, cache_dir=tmp_path)
    assert choice.precision == "fp32" and "bf16: CPU lacks" in choice.reason
    empty = Validation(torch.empty(0))
    _, choice = apply_precision(FakeScorer(), "auto", empty, caps=BF16_CPU, cache_dir=tmp_path)
    assert choice.precision == "fp32" and "no validation clips" in choice.reason


class _FourClips:
    """Each video decodes to 4 clips whose values are (video index, clip index); one file is unreadable."""

    def decode(self, path: str) -> np.ndarray:
        if path == "bad.mp4":
            raise OSError("moov atom not found")
        video = int(Path(path).stem[1:])
        return np.stack([np.full((3, 2, 2, 2), video * 10 + clip, np.float32) for clip in range(4)])


def test_archive_validation_spreads_its_clips_over_as_many_videos_as_there_are() -> None:
    many = archive_validation(_FourClips(), ["bad.mp4"] + [f"v{i}.mp4" for i in range(40)])
    assert len(many.clips) == 32 and many.labels is None
    assert [int(c[0, 0, 0, 0]) for c in many.clips] == [v * 10 + 1 for v in range(32)]   # a middle clip of 32 videos
    assert many.source == "clips of 32 archive videos (unlabelled)"
    few = archive_validation(_FourClips(), ["v0.mp4", "bad.mp4", "v1.mp4", "v2.mp4"])
    assert [int(c[0, 0, 0, 0]) for c in few.clips] == [v * 10 + c for v in range(3) for c in range(4)]  # all of each
    assert few.source == "clips of 3 archive videos (unlabelled)"
