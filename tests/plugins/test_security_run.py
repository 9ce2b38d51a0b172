"""security-anomaly end to end: a tiny ``run_task`` into SQLite, then the checkpoint's scorer."""
from __future__ import annotations

import numpy as np
import pytest
import torch

TINY = [
    "data.synthetic.num_normal=4", "data.synthetic.num_anomalous=4", "data.synthetic.test_fraction=0.5",
    "train.epochs=2", "train.batch_size=4", "pairs_per_video=2",
    "events.threshold=0.0", "events.min_duration=0.0",  # every test video yields exactly one event
]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from vkit.workflows.run import run_task

    tmp = tmp_path_factory.mktemp("secrun")
    db = f"sqlite:///{tmp / 'vkit.db'}"
    result = run_task("security-anomaly", overrides=TINY, db_url=db, work_dir=tmp / "work", data_root=tmp / "data",
                      echo=lambda *_: None)
    return result, db, tmp


def test_tiny_run_writes_metrics_predictions_scores_and_events(tiny_run):
    from vkit.core.store import open_store

    result, db, tmp = tiny_run
    assert result.status == "finished"
    assert set(result.metrics) == {"test/frame_auc", "test/frame_ap"}
    assert 0.0 <= result.metrics["test/frame_auc"] <= 1.0
    store = open_store(db)
    assert store.get_run(result.run_id)["status"] == "finished"
    rows = store.run_metrics(result.run_id)
    assert {(r["split"], r["key"]) for r in rows} >= {("train", "epoch_loss"), ("test", "frame_auc"), ("test", "frame_ap")}
    assert [r["step"] for r in rows if r["key"] == "epoch_loss"] == [1, 2]
    predictions = store.run_predictions(result.run_id, "test")
    assert sorted(p["item_id"] for p in predictions) == ["Intrusion002.mp4", "Normal_002.mp4", "Normal_003.mp4", "Running003.mp4"]
    assert all(len(p["values"]["segment_scores"]) == 32 for p in predictions)
    assert len(store.video_scores(result.run_id)) == 4 * 32
    events = [e for e in store.run_events(result.run_id) if e["kind"] != "ground_truth"]
    assert len(events) == 4 and all(e["start"] == 0.0 and e["end"] == pytest.approx(6.0) for e in events)
    assert result.summary["events"] == 4
    kinds = {a["kind"] for a in store.run_artifacts(result.run_id)}
    assert {"checkpoint", "checkpoint-meta", "report"} <= kinds
    assert len(store.get_videos()) == 8  # train and test videos, with their sha256
    assert all(v["sha256"] and v["frames"] == 60 and v["status"] == "ok" for v in store.get_videos())
    assert list((tmp / "data" / "security-anomaly-features").glob("MotionStats-*/*.safetensors"))


def test_scorer_from_the_checkpoint_matches_the_run(tiny_run):
    from vkit.core.store import open_store
    from vkit.core.video import probe
    from vkit.workflows.scoring.score import build_task_scorer

    result, db, tmp = tiny_run
    scorer = build_task_scorer("security-anomaly", result.summary["checkpoint"])
    assert scorer.num_segments == 32 and len(scorer.model_sha256) == 64
    predictions = {p["item_id"]: p for p in open_store(db).run_predictions(result.run_id, "test")}
    path = predictions["Intrusion002.mp4"]["values"]["path"]
    clips = scorer.decode(path)
    assert clips.shape == (32, 3, 6, 64, 64) and clips.dtype == np.float32
    scores = scorer.score(torch.as_tensor(clips)).numpy()
    np.testing.assert_allclose(scores, predictions["Intrusion002.mp4"]["values"]["segment_scores"], atol=1e-4)
    summary = scorer.summarize(scores, probe(path))
    assert summary["events"] == [dict(kind="anomaly", start=0.0, end=6.0, score=pytest.approx(float(scores.max())))]


def test_training_and_archive_scoring_write_equal_rows(tiny_run, tmp_path):
    """The test split is scored through the task's scorer and the store's writer: ``vkit score`` gives the same rows."""
    from vkit.core.store import open_store
    from vkit.workflows.scoring.score import ScoreOptions, score_archive

    result, db, tmp = tiny_run
    trained = open_store(db)
    path = {p["item_id"]: p for p in trained.run_predictions(result.run_id, "test")}["Intrusion002.mp4"]["values"]["path"]
    other = f"sqlite:///{tmp_path / 'score.db'}"
    summary = score_archive("security-anomaly", [path], result.summary["checkpoint"], db_url=other,
                            options=ScoreOptions(workers=0, batch_size=7))
    assert summary.scored == 1
    scored = open_store(other)

    def rows(store, run_id):
        video = next(v["id"] for v in store.get_videos() if v["path"].endswith("Intrusion002.mp4"))
        return ([(s["segment"], s["start"], s["end"], s["score"]) for s in store.video_scores(run_id, video)],
                [(e["kind"], e["start"], e["end"], e["score"]) for e in store.run_events(run_id, video)
                 if e["kind"] != "ground_truth"])  # the training run also stored the annotation (vkit score has none)

    (a_scores, a_events), (b_scores, b_events) = rows(trained, result.run_id), rows(scored, summary.run_id)
    assert len(a_scores) == 32 and [s[:3] for s in a_scores] == [s[:3] for s in b_scores]
    np.testing.assert_allclose([s[3] for s in a_scores], [s[3] for s in b_scores], atol=1e-6)
    assert [e[:3] for e in a_events] == [e[:3] for e in b_events] and len(a_events) == 1


def test_the_run_stores_the_annotated_stretches_and_its_report_shades_them(tiny_run, tmp_path):
    """Ground truth (the annotation's inclusive frame intervals, in seconds) sits in the events table, apart from
    the detected events; the report's score-over-time plot shades it and says so."""
    from vkit.core.store import open_store
    from vkit.core.video import probe
    from vkit.hooks.manager import PluginManager
    from vkit.plugins.security.annotations import read_annotations
    from vkit.workflows.export import describe_scoring_run
    from vkit.workflows.report import write_run_report

    result, db, tmp = tiny_run
    store = open_store(db)
    notes = read_annotations(next((tmp / "data" / "security-anomaly").glob("Temporal_Anomaly_Annotation*.txt")))
    paths = {v["id"]: v["path"] for v in store.get_videos()}
    truth: dict[str, list] = {}
    for e in store.run_events(result.run_id):
        if e["kind"] == "ground_truth":
            assert e["score"] is None
            truth.setdefault(paths[e["video_id"]].rsplit("/", 1)[-1], []).append((e["start"], e["end"]))
    assert sorted(truth) == ["Intrusion002.mp4", "Running003.mp4"]  # the normal test videos have none
    for name, spans in truth.items():
        fps = probe(next(p for p in paths.values() if p.endswith(name))).fps
        assert spans == [pytest.approx((a / fps, (b + 1) / fps)) for a, b in notes[name].intervals]
    counts = describe_scoring_run(store, result.run_id)["counts"]
    assert counts["events"] == 4 and counts["ground_truth"] == sum(len(s) for s in truth.values())
    text = write_run_report(store, result.run_id, tmp_path / "rep", manager=PluginManager(autoload=False)).read_text()
    assert "scores_over_time.png" in text and "green: ground truth" in text


def test_the_checkpoint_gives_vkit_watch_its_windows(tiny_run, tmp_path):
    """The sidecar stores the span one training segment covered (6 s / 32 segments, each clip 6 frames at 10 fps):
    vkit watch uses it without --window; a sidecar without it (written before) keeps asking for --window."""
    from vkit.core.checkpoint import load_meta
    from vkit.core.store import open_store
    from vkit.registry.errors import ConfigError
    from vkit.workflows.scoring.score import build_task_scorer
    from vkit.workflows.watch.cli import watch
    from vkit.workflows.watch.engine import WatchOptions, window_seconds

    result, db, tmp = tiny_run
    ckpt = result.summary["checkpoint"]
    meta = load_meta(ckpt)
    assert meta["sampling"] == dict(window_seconds=pytest.approx(0.6), hop_seconds=pytest.approx(6 / 32))
    scorer = build_task_scorer("security-anomaly", ckpt)
    assert window_seconds(scorer, meta, None, None) == (pytest.approx(0.6), pytest.approx(0.1875))
    assert window_seconds(scorer, meta, 2.0, None) == (2.0, 2.0)  # --window wins, --hop defaults to it
    old = {k: v for k, v in meta.items() if k != "sampling"}
    with pytest.raises(ConfigError, match="pass --window SECONDS"):
        window_seconds(scorer, old, None, None)

    trained = open_store(db)
    path = {p["item_id"]: p for p in trained.run_predictions(result.run_id, "test")}["Intrusion002.mp4"]["values"]["path"]
    trained.close()
    lines: list[str] = []
    summary = watch("security-anomaly", [path], str(ckpt), db_url=f"sqlite:///{tmp_path / 'watch.db'}",
                    options=WatchOptions(), echo=lines.append, emit=lambda payload: None)
    assert "windows of 0.6 s every 0.1875 s" in " ".join(lines)
    (stream,) = summary["streams"]
    assert stream["scored"] == 28  # 60 frames: a 6-frame window every 2 frames (round(1.875)), the last from frame 54
