"""From segment scores to frame scores and detected events (contiguous frames over a threshold).

Example::

    scores = frame_scores([0.1, 0.9, 0.8, 0.2], num_frames=8)   # [0.1 0.1 0.9 0.9 0.8 0.8 0.2 0.2]
    detect_events(scores, fps=4.0, threshold=0.5, min_duration=0.5)
    # [{'kind': 'anomaly', 'start': 0.5, 'end': 1.5, 'score': 0.9, 'start_frame': 2, 'end_frame': 5}]
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from vkit.registry.errors import ConfigError


def segment_of_frame(num_frames: int, num_segments: int) -> np.ndarray:
    """Index of the segment each frame belongs to (equal spans, as in feature sampling)."""
    if num_frames < 1 or num_segments < 1:
        raise ConfigError(f"segment_of_frame: need positive counts, got num_frames={num_frames}, num_segments={num_segments}")
    return np.minimum((np.arange(num_frames) * num_segments) // num_frames, num_segments - 1)


def frame_scores(segment_scores: Sequence[float] | np.ndarray, num_frames: int) -> np.ndarray:
    """Per-frame scores: every frame takes the score of its segment."""
    scores = np.asarray(segment_scores, dtype=np.float64).reshape(-1)
    return scores[segment_of_frame(int(num_frames), len(scores))]


def detect_events(scores: Sequence[float] | np.ndarray, fps: float, threshold: float = 0.5,
                  min_duration: float = 0.5, kind: str = "anomaly") -> list[dict[str, Any]]:
    """Runs of consecutive frames with score ``> threshold`` lasting at least ``min_duration`` seconds.

    Args:
        scores: per-frame scores.
        fps: frames per second (``start = first_frame / fps``, ``end = (last_frame + 1) / fps``).
        threshold: a frame is anomalous when its score is strictly above it.
        min_duration: shortest event kept, in seconds.
        kind: the events' ``kind`` (the store's events table keys on it).

    Returns:
        ``{"kind", "start", "end", "score" (max in the run), "start_frame", "end_frame" (inclusive)}`` per event.
    """
    if fps <= 0:
        raise ConfigError(f"detect_events: fps must be > 0, got {fps!r}")
    if min_duration < 0:
        raise ConfigError(f"events.min_duration: expected seconds >= 0, got {min_duration!r}")
    values = np.asarray(scores, dtype=np.float64).reshape(-1)
    above = np.concatenate([[False], values > threshold, [False]])
    edges = np.flatnonzero(above[1:] != above[:-1])
    events = []
    for first, stop in zip(edges[::2], edges[1::2]):
        if (stop - first) / fps + 1e-9 < min_duration:
            continue
        events.append(dict(kind=kind, start=round(float(first) / fps, 6), end=round(float(stop) / fps, 6),
                           score=float(values[first:stop].max()), start_frame=int(first), end_frame=int(stop - 1)))
    return events
