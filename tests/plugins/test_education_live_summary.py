"""The education live summary of ``vkit watch`` names the time actually watched: min(span, observed)."""
from __future__ import annotations

from collections import deque
from types import SimpleNamespace

from vkit.plugins.education.live import ClassSummary

LOW, HIGH = 0.1, 0.9


def _stream(index: int, scores: list[float], hop: float = 1.0, start: float = 1.0) -> SimpleNamespace:
    """A watched stream whose windows end at ``start``, ``start + hop`` ... with ``scores``."""
    recent = deque((start + i * hop, score) for i, score in enumerate(scores))
    return SimpleNamespace(state=SimpleNamespace(index=index), recent=recent, hop=hop)


def _summary(*streams: SimpleNamespace, span: float = 120.0) -> tuple[str, dict]:
    sessions = {s.state.index: ("s1", f"live://s1/pseudo-{s.state.index}") for s in streams}
    (group, text, values), = ClassSummary(sessions, low_score=0.3, span=span).summaries(list(streams))
    assert group == "s1"
    return text, values


def test_one_second_of_stream_is_summarised_as_one_second_not_the_whole_span() -> None:
    text, values = _summary(_stream(0, [LOW]), _stream(1, [HIGH]))
    assert text == "1 of 2 learners low for the last 1 second"  # was "0 of 2 ... for the last 2 minutes"
    assert values["observed_seconds"] == 1.0 and values["window_seconds"] == 120.0 and values["low_learners"] == ["pseudo-0"]


def test_the_span_grows_with_the_stream_up_to_the_configured_one() -> None:
    assert _summary(_stream(0, [LOW] * 45), _stream(1, [HIGH] * 45))[0] == "1 of 2 learners low for the last 45 seconds"
    text, values = _summary(_stream(0, [HIGH] * 10 + [LOW] * 125), _stream(1, [LOW] * 125 + [HIGH] * 10))
    assert text == "1 of 2 learners low for the last 2 minutes" and values["observed_seconds"] == 120.0


def test_a_learner_watched_for_less_than_the_span_shown_is_not_counted_low() -> None:
    late = _stream(1, [LOW] * 5, start=26.0)  # joined 25 s after the other: watched 5 s of the last 30
    text, values = _summary(_stream(0, [HIGH] * 30), late)
    assert text == "0 of 2 learners low for the last 30 seconds" and values["low_learners"] == []


def test_nothing_scored_yet_names_no_span() -> None:
    text, values = _summary(_stream(0, []), _stream(1, []))
    assert text == "0 of 2 learners low (nothing scored yet)" and values["observed_seconds"] == 0.0
