"""`vkit predict` shows the numbers beside each decision: "positive (p=0.71 >= 0.50)" (issue 25)."""
from __future__ import annotations

import pytest

from vkit.core.decision import Decision
from vkit.workflows.predict import decision_reason


@pytest.mark.parametrize(("decision", "probs", "name", "text"), [
    (Decision("threshold", threshold=0.5), [0.29, 0.71], "positive", "positive (p=0.71 >= 0.50)"),
    (Decision("threshold", threshold=0.3), [0.75, 0.25], "negative", "negative (p=0.25 < 0.30)"),
    (Decision("threshold", threshold=0.4123), [0.5891, 0.4109], "negative", "negative (p=0.4109 < 0.4123)"),  # never 0.41 < 0.41
    (Decision("argmax"), [0.2, 0.62, 0.18], "cat", "cat (p=0.62, the most probable)"),
    (Decision("ordinal", ordinal="median"), [0.1, 0.2, 0.3, 0.4], 2, "2 (ordinal rule 'median')"),
])
def test_decision_reason_names_the_probability_and_the_threshold(decision, probs, name, text):
    assert decision_reason(decision, probs, name) == text
