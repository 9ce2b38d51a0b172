"""Per-group aggregates of a scoring job: the metric rows a scorer's group_aggregates gives, and their checks."""
from __future__ import annotations

import math

import pytest

from vkit.registry.errors import ConfigError
from vkit.workflows.scoring.aggregates import metric_rows, store_group_aggregates


def test_metric_rows_flatten_groups_into_keys() -> None:
    rows = metric_rows({"session": {"s1": {"mean_level": 2, "low_share": 0.25}}, "learner": {"ab": {"n": 1}}}, "S")
    assert rows == {"session": {"s1/mean_level": 2.0, "s1/low_share": 0.25}, "learner": {"ab/n": 1.0}}


@pytest.mark.parametrize("groups, message", [
    ({"session": {"s1": {"level": "high"}}}, r"S.group_aggregates\['session'\]\['s1'\]\['level'\]: expected a number"),
    ({"session": {"s1": {"level": math.inf}}}, r"expected a number, got inf"),
    ({"x" * 51: {}}, r"group kind 'x+' must be a str of 1-50"),
    ({"session": {"g" * 200: {"n": 1}}}, r"is longer than 200"),
    ({"session": {"s1": 3}}, r"\['s1'\]: expected \{name: number\}, got 3"),
])
def test_metric_rows_name_the_bad_entry(groups, message) -> None:
    with pytest.raises(ConfigError, match=message):
        metric_rows(groups, "S")


def test_a_scorer_without_group_aggregates_writes_nothing() -> None:
    class Plain:
        model_sha256 = "a" * 64

    assert store_group_aggregates(store=None, run_id=1, scorer=Plain(), video_ids=[1, 2]) == 0


def test_engagement_groups_weight_by_duration_and_name_learners_by_salted_hash() -> None:
    from vkit.plugins.education.aggregates import engagement_groups
    from vkit.plugins.education.report import learner_hash

    pseudonym = learner_hash("ana", "salt")
    videos = [
        dict(path=f"/farm/s1/pseudo-{pseudonym}.mp4", duration=30.0, mean_score=0.9,
             values=dict(mean_level=3.0, low_share=0.0, low_stretches=0, low_seconds=0.0, events=0)),
        dict(path="/lessons/s1/bob.mp4", duration=90.0, mean_score=0.3,
             values=dict(mean_level=1.0, low_share=0.5, low_stretches=2, low_seconds=45.0, events=2)),
        dict(path="/lessons/s2/bob.mp4", duration=60.0, mean_score=0.5, values=None),  # summary from before 0006
    ]
    groups = engagement_groups(videos, num_levels=4, salt="salt")
    assert groups["session"]["s1"] == dict(recordings=2, mean_level=1.5, low_share=0.375, low_stretches=2.0,
                                           low_seconds=45.0, learners_low=1)
    assert groups["session"]["s2"] == dict(recordings=1, mean_level=1.5)
    bob = learner_hash("bob", "salt")
    assert set(groups["learner"]) == {pseudonym, bob}
    assert groups["learner"][bob]["recordings"] == 2 and groups["learner"][bob]["mean_level"] == pytest.approx(1.2)
    assert "bob" not in str(groups) and "ana" not in str(groups)
    student = dict(videos[1], path="/lessons/s1/0123456789ab.mp4")  # a student number, not a link: hashed
    assert set(engagement_groups([student], salt="salt")["learner"]) == {learner_hash("0123456789ab", "salt")}
    with pytest.warns(UserWarning, match="1 recording\\(s\\) are named by learner in clear"):
        unsalted = engagement_groups(videos[:2], salt="")
    assert set(unsalted["learner"]) == {pseudonym} and unsalted["session"]["s1"]["recordings"] == 2
