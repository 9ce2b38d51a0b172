"""The one event rule: comparison at the threshold, stretches at the end, one-segment stretches, merging, times."""
from __future__ import annotations

import numpy as np
import pytest

from vkit.core.events import events, frame_scores, segment_of_frame
from vkit.registry.errors import ConfigError


def spans(found: list[dict]) -> list[tuple[float, float]]:
    return [(e["start"], e["end"]) for e in found]


def test_a_value_equal_to_the_threshold_counts_above_and_below() -> None:
    assert spans(events([0.5, 0.5], 0.5)) == [(0.0, 2.0)]
    assert spans(events([0.4, 0.5, 0.6], 0.5, above=False)) == [(0.0, 2.0)]
    assert events([0.4999999, 0.2], 0.5) == []
    assert spans(events([0.5000001, 0.2], 0.5, above=False)) == [(1.0, 2.0)]


def test_a_stretch_at_the_end_ends_at_the_series_end() -> None:
    found = events([0.1, 0.2, 0.7, 0.9], 0.5, step=1.5, start=10.0)
    assert found == [dict(kind="event", start=13.0, end=16.0, score=0.9, first=2, last=3)]
    assert spans(events([0.9, 0.9, 0.9], 0.5, step=2.0)) == [(0.0, 6.0)]  # the whole series


def test_a_one_segment_stretch_is_kept_unless_too_short() -> None:
    series = [0.1, 0.8, 0.1, 0.6, 0.7, 0.1]
    found = events(series, 0.5, step=2.0, kind="anomaly")
    assert [(e["kind"], e["first"], e["last"], e["score"]) for e in found] == [("anomaly", 1, 1, 0.8), ("anomaly", 3, 4, 0.7)]
    assert spans(events(series, 0.5, step=2.0, min_duration=4.0)) == [(6.0, 10.0)]  # one segment lasts 2 s
    assert spans(events([0.9], 0.5, step=0.1, min_duration=0.1)) == [(0.0, 0.1)]  # exactly min_duration is kept


def test_low_stretches_peak_is_the_lowest_value() -> None:
    found = events([3, 0.4, 0.6, 0.5, 2.5, 1.0, 2.9], 1.5, above=False, step=2.0, min_duration=4.0, kind="low")
    assert [(e["start"], e["end"], e["score"]) for e in found] == [(2.0, 8.0, 0.4)]


def test_merge_gap_joins_stretches_apart_by_at_most_the_gap() -> None:
    series = [0.9, 0.1, 0.9, 0.1, 0.1, 0.9]
    assert spans(events(series, 0.5, step=1.0)) == [(0.0, 1.0), (2.0, 3.0), (5.0, 6.0)]
    assert spans(events(series, 0.5, step=1.0, merge_gap=1.0)) == [(0.0, 3.0), (5.0, 6.0)]
    assert spans(events(series, 0.5, step=1.0, merge_gap=2.0)) == [(0.0, 6.0)]
    merged = events(series, 0.5, step=1.0, merge_gap=1.0, min_duration=2.0)  # min_duration applies after merging
    assert spans(merged) == [(0.0, 3.0)] and merged[0]["score"] == 0.9


def test_times_round_to_the_millisecond_and_nan_never_counts() -> None:
    found = events([0.9, 0.9, 0.1], 0.5, step=1 / 3)
    assert spans(found) == [(0.0, 0.667)]
    assert spans(events([np.nan, 0.9, np.nan], 0.5)) == [(1.0, 2.0)]
    assert events([], 0.5) == []


def test_bad_settings_are_one_line_errors() -> None:
    with pytest.raises(ConfigError, match="step .* must be > 0, got 0"):
        events([1.0], 0.5, step=0)
    with pytest.raises(ConfigError, match="min_duration=-1"):
        events([1.0], 0.5, min_duration=-1)
    with pytest.raises(ConfigError, match="threshold must be a finite number, got nan"):
        events([1.0], float("nan"))


def test_frame_scores_follow_their_segment() -> None:
    assert segment_of_frame(8, 4).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert frame_scores([0.1, 0.9, 0.8, 0.2], 8).tolist() == [0.1, 0.1, 0.9, 0.9, 0.8, 0.8, 0.2, 0.2]
    with pytest.raises(ConfigError, match="num_frames=0"):
        segment_of_frame(0, 4)
