"""vkit.testing: the temporary store, the tiny video and volume makers, and run_task_smoke's errors."""
from __future__ import annotations

import os

import numpy as np
import pytest

from vkit.registry.errors import ConfigError, DataError
from vkit.testing import make_video, make_volume, run_task_smoke, temp_store, vkit_store  # noqa: F401 (fixture)


def test_temp_store_is_a_working_sqlite_store_and_is_removed():
    with temp_store() as store:
        run_id = store.start_run(task="t", plugin="p", config={"a": 1}, seed=0)
        store.log_metrics(run_id, {"acc": 0.5}, step=1, split="val")
        assert [(m["key"], m["value"]) for m in store.run_metrics(run_id)] == [("acc", 0.5)]
        path = store.url.removeprefix("sqlite:///")
        assert os.path.exists(path)
    assert not os.path.exists(path)


def test_vkit_store_fixture(vkit_store, tmp_path):
    assert vkit_store.url == f"sqlite:///{tmp_path / 'vkit.db'}"
    assert vkit_store.get_run(vkit_store.start_run(task="t", plugin="p", config={}, seed=1))["status"] == "running"


def test_make_video_writes_a_readable_moving_clip(tmp_path):
    from vkit.core.video import probe, read_clip

    path = make_video(tmp_path / "a" / "clip.mp4", frames=6, size=(16, 24), fps=6)
    info = probe(path)
    assert (info.frames, info.height, info.width) == (6, 16, 24)
    first, last = read_clip(path, [0, 5]).astype(float)
    bright_first, bright_last = (np.argwhere(f.mean(-1) > 150)[:, 1].mean() for f in (first, last))
    assert bright_last > bright_first + 8  # the square moved right
    still = read_clip(make_video(tmp_path / "still.mp4", frames=4, size=16, moving=False), [0, 3]).astype(float)
    assert abs(still[0] - still[1]).mean() < 10


def test_make_volume_writes_nifti_with_a_bright_centre(tmp_path):
    import nibabel as nib

    img = nib.load(make_volume(tmp_path / "case.nii.gz", shape=(12, 10, 8), spacing=(2.0, 1.0, 1.0)))
    data = img.get_fdata()
    assert data.shape == (12, 10, 8) and img.header.get_zooms() == (2.0, 1.0, 1.0)
    assert data[6, 5, 4] > 150 and abs(data[0, 0, 0]) < 60
    assert make_volume(tmp_path / "b.nii", lesion=False).exists()


@pytest.mark.parametrize("kwargs, message", [
    (dict(size=(15, 16)), None),  # odd width: write_video's own error
    (dict(frames=0), "frames: expected a positive int, got 0"),
    (dict(size=(16,)), "size: expected a positive int or (height, width)"),
])
def test_make_video_rejects_bad_arguments(tmp_path, kwargs, message):
    with pytest.raises(DataError) as err:
        make_video(tmp_path / "x.mp4", **kwargs)
    assert message is None or message in str(err.value)


def test_make_volume_rejects_bad_arguments(tmp_path):
    with pytest.raises(DataError, match=r"three sizes >= 2, got \(4, 4\)"):
        make_volume(tmp_path / "x.nii.gz", shape=(4, 4))
    with pytest.raises(DataError, match="expected a .nii or .nii.gz file, got '.*x.npy'"):
        make_volume(tmp_path / "x.npy")


def test_run_task_smoke_rejects_an_undeclared_task_class(tmp_path, monkeypatch):
    from vkit.core.task import Task

    class Stray(Task):
        name = "stray-task"

    monkeypatch.setenv("VKIT_NO_AUTOLOAD", "1")
    with pytest.raises(ConfigError, match="'stray-task'.* is not declared by a loaded plugin"):
        run_task_smoke(Stray, tmp_path=tmp_path)
    with pytest.raises(ConfigError, match="unknown task 'stray-task'"):
        run_task_smoke("stray-task", tmp_path=tmp_path)
