"""Ground-truth stretches of scored videos, kept in the store's events table beside the detected events.

A task whose test videos carry temporal annotations (e.g. security's frame
intervals) records them, after :func:`vkit.core.scoring.score_videos`, as
events of kind :data:`GROUND_TRUTH` (``score`` empty); the run report shades
them on the score-over-time plots, and ``vkit runs show`` / the report's event
tables count only the detected ones (:func:`detected_events`).

Example::

    spans = frame_spans([(17, 31)], fps=10.0, duration=6.0)      # [(1.7, 3.2)]
    record_ground_truth(store, run_id, {"/data/Running003.mp4": spans})
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from vkit.registry.errors import DataError

#: The ``kind`` of a ground-truth event row.
GROUND_TRUTH = "ground_truth"


def frame_spans(intervals: Iterable[tuple[int, int]], fps: float, duration: float | None = None) -> list[tuple[float, float]]:
    """Inclusive frame intervals ``(first, last)`` as ``(start, end)`` seconds (``last + 1`` ends the span), clipped to ``duration``."""
    if not fps or fps <= 0:
        raise DataError(f"ground truth: a frame rate is needed to place frame intervals in time, got fps={fps!r}")
    spans = []
    for first, last in intervals:
        start, end = first / fps, (last + 1) / fps
        if duration:
            start, end = min(start, duration), min(end, duration)
        if end > start:
            spans.append((float(start), float(end)))
    return spans


def record_ground_truth(store: Any, run_id: int, truth: Mapping[str, Sequence[tuple[float, float]]]) -> int:
    """Store ``{video path: [(start, end) seconds, ...]}`` as events of kind :data:`GROUND_TRUTH`; returns the row count.

    The videos must already be in the store (as :func:`~vkit.core.scoring.score_videos` leaves them); writing the
    same spans again updates the same rows.
    """
    truth = {str(path): list(spans) for path, spans in truth.items() if spans}
    if not truth:
        return 0
    ids = store.upsert_videos([dict(path=path) for path in truth])  # only the path: the stored columns stay
    rows = [dict(video_id=ids[path], kind=GROUND_TRUTH, start=float(start), end=float(end), score=None)
            for path, spans in truth.items() for start, end in spans]
    return store.add_events(run_id, rows)


def detected_events(events: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The event rows that a model detected (every kind but :data:`GROUND_TRUTH`)."""
    return [e for e in events if e.get("kind") != GROUND_TRUTH]


__all__ = ["GROUND_TRUTH", "detected_events", "frame_spans", "record_ground_truth"]
