"""Live events (vkit watch) end as the one event rule says on the whole series (vkit score), window by window."""
from __future__ import annotations

import numpy as np
import pytest

from vkit.core.sampling import FrameSampler
from vkit.core.scoring import SegmentScorer, video_results
from vkit.workflows.watch.live_events import LiveEvents


class _Rule(SegmentScorer):
    sampler, size, model_sha256 = FrameSampler("uniform", 4, 2), (8, 8), "rule-only"

    def __init__(self, **rule: float) -> None:
        self.event_rule = dict(kind="high", **rule)


def _live(scorer: SegmentScorer, series: np.ndarray, step: float) -> tuple[list[dict], list[tuple]]:
    tracker = LiveEvents(scorer, step, start=0.0, keep=16)
    changes = []
    for value in series:
        changes += tracker.add(value)
    changes += tracker.finish("closed")
    return [c["event"] for c in changes if c["action"] == "close"], [(c["action"], c["event"]["start"]) for c in changes]


@pytest.mark.parametrize("rule", [dict(threshold=0.5), dict(threshold=0.5, min_duration=1.0),
                                  dict(threshold=0.5, merge_gap=1.0), dict(threshold=0.6, min_duration=1.5, merge_gap=0.5)])
def test_live_events_equal_the_rule_on_the_whole_series(rule: dict) -> None:
    rng = np.random.default_rng(0)
    series = np.clip(np.repeat(rng.random(60), rng.integers(1, 4, 60)) + rng.normal(0, 0.05, size=None), 0, 1)[:120]
    scorer = _Rule(**rule)
    info = type("Info", (), dict(duration=len(series) * 0.5))()
    expected = video_results(series, info, scorer)["events"]
    closed, changes = _live(scorer, series, 0.5)
    assert [(e["kind"], e["start"], e["end"], e["score"]) for e in closed] == \
        [(e["kind"], e["start"], e["end"], e["score"]) for e in expected]
    assert all(e["status"] == "closed" for e in closed) and len(expected) > 2
    opened = [start for action, start in changes if action == "open"]
    assert opened == [e["start"] for e in expected]  # each opened once, before it closed


def test_open_event_is_interrupted_and_a_settled_series_is_let_go() -> None:
    scorer = _Rule(threshold=0.5)
    tracker = LiveEvents(scorer, 1.0, start=10.0, keep=8)
    changes = [c for v in [0.1] * 20 + [0.9, 0.9] for c in tracker.add(v)]
    assert len(tracker.series) < 10  # the quiet past was let go
    assert [(c["action"], c["event"]["start"], c["event"]["status"]) for c in changes] == [("open", 30.0, "open"),
                                                                                           ("update", 30.0, "open")]
    assert [(c["event"]["start"], c["event"]["end"], c["event"]["status"]) for c in tracker.finish("interrupted")] == \
        [(30.0, 32.0, "interrupted")]


def test_a_window_or_hop_that_could_never_give_a_score_is_refused():
    from types import SimpleNamespace

    from vkit.registry.errors import ConfigError
    from vkit.workflows.watch.engine import window_seconds

    scorer = SimpleNamespace(sampler=None)
    assert window_seconds(scorer, {}, 2.0, 0.5) == (2.0, 0.5)
    for window, hop in ((1e9, None), (0.0, None), (float("nan"), None), (2.0, -1.0)):
        with pytest.raises(ConfigError, match=r"watch: --(window|hop) .* expected more than 0 and at most 3600 s"):
            window_seconds(scorer, {}, window, hop)
