"""`vkit predict`: a checkpoint of another task is named, --skip-bad needs a task that can skip, nothing usable is clear."""
from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import test_score_support as support  # noqa: E402

from vkit.registry.errors import CheckpointError, ConfigError  # noqa: E402
from vkit.workflows.predict import _prediction_dataset, predict_task  # noqa: E402


def test_a_checkpoint_of_another_task_is_named(tmp_path: Path) -> None:
    ckpt = support.make_checkpoint(tmp_path / "model.safetensors")           # written for task 'demo-score'
    with pytest.raises(CheckpointError, match=r"trained by task 'demo-score', not 'medical-diagnosis'; use "
                                              r"`vkit predict demo-score \.\.\.`"):
        predict_task("medical-diagnosis", str(ckpt), ["scan.nii.gz"], db_url=f"sqlite:///{tmp_path / 'v.db'}")


class _Task:
    name, plugin = "t", "p"
    capabilities = frozenset({"predict", "skip_bad"})

    def __init__(self, takes_skip: bool) -> None:
        self.takes_skip = takes_skip

    def prediction_dataset(self, cfg, inputs, skip_bad=False):  # noqa: ANN001, ANN201 - a test double
        good = [i for i in inputs if not i.startswith("bad")]
        return SimpleNamespace(items=good, skipped=[dict(path=i, reason="unreadable") for i in inputs if i not in good],
                               __len__=lambda: len(good))


class _Rigid:
    name, plugin = "rigid", "p"
    capabilities = frozenset({"predict"})  # no skip_bad declared

    def prediction_dataset(self, cfg, inputs):  # noqa: ANN001, ANN201 - a test double without skip_bad
        return list(inputs)


def test_skip_bad_goes_to_tasks_that_take_it_and_is_refused_by_name_otherwise() -> None:
    data = _prediction_dataset(_Task(True), {}, ["a.nii", "bad.nii"], skip_bad=True)
    assert data.items == ["a.nii"] and data.skipped == [dict(path="bad.nii", reason="unreadable")]
    assert _prediction_dataset(_Rigid(), {}, ["a"], skip_bad=False) == ["a"]
    with pytest.raises(ConfigError, match=r"task 'rigid' \(plugin 'p'\) cannot skip bad inputs in `vkit predict`"):
        _prediction_dataset(_Rigid(), {}, ["a"], skip_bad=True)
