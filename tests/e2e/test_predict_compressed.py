"""``vkit predict --compressed`` runs the saved compressed model and reproduces the metric the chain recorded."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

SMOKE = ["train.epochs=2", "data.synthetic.n_train=8", "data.synthetic.n_val=4", "data.synthetic.n_test=8",
         "data.synthetic.size=24", "data.transforms.size=(16,16,16)", "train.batch_size=4",
         "model.backbones.volume.widths=(4,8)", "model.backbones.volume.num_frames=16",
         "model.backbones.volume.input_size=(16,16)", "compression.max_metric_drop=1.0",
         "compression.allow_size_only=True"]  # the stage is kept whatever its speed on a loaded CPU


@pytest.fixture(scope="module")
def compressed_run(tmp_path_factory: pytest.TempPathFactory):
    from vkit.workflows.run import run_task

    tmp = tmp_path_factory.mktemp("compressed")
    chain = tmp / "chain.json"
    chain.write_text(json.dumps({"compression": {"stages": [
        {"type": "ChannelPrune", "amount": 0.5, "recover": {"epochs": 1, "mode": "distill"}}]}}))
    db = f"sqlite:///{tmp / 'v.db'}"
    result = run_task("medical-diagnosis", config_file=chain, overrides=SMOKE, db_url=db, work_dir=tmp / "work",
                      data_root=tmp / "data", echo=lambda *_: None)
    return result, db, tmp


def test_the_chain_records_loadable_compressed_artifacts(compressed_run) -> None:
    from vkit.core.compression import compressed_meta
    from vkit.core.store import open_store

    result, db, tmp = compressed_run
    kinds = [a["kind"] for a in open_store(db).run_artifacts(result.run_id)]
    assert kinds.count("compressed") == 1 and kinds.count("compressed-meta") == 1
    meta = compressed_meta(tmp / "work" / "compression")
    assert meta["stage"] == "ChannelPrune" and len(meta["sha256"]) == 64


def test_predict_compressed_reproduces_the_chains_metric(compressed_run) -> None:
    from sklearn.metrics import roc_auc_score

    from vkit.core.store import open_store
    from vkit.workflows.predict import predict_task

    result, db, tmp = compressed_run
    store = open_store(db)
    recorded = {m["key"]: m["value"] for m in store.run_metrics(result.run_id, "compression")}
    run_id, rows = predict_task("medical-diagnosis", str(result.run_id), [result.summary["data"]], db_url=db,
                                compressed="final")
    auc = roc_auc_score([r["label"] for r in rows], [r["values"]["probs"][1] for r in rows])
    assert len(rows) == 8 and auc == pytest.approx(recorded["ChannelPrune/metric_after"], abs=1e-4)
    full = predict_task("medical-diagnosis", str(result.run_id), [result.summary["data"]], db_url=db)[1]
    assert [r["values"]["probs"] for r in full] != [r["values"]["probs"] for r in rows]  # another model ran
    assert store.get_run(run_id)["model_sha256"] != store.get_run(result.run_id)["model_sha256"]


def test_predict_compressed_without_a_chain_says_so(tmp_path: Path) -> None:
    from vkit.registry.errors import CheckpointError
    from vkit.workflows.predict import predict_task
    from vkit.workflows.run import run_task

    db = f"sqlite:///{tmp_path / 'v.db'}"
    result = run_task("medical-diagnosis", overrides=[*SMOKE, "compression.stages=[]"], db_url=db,
                      work_dir=tmp_path / "w", data_root=tmp_path / "d", echo=lambda *_: None)
    with pytest.raises(CheckpointError, match="applied no compression stage"):
        predict_task("medical-diagnosis", str(result.run_id), [result.summary["data"]], db_url=db, compressed="final")


def test_predict_fires_run_finished_once_its_row_is_closed(compressed_run, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """``vkit predict`` announces its run to plugins as ``vkit run`` does (``vkit_run_finished``, kind ``predict``)."""
    from vkit.core.store import open_store
    from vkit.workflows.predict import predict_task

    (tmp_path / "vkit_fx_predict_listener.py").write_text(
        "from vkit import hookimpl\nHEARD = []\n\n@hookimpl\ndef vkit_run_finished(run):\n    HEARD.append(run)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    result, db, _ = compressed_run
    run_id, rows = predict_task("medical-diagnosis", str(result.run_id), [result.summary["data"]], db_url=db,
                                plugins=["vkit_fx_predict_listener"])
    import vkit_fx_predict_listener as listener

    [run] = listener.HEARD
    assert (run["id"], run["kind"], run["task"], run["status"], run["error"]) == (
        run_id, "predict", "medical-diagnosis", "finished", None)
    assert open_store(db).get_run(run_id)["status"] == "finished" and len(rows) == 8
