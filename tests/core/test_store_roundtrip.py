"""Round trips of every store table on SQLite and PostgreSQL, idempotent re-writes, cascades and failed runs."""
from __future__ import annotations

import datetime as dt
import hashlib
import math

import pytest

from vkit.registry.errors import StoreError


def _run(store, **kwargs) -> int:
    args = dict(task="demo-classify", plugin="education", config={"seed": 3, "train": {"epochs": 2}}, seed=3)
    args.update(kwargs)
    return store.start_run(**args)


def test_run_round_trip(store, tmp_path):
    run_id = _run(store, config={"size": (2, 3), "root": tmp_path, "nested": {"lr": 0.1}}, work_dir=tmp_path,
                  versions={"plugins": {"education": "0.1.0"}})
    run = store.get_run(run_id)
    assert run["task"] == "demo-classify" and run["plugin"] == "education"
    assert run["status"] == "running" and run["finished_at"] is None and run["error"] is None
    assert run["config"] == {"size": [2, 3], "root": str(tmp_path), "nested": {"lr": 0.1}}
    assert run["seed"] == 3 and run["work_dir"] == str(tmp_path)
    assert run["versions"]["plugins"] == {"education": "0.1.0"}
    assert run["versions"]["torch"] and run["versions"]["mmaction2"] == "1.2.0" and "monai" in run["versions"]
    assert run["started_at"].tzinfo is not None
    assert abs(run["started_at"] - dt.datetime.now(dt.timezone.utc)) < dt.timedelta(minutes=5)

    store.finish_run(run_id)
    run = store.get_run(run_id)
    assert run["status"] == "finished" and run["finished_at"] >= run["started_at"]
    assert store.get_run(run_id + 1000) is None


def test_list_runs_newest_first_and_filtered(store):
    first = _run(store)
    second = _run(store, task="other-task")
    third = _run(store)
    store.finish_run(third)
    assert [r["id"] for r in store.list_runs()] == [third, second, first]
    assert [r["id"] for r in store.list_runs(limit=2)] == [third, second]
    assert [r["id"] for r in store.list_runs(task="demo-classify")] == [third, first]
    assert [r["id"] for r in store.list_runs(status="finished")] == [third]


def test_failed_run_stores_its_error(store):
    with pytest.raises(RuntimeError, match="out of memory"):
        with store.track_run("demo-classify", "education", {}, seed=0) as run_id:
            raise RuntimeError("out of memory at postgresql://bob:hunter2@db/x")
    run = store.get_run(run_id)
    assert run["status"] == "failed"
    assert run["error"].startswith("RuntimeError: out of memory at postgresql://bob:***@db/x\n\nTraceback")
    assert "hunter2" not in run["error"] and 'raise RuntimeError("out of memory' in run["error"]
    assert run["finished_at"] is not None

    with store.track_run("demo-classify", "education", {}, seed=0) as ok_id:
        pass
    assert store.get_run(ok_id)["status"] == "finished"


def test_finish_run_rejects_bad_status_and_unknown_run(store):
    run_id = _run(store)
    with pytest.raises(StoreError, match=r"status must be one of \('finished', 'failed', 'interrupted'\), got 'done'"):
        store.finish_run(run_id, "done")
    with pytest.raises(StoreError, match="run 9999 is not in store"):
        store.finish_run(9999)


def test_metrics_round_trip_and_relog_updates(store):
    run_id = _run(store)
    store.log_metrics(run_id, {"acc": 0.5, "loss": 1.25}, step=1, split="val")
    store.log_metrics(run_id, {"acc": 0.75, "auc": float("nan")}, step=2, split="val")
    store.log_metrics(run_id, {"acc": 0.8}, step=2, split="val")  # same key/step again: update, no duplicate
    store.log_metrics(run_id, {"acc": 0.7}, step=2, split="test")
    rows = store.run_metrics(run_id)
    got = {(r["split"], r["key"], r["step"]): r["value"] for r in rows}
    assert len(rows) == 5
    assert got[("val", "acc", 1)] == 0.5 and got[("val", "loss", 1)] == 1.25
    assert got[("val", "acc", 2)] == 0.8 and math.isnan(got[("val", "auc", 2)])
    assert [r["key"] for r in store.run_metrics(run_id, split="test")] == ["acc"]
    final = store.final_metrics(run_id)
    assert final["val/acc"] == 0.8 and final["test/acc"] == 0.7 and final["val/loss"] == 1.25
    with pytest.raises(StoreError, match="metric 'acc' must be a number, got 'high'"):
        store.log_metrics(run_id, {"acc": "high"}, step=3, split="val")


def test_artifact_digest_and_idempotent(store, tmp_path):
    run_id = _run(store)
    data = bytes(range(256)) * 5000  # > one 1 MiB read chunk
    path = tmp_path / "model.safetensors"
    path.write_bytes(data)
    row = store.add_artifact(run_id, "checkpoint", path)
    assert row["sha256"] == hashlib.sha256(data).hexdigest()
    assert row["bytes"] == len(data) and row["path"] == str(path.resolve()) and row["kind"] == "checkpoint"
    path.write_bytes(b"changed")
    again = store.add_artifact(run_id, "checkpoint", path)
    assert again["id"] == row["id"] and again["sha256"] == hashlib.sha256(b"changed").hexdigest()
    assert len(store.run_artifacts(run_id)) == 1
    with pytest.raises(StoreError, match="missing.bin is not a file"):
        store.add_artifact(run_id, "checkpoint", tmp_path / "missing.bin")


def test_predictions_round_trip_and_idempotent(store):
    run_id = _run(store)
    rows = [
        {"item_id": "case-1", "label": 1, "prediction": 1, "values": [0.1, 0.9]},
        {"item_id": 2, "label": 0, "prediction": 1, "values": {"p": 0.6}},
    ]
    assert store.add_predictions(run_id, "test", rows) == 2
    assert store.add_predictions(run_id, "test", rows) == 2
    store.add_predictions(run_id, "test", [{"item_id": "2", "prediction": 0, "values": {"p": 0.4}}])
    got = store.run_predictions(run_id, split="test")
    assert [(r["item_id"], r["label"], r["prediction"], r["values"]) for r in got] == [
        ("2", 0.0, 0.0, {"p": 0.4}),
        ("case-1", 1.0, 1.0, [0.1, 0.9]),
    ]
    with pytest.raises(StoreError, match=r"unknown fields \['probability'\]"):
        store.add_predictions(run_id, "test", [{"item_id": "x", "probability": 0.3}])


def test_upsert_videos_updates_in_place(store):
    ids = store.upsert_videos([
        {"path": "/archive/a.mp4", "sha256": "aa", "size": 10, "status": "ok", "fps": 25.0, "frames": 50, "duration": 2.0},
        {"path": "/archive/b.mp4", "status": "pending"},
    ])
    assert sorted(ids) == ["/archive/a.mp4", "/archive/b.mp4"]
    again = store.upsert_videos([{"path": "/archive/b.mp4", "status": "failed", "error": "moov atom not found"},
                                 {"path": "/archive/a.mp4", "sha256": "aa"}])
    assert again == ids
    videos = {v["path"]: v for v in store.get_videos()}
    assert len(videos) == 2
    assert videos["/archive/a.mp4"]["fps"] == 25.0 and videos["/archive/a.mp4"]["frames"] == 50  # left-out columns kept
    assert videos["/archive/b.mp4"]["status"] == "failed" and videos["/archive/b.mp4"]["error"] == "moov atom not found"
    assert [v["path"] for v in store.get_videos(["/archive/b.mp4"])] == ["/archive/b.mp4"]
    with pytest.raises(StoreError, match=r"status must be one of \('pending', 'ok', 'failed', 'duplicate', 'changed'\), got 'done'"):
        store.upsert_videos([{"path": "/archive/c.mp4", "status": "done"}])


def _scoring_run(store, model="m" * 64):
    run_id = _run(store, task="anomaly-score", model_sha256=model)
    ids = store.upsert_videos([{"path": "/a.mp4", "sha256": "aa", "status": "ok"}, {"path": "/b.mp4", "sha256": "bb", "status": "ok"}])
    return run_id, ids["/a.mp4"], ids["/b.mp4"]


def test_scores_and_events_idempotent(store):
    run_id, a, b = _scoring_run(store)
    scores = [{"video_id": a, "segment": i, "start": i * 2.0, "end": i * 2.0 + 2, "score": i / 10, "values": [i, 1 - i]} for i in range(3)]
    events = [{"video_id": a, "kind": "fight", "start": 2.0, "end": 6.0, "score": 0.9}]
    for _ in range(2):
        assert store.add_scores(run_id, scores) == 3
        assert store.add_events(run_id, events) == 1
    store.add_scores(run_id, [{"video_id": b, "segment": 0, "start": 0, "end": 2, "score": 0.5}])
    assert store.counts()["scores"] == 4 and store.counts()["events"] == 1
    got = store.video_scores(run_id, a)
    assert [(s["segment"], s["start"], s["end"], s["score"], s["values"]) for s in got] == [
        (0, 0.0, 2.0, 0.0, [0, 1]), (1, 2.0, 4.0, 0.1, [1, 0]), (2, 4.0, 6.0, 0.2, [2, -1])]
    assert [(e["kind"], e["start"], e["end"], e["score"]) for e in store.run_events(run_id)] == [("fight", 2.0, 6.0, 0.9)]
    with pytest.raises(StoreError, match=r"videos \[424242\] are not in store"):
        store.add_scores(run_id, [{"video_id": 424242, "segment": 0, "start": 0, "end": 1}])
    with pytest.raises(StoreError, match="run 777 is not in store"):
        store.add_events(777, events)


def test_video_results_one_transaction_and_resume(store):
    model = "f" * 64
    run_id, a, b = _scoring_run(store, model)
    results = [
        {"video_id": a, "status": "scored",
         "scores": [{"segment": 0, "start": 0, "end": 2, "score": 0.2}, {"segment": 1, "start": 2, "end": 4, "score": 0.6}],
         "events": [{"kind": "anomaly", "start": 2, "end": 4, "score": 0.6}]},
        {"video_id": b, "status": "failed", "error": "decode error: truncated stream"},
    ]
    payloads = store.add_video_results(run_id, results)
    assert payloads[0] == {"path": "/a.mp4", "sha256": "aa", "status": "scored", "error": None, "max_score": 0.6,
                           "mean_score": pytest.approx(0.4), "events": [{"start": 2.0, "end": 4.0, "score": 0.6}]}
    assert payloads[1]["status"] == "failed" and payloads[1]["error"] == "decode error: truncated stream"
    store.add_video_results(run_id, results)  # re-run: no duplicates
    assert store.counts()["scores"] == 2 and store.counts()["events"] == 1 and store.counts()["video_summaries"] == 2
    assert [(s["video_id"], s["segments"]) for s in store.video_summaries(run_id)] == [(a, 2), (b, 0)]

    assert store.scored_video_ids(model) == {a}  # the failed one is retried
    assert store.scored_video_ids("0" * 64) == set()  # another model scores everything
    store.upsert_videos([{"path": "/a.mp4", "sha256": "a2"}])  # content changed: score it again
    assert store.scored_video_ids(model) == set()

    resumed = _run(store, task="anomaly-score", model_sha256=model)
    store.add_video_results(resumed, [{"video_id": a, "status": "scored", "scores": [], "events": []}])
    assert store.scored_video_ids(model) == {a}
    with pytest.raises(StoreError, match=r"status one of \('scored', 'failed', 'duplicate', 'changed'\)"):
        store.add_video_results(resumed, [{"video_id": a, "status": "ok"}])


def test_summaries_only_keep_aggregates_without_segment_rows(store):
    model = "e" * 64
    run_id, a, b = _scoring_run(store, model)
    scores = [{"segment": 0, "start": 0, "end": 2, "score": 0.2}, {"segment": 1, "start": 2, "end": 4, "score": 0.6}]
    result = {"video_id": a, "status": "scored", "scores": scores, "aggregates": {"low_share": 0.5, "mean_level": None},
              "events": [{"kind": "low", "start": 2, "end": 4, "score": 0.6}]}
    (payload,) = store.add_video_results(run_id, [result], segment_rows=False)
    assert payload["max_score"] == 0.6 and payload["events"] == []
    assert store.counts()["scores"] == 0 and store.counts()["events"] == 0
    (summary,) = store.video_summaries(run_id)
    assert (summary["segments"], summary["mean_score"]) == (2, pytest.approx(0.4))
    assert summary["values"] == {"events": 1, "low_share": 0.5, "mean_level": None}
    assert store.scored_video_ids(model) == {a}  # resumable like a full result
    later = _run(store, task="anomaly-score", model_sha256=model)
    store.add_video_results(later, [dict(result, aggregates={"low_share": 0.75})], segment_rows=False)
    (newest,) = store.model_summaries(model, [a, b])
    assert (newest["run_id"], newest["path"], newest["values"]["low_share"]) == (later, "/a.mp4", 0.75)
    with pytest.raises(StoreError, match=r"aggregate 'low_share' must be a finite number, got nan"):
        store.add_video_results(run_id, [dict(result, aggregates={"low_share": math.nan})])


def test_delete_run_cascades(store, tmp_path):
    run_id, a, _ = _scoring_run(store)
    keep = _run(store)
    store.log_metrics(keep, {"acc": 1.0}, step=1, split="val")
    store.log_metrics(run_id, {"acc": 1.0}, step=1, split="val")
    (tmp_path / "f.bin").write_bytes(b"x")
    store.add_artifact(run_id, "report", tmp_path / "f.bin")
    store.add_predictions(run_id, "test", [{"item_id": "1", "label": 1}])
    store.add_video_results(run_id, [{"video_id": a, "status": "scored", "scores": [{"segment": 0, "start": 0, "end": 1, "score": 1}],
                                      "events": [{"kind": "k", "start": 0, "end": 1}]}])
    assert store.delete_run(run_id) is True
    assert store.delete_run(run_id) is False
    counts = store.counts()
    assert counts == {"runs": 1, "metrics": 1, "artifacts": 0, "predictions": 0, "videos": 2, "scores": 0,
                      "events": 0, "video_summaries": 0, "alerts": 0, "live_summaries": 0}  # core's tables only


def test_deleting_a_video_cascades_to_its_scores(store):
    import sqlalchemy as sa

    from vkit.core.store.models import Video

    run_id, a, b = _scoring_run(store)
    store.add_scores(run_id, [{"video_id": v, "segment": 0, "start": 0, "end": 1} for v in (a, b)])
    with store.session() as session:
        session.execute(sa.delete(Video).where(Video.id == a))
    assert [s["video_id"] for s in store.video_scores(run_id)] == [b]
