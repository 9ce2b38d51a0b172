"""Temporal saliency: which frames or segments drove a video's score, by hiding one segment at a time.

Two shapes of model, one rule: occlude one segment, score again, and the
segment's saliency is how much the score dropped.

- :func:`clip_saliency` — a model that sees one clip ``(1, C, T, H, W)`` (an
  engagement clip, a cine loop, a volume's slabs): the ``T`` frames are cut
  into ``segments`` equal parts as :class:`~vkit.core.sampling.FrameSampler`
  cuts a video (segment ``s`` covers frames ``[s T / S, (s + 1) T / S)``), each
  hidden in turn; the score is the target class's probability (or the value).
- :func:`scorer_saliency` — a :class:`~vkit.core.scoring.SegmentScorer` (``vkit
  score``'s per-segment scorer, e.g. security's anomaly scorer): its own
  sampler cuts the video, each segment's clip is hidden in turn and scored
  by ``scorer.score``; a segment's clip is scored on its own, so one batch of
  hidden clips gives every drop. Times are in seconds.

How a segment is hidden (``occlude``):

``drop`` (the default)
    its frames are replaced by the frame just before it (the first segment: just after it),
    as if the video froze over it; for a scorer, the neighbouring segment's clip takes its place.
``blur``
    its frames are replaced by the clip's mean frame over time: what is always there stays, what
    happens in the segment is smeared over the whole clip; for a scorer (one clip per segment),
    the segment clip's own mean frame: its appearance stays, its motion is gone.

Example::

    sal = clip_saliency(trained.model, model_inputs(trained.model, item["inputs"]), segments=4)
    sal.peak          # {'segment': 2, 'start': 8, 'end': 12, 'saliency': 0.61}
    sal = scorer_saliency(scorer, "cam1.mp4")
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vkit.core.explain.model import Focus, target_index
from vkit.core.explain.result import Explanation
from vkit.registry.errors import ConfigError

__all__ = ["OCCLUSIONS", "clip_saliency", "scorer_saliency", "segment_bounds"]

#: How a segment is hidden (module docstring).
OCCLUSIONS = ("drop", "blur")


def segment_bounds(frames: int, segments: int) -> list[tuple[int, int]]:
    """``[(start, end)]`` frames of ``segments`` equal segments of ``frames`` frames (FrameSampler's rule:
    segment ``s`` covers ``[floor(s N / S), floor((s + 1) N / S))``); never more segments than frames.

    Example::

        segment_bounds(10, 4)   # [(0, 2), (2, 5), (5, 7), (7, 10)]
    """
    if frames < 1 or segments < 1:
        raise ConfigError(f"temporal saliency: expected frames >= 1 and segments >= 1, got {frames}, {segments}")
    count = min(int(segments), int(frames))
    return [(s * frames // count, (s + 1) * frames // count) for s in range(count)]


def _check_occlude(occlude: str) -> None:
    if occlude not in OCCLUSIONS:
        raise ConfigError(f"temporal saliency: occlude={occlude!r}; expected one of {OCCLUSIONS}")


def _hide_frames(x: torch.Tensor, start: int, end: int, occlude: str) -> torch.Tensor:
    """``x`` ``(C, T, H, W)`` with frames ``[start, end)`` hidden."""
    out = x.clone()
    if occlude == "blur":
        out[:, start:end] = x.mean(1, keepdim=True)
    else:
        keep = start - 1 if start > 0 else min(end, x.shape[1] - 1)
        out[:, start:end] = x[:, keep:keep + 1]
    return out


def clip_saliency(model: torch.nn.Module, inputs: Mapping[str, torch.Tensor], *, segments: int = 8,
                  occlude: str = "drop", target: int | str | None = None, classes: Sequence[str] = (),
                  modality: str | None = None, batch_size: int = 16) -> Explanation:
    """Temporal saliency of a clip model: the target's drop when each segment of the clip's frames is hidden.

    Args:
        model: the trained model; ``inputs``: the item's normalised inputs, batch 1.
        segments: how many equal segments the clip's ``T`` frames are cut into (at most ``T``).
        occlude: ``"drop"`` or ``"blur"`` (module docstring).
        target, classes, modality: as :func:`vkit.core.explain.spatial.grad_cam`.
        batch_size: hidden copies per forward pass.
    """
    _check_occlude(occlude)
    focus = Focus(model.eval(), inputs, modality)
    x = focus.x[0]
    bounds = segment_bounds(int(x.shape[1]), segments)
    with torch.no_grad():
        scores = focus(focus.x)
        index = target_index(scores, target, list(classes))
        base = float(scores[0, index])
        hidden = torch.stack([_hide_frames(x, a, b, occlude) for a, b in bounds])
        occluded = torch.cat([focus(part)[:, index] for part in hidden.split(int(batch_size))]).float().cpu().numpy()
    rows = [dict(segment=s, start=a, end=b, saliency=base - float(o), score=base, occluded=float(o))
            for s, ((a, b), o) in enumerate(zip(bounds, occluded))]
    from vkit.core.explain.spatial import _name

    return Explanation(method="temporal", target=_name(index, classes, focus.output), target_index=index, score=base,
                       modality=focus.modality, per_frame=_frame_shares(rows, int(x.shape[1])), segments=rows,
                       notes=dict(occlude=occlude, segments_used=len(bounds)))


def _frame_shares(rows: list[dict[str, Any]], frames: int) -> list[float]:
    """Each frame's share of the positive saliency (its segment's drop spread over the segment's frames)."""
    per = np.zeros(frames, dtype=np.float64)
    for row in rows:
        width = max(1, row["end"] - row["start"])
        per[row["start"]:row["end"]] = max(0.0, row["saliency"]) / width
    total = float(per.sum())
    return [float(v) for v in (per / total if total > 0 else per)]


def scorer_saliency(scorer: Any, path: str | Path, *, occlude: str = "drop") -> Explanation:
    """Temporal saliency of a video under a segment scorer: each segment's score drop when its clip is hidden.

    Args:
        scorer: a :class:`~vkit.core.scoring.SegmentScorer` (``decode``, ``score``, ``sampler``).
        path: the video.
        occlude: ``"drop"`` (the neighbouring segment's clip in its place) or ``"blur"`` (the clip's frames
            replaced by their mean: its motion is gone).

    The explanation's ``score`` is the video's highest segment score; segments carry seconds
    (``start``/``end``), their own ``score`` and the score ``occluded``.
    """
    from vkit.core.video import probe

    _check_occlude(occlude)
    clips = torch.as_tensor(scorer.decode(str(path)))
    count = int(clips.shape[0])
    if occlude == "blur":
        hidden = clips.mean(2, keepdim=True).expand_as(clips).contiguous()
    else:
        neighbour = [s - 1 if s > 0 else min(1, count - 1) for s in range(count)]
        hidden = clips[neighbour].contiguous()
    with torch.no_grad():
        scores = torch.as_tensor(scorer.score(clips)).float().reshape(-1).cpu().numpy()
        occluded = torch.as_tensor(scorer.score(hidden)).float().reshape(-1).cpu().numpy()
    if scores.shape[0] != count:
        raise ConfigError(f"temporal saliency: {type(scorer).__name__}.score gave {scores.shape[0]} scores for "
                          f"{count} segments; it must give one score per clip")
    duration = float(probe(path).duration or 0.0)
    step = duration / count if duration > 0 else 1.0
    rows = [dict(segment=s, start=s * step, end=(s + 1) * step, saliency=float(a - b), score=float(a), occluded=float(b))
            for s, (a, b) in enumerate(zip(scores, occluded))]
    return Explanation(method="temporal", target="score", target_index=0, score=float(scores.max()), modality="video",
                       per_frame=_frame_shares([dict(r, start=s, end=s + 1) for s, r in enumerate(rows)], count),
                       segments=rows, unit="s" if duration > 0 else "segment",
                       notes=dict(occlude=occlude, segments_used=count))
