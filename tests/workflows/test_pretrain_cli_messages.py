"""`vkit pretrain` messages a new user met: BACKBONE with --for-task, a task without a backbone it can pretrain, a
misspelt --set backbone.KEY, and the resume hint when the run is stopped by SIGTERM."""
from __future__ import annotations

from pathlib import Path

import pytest

from vkit.core.testing import make_video


def _main(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    from vkit.workflows.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(args)
        raise SystemExit(0)
    out = capsys.readouterr()
    return int(exit_info.value.code or 0), out.out, out.err


def _runs(db: str) -> list:
    from vkit.core.store import open_store

    return open_store(db).list_runs()


def test_a_backbone_given_with_for_task_is_checked_against_the_tasks(tmp_path: Path, capsys) -> None:
    db = f"sqlite:///{tmp_path / 'vkit.db'}"
    code, _, err = _main(["--db", db, "pretrain", "X3D", "--for-task", "education-engagement", str(tmp_path)], capsys)
    assert code == 1 and "BACKBONE 'X3D' with --for-task education-engagement: the task's model.backbones.video is " \
                         "'TinyC3D'" in err, err  # was: archive 'X3D': no such file or folder
    code, _, err = _main(["--db", db, "pretrain", "TinyC3D", "--for-task", "education-engagement", str(tmp_path)],
                         capsys)
    assert code == 1 and "no video files in" in err and "archive 'TinyC3D'" not in err, err  # the task's: accepted
    assert _runs(db) == []


def test_for_task_on_a_task_without_a_backbone_says_what_it_supports(tmp_path: Path, capsys) -> None:
    db = f"sqlite:///{tmp_path / 'vkit.db'}"
    code, _, err = _main(["--db", db, "pretrain", "--for-task", "security-anomaly", str(tmp_path)], capsys)
    assert code == 1 and "--for-task supports tasks with a video backbone (model.backbones.video) or a volume " \
                         "backbone fed by data.transforms (model.backbones.volume)" in err, err
    assert "vkit pretrain TYPE ARCHIVE" in err and _runs(db) == []
    # a volume task is supported now (was refused): an empty archive is the error
    code, _, err = _main(["--db", db, "pretrain", "--for-task", "medical-diagnosis", str(tmp_path)], capsys)
    assert code == 1 and "no scan files in" in err, err


def test_a_misspelt_backbone_key_gets_did_you_mean(tmp_path: Path, capsys) -> None:
    db = f"sqlite:///{tmp_path / 'vkit.db'}"
    code, _, err = _main(["--db", db, "pretrain", "TinyC3D", str(tmp_path), "--set", "backbone.widht=3"], capsys)
    assert code == 1 and "backbone: unknown key 'widht' for backbone 'TinyC3D' (did you mean 'widths'?)" in err, err
    assert _runs(db) == []


def test_sigterm_prints_the_resume_hint(tmp_path: Path, capsys, monkeypatch, one_torch_thread) -> None:
    import os
    import signal

    from vkit.core.ssl.train import Pretrainer

    for i in range(4):
        make_video(tmp_path / "clips" / f"c{i}.mp4", frames=8, size=(16, 16), seed=i, moving=i % 2 == 0)

    def kill_me(self, videos):
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(Pretrainer, "train_epoch", kill_me)
    db = f"sqlite:///{tmp_path / 'vkit.db'}"
    previous = signal.getsignal(signal.SIGTERM)
    try:
        code, _, err = _main(["--db", db, "pretrain", "TinyC3D", str(tmp_path / "clips"), "--set",
                              "backbone.widths=[4,8]", "--set", "backbone.num_frames=4", "--set",
                              "backbone.input_size=[16,16]", "--epochs", "2", "--batch-size", "4", "--segments", "1",
                              "--workers", "0", "--work-dir", str(tmp_path / "wd")], capsys)
    finally:
        signal.signal(signal.SIGTERM, previous)
    [run] = _runs(db)
    assert code == 130 and f"run {run['id']} interrupted: `vkit pretrain --resume {run['id']}` continues it" in err, err
