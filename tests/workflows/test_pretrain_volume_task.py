"""`vkit pretrain --for-task medical-diagnosis`: each scan is decoded by the task's own pipeline (RAS orientation,
the CT window -200..300 HU -> 0..1), the run records input mode 'volume' with the window, its weights load into a
medical run, and a plain (z-scored) volume pretraining is refused there naming the key and both modes."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vkit_cli import vkit_main  # tests/helpers: vkit ARGS in this process
from vkit.registry.errors import ConfigError

TASK = "medical-diagnosis"
# the medical task's smoke model (Task.smoke_overrides): 16^3 volumes, TinyC3D widths (4, 8)
TASK_SETS = ["--set", "task.data.transforms.size=(16,16,16)", "--set", "task.model.backbones.volume.widths=(4,8)",
             "--set", "task.model.backbones.volume.num_frames=16",
             "--set", "task.model.backbones.volume.input_size=(16,16)"]
FAST = ["--epochs", "1", "--batch-size", "4", "--segments", "1", "--workers", "0"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[Path, Path]:
    """(datalist, folder of its 12 training + validation scans): the medical synthetic set, tiny."""
    from vkit.plugins.medical.synthetic import generate_dataset

    datalist = generate_dataset(tmp_path_factory.mktemp("med"), seed=0, n_train=8, n_val=4, n_test=4, size=24)
    return datalist, datalist.parent / "imagesTr"


def _med(tmp_path: Path, datalist: Path, db: str, name: str, *extra: str) -> object:
    from vkit.plugins.medical.task import MedicalDiagnosisTask
    from vkit.workflows.run import run_task

    smoke = [o for o in MedicalDiagnosisTask.smoke_overrides if not o.startswith("data.synthetic")]
    return run_task(TASK, overrides=[*smoke, *extra], data=datalist, db_url=db, work_dir=tmp_path / name,
                    echo=lambda *_: None)


def test_task_volume_decoder_is_the_tasks_pipeline(data):
    from vkit.core.ssl.decode import TaskVolumeDecoder
    from vkit.workflows.pretrain import task_input
    from vkit.plugins.medical.data import CT_WINDOW, build_transforms, choose_intensity

    spec, backbone = task_input(TASK, {"data.transforms.size": 16})
    assert (spec.mode, spec.task, spec.key, spec.channels) == ("volume", TASK, "data.transforms", 1)
    assert backbone["type"] == "TinyC3D" and "pretrained" not in backbone
    scans = sorted(str(p) for p in data[1].glob("*.nii.gz"))
    spec.resolve_intensity(scans, choose_intensity)
    assert spec.transforms["intensity"] == dict(CT_WINDOW) and "CT window" in spec.intensity_source
    got = TaskVolumeDecoder((16, 16, 16), 1, spec.transforms, build_transforms).decode(scans[0])
    want = build_transforms(dict(size=(16, 16, 16), intensity=CT_WINDOW, augment=False))({"image": scans[0]})["image"]
    assert got.shape == (1, 1, 16, 16, 16) and np.allclose(got[0], np.asarray(want))
    assert 0.0 <= got.min() and got.max() <= 1.0  # the CT window, clipped; a z-score would go below 0


def test_for_task_medical_records_the_window_loads_and_refuses_zscored(data, tmp_path, capsys, one_torch_thread):
    from vkit.core.store import open_store

    datalist, scans = data
    db = f"sqlite:///{tmp_path / 'vkit.db'}"
    code, out, err = vkit_main(capsys, "--db", db, "pretrain", "--for-task", TASK, str(scans), *TASK_SETS, *FAST,
                               "--work-dir", str(tmp_path / "task"), "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert (summary["input"], summary["task"], summary["modality"], summary["decoded"]) == ("volume", TASK,
                                                                                         "volume", 12)
    run = open_store(db).get_run(summary["run_id"])
    record = run["config"]["input"]
    assert (record["mode"], record["task"]) == ("volume", TASK)
    assert record["transforms"]["intensity"]["mode"] == "range" and record["transforms"]["intensity"]["a_min"] == -200
    assert run["config"]["decoder"]["kind"] == "pretrain-volume-task"
    meta = json.loads(Path(summary["weights"]).with_suffix(".json").read_text())
    assert (meta["input"]["mode"], meta["input"]["key"]) == ("volume", "data.transforms")
    assert meta["input"]["transforms"]["intensity"]["a_max"] == 300

    result = _med(tmp_path, datalist, db, "ok", f"model.backbones.volume.pretrained=run:{summary['run_id']}")
    assert result.status == "finished"
    assert ", 0 missing, 0 unexpected" in result.summary["pretrained model.backbones.volume"]

    code, out, err = vkit_main(capsys, "--db", db, "pretrain", "TinyC3D", str(scans), "--set", "backbone.widths=[4,8]",
                               "--set", "backbone.num_frames=16", "--set", "backbone.input_size=[16,16]",
                               "--set", "backbone.in_channels=1", "--set", "backbone.modality=volume",
                               "--set", "backbone.pool=avgmax", *FAST, "--work-dir", str(tmp_path / "zscore-pretrain"), "--json")
    assert code == 0, err
    plain = json.loads(out)
    assert (plain["input"], plain["task"]) == ("zscore", None)
    with pytest.raises(ConfigError) as err_info:
        _med(tmp_path, datalist, db, "plain", f"model.backbones.volume.pretrained=run:{plain['run_id']}")
    message = str(err_info.value)
    assert message.startswith(f"model.backbones.volume.pretrained: run:{plain['run_id']} was pretrained on input "
                              "'zscore' (plain `vkit pretrain`, z-scored scans)")
    assert "feeds the backbone input 'volume'" in message and "--for-task" in message
