"""education-engagement end to end: a tiny run into SQLite, predict, score lessons into timelines and events."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models: one torch thread

TINY = [
    "train.epochs=2", "train.batch_size=4", "data.synthetic.n_train=16", "data.synthetic.n_val=8",
    "data.synthetic.n_test=8", "data.synthetic.clips_per_subject=4", "data.synthetic.sessions=1",
    "data.synthetic.learners=2", "data.synthetic.lesson_seconds=8", "data.num_frames=8", "data.size=16",
    "data.synthetic.size=16", "model.backbones.video.widths=(4,8)", "model.backbones.video.num_frames=8",
    "model.backbones.video.input_size=(16,16)", "timeline.segments=4", "timeline.min_seconds=2.0",
    "timeline.low_level=4.0",  # every segment is "low": each lesson yields one event over its whole length
]



@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from vkit.workflows.run import run_task

    tmp = tmp_path_factory.mktemp("edurun")
    db = f"sqlite:///{tmp / 'vkit.db'}"
    result = run_task("education-engagement", overrides=TINY, db_url=db, work_dir=tmp / "work", data_root=tmp / "data",
                      echo=lambda *_: None)
    return result, db, tmp


def test_tiny_run_stores_ordinal_metrics_predictions_and_meta(tiny_run) -> None:
    from vkit.core.checkpoint import load_meta
    from vkit.core.store import open_store

    result, db, tmp = tiny_run
    assert result.status == "finished"
    assert set(result.metrics) == {"test/accuracy", "test/macro_f1", "test/qwk", "test/mae"}
    store = open_store(db)
    rows = store.run_metrics(result.run_id)
    assert {("val", "qwk"), ("test", "qwk"), ("test", "mae")} <= {(r["split"], r["key"]) for r in rows}
    predictions = store.run_predictions(result.run_id, "test")
    assert len(predictions) == 8 and all(0 <= p["prediction"] <= 3 and len(p["values"]["probs"]) == 4 for p in predictions)
    meta = load_meta(Path(result.summary["checkpoint"]))
    assert meta["sampling"]["channels"] == "diff" and meta["sampling"]["clip_seconds"] == pytest.approx(2.0)
    # vkit watch's default windows: the training clip length
    assert meta["sampling"]["window_seconds"] == meta["sampling"]["hop_seconds"] == pytest.approx(2.0)
    assert meta["model"]["backbones"]["video"]["in_channels"] == 3
    assert meta["model"]["data_preprocessor"]["std"]["video"] == [16.0, 16.0, 16.0]
    assert len(meta["model"]["head"]["class_weights"]) == 4 and meta["fitted"] == {"decision": "median"}


@pytest.fixture(scope="module")
def scored_lessons(tiny_run):
    from vkit.workflows.scoring.score import ScoreOptions, score_archive

    result, db, tmp = tiny_run
    lessons = tmp / "data" / "education-engagement" / "Lessons"
    with pytest.warns(UserWarning, match="named by learner in clear and VKIT_LEARNER_SALT is not set"):
        return score_archive("education-engagement", [lessons], result.summary["checkpoint"], db_url=db,
                             options=ScoreOptions(workers=0, batch_size=4))


def test_score_lessons_gives_timelines_and_low_engagement_events(tiny_run, scored_lessons) -> None:
    from vkit.core.store import open_store

    result, db, tmp = tiny_run
    summary = scored_lessons
    assert (summary.scored, summary.failed) == (2, 0)
    store = open_store(db)
    scores = store.video_scores(summary.run_id)
    assert len(scores) == 2 * 4 and all(0.0 <= s["score"] <= 1.0 for s in scores)
    assert sorted({(s["start"], s["end"]) for s in scores}) == [(0.0, 2.0), (2.0, 4.0), (4.0, 6.0), (6.0, 8.0)]
    events = store.run_events(summary.run_id)
    assert len(events) == 2 and all(e["kind"] == "low-engagement" and e["end"] == pytest.approx(8.0) for e in events)


def test_too_short_recording_fails_with_its_reason_and_others_go_on(tiny_run, tmp_path: Path, monkeypatch) -> None:
    import numpy as np

    from vkit.core.store import open_store
    from vkit.core.video import write_video
    from vkit.workflows.scoring.score import ScoreOptions, score_archive

    result, _, tmp = tiny_run
    db = f"sqlite:///{tmp_path / 'short.db'}"  # its own store: the lesson copied below is new there, not a duplicate
    monkeypatch.setenv("VKIT_LEARNER_SALT", "pepper")  # per-learner aggregates for the clear-named ok.mp4
    write_video(tmp_path / "short.mp4", np.zeros((4, 16, 16, 3), np.uint8), fps=8)
    lesson = next((tmp / "data" / "education-engagement" / "Lessons").rglob("*.mp4"))
    (tmp_path / "ok.mp4").write_bytes(lesson.read_bytes())
    summary = score_archive("education-engagement", [tmp_path], result.summary["checkpoint"], db_url=db,
                            options=ScoreOptions(workers=0, batch_size=4))
    assert (summary.scored, summary.failed) == (1, 1)
    (bad,) = [v for v in open_store(db).get_videos() if v["path"].endswith("short.mp4")]
    assert "too short: 4 frames" in bad["error"]


def test_bad_level_in_a_csv_errors_or_is_skipped_and_recorded(tmp_path: Path) -> None:
    from vkit.core.store import open_store
    from vkit.registry.errors import DataError
    from vkit.workflows.run import run_task

    import shutil

    data = shutil.copytree(Path(__file__).parents[1] / "fixtures" / "daisee" / "DAiSEE" / "DataSet", tmp_path / "DataSet")
    clips = sorted(data.rglob("*.avi"))  # inside the CSV's folder: paths outside it are refused (issue 21, item 11)
    rows = [("path", "level", "split")] + [(str(c), i % 4, "train") for i, c in enumerate(clips)] + \
        [(str(clips[0]), 7, "train")] + [(str(c), i % 4, "test") for i, c in enumerate(clips[:3])]
    table = tmp_path / "clips.csv"
    with open(table, "w", newline="") as f:
        csv.writer(f).writerows(rows)
    small = ["train.epochs=1", "train.batch_size=2", "data.num_frames=8", "data.size=16", "checkpoint.save=last",
             "model.backbones.video.widths=(4,)", "model.backbones.video.num_frames=8",
             "model.backbones.video.input_size=(16,16)"]
    db = f"sqlite:///{tmp_path / 'vkit.db'}"
    with pytest.raises(DataError, match=r"clips.csv:8: level '7' is outside 0-3"):
        run_task("education-engagement", overrides=small, data=str(table), db_url=db, work_dir=tmp_path / "w1",
                 data_root=tmp_path / "d", echo=lambda *_: None)
    result = run_task("education-engagement", overrides=small, data=str(table), db_url=db, work_dir=tmp_path / "w2",
                      data_root=tmp_path / "d", skip_bad=True, echo=lambda *_: None)
    assert result.status == "finished"
    (skipped,) = open_store(db).run_predictions(result.run_id, "skipped")
    assert "level '7' is outside 0-3" in skipped["values"]["reason"]


def test_engagement_report_shows_sessions_with_salted_learner_hashes(tiny_run, scored_lessons, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from vkit.plugins.education.report import learner_hash

    result, db, tmp = tiny_run
    vkit = [str(Path(sys.executable).parent / "vkit"), "--db", db, "engagement-report", str(scored_lessons.run_id)]
    env = dict(os.environ, VKIT_LEARNER_SALT="s3cret")
    proc = subprocess.run([*vkit, "--out", str(tmp_path)], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "session01: attention fell from 00:00 to 00:08 for 2 of 2 learners"  # every segment is "low"
    hashes = sorted(learner_hash(name, "s3cret") for name in ("learner01", "learner02"))
    levels = [float(line.split("mean level ")[1].split()[0]) for line in lines[1:3]]
    assert sorted(line.split()[0] for line in lines[1:3]) == hashes and "learner0" not in proc.stdout
    assert levels == sorted(levels)  # teacher-first: the lowest engagement first
    assert (tmp_path / "session01.png").stat().st_size > 1000
    env.pop("VKIT_LEARNER_SALT")
    missing = subprocess.run(vkit, capture_output=True, text=True, env=env, timeout=120)
    assert missing.returncode != 0 and "no learner salt: set VKIT_LEARNER_SALT" in missing.stderr


def test_pseudonymised_scoring_keeps_learner_ids_out_of_the_store(tiny_run, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from vkit.plugins.education.report import learner_hash
    from vkit.workflows.scoring.score import ScoreOptions, score_archive

    result, _, tmp = tiny_run
    db_file = tmp_path / "private.db"
    lessons = tmp / "data" / "education-engagement" / "Lessons"
    vkit = str(Path(sys.executable).parent / "vkit")
    env = dict(os.environ, VKIT_LEARNER_SALT="pepper")
    proc = subprocess.run([vkit, "engagement-pseudonymise", str(lessons), "--farm", str(tmp_path / "farm")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    links = sorted(p.relative_to(tmp_path / "farm").as_posix() for p in (tmp_path / "farm").rglob("*.mp4"))
    assert links == sorted(f"session01/pseudo-{learner_hash(n, 'pepper')}.mp4" for n in ("learner01", "learner02"))
    summary = score_archive("education-engagement", [tmp_path / "farm"], result.summary["checkpoint"],
                            db_url=f"sqlite:///{db_file}", options=ScoreOptions(workers=0, batch_size=4))
    assert summary.scored == 2
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("private.db*"))  # the database and its WAL
    assert b"learner01" not in stored and b"learner02" not in stored
    assert learner_hash("learner01", "pepper").encode() in stored


def test_session_and_learner_aggregates_are_stored_and_exported(tiny_run, scored_lessons, tmp_path: Path) -> None:
    from vkit.core.store import open_store
    from vkit.workflows.export import export_run

    result, db, tmp = tiny_run
    store = open_store(db)
    run_id = scored_lessons.run_id
    values = [v["values"] for v in store.video_summaries(run_id)]
    assert len(values) == 2 and all(v["low_share"] == 1.0 and v["low_stretches"] == v["events"] == 1 for v in values)
    metrics = {r["key"]: r["value"] for r in store.run_metrics(run_id, split="session")}
    assert metrics["session01/recordings"] == 2 and metrics["session01/learners_low"] == 2
    assert metrics["session01/low_share"] == 1.0 and metrics["session01/low_seconds"] == pytest.approx(16.0)
    level = sum(v["mean_level"] for v in values) / 2
    assert metrics["session01/mean_level"] == pytest.approx(level, abs=1e-3)
    assert store.run_metrics(run_id, split="learner") == []  # clear learner names and no salt: no per-learner rows
    assert scored_lessons.aggregates == len(metrics)
    paths = export_run(store, run_id, tmp_path, tables=["metrics", "videos"])
    with open(paths["metrics"], newline="") as f:
        assert {r["key"] for r in csv.DictReader(f)} == set(metrics)
    with open(paths["videos"], newline="") as f:
        assert all('"low_share": 1.0' in r["values"] for r in csv.DictReader(f))


def test_aggregate_only_stores_no_segment_rows_and_resumes(tiny_run, tmp_path: Path, monkeypatch) -> None:
    import json

    from click.testing import CliRunner

    from vkit.core.store import open_store
    from vkit.plugins.education.report import aggregate_lines, learner_hash
    from vkit.workflows.cli import cli
    from vkit.workflows.scoring.score import ScoreOptions, score_archive

    result, _, tmp = tiny_run
    monkeypatch.setenv("VKIT_LEARNER_SALT", "pepper")
    db_file = tmp_path / "agg.db"
    lessons = tmp / "data" / "education-engagement" / "Lessons"

    def score():
        return score_archive("education-engagement", [lessons], result.summary["checkpoint"], db_url=f"sqlite:///{db_file}",
                             options=ScoreOptions(workers=0, batch_size=4, aggregate_only=True))

    cli_run = CliRunner().invoke(cli, ["--db", f"sqlite:///{db_file}", "score", "education-engagement", str(lessons),
                                       "--checkpoint", result.summary["checkpoint"], "--workers", "0", "--batch-size", "4",
                                       "--aggregate-only", "--json"])
    assert cli_run.exit_code == 0, cli_run.output
    first = json.loads(cli_run.output[cli_run.output.index("{"):])  # after the precision line on stderr
    assert (first["scored"], first["failed"]) == (2, 0)
    store = open_store(f"sqlite:///{db_file}")
    assert store.run_counts([first["run_id"]])["scores"] == 0 and store.run_counts([first["run_id"]])["events"] == 0
    report = CliRunner().invoke(cli, ["--db", f"sqlite:///{db_file}", "engagement-report", str(first["run_id"])])
    assert report.exit_code == 0, report.output
    (line,) = report.output.splitlines()
    assert line == aggregate_lines(store.run_metrics(first["run_id"], split="session"))[0]
    assert line.startswith("session01: 2 learners, mean level ") and "100% of the time below the low level, 2 of 2" in line
    summaries = store.video_summaries(first["run_id"])
    assert [s["segments"] for s in summaries] == [4, 4] and all(s["values"]["low_stretches"] == 1 for s in summaries)
    hashes = sorted(learner_hash(n, "pepper") for n in ("learner01", "learner02"))
    learners = {r["key"].split("/")[0] for r in store.run_metrics(first["run_id"], split="learner")}
    assert sorted(learners) == hashes
    assert store.final_metrics(first["run_id"])["session/session01/low_stretches"] == 2
    assert store.get_run(first["run_id"])["config"]["aggregate_only"] is True
    again = score()  # resume: nothing rescored, the aggregates come from the first run's summaries
    assert (again.scored, again.skipped) == (0, 2)
    assert store.final_metrics(again.run_id)["session/session01/low_stretches"] == 2
    full = score_archive("education-engagement", [lessons], result.summary["checkpoint"],
                         db_url=f"sqlite:///{tmp_path / 'full.db'}", options=ScoreOptions(workers=0, batch_size=4))
    assert open_store(f"sqlite:///{tmp_path / 'full.db'}").run_counts([full.run_id])["scores"] == 2 * 4


def test_side_signal_models_are_refused_by_predict_and_score_saying_what_to_run(tiny_run, tmp_path: Path) -> None:
    from vkit.registry.errors import CheckpointError, ConfigError
    from vkit.workflows.predict import predict_task
    from vkit.workflows.run import run_task
    from vkit.workflows.scoring.score import ScoreOptions, score_archive

    _, _, tmp = tiny_run
    db = f"sqlite:///{tmp_path / 'vkit.db'}"
    fused = run_task("education-engagement", overrides=[*TINY, "train.epochs=1", "side_signals.csv=side_signals.csv"],
                     db_url=db, work_dir=tmp_path / "work", data_root=tmp / "data", echo=lambda *_: None)
    assert fused.status == "finished"
    data = tmp / "data" / "education-engagement"
    clip = next((data / "DataSet").rglob("*.mp4"))
    advice = r"Train a video-only model on the same data - the same `vkit run education-engagement \.\.\.` without " \
             r"`--set side_signals\.csv=\.\.\.` - and pass that run to --checkpoint"
    with pytest.raises(ConfigError, match=r"side_signals\.csv='side_signals\.csv'\), which `vkit predict` cannot "
                                          r"supply \(it reads clip files only\)\. " + advice):
        predict_task("education-engagement", str(fused.run_id), [str(clip)], db_url=db)
    with pytest.raises(CheckpointError, match=r"which `vkit score` cannot supply \(recordings carry no per-segment "
                                              r"signals\)\. " + advice):
        score_archive("education-engagement", [data / "Lessons"], str(fused.run_id), db_url=db,
                      options=ScoreOptions(workers=0))
