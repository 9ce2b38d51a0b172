"""``events``: the one rule that turns a score series into stretches (events), and ``frame_scores``.

The rule, used by every scorer (``vkit score``, a task's test split, the plugin template):

- **comparison**: element ``i`` counts when ``series[i] >= threshold`` (``above=True``)
  or ``series[i] <= threshold`` (``above=False``); a value equal to the threshold
  counts, as it does for a metric's decision (``P >= threshold`` is positive,
  :mod:`vkit.core.decision`). ``NaN`` never counts.
- **stretches**: maximal runs of counting elements; two runs apart by no more than
  ``merge_gap`` seconds of non-counting elements are one stretch; a stretch shorter
  than ``min_duration`` seconds is dropped (after merging).
- **times**: element ``i`` spans ``[start + i * step, start + (i + 1) * step)``; a stretch of
  elements ``first..last`` runs from ``start + first * step`` to ``start + (last + 1) * step``,
  both rounded to the millisecond (3 decimals). A stretch that reaches the end of the series
  ends at the series' end.
- **score**: the stretch's peak: its largest value (``above``) or its smallest (``below``).

Example::

    events([0.1, 0.9, 0.5, 0.2], 0.5, step=2.0)
    # [{'kind': 'event', 'start': 2.0, 'end': 6.0, 'score': 0.9, 'first': 1, 'last': 2}]
    events([2.9, 0.4, 1.5, 2.5], 1.5, above=False, step=2.0, kind="low-engagement")[0]["end"]   # 6.0
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from vkit.registry.errors import ConfigError

__all__ = ["event_settings", "events", "frame_scores", "segment_of_frame"]

#: Seconds a stretch may fall short of ``min_duration`` and be kept (float noise of ``k * step``).
_TOLERANCE = 1e-9


#: What the settings of a task's ``events`` section mean, for messages.
_SETTINGS = {"min_duration": "the shortest event kept", "merge_gap": "events apart by at most this many seconds become one"}


def event_settings(section: Mapping[str, Any], where: str = "events") -> dict[str, float]:
    """``threshold``, ``min_duration`` and ``merge_gap`` of a task's ``events`` config section (the last two 0 when
    absent, as in a checkpoint written before they existed), checked: the keyword arguments :func:`events` takes.

    Raises:
        ConfigError: naming ``{where}.{key}``: a threshold that is not a finite number, a duration or gap that is
            not a number of seconds >= 0.
    """
    out: dict[str, float] = {}
    for key in ("threshold", "min_duration", "merge_gap"):
        value = section.get(key, None if key == "threshold" else 0.0)
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if key == "threshold" and not (number and math.isfinite(value)):
            raise ConfigError(f"{where}.threshold: {value!r}; expected a finite number (a score at or beyond it counts)")
        if key != "threshold" and not (number and math.isfinite(value) and value >= 0):
            raise ConfigError(f"{where}.{key}: {value!r}; expected seconds >= 0 ({_SETTINGS[key]})")
        out[key] = float(value)
    return out


def events(series: Sequence[float] | np.ndarray, threshold: float, *, above: bool = True, step: float = 1.0,
           start: float = 0.0, min_duration: float = 0.0, merge_gap: float = 0.0,
           kind: str = "event") -> list[dict[str, Any]]:
    """The stretches of ``series`` at or beyond ``threshold``, by the module's rule.

    Args:
        series: one score per segment (or frame).
        threshold: an element counts when ``>= threshold`` (``above``) or ``<= threshold`` (not ``above``).
        above: look for high stretches (``True``) or low ones.
        step: seconds one element lasts (``duration / len(series)`` for segments, ``1 / fps`` for frames).
        start: time of the first element.
        min_duration: shortest stretch kept, in seconds (with ``step=1``: in elements).
        merge_gap: runs apart by at most this many seconds of other elements become one stretch.
        kind: the events' ``kind`` (the store's events table keys on it).

    Returns:
        ``dict(kind, start, end, score, first, last)`` per stretch, in order; ``first``/``last`` are
        the indices of its first and last element (inclusive).

    Raises:
        ConfigError: a non-positive ``step``, a negative ``min_duration`` or ``merge_gap``, a non-finite threshold.
    """
    if not step > 0:
        raise ConfigError(f"events: step (seconds per element) must be > 0, got {step!r}")
    if not min_duration >= 0 or not merge_gap >= 0:
        raise ConfigError(f"events: min_duration={min_duration!r}, merge_gap={merge_gap!r}; expected seconds >= 0")
    if not np.isfinite(threshold):
        raise ConfigError(f"events: threshold must be a finite number, got {threshold!r}")
    values = np.asarray(series, dtype=np.float64).reshape(-1)
    counts = values >= threshold if above else values <= threshold  # NaN compares False: never counts
    edges = np.flatnonzero(np.diff(np.concatenate([[0], counts.astype(np.int8), [0]])))
    runs: list[list[int]] = []
    for first, stop in zip(edges[::2].tolist(), edges[1::2].tolist()):
        if runs and (first - runs[-1][1]) * step <= merge_gap + _TOLERANCE:
            runs[-1][1] = stop
        else:
            runs.append([first, stop])
    out = []
    for first, stop in runs:
        if (stop - first) * step + _TOLERANCE < min_duration:
            continue
        part = values[first:stop]
        peak = float(np.nanmax(part) if above else np.nanmin(part))
        out.append(dict(kind=kind, start=round(start + first * step, 3), end=round(start + stop * step, 3),
                        score=peak, first=first, last=stop - 1))
    return out


def segment_of_frame(num_frames: int, num_segments: int) -> np.ndarray:
    """The segment each frame belongs to: frame ``f`` is in segment ``floor(f * S / N)`` (equal spans, as sampled).

    Example::

        segment_of_frame(8, 4).tolist()   # [0, 0, 1, 1, 2, 2, 3, 3]
    """
    if num_frames < 1 or num_segments < 1:
        raise ConfigError(f"segment_of_frame: need positive counts, got num_frames={num_frames}, num_segments={num_segments}")
    return np.minimum((np.arange(num_frames) * num_segments) // num_frames, num_segments - 1)


def frame_scores(segment_scores: Sequence[float] | np.ndarray, num_frames: int) -> np.ndarray:
    """Per-frame scores: every frame takes the score of its segment (frame-level metrics, plots).

    Example::

        frame_scores([0.1, 0.9], 4).tolist()   # [0.1, 0.1, 0.9, 0.9]
    """
    scores = np.asarray(segment_scores, dtype=np.float64).reshape(-1)
    return scores[segment_of_frame(int(num_frames), len(scores))]
