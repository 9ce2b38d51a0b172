"""``vkit run``: a bad backbone config or fine-tuning key is refused before any data is read and before the run
row exists, naming the config key (and the preset that set a value the user never wrote)."""
from __future__ import annotations

from pathlib import Path

import pytest

from vkit.registry.errors import ConfigError

SMALL = ["data.synthetic.n_train=32", "data.synthetic.n_val=16", "data.synthetic.n_test=16", "train.epochs=1"]


def _refused(tmp_path: Path, task: str, *overrides: str) -> str:
    from vkit.core.store import open_store
    from vkit.workflows.run import run_task

    db = f"sqlite:///{tmp_path / 'vkit.db'}"
    with pytest.raises(ConfigError) as info:
        run_task(task, overrides=[*overrides], db_url=db, work_dir=tmp_path / "work", data_root=tmp_path / "data",
                 echo=lambda *_: None)
    assert open_store(db).list_runs() == []  # was one 'failed' row
    assert not (tmp_path / "data").exists() and not (tmp_path / "work").exists()  # no data step
    return str(info.value)


def test_freeze_beyond_the_backbones_stages_is_refused_before_data(tmp_path: Path) -> None:
    msg = _refused(tmp_path, "education-engagement", *SMALL, "model.backbones.video={type: X3D, setting: s}",
                   "train.freeze=9")
    assert msg.startswith("train.freeze=9: backbone 'X3D' (model.backbones.video) has only 4 stages after its stem")


def test_an_unknown_backbone_type_names_the_key(tmp_path: Path) -> None:
    msg = _refused(tmp_path, "education-engagement", *SMALL, "model.backbones.video={type: VideoResnet}")
    assert msg.startswith("model.backbones.video.type: unknown backbone 'VideoResnet' (did you mean 'VideoResNet'?)")


def test_a_bad_arch_names_arch_not_pretrained(tmp_path: Path) -> None:
    path = tmp_path / "w.pth"
    path.write_bytes(b"x")
    msg = _refused(tmp_path, "education-engagement", *SMALL,
                   f"model.backbones.video={{type: VideoResNet, arch: r3d_34, pretrained: {path}}}")
    assert msg.startswith("model.backbones.video.arch: backbone 'VideoResNet': arch='r3d_34' (did you mean 'r3d_18'?)")


def test_the_finetune_preset_is_named_for_the_warmup_it_set(tmp_path: Path) -> None:
    msg = _refused(tmp_path, "education-engagement", *SMALL, "train.preset=finetune")
    assert msg == "train.warmup_epochs=1 (set by train.preset='finetune') must be below train.epochs=1"


def test_linear_probe_on_a_features_task_is_refused_before_feature_extraction(tmp_path: Path) -> None:
    msg = _refused(tmp_path, "security-anomaly", "train.preset=linear_probe")
    assert msg.startswith("train.freeze='backbone' (set by train.preset='linear_probe'): this task's model has no "
                          "backbone of its own (it trains on features computed by features.backbone")
    assert msg.endswith("leave train.preset out")


def test_a_misspelt_key_in_a_backbone_dict_gets_did_you_mean_and_the_accepted_keys(tmp_path: Path) -> None:
    msg = _refused(tmp_path, "education-engagement", *SMALL,
                   "model.backbones.video={type: X3D, setting: s, pretrianed_strict: false}")
    assert msg.startswith("model.backbones.video: unknown key 'pretrianed_strict' for backbone 'X3D' "
                          "(did you mean 'pretrained_strict'")
    assert "accepted: [" in msg and "'gamma_w'" in msg and "'setting'" in msg  # mmaction2's X3D arguments too
