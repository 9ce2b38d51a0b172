"""``events.merge_gap``: set in the security task's config, checked with a ConfigError naming the key, and used by
its scorer's event rule (the one ``vkit score`` and ``vkit watch`` read)."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from vkit.core.events import event_settings
from vkit.registry.errors import ConfigError


@pytest.mark.parametrize(("section", "message"), [
    (dict(threshold=0.5, merge_gap=-1.0), r"^events.merge_gap: -1.0; expected seconds >= 0 \(events apart by"),
    (dict(threshold=0.5, merge_gap="2"), r"^events.merge_gap: '2'; expected seconds >= 0"),
    (dict(threshold=0.5, merge_gap=True), r"^events.merge_gap: True; expected seconds"),
    (dict(threshold=0.5, min_duration=float("inf")), r"^events.min_duration: inf; expected seconds >= 0"),
    (dict(threshold=float("nan")), r"^events.threshold: nan; expected a finite number"),
    (dict(min_duration=1.0), r"^events.threshold: None; expected a finite number"),
])
def test_event_settings_name_the_bad_key(section: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        event_settings(section, "events")


def test_event_settings_default_gap_and_duration_to_zero() -> None:
    assert event_settings(dict(threshold=1)) == dict(threshold=1.0, min_duration=0.0, merge_gap=0.0)


def _scorer(events: dict) -> object:
    from vkit.core.sampling import FrameSampler
    from vkit.plugins.security.scorer import AnomalyScorer

    extractor = SimpleNamespace(sampler=FrameSampler("uniform", 7, 2), size=(8, 8))
    extractor.to = lambda device: extractor
    return AnomalyScorer.from_model(torch.nn.Identity(), extractor, events)


def test_the_security_scorer_merges_events_by_its_merge_gap() -> None:
    series, info = np.array([0.9, 0.1, 0.9, 0.1, 0.1, 0.1, 0.9]), SimpleNamespace(duration=7.0)
    merged = _scorer(dict(threshold=0.5, min_duration=0.0, merge_gap=1.0))
    assert merged.event_rule == dict(threshold=0.5, min_duration=0.0, merge_gap=1.0, kind="anomaly")
    assert [(e["start"], e["end"]) for e in merged.summarize(series, info)["events"]] == [(0.0, 3.0), (6.0, 7.0)]
    older = _scorer(dict(threshold=0.5, min_duration=0.0))  # a checkpoint written before merge_gap: 0
    assert [(e["start"], e["end"]) for e in older.summarize(series, info)["events"]] == [(0.0, 1.0), (2.0, 3.0),
                                                                                        (6.0, 7.0)]


def test_a_negative_merge_gap_fails_the_run_before_features_are_extracted(tmp_path: Path) -> None:
    from vkit.plugins.security.task import SecurityAnomalyTask
    from vkit.workflows.run import run_task

    assert SecurityAnomalyTask.default_config["events"]["merge_gap"] == 0.0
    with pytest.raises(ConfigError, match=r"^events.merge_gap: -1; expected seconds >= 0"):
        run_task("security-anomaly", overrides=[*SecurityAnomalyTask.smoke_overrides, "events.merge_gap=-1",
                                                f"features.cache_dir={tmp_path / 'features'}"],
                 db_url=f"sqlite:///{tmp_path / 'vkit.db'}", work_dir=tmp_path / "work", data_root=tmp_path / "data",
                 echo=lambda *_: None)
    assert not (tmp_path / "features").exists()
