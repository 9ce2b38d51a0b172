"""What `vkit run` says when pretrained= weights do not fit: another architecture (not a prefix), another run's
backbone type (from the run's sidecar); before any data, leaving no run."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vkit.core.testing import make_video
from vkit.registry.errors import CheckpointError

SMALL = ["data.synthetic.n_train=32", "data.synthetic.n_val=16", "data.synthetic.n_test=16", "train.epochs=1"]


def _refused(tmp_path: Path, *overrides: str) -> str:
    from vkit.core.store import open_store
    from vkit.workflows.run import run_task

    db = f"sqlite:///{tmp_path / 'vkit.db'}"
    before = len(open_store(db).list_runs())
    with pytest.raises(CheckpointError) as info:
        run_task("education-engagement", overrides=[*SMALL, *overrides], db_url=db, work_dir=tmp_path / "work",
                 data_root=tmp_path / "data", echo=lambda *_: None)
    assert len(open_store(db).list_runs()) == before and not (tmp_path / "data").exists()
    return str(info.value)


def test_weights_of_another_arch_name_the_arch_not_a_prefix(tmp_path: Path) -> None:
    from vkit.core.backbones import VideoResNet

    path = tmp_path / "r3d_18.pth"
    torch.save(VideoResNet(arch="r3d_18", width=8).net.state_dict(), path)
    msg = _refused(tmp_path, f"model.backbones.video={{type: VideoResNet, arch: r2plus1d_18, width: 8, "
                             f"pretrained: {path}}}")
    assert msg.startswith("model.backbones.video.arch: the file fits arch='r3d_18', not arch='r2plus1d_18'"), msg
    assert "no key prefix makes it fit" in msg and "another architecture" in msg and "pretrained_prefix" not in msg


def test_a_run_of_another_backbone_type_is_named_from_its_sidecar(tmp_path: Path, one_torch_thread) -> None:
    from vkit.workflows.pretrain import PretrainOptions, pretrain

    for i in range(4):
        make_video(tmp_path / "clips" / f"c{i}.mp4", frames=8, size=(16, 16), seed=i, moving=i % 2 == 0)
    summary = pretrain(dict(type="TinyC3D", widths=[4, 8], num_frames=4, input_size=[16, 16]), [str(tmp_path / "clips")],
                       PretrainOptions(epochs=1, batch_size=4, segments=1, workers=0),
                       db_url=f"sqlite:///{tmp_path / 'vkit.db'}", work_dir=tmp_path / "wd")
    run = summary.run_id
    msg = _refused(tmp_path, f"model.backbones.video={{type: X3D, setting: s, pretrained: 'run:{run}'}}")
    assert msg.startswith(f"model.backbones.video.pretrained: backbone 'X3D': run {run} pretrained "
                          f"TinyC3D(input_size=[16, 16], num_frames=4, widths=[4, 8]), this config builds X3D"), msg
    assert "no key of the file names a key of the model" not in msg
