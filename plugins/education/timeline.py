"""Engagement timelines: low-engagement stretches, a teacher-facing summary.

Example::

    low_stretches([2.9, 0.4, 0.6, 0.5, 2.5], seconds=2.0, low_level=1.5, min_seconds=4.0)
    # [dict(kind="low-engagement", start=2.0, end=8.0, score=0.83, level=0.5)]
    teacher_summary({"learner01": [(24.0, 36.0)], "learner02": [(26.0, 34.0)], "learner03": []})
    # "attention fell from 00:26 to 00:34 for 2 of 3 learners"
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def low_stretches(levels: Sequence[float], seconds: float, low_level: float, min_seconds: float,
                  start: float = 0.0) -> list[dict[str, Any]]:
    """Stretches of consecutive segments whose expected level is at or below ``low_level``, ``min_seconds`` or longer.

    Core's event rule (:func:`vkit.core.events.events`, ``above=False``: a level equal to
    ``low_level`` counts; times rounded to the millisecond) with engagement's own score.

    Args:
        levels: expected engagement level (0-3) per segment.
        seconds: length of one segment.
        low_level: a segment at or below this level is "low engagement".
        min_seconds: shortest stretch reported.
        start: time of the first segment.

    Returns:
        ``dict(kind="low-engagement", start, end, score, level)``: ``score`` = ``1 - mean level / 3`` (how far
        attention fell), ``level`` = the stretch's mean expected level.
    """
    from vkit.core.events import events

    levels = np.asarray(levels, dtype=np.float64)
    if not seconds > 0:  # a recording without duration has no stretch
        return []
    out = []
    for e in events(levels, low_level, above=False, step=seconds, start=start, min_duration=min_seconds,
                    kind="low-engagement"):
        mean = float(levels[e["first"]:e["last"] + 1].mean())
        out.append(dict(kind=e["kind"], start=e["start"], end=e["end"], score=round(1.0 - mean / 3.0, 4),
                        level=round(mean, 3)))
    return out


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
