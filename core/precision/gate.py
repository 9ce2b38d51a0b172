"""The quality gate a reduced precision passes against fp32, and the clips it is gated on.

Example::

    quality_gate("bf16", fp32_scores, bf16_scores, labels).passed
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from vkit.registry.errors import ConfigError

__all__ = ["GATE_METRIC_DELTA", "GATE_SPEARMAN", "GateResult", "Validation", "archive_validation", "quality_gate"]

#: The gate: the task metric may move at most this much from fp32 ...
GATE_METRIC_DELTA = 0.005
#: ... and the scores' Spearman rank correlation with fp32 must reach this.
GATE_SPEARMAN = 0.999


@dataclass(frozen=True)
class Validation:
    """Clips to gate (and calibrate) reduced precisions on.

    Args:
        clips: ``(N, C, T, H, W)`` float32, as ``scorer.decode`` makes them.
        labels: ``(N,)`` 0/1 labels (the task metric is ROC AUC), or ``None``: then
            the gate holds the scores themselves to ``max |diff| <= 0.005`` instead.
        source: where the clips came from (printed and recorded).
    """

    clips: torch.Tensor
    labels: np.ndarray | None = None
    source: str = "validation clips"


@dataclass
class GateResult:
    """The quality gate's figures for one precision against fp32."""

    precision: str
    passed: bool
    clips: int
    spearman: float
    max_abs_diff: float
    metric: str | None = None
    metric_fp32: float | None = None
    metric_value: float | None = None
    metric_delta: float | None = None
    clips_per_s: float | None = None
    reason: str = ""

    def describe(self) -> str:
        text = f"{self.precision}: Spearman {self.spearman:.5f}, max |diff| {self.max_abs_diff:.2e}"
        if self.metric_delta is not None:
            text += f", {self.metric} delta {self.metric_delta:.4f}"
        return text + ("" if self.passed else f" -> rejected: {self.reason}")


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    if len(a) < 2:
        return 1.0 if np.allclose(a, b) else 0.0
    if np.ptp(a) == 0 or np.ptp(b) == 0:  # constant scores: ranks agree only if both are constant and equal
        return 1.0 if np.array_equal(a, b) else 0.0
    return float(spearmanr(a, b).statistic)


def _auc(labels: np.ndarray, scores: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores))


def quality_gate(precision: str, reference: np.ndarray, candidate: np.ndarray, labels: np.ndarray | None = None,
                 metric: Callable[[np.ndarray, np.ndarray], float] | None = None, metric_name: str = "AUC") -> GateResult:
    """Compare a precision's scores with fp32's on the same clips.

    Passes when the task metric (``metric(labels, scores)``, ROC AUC by default)
    moves at most :data:`GATE_METRIC_DELTA` and the Spearman rank correlation of
    the scores is at least :data:`GATE_SPEARMAN`. Without labels the scores
    themselves must agree within :data:`GATE_METRIC_DELTA` (max absolute difference).

    Example::

        quality_gate("bf16", fp32_scores, bf16_scores, labels).passed
    """
    ref = np.asarray(reference, dtype=np.float64).reshape(-1)
    cand = np.asarray(candidate, dtype=np.float64).reshape(-1)
    if ref.shape != cand.shape or ref.size == 0:
        raise ConfigError(f"quality gate ({precision}): expected two equal-length score arrays, got {ref.shape} and {cand.shape}")
    result = GateResult(precision, True, int(ref.size), _spearman(ref, cand), float(np.max(np.abs(ref - cand))))
    reasons = []
    if not np.all(np.isfinite(cand)):
        reasons.append("non-finite scores")
    if result.spearman < GATE_SPEARMAN:
        reasons.append(f"Spearman {result.spearman:.5f} < {GATE_SPEARMAN}")
    labels = None if labels is None else np.asarray(labels).reshape(-1)
    if labels is not None and len(np.unique(labels)) > 1 and np.all(np.isfinite(cand)):
        fn = metric or _auc
        result.metric, result.metric_fp32, result.metric_value = metric_name, fn(labels, ref), fn(labels, cand)
        result.metric_delta = abs(result.metric_value - result.metric_fp32)
        if result.metric_delta > GATE_METRIC_DELTA:
            reasons.append(f"{metric_name} moved {result.metric_delta:.4f} > {GATE_METRIC_DELTA}")
    elif result.max_abs_diff > GATE_METRIC_DELTA and (labels is None or len(np.unique(labels)) < 2):
        reasons.append(f"no labels of both classes, and scores differ up to {result.max_abs_diff:.4f} > {GATE_METRIC_DELTA}")
    if reasons:
        result.passed, result.reason = False, "; ".join(reasons)
    return result


def archive_validation(scorer: Any, paths: Sequence[str], max_clips: int = 32) -> Validation:
    """Validation clips for a scorer: its own ``validation_clips()`` (clips, labels) when it has one,
    else up to ``max_clips`` clips of the job's first decodable files (no labels), spread over as many
    videos as there are: the middle clip of each of ``max_clips`` videos, or more of each video when the
    job has fewer. (The clips of one video overlap and score nearly alike; rank swaps among such near-ties
    would dominate the gate's Spearman while saying nothing about how videos rank.)

    Example::

        validation = archive_validation(scorer, ["cam1.mp4", "cam2.mp4"])
        validation.source      # "clips of 2 archive videos (unlabelled)"
    """
    from vkit.core.capabilities import scorer_supports

    if "validation_clips" in scorer_supports(scorer):  # declared (vkit.core.capabilities)
        clips, labels = scorer.validation_clips()
        return Validation(torch.as_tensor(np.ascontiguousarray(clips), dtype=torch.float32),
                          None if labels is None else np.asarray(labels), "labelled validation clips of the task")
    from vkit.registry.errors import DataError

    per_video = max(1, -(-max_clips // max(len(paths), 1)))
    chunks, used = [], 0
    for path in paths:
        if sum(len(c) for c in chunks) >= max_clips:
            break
        try:
            clips = torch.as_tensor(np.ascontiguousarray(scorer.decode(path)), dtype=torch.float32)
        except (DataError, OSError):
            continue  # a bad file fails later, in the job, with its reason
        skip = max(0, (len(clips) - per_video) // 2)
        chunks.append(clips[skip:skip + per_video])
        used += 1
    if not chunks:
        return Validation(torch.empty(0), None, "no decodable archive videos")
    return Validation(torch.cat(chunks)[:max_clips], None, f"clips of {used} archive videos (unlabelled)")
