"""`vkit pretrain --for-task`: the backbone is pretrained on the task's own input (education: frame differences),
the run records the input mode, its weights load into the task, and a run of another input mode is refused."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vkit.core.testing import make_video
from vkit_cli import vkit_main  # tests/helpers: vkit ARGS in this process
from vkit.registry.errors import ConfigError

TASK = "education-engagement"
# the education task's smoke model (Task.smoke_overrides): 8 frames of 16x16, TinyC3D widths (4, 8)
TASK_SETS = ["--set", "task.data.num_frames=8", "--set", "task.data.size=16",
             "--set", "task.model.backbones.video.widths=(4,8)", "--set", "task.model.backbones.video.num_frames=8",
             "--set", "task.model.backbones.video.input_size=(16,16)"]
FAST = ["--epochs", "2", "--batch-size", "4", "--segments", "1", "--workers", "0"]


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("unlabelled")
    for i in range(6):
        make_video(root / f"clip{i}.mp4", frames=10, size=(20, 20), seed=i, moving=i % 2 == 0)
    return root


def _main(args: list[str], capsys) -> tuple[int, str, str]:
    return vkit_main(capsys, *args)


def _edu(tmp_path: Path, db: str, name: str, *extra: str) -> object:
    from vkit.plugins.education.task import EducationEngagementTask
    from vkit.workflows.run import run_task

    return run_task(TASK, overrides=[*EducationEngagementTask.smoke_overrides, *extra], db_url=db,
                    data_root=tmp_path / "data", work_dir=tmp_path / name, echo=lambda *_: None)


def test_prepare_is_the_tasks_own_frame_difference_and_normalisation():
    from vkit.core.ssl.inputs import InputSpec, rgb_input
    from vkit.workflows.pretrain import task_input
    from vkit.plugins.education.data import to_model_input
    from vkit.registry.registries import BACKBONES

    spec, backbone = task_input(TASK, {"data.size": 16, "data.num_frames": 4})
    assert (spec.mode, spec.mean, spec.std, spec.num_frames, spec.size, spec.sampling) == \
        ("diff", (0.0,) * 3, (16.0,) * 3, 4, (16, 16), "uniform")
    assert backbone["type"] == "TinyC3D" and backbone["in_channels"] == 3 and "pretrained" not in backbone
    frames = np.random.default_rng(0).integers(0, 256, (4, 16, 16, 3)).astype(np.uint8)
    view = torch.from_numpy(frames).permute(3, 0, 1, 2)[None].float()  # (1, 3, T, H, W) RGB 0..255
    got = spec.prepare(view)[0]
    assert torch.allclose(got, to_model_input(frames, "diff") / 16.0)
    assert float(got[:, 0].abs().max()) == 0.0 and float(got.abs().max()) > 1.0  # first frame 0, then signed diffs
    both = InputSpec(**{**spec.record(), "mode": "rgb+diff", "mean": [127.5] * 3 + [0.0] * 3,
                        "std": [64.0] * 3 + [16.0] * 3})
    assert both.prepare(view).shape == (1, 6, 4, 16, 16)
    rgb = rgb_input(BACKBONES.build(dict(backbone)))  # plain pretraining: the backbone's ImageNet normalisation
    assert rgb.mode == "rgb" and torch.allclose(rgb.prepare(view), BACKBONES.build(dict(backbone)).normalize(view))
    with pytest.raises(ConfigError, match="data.channels"):
        task_input(TASK, {"data.channels": "flow"})


def test_task_decoder_keeps_the_tasks_frame_step(tmp_path):
    from vkit.core.sampling import FrameSampler
    from vkit.core.ssl.decode import TaskClipDecoder

    video = make_video(tmp_path / "v.mp4", frames=16, size=(20, 20), seed=3)
    clips = TaskClipDecoder(2, 4, (16, 16)).decode(str(video))  # 8 frames evenly over 16, every other one per clip
    assert clips.shape == (2, 3, 4, 16, 16)
    every = FrameSampler("uniform", 1, 8).read(video, (16, 16))[0].transpose(3, 0, 1, 2)
    assert np.array_equal(clips[0], every[:, 0::2]) and np.array_equal(clips[1], every[:, 1::2])
    short = TaskClipDecoder(4, 8, (16, 16)).decode(str(video))  # 32 frames needed: the task's one clip, repeated
    assert short.shape == (4, 3, 8, 16, 16) and np.array_equal(short[0], short[3])


def test_for_task_run_records_diff_loads_into_education_and_refuses_other_inputs(archive, tmp_path, capsys,
                                                                                one_torch_thread):
    from vkit.core.store import open_store

    db = f"sqlite:///{tmp_path / 'vkit.db'}"
    code, out, err = _main(["--db", db, "pretrain", "--for-task", TASK, str(archive), *TASK_SETS, *FAST,
                            "--work-dir", str(tmp_path / "diff"), "--json"], capsys)
    assert code == 0, err
    summary = json.loads(out)
    assert (summary["input"], summary["task"], summary["decoded"]) == ("diff", TASK, 6)
    run = open_store(db).get_run(summary["run_id"])
    assert run["config"]["input"]["mode"] == "diff" and run["config"]["input"]["std"] == [16.0] * 3
    assert run["config"]["backbone"] == dict(type="TinyC3D", widths=[4, 8], num_frames=8, input_size=[16, 16],
                                             pool="avgmax", in_channels=3)
    meta = json.loads(Path(summary["weights"]).with_suffix(".json").read_text())
    assert (meta["input"]["mode"], meta["input"]["task"], meta["input"]["key"]) == ("diff", TASK, "data.channels")

    ref = f"model.backbones.video.pretrained=run:{summary['run_id']}"
    result = _edu(tmp_path, db, "ok", ref)  # the task feeds frame differences: the weights load
    assert result.status == "finished"
    assert ": 12 matched, 0 missing, 0 unexpected" in result.summary["pretrained model.backbones.video"]

    with pytest.raises(ConfigError) as err_info:  # the same weights into a task fed RGB frames
        _edu(tmp_path, db, "rgb", ref, "data.channels=rgb")
    message = str(err_info.value)
    assert message.startswith("model.backbones.video.pretrained: run:")
    assert "pretrained on input 'diff' for task 'education-engagement'" in message
    assert "feeds the backbone input 'rgb' (data.channels='rgb')" in message and "--for-task" in message

    code, out, err = _main(["--db", db, "pretrain", "TinyC3D", str(archive), "--set", "backbone.widths=[4,8]",
                            "--set", "backbone.num_frames=8", "--set", "backbone.input_size=[16,16]",
                            "--set", "backbone.pool=avgmax", *FAST, "--work-dir", str(tmp_path / "plain-pretrain"), "--json"],
                           capsys)
    assert code == 0, err
    plain = json.loads(out)
    assert (plain["input"], plain["task"]) == ("rgb", None)
    with pytest.raises(ConfigError, match=r"pretrained on input 'rgb' \(plain `vkit pretrain`, RGB clips\), but "
                                          r"this config feeds the backbone input 'diff' \(data.channels='diff'\)"):
        _edu(tmp_path, db, "plain", f"model.backbones.video.pretrained=run:{plain['run_id']}")


def test_for_task_refusals(archive, tmp_path, capsys):
    from vkit.workflows.pretrain import PretrainOptions, pretrain

    db = f"sqlite:///{tmp_path / 'vkit.db'}"
    code, _, err = _main(["--db", db, "pretrain", "TinyC3D", str(archive), "--set", "task.data.size=16"], capsys)
    assert code != 0 and "task keys need --for-task TASK" in err
    with pytest.raises(ConfigError, match="BACKBONE 'X3D' with --for-task education-engagement: the task's "
                                          "model.backbones.video is 'TinyC3D'"):
        pretrain(dict(type="X3D"), [str(archive)], PretrainOptions(for_task=TASK), db_url=db)
