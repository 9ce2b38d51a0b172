"""The core task lifecycle: embedded-data caching, one checkpoint per run, one name per metric, checks up front."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from vkit.core.lifecycle import DATA_STAMP, checkpoint_policy, prepare_data
from vkit.core.task import RunContext, Task
from vkit.registry.errors import ConfigError, DataError

MEDICAL_SMOKE = ["train.epochs=2", "data.synthetic.n_train=8", "data.synthetic.n_val=4", "data.synthetic.n_test=4",
                 "data.synthetic.size=24", "data.transforms.size=(16,16,16)", "train.batch_size=4",
                 "model.backbones.volume.widths=(4,8)", "model.backbones.volume.num_frames=16",
                 "model.backbones.volume.input_size=(16,16)", "compression.stages=[]"]


class CountingTask(Task):
    name = "counting"
    description = "writes one file per generation"
    default_config = dict(seed=0, data=dict(root=None, synthetic=dict(n=2)), train=dict(epochs=1))
    data_key = "data.root"
    calls = 0

    def generate_data(self, root: Path, seed: int, n: int = 2) -> Path:
        type(self).calls += 1
        (root / "index.txt").write_text(f"seed={seed} n={n} call={self.calls}")
        return root / "index.txt"


def _ctx(tmp_path: Path, regenerate: bool = False) -> RunContext:
    return RunContext(store=None, run_id=0, work_dir=tmp_path / "work", data_root=tmp_path / "data",
                      regenerate=regenerate, echo=lambda *_: None)


def _cfg(**data: Any) -> Any:
    from mmengine.config import Config

    cfg = Config(json.loads(json.dumps(CountingTask.default_config)))
    cfg.merge_from_dict(data)
    return cfg


def test_embedded_data_is_generated_once_and_regenerated_when_its_inputs_change(tmp_path: Path) -> None:
    CountingTask.calls = 0
    task = CountingTask()
    first = prepare_data(task, _cfg(), _ctx(tmp_path))
    assert first == tmp_path / "data" / "counting" / "index.txt" and first.read_text() == "seed=0 n=2 call=1"
    assert prepare_data(task, _cfg(), _ctx(tmp_path)) == first and CountingTask.calls == 1  # cached
    stamp = json.loads((first.parent / DATA_STAMP).read_text())
    assert stamp["generator"].endswith("CountingTask") and stamp["params"] == {"n": 2} and stamp["version"] == "1"
    assert prepare_data(task, _cfg(**{"data.synthetic.n": 3}), _ctx(tmp_path)).read_text() == "seed=0 n=3 call=2"
    assert prepare_data(task, _cfg(seed=5, **{"data.synthetic.n": 3}), _ctx(tmp_path)).read_text().startswith("seed=5")
    assert prepare_data(task, _cfg(seed=5, **{"data.synthetic.n": 3}), _ctx(tmp_path, regenerate=True)).read_text() \
        .endswith("call=4")
    CountingTask.generator_version = "2"
    try:
        prepare_data(task, _cfg(seed=5, **{"data.synthetic.n": 3}), _ctx(tmp_path))
    finally:
        CountingTask.generator_version = "1"
    assert CountingTask.calls == 5
    assert not list((tmp_path / "data").glob(".*generating"))  # no half-written folder left behind


def test_a_failed_generation_leaves_the_cache_as_it_was(tmp_path: Path) -> None:
    task = CountingTask()
    good = prepare_data(task, _cfg(), _ctx(tmp_path))

    class Broken(CountingTask):
        def generate_data(self, root: Path, seed: int, n: int = 2) -> Path:
            (root / "partial").write_text("half")
            raise DataError("disk full")

    with pytest.raises(DataError, match="disk full"):
        prepare_data(Broken(), _cfg(), _ctx(tmp_path))
    assert good.read_text().startswith("seed=0") and not (good.parent / "partial").exists()


def test_user_data_is_used_as_given_and_must_exist(tmp_path: Path) -> None:
    task = CountingTask()
    (tmp_path / "mine").mkdir()
    assert prepare_data(task, _cfg(**{"data.root": str(tmp_path / "mine")}), _ctx(tmp_path)) == tmp_path / "mine"
    with pytest.raises(ConfigError, match=r"data.root: '.*nowhere' does not exist"):
        prepare_data(task, _cfg(**{"data.root": str(tmp_path / "nowhere")}), _ctx(tmp_path))


@pytest.mark.parametrize("policy, message", [
    (dict(save="every"), "checkpoint.save: expected 'last' or 'best'"),
    (dict(save="best"), "needs checkpoint.metric"),
    (dict(sav="best"), r"checkpoint.sav: unknown key \(did you mean 'save'\?\)"),
])
def test_checkpoint_policy_errors_name_the_key(policy: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        checkpoint_policy(policy)


def test_a_task_without_datasets_is_refused_before_anything_runs(tmp_path: Path) -> None:
    from vkit.core.lifecycle import run_lifecycle

    with pytest.raises(ConfigError, match=r"task 'counting' .* does not implement datasets\(cfg, ctx\)"):
        run_lifecycle(CountingTask(), _cfg(), _ctx(tmp_path))
    assert not (tmp_path / "data").exists()  # nothing generated


@pytest.fixture(scope="module")
def medical_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, str, Path]:
    from vkit.workflows.run import run_task

    tmp = tmp_path_factory.mktemp("lifecycle")
    db = f"sqlite:///{tmp / 'vkit.db'}"
    result = run_task("medical-diagnosis", overrides=MEDICAL_SMOKE, db_url=db, work_dir=tmp / "work",
                      data_root=tmp / "data", echo=lambda *_: None)
    return result, db, tmp


def test_one_checkpoint_file_per_run_recorded_with_its_sha256(medical_run: tuple[Any, str, Path]) -> None:
    from vkit.core.store import open_store
    from vkit.core.store.provenance import sha256_file

    result, db, tmp = medical_run
    assert sorted(p.name for p in (tmp / "work").rglob("*.safetensors")) == ["model.safetensors"]
    store = open_store(db)
    artifact = next(a for a in store.run_artifacts(result.run_id) if a["kind"] == "checkpoint")
    assert artifact["sha256"] == sha256_file(tmp / "work" / "model.safetensors")[0]
    assert store.get_run(result.run_id)["model_sha256"] == artifact["sha256"]
    assert len(list((tmp / "work").glob("*/vis_data"))) <= 1  # one Runner, one mmengine log folder
    meta = json.loads((tmp / "work" / "model.json").read_text())
    assert meta["classes"] == ["negative", "positive"] and 0 <= meta["fitted"]["threshold"] <= 1


def test_one_name_per_metric_in_store_summary_and_sidecar(medical_run: tuple[Any, str, Path]) -> None:
    from vkit.core.store import open_store

    result, db, tmp = medical_run
    stored = {(m["split"], m["key"]) for m in open_store(db).run_metrics(result.run_id)}
    test_keys = {k for split, k in stored if split == "test"}
    assert {f"test/{k}" for k in test_keys} == set(result.metrics)
    assert {"auc", "threshold", "sensitivity"} <= test_keys
    assert {k for split, k in stored if split == "val"} >= {"auc", "threshold"}
    assert not any("/" in k for _, k in stored)
    meta = json.loads((tmp / "work" / "model.json").read_text())
    assert set(meta["metrics"]) == test_keys


def test_best_checkpoint_keeps_the_best_validation_epoch(tmp_path: Path) -> None:
    from vkit.workflows.run import run_task

    result = run_task("medical-diagnosis", overrides=[*MEDICAL_SMOKE, "checkpoint.save=best", "checkpoint.metric=auc"],
                      db_url=f"sqlite:///{tmp_path / 'v.db'}", work_dir=tmp_path / "w", data_root=tmp_path / "data",
                      echo=lambda *_: None)
    assert result.summary["checkpoint epoch"].split()[0] in ("1", "2")
    assert "best auc" in result.summary["checkpoint epoch"]
    assert sorted(p.name for p in (tmp_path / "w").rglob("*.safetensors")) == ["model.safetensors"]


def test_no_usable_training_cases_is_a_clear_error(tmp_path: Path) -> None:
    from vkit.workflows.run import run_task

    datalist = tmp_path / "list.json"
    missing = [dict(image=f"gone{i}.nii.gz", label=i % 2) for i in range(4)]
    datalist.write_text(json.dumps(dict(training=missing, validation=missing, test=missing)))
    with pytest.raises(DataError, match=r"no usable training cases \(12 skipped: see `vkit runs show \d+`\)"):
        run_task("medical-diagnosis", overrides=MEDICAL_SMOKE, data=datalist, skip_bad=True,
                 db_url=f"sqlite:///{tmp_path / 'v.db'}", work_dir=tmp_path / "w", echo=lambda *_: None)
