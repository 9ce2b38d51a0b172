"""``vkit score --compressed``: the run's saved compressed model scores an archive as a model of its own;
the OnnxExport stage runs through ONNX Runtime with the torch model's rows."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parents[1] / "plugins"))
from test_education_run import TINY  # noqa: E402

TASK = "education-engagement"
pytestmark = [
    pytest.mark.usefixtures("one_torch_thread"),
    # not what is tested here: Torch-Pruning on the ordinal head's thresholds, learner names in clear
    pytest.mark.filterwarnings("ignore:Unwrapped parameters detected"),
    pytest.mark.filterwarnings("ignore:.*recording\\(s\\) are named by learner in clear"),
]



@pytest.fixture(scope="module")
def chain_run(tmp_path_factory: pytest.TempPathFactory):
    """A tiny education run whose chain saves ChannelPrune and OnnxExport (of the pruned model)."""
    from vkit.workflows.run import run_task

    tmp = tmp_path_factory.mktemp("scorecompressed")
    chain = tmp / "chain.json"
    chain.write_text(json.dumps({"compression": {"max_metric_drop": 2.0, "allow_size_only": True, "stages": [
        {"type": "ChannelPrune", "amount": 0.5}, {"type": "OnnxExport"}]}}))
    db = f"sqlite:///{tmp / 'v.db'}"
    result = run_task(TASK, config_file=chain, overrides=TINY, db_url=db, work_dir=tmp / "work",
                      data_root=tmp / "data", echo=lambda *_: None)
    assert result.status == "finished"
    return Path(result.summary["checkpoint"]), db, tmp / "data" / TASK


def _score(run: tuple, compressed: str | None, **kw):
    from vkit.workflows.scoring.score import ScoreOptions, score_archive

    checkpoint, db, data = run
    return score_archive(TASK, [data / "Lessons"], str(checkpoint), db_url=db, compressed=compressed,
                         options=ScoreOptions(workers=0, batch_size=4, **kw))


def _rows(db: str, run_id: int) -> dict[tuple[int, int], float]:
    from vkit.core.store import open_store

    return {(r["video_id"], r["segment"]): r["score"] for r in open_store(db).video_scores(run_id)}


def test_compressed_scoring_resumes_as_its_own_model(chain_run) -> None:
    from vkit.core.compression import compressed_meta
    from vkit.core.store import open_store

    checkpoint, db, _ = chain_run
    store = open_store(db)
    first = _score(chain_run, "ChannelPrune")
    assert (first.scored, first.failed) == (2, 0)
    row = store.get_run(first.run_id)
    pruned = compressed_meta(checkpoint.parent / "compression", "ChannelPrune")
    assert row["model_sha256"] == pruned["sha256"] != json.loads(checkpoint.with_suffix(".json").read_text())["sha256"]
    assert row["config"]["compressed"]["stage"] == "ChannelPrune"
    again = _score(chain_run, "ChannelPrune")
    assert (again.scored, again.skipped) == (0, 2)             # resumed: nothing new for this model
    plain = _score(chain_run, None)
    assert (plain.scored, plain.skipped) == (2, 0)             # the checkpoint is another model
    assert store.get_run(plain.run_id)["model_sha256"] != row["model_sha256"]
    assert _rows(db, plain.run_id) != _rows(db, first.run_id)  # and scores differently


def test_onnx_runtime_scores_the_rows_of_the_torch_model(chain_run, tmp_path: Path) -> None:
    from vkit.core.compression import compressed_meta
    from vkit.core.compression.onnx_export import OrtModule
    from vkit.core.store import open_store
    from vkit.workflows.compressed import compressed_model

    checkpoint, _, data = chain_run
    onnx, meta = compressed_model(checkpoint, "OnnxExport")
    assert isinstance(onnx, OrtModule) and meta["kind"] == "onnx"
    assert compressed_meta(checkpoint.parent / "compression")["stage"] == "OnnxExport"  # the chain's final model
    fresh = (checkpoint, f"sqlite:///{tmp_path / 'fresh.db'}", data)
    pruned_run, ort_run = _score(fresh, "ChannelPrune"), _score(fresh, "final")
    assert (pruned_run.scored, ort_run.scored, ort_run.failed) == (2, 2, 0)  # another model: nothing skipped
    assert open_store(fresh[1]).get_run(ort_run.run_id)["model_sha256"] == meta["sha256"]
    pruned, ort = _rows(fresh[1], pruned_run.run_id), _rows(fresh[1], ort_run.run_id)
    assert ort.keys() == pruned.keys() and len(ort) == 2 * 4
    assert max(abs(ort[k] - pruned[k]) for k in ort) <= 1e-4


def test_predict_runs_the_onnx_model_like_the_torch_one(chain_run) -> None:
    from vkit.workflows.predict import predict_task

    checkpoint, db, data = chain_run
    clips = sorted(str(p) for p in (data / "DataSet" / "Test").rglob("*.mp4"))[:4]
    _, torch_rows = predict_task(TASK, str(checkpoint), clips, db_url=db, compressed="ChannelPrune")
    _, ort_rows = predict_task(TASK, str(checkpoint), clips, db_url=db, compressed="OnnxExport")
    got = torch.tensor([r["values"]["probs"] for r in ort_rows])
    want = torch.tensor([r["values"]["probs"] for r in torch_rows])
    assert got.shape == (4, 4) and float((got - want).abs().max()) <= 1e-4


def test_compressed_scoring_errors_are_clear(chain_run) -> None:
    from vkit.registry.errors import CheckpointError, ConfigError
    from vkit.workflows.compressed import use_compressed

    checkpoint, _, _ = chain_run
    with pytest.raises(ConfigError, match="stage OnnxExport is an ONNX Runtime model .* drop --precision bf16"):
        _score(chain_run, "OnnxExport", precision="bf16")
    with pytest.raises(CheckpointError, match=r"no saved stage 'CastBF16'; saved stages: \['ChannelPrune', 'OnnxExport'\]"):
        _score(chain_run, "CastBF16")

    class NoModelScorer:
        model_sha256, num_segments = "x", 1

    with pytest.raises(ConfigError, match="NoModelScorer does not name the model a compression chain compresses"):
        use_compressed(NoModelScorer(), checkpoint, "final")
    NoModelScorer.supports = frozenset({"compressed"})  # declared (vkit.core.capabilities), its module missing
    NoModelScorer.compressed_module = "net.backbone"
    with pytest.raises(ConfigError, match="compressed_module is 'net.backbone', but NoModelScorer has no attribute 'net'"):
        use_compressed(NoModelScorer(), checkpoint, "final")


def test_the_onnx_model_refuses_what_its_graph_cannot_carry(chain_run) -> None:
    from vkit.core.compression.base import CompressionError
    from vkit.workflows.compressed import compressed_model

    onnx, _ = compressed_model(chain_run[0], "OnnxExport")
    with pytest.raises(CompressionError, match="keyword arguments \\['mode'\\]"):
        onnx({"video": torch.zeros(1, 3, 8, 16, 16)}, mode="predict")
    with pytest.raises(CompressionError, match="cannot run inputs of shapes .*only the batch dim varies"):
        onnx({"video": torch.zeros(1, 3, 4, 16, 16)})
    with pytest.raises(AttributeError, match="has no attribute 'backbone': an exported ONNX model runs its graph only"):
        onnx.backbone  # noqa: B018


def test_cli_compressed_without_a_stage_scores_the_chains_final_model(chain_run, tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture) -> None:
    from vkit.core.store import open_store
    from vkit.workflows.cli import main

    checkpoint, _, data = chain_run
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    try:
        main(["--db", db, "score", TASK, str(data / "Lessons"), "--checkpoint", str(checkpoint), "--workers", "0",
              "--json", "--compressed"])
    except SystemExit as exit_:
        assert not exit_.code, capsys.readouterr().err
    summary = json.loads(capsys.readouterr().out)
    assert (summary["scored"], summary["failed"]) == (2, 0)
    assert open_store(db).get_run(summary["run_id"])["config"]["compressed"]["stage"] == "OnnxExport"
