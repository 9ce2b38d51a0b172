"""`vkit pretrain`: a tiny run lowers its loss, records a corrupt file, resumes, and its weights resolve as run:ID."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from vkit.core.testing import make_video
from vkit.registry.errors import CheckpointError, ConfigError

BACKBONE = ["--set", "backbone.widths=[4,8]", "--set", "backbone.num_frames=4", "--set", "backbone.input_size=[16,16]"]
TINY = dict(type="TinyC3D", widths=[4, 8], num_frames=4, input_size=[16, 16])


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    """Eight tiny clips (moving and still squares) and one file that is not a video."""
    root = tmp_path_factory.mktemp("unlabelled")
    for i in range(8):
        make_video(root / f"clip{i}.mp4", frames=10, size=(20, 20), seed=i, moving=i % 2 == 0)
    (root / "sub").mkdir()
    (root / "sub" / "broken.mp4").write_bytes(b"\x00not a video")
    return root


def _main(args: list[str], capsys) -> tuple[int, str, str]:
    from vkit.workflows.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(args)
        raise SystemExit(0)
    out = capsys.readouterr()
    return int(exit_info.value.code or 0), out.out, out.err


def test_pretrain_cli_run_stores_curve_failure_and_weights(archive, tmp_path, capsys, one_torch_thread):
    from vkit.core.store import open_store
    from vkit.core.weights.run_ref import resolve_run_weights

    db = f"sqlite:///{tmp_path / 'vkit.db'}"
    code, out, err = _main(["--db", db, "pretrain", "TinyC3D", str(archive), *BACKBONE, "--epochs", "6",
                            "--batch-size", "4", "--lr", "0.01", "--segments", "2", "--workers", "0",
                            "--work-dir", str(tmp_path / "wd"), "--json"], capsys)
    assert code == 0, err
    summary = json.loads(out)
    assert (summary["files"], summary["decoded"], summary["failed"]) == (9, 8, 1)
    assert "broken.mp4" in summary["failures"][0]["path"] and "not a video" in summary["failures"][0]["error"]
    curve = summary["loss_curve"]
    assert len(curve) == 6 and curve[-1] < curve[0], curve

    store = open_store(db)
    run = store.get_run(summary["run_id"])
    assert (run["kind"], run["task"], run["status"]) == ("pretrain", "pretrain", "finished")
    stored = [r["value"] for r in store.run_metrics(run["id"], "train") if r["key"] == "loss"]
    assert stored == pytest.approx(curve)
    outcomes = {s["status"] for s in store.video_summaries(run["id"])}
    assert outcomes == {"scored", "failed"}

    path, sha = resolve_run_weights(f"run:{run['id']}", store)
    assert sha == summary["sha256"] == run["model_sha256"] and path.name == "backbone.safetensors"
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["backbone"] == TINY and meta["loss_curve"] == pytest.approx(curve)

    from vkit.registry.registries import BACKBONES

    net = BACKBONES.build(dict(TINY, pretrained=str(path)))  # the weights are the backbone's own keys
    assert net.feature_dim == 8

    with pytest.raises(CheckpointError, match="no run 999"):
        resolve_run_weights("run:999", store)
    with pytest.raises(ConfigError, match="expected 'run:ID'"):
        resolve_run_weights("run:x", store)
    other = store.start_run("medical-diagnosis", "medical", {}, seed=0)
    with pytest.raises(CheckpointError, match=f"run {other} is a train run .* not a `vkit pretrain` run"):
        resolve_run_weights(f"run:{other}", store)
    path.write_bytes(path.read_bytes() + b"\x00")  # tampered weights
    with pytest.raises(CheckpointError, match="differs from .* the store recorded"):
        resolve_run_weights(f"run:{run['id']}", store)


def test_pretrain_resumes_after_an_interruption(archive, tmp_path, monkeypatch, one_torch_thread):
    from vkit.core.ssl.train import Pretrainer
    from vkit.core.store import open_store
    from vkit.workflows.pretrain import PretrainOptions, pretrain

    db = f"sqlite:///{tmp_path / 'vkit.db'}"
    options = PretrainOptions(epochs=3, batch_size=4, segments=2, workers=0, objective_args=dict(expander=[32]))
    real = Pretrainer.train_epoch

    def stop_after_two(self, videos):
        if self.epoch == 2:
            raise KeyboardInterrupt("test: Ctrl-C")
        return real(self, videos)

    monkeypatch.setattr(Pretrainer, "train_epoch", stop_after_two)
    with pytest.raises(KeyboardInterrupt):
        pretrain(dict(TINY), [str(archive)], options, db_url=db, work_dir=tmp_path / "wd")
    store = open_store(db)
    [run] = store.list_runs(kind="pretrain")
    assert run["status"] == "interrupted" and "vkit pretrain --resume" in run["error"]
    assert (tmp_path / "wd" / "resume" / "state.safetensors").is_file()

    monkeypatch.setattr(Pretrainer, "train_epoch", real)
    with pytest.raises(ConfigError, match="--epochs 9 differs from the run's 3"):
        pretrain(None, [], None, db_url=db, resume=run["id"], given=dict(epochs=9))
    summary = pretrain(None, [], None, db_url=db, resume=run["id"])
    assert (summary.decoded, summary.reused, summary.failed, summary.epochs) == (0, 8, 1, 3)
    assert store.get_run(run["id"])["status"] == "finished"
    steps = [r["step"] for r in store.run_metrics(run["id"], "train") if r["key"] == "loss"]
    assert steps == [1, 2, 3] and len(summary.loss_curve) == 3
    assert not (tmp_path / "wd" / "resume").exists()


def test_pretrain_config_errors_come_before_any_data(archive, tmp_path, capsys):
    db = f"sqlite:///{tmp_path / 'vkit.db'}"
    code, _, err = _main(["--db", db, "pretrain", "TinyC3D", str(archive), "--objective", "mae"], capsys)
    assert code == 1 and "needs a ViT-type backbone" in err
    code, _, err = _main(["--db", db, "pretrain", "TinyC3D", str(archive), "--set", "widths=[4]"], capsys)
    assert code == 1 and "--set widths: expected backbone.ARG" in err
    code, _, err = _main(["--db", db, "pretrain", "TinyC3E", str(archive)], capsys)
    assert code == 1 and "did you mean 'TinyC3D'" in err
    code, _, err = _main(["--db", db, "pretrain", "TinyC3D", str(tmp_path / "nowhere")], capsys)
    assert code == 1 and "no such file or folder" in err
    code, _, err = _main(["--db", db, "pretrain", "TinyC3D", str(archive), "--set", "backbone.widths=x"], capsys)
    assert code == 1 and "backbone: cannot build TinyC3D from --set backbone.ARG values {'widths': 'x'}" in err
    code, _, err = _main(["--db", db, "pretrain"], capsys)
    assert code == 1 and "no BACKBONE given" in err
    from vkit.core.store import open_store

    assert open_store(db).list_runs() == []  # nothing was recorded


def test_pretrain_reads_scans_for_a_monai_backbone(tmp_path, one_torch_thread):
    from vkit.core.backbones import MonaiResNet
    from vkit.core.testing import make_volume
    from vkit.workflows.pretrain import PretrainOptions, pretrain

    for i in range(3):
        make_volume(tmp_path / "scans" / f"case{i}.nii.gz", shape=(18, 18, 10), seed=i, lesion=i % 2 == 0)
    (tmp_path / "scans" / "truncated.nii.gz").write_bytes(b"\x1f\x8b broken")
    summary = pretrain(dict(type="MonaiResNet", **MonaiResNet.smoke_config()), [str(tmp_path / "scans")],
                       PretrainOptions(epochs=1, batch_size=3, workers=0), db_url=f"sqlite:///{tmp_path / 'v.db'}",
                       work_dir=tmp_path / "wd")
    assert (summary.decoded, summary.failed, summary.epochs) == (3, 1, 1)
    assert summary.modality == "volume"  # `use it:` names model.backbones.volume, not .video
    assert "truncated.nii.gz: not a readable volume" in summary.failures[0]["error"]


def test_pretrain_decodes_on_ray_actors(archive, tmp_path, one_torch_thread):
    pytest.importorskip("ray.data")
    from vkit.workflows.pretrain import PretrainOptions, pretrain

    summary = pretrain(dict(TINY), [str(archive)], PretrainOptions(epochs=1, batch_size=4, segments=2, workers=1,
                                                                   engine="ray"),
                       db_url=f"sqlite:///{tmp_path / 'r.db'}", work_dir=tmp_path / "wd")
    assert (summary.decoded, summary.failed, summary.epochs) == (8, 1, 1)
    assert len(list((tmp_path / "wd" / "clips").glob("*.npy"))) == 8  # written by the actor, read by the trainer


def test_run_resume_of_a_pretrain_run_points_to_vkit_pretrain(tmp_path):
    from types import SimpleNamespace

    from vkit.core.store import open_store
    from vkit.workflows.resume import resumed_run

    store = open_store(f"sqlite:///{tmp_path / 'x.db'}")
    run = store.start_run("pretrain", "vkit", {}, seed=0, kind="pretrain")
    with pytest.raises(ConfigError, match=rf"not a training run of 'education-engagement' \(`vkit pretrain --resume {run}`"):
        resumed_run(store, run, SimpleNamespace(name="education-engagement"))


def test_pretrain_stopped_by_sigterm_is_recorded_interrupted_at_once(archive, tmp_path, monkeypatch, one_torch_thread):
    import os
    import signal
    import time

    from vkit.core.ssl.train import Pretrainer
    from vkit.core.store import open_store
    from vkit.workflows.pretrain import PretrainOptions, pretrain

    def no_vkit_handler(*_):
        raise RuntimeError("SIGTERM reached the test's handler: vkit pretrain installed none")

    def kill_me(self, videos):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)

    previous = signal.signal(signal.SIGTERM, no_vkit_handler)
    monkeypatch.setattr(Pretrainer, "train_epoch", kill_me)
    db = f"sqlite:///{tmp_path / 'vkit.db'}"
    try:
        with pytest.raises(KeyboardInterrupt):
            pretrain(dict(TINY), [str(archive)], PretrainOptions(epochs=2, batch_size=4, segments=1, workers=0),
                     db_url=db, work_dir=tmp_path / "wd")
    finally:
        signal.signal(signal.SIGTERM, previous)
    [run] = open_store(db).list_runs(kind="pretrain")
    assert run["status"] == "interrupted" and "SIGTERM" in run["error"] and "--resume" in run["error"]
