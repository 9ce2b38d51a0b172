"""Engagement timelines: sampling clips along a recording, low-engagement stretches, a teacher-facing summary.

Example::

    idx = clip_grid(frames=384, fps=8.0, segments=24, num_frames=16, clip_seconds=2.0)   # (24, 16) frame indices
    low_stretches([2.9, 0.4, 0.6, 0.5, 2.5], seconds=2.0, low_level=1.5, min_seconds=4.0)
    # [dict(kind="low-engagement", start=2.0, end=8.0, score=0.83, level=0.5)]
    teacher_summary({"learner01": [(24.0, 36.0)], "learner02": [(26.0, 34.0)], "learner03": []})
    # "attention fell from 00:26 to 00:34 for 2 of 3 learners"
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from vkit.registry.errors import DataError


def clip_grid(frames: int, fps: float, segments: int, num_frames: int, clip_seconds: float) -> np.ndarray:
    """Frame indices ``(segments, num_frames)``: one clip per equal segment, ``clip_seconds`` long, centred in it.

    The clip spans what a training clip spanned (``num_frames`` frames over ``clip_seconds``), so the model
    sees motion at the speed it learnt; a segment shorter than that gets a clip covering the segment.
    """
    if frames < 1 or segments < 1 or num_frames < 1 or fps <= 0:
        raise DataError(f"clip_grid: expected positive frames, fps, segments, num_frames; got {frames}, {fps}, {segments}, {num_frames}")
    seg = frames / segments
    span = min(seg, max(1.0, clip_seconds * fps))
    centres = (np.arange(segments) + 0.5) * seg
    offsets = (np.arange(num_frames) + 0.5) * span / num_frames - span / 2
    return np.clip(np.floor(centres[:, None] + offsets[None, :]).astype(np.int64), 0, frames - 1)


def low_stretches(levels: Sequence[float], seconds: float, low_level: float, min_seconds: float,
                  start: float = 0.0) -> list[dict[str, Any]]:
    """Runs of consecutive segments whose expected level is below ``low_level`` lasting ``min_seconds`` or more.

    Args:
        levels: expected engagement level (0-3) per segment.
        seconds: length of one segment.
        low_level: a segment below this level is "low engagement".
        min_seconds: shortest stretch reported.
        start: time of the first segment.

    Returns:
        ``dict(kind="low-engagement", start, end, score, level)``: ``score`` = ``1 - mean level / 3`` (how far
        attention fell), ``level`` = the stretch's mean expected level.
    """
    levels = np.asarray(levels, dtype=np.float64)
    low = levels < low_level
    events, i = [], 0
    while i < len(low):
        if not low[i]:
            i += 1
            continue
        j = i
        while j < len(low) and low[j]:
            j += 1
        if (j - i) * seconds >= min_seconds - 1e-9:
            mean = float(levels[i:j].mean())
            events.append(dict(kind="low-engagement", start=round(start + i * seconds, 3), end=round(start + j * seconds, 3),
                               score=round(1.0 - mean / 3.0, 4), level=round(mean, 3)))
        i = j
    return events


def clock(seconds: float) -> str:
    """``mm:ss`` (``h:mm:ss`` past an hour)."""
    total = int(round(seconds))
    h, rest = divmod(total, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def teacher_summary(stretches: Mapping[str, Sequence[tuple[float, float]]], min_share: float = 0.25) -> str:
    """One sentence on when attention fell for many learners of a session.

    The period is the longest one in which the most learners were in a low stretch at once (of two
    equally long ones, the earlier); ``min_share`` of the learners must be in it, else attention "held".

    Example::

        teacher_summary({"a": [(750, 910)], "b": [(760, 900)], "c": []})   # "attention fell from 12:40 to 15:00 for 2 of 3 learners"
        teacher_summary({"a": [(2, 6), (10, 22)], "b": [(2, 6), (10, 22)]})  # "... from 00:10 to 00:22 for 2 of 2 ..."
    """
    learners = len(stretches)
    if not learners:
        return "no learners"
    best, period = _longest_busiest_period(stretches)
    if period is None or best < max(1, min_share * learners):
        return f"attention held: no period where {max(1, int(np.ceil(min_share * learners)))} of {learners} learners were low"
    return f"attention fell from {clock(period[0])} to {clock(period[1])} for {best} of {learners} learners"


def _longest_busiest_period(stretches: Mapping[str, Sequence[tuple[float, float]]]) -> tuple[int, tuple[float, float] | None]:
    """``(most learners low at once, the longest unbroken period with that many)``; ``(0, None)`` without stretches."""
    edges = sorted({t for spans in stretches.values() for span in spans for t in span})
    counts = [sum(any(s <= (a + b) / 2 < e for s, e in spans) for spans in stretches.values())
              for a, b in zip(edges, edges[1:])]
    best = max(counts, default=0)
    if not best:
        return 0, None
    periods: list[tuple[float, float]] = []
    for (a, b), count in zip(zip(edges, edges[1:]), counts):
        if count != best:
            continue
        if periods and periods[-1][1] == a:  # the same unbroken period goes on
            periods[-1] = (periods[-1][0], b)
        else:
            periods.append((a, b))
    return best, max(periods, key=lambda p: p[1] - p[0])  # max keeps the first of equal lengths
