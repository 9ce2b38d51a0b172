"""`score_archive` end to end on real tiny MP4s: bad files, resume, SIGKILL mid-way, hook calls, export."""
from __future__ import annotations

import csv
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
import test_score_support as support  # noqa: E402

from vkit.core.store import open_store  # noqa: E402
from vkit.workflows.export import describe_scoring_run, export_run  # noqa: E402
from vkit.workflows.scoring.score import ScoreOptions, score_archive  # noqa: E402

PLUGIN = ["test_score_support"]


@pytest.fixture(autouse=True)
def _only_the_test_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VKIT_NO_AUTOLOAD", "1")          # the built-in verticals are not needed here


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    monkeypatch.setenv("VKIT_TEST_HOOK_LOG", str(tmp_path / "hook.jsonl"))
    files = support.make_archive(tmp_path / "archive", good=4)
    ckpt = support.make_checkpoint(tmp_path / "ckpt" / "model.safetensors")
    return dict(root=tmp_path / "archive", files=files, ckpt=ckpt, url=f"sqlite:///{tmp_path / 'vkit.db'}",
                hook=tmp_path / "hook.jsonl")


def _score(s: dict, **options) -> object:
    return score_archive("demo-score", [str(s["root"])], str(s["ckpt"]), db_url=s["url"], plugins=PLUGIN,
                         options=ScoreOptions(**{"workers": 2, "batch_size": 3, **options}))


def test_bad_files_fail_with_their_reason_and_good_ones_are_scored(setup: dict) -> None:
    summary = _score(setup)
    assert (summary.videos, summary.scored, summary.failed, summary.skipped) == (8, 4, 4, 0)
    assert summary.clips == 16 and summary.status == "finished"
    store = open_store(setup["url"])
    videos = {Path(v["path"]).name: v for v in store.get_videos()}
    reasons = {name: videos[name]["error"] for name in videos if videos[name]["status"] == "failed"}
    assert set(reasons) == {"empty.mp4", "notes.mp4", "short.mp4", "truncated.mp4"}
    assert "empty file (0 bytes)" in reasons["empty.mp4"]
    assert "not a video file" in reasons["notes.mp4"]
    assert "too short: 3 frames" in reasons["short.mp4"]
    assert "truncated" in reasons["truncated.mp4"]
    for name in ("good0.mp4", "good1.mp4", "good2.mp4", "good3.mp4"):
        v = videos[name]
        assert v["status"] == "ok" and v["frames"] == 16 and v["fps"] == pytest.approx(8.0)
        assert v["duration"] == pytest.approx(2.0, abs=0.2) and v["size"] > 0 and len(v["sha256"]) == 64
    run = store.get_run(summary.run_id)
    assert run["status"] == "finished" and run["model_sha256"] == support.ConvScorer(setup["ckpt"]).model_sha256
    summaries = store.video_summaries(summary.run_id)
    assert sorted(s["status"] for s in summaries) == ["failed"] * 4 + ["scored"] * 4
    scores = store.video_scores(summary.run_id)
    assert len(scores) == 16 and all(0.0 < s["score"] < 1.0 for s in scores)
    events = store.run_events(summary.run_id)
    assert events and all(e["kind"] == "high" for e in events)
    hooks = [json.loads(line) for line in setup["hook"].read_text().splitlines()]
    assert sorted(h["status"] for h in hooks) == ["failed"] * 4 + ["scored"] * 4
    scored = [h for h in hooks if h["status"] == "scored"]
    by_path = {videos[Path(h["path"]).name]["id"]: h for h in scored}
    for s in summaries:
        if s["status"] == "scored":
            assert by_path[s["video_id"]]["max_score"] == pytest.approx(s["max_score"])


def test_resume_skips_scored_videos_and_rescores_changed_ones(setup: dict) -> None:
    first = _score(setup, workers=0)
    support.write_good(setup["files"]["good2"], seed=42)                 # content changed at the same path
    second = _score(setup)
    assert (second.scored, second.skipped, second.failed) == (1, 3, 0)    # failed ones stay failed ...
    assert second.left_failed == 4                                        # ... and the summary says so
    retried = score_archive(
        "demo-score", [str(setup["root"])], str(setup["ckpt"]), db_url=setup["url"], plugins=PLUGIN,
        options=ScoreOptions(workers=0), retry_failed=True)
    assert (retried.scored, retried.skipped, retried.failed, retried.left_failed) == (0, 4, 4, 0)   # on request
    store = open_store(setup["url"])
    assert len(store.video_scores(first.run_id)) == 16 and len(store.video_scores(second.run_id)) == 4
    changed = next(v for v in store.get_videos() if v["path"].endswith("good2.mp4"))
    assert [s["video_id"] for s in store.video_summaries(second.run_id) if s["status"] == "scored"] == [changed["id"]]
    other_ckpt = support.make_checkpoint(setup["ckpt"].with_name("other.safetensors"), seed=1)
    third = score_archive("demo-score", [str(setup["root"])], str(other_ckpt), db_url=setup["url"], plugins=PLUGIN,
                          options=ScoreOptions(workers=0))
    assert third.scored == 4 and third.skipped == 0                       # another model scores everything


def test_checkpoint_by_run_id(setup: dict) -> None:
    store = open_store(setup["url"])
    run_id = store.start_run("demo-score", "test_score_support", {}, seed=0)
    store.add_artifact(run_id, "checkpoint", setup["ckpt"])
    store.finish_run(run_id)
    summary = score_archive("demo-score", [str(setup["files"]["good0"])], str(run_id), db_url=setup["url"],
                            plugins=PLUGIN, options=ScoreOptions(workers=0))
    assert summary.scored == 1 and summary.videos == 1


_KILLED_JOB = """
import sys
sys.path.insert(0, {here!r})
from vkit.workflows.scoring.score import ScoreOptions, score_archive
score_archive("demo-score", [{root!r}], {ckpt!r}, db_url={url!r}, plugins=["test_score_support"],
              options=ScoreOptions(workers=1, batch_size=4, commit_every=1))
"""


def _scored_count(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return conn.execute("SELECT count(*) FROM video_summaries WHERE status = 'scored'").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def test_sigkill_mid_way_then_rerun_scores_each_video_exactly_once(tmp_path: Path) -> None:
    root = tmp_path / "archive"
    support.make_archive(root, good=8, bad=False)
    ckpt = support.make_checkpoint(tmp_path / "model.safetensors")
    db = tmp_path / "vkit.db"
    url = f"sqlite:///{db}"
    code = _KILLED_JOB.format(here=str(HERE), root=str(root), ckpt=str(ckpt), url=url)
    env = dict(os.environ, VKIT_TEST_SCORE_DELAY="0.25")
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 90
    while _scored_count(db) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    output = proc.communicate()[0].decode()
    assert proc.returncode == -signal.SIGKILL, output
    before = _scored_count(db)
    assert 2 <= before < 8, output
    store = open_store(url)
    killed_run = store.list_runs()[0]
    assert killed_run["status"] == "running"                               # nobody could close it
    assert len(store.video_scores(killed_run["id"])) == 4 * before          # every committed video is whole

    summary = score_archive("demo-score", [str(root)], str(ckpt), db_url=url, plugins=PLUGIN,
                            options=ScoreOptions(workers=1, batch_size=4))
    assert (summary.skipped, summary.scored, summary.failed) == (before, 8 - before, 0)
    killed_after = store.get_run(killed_run["id"])                         # the rerun closed the dead run's row
    assert killed_after["status"] == "interrupted" and f"process {proc.pid} on " in killed_after["error"]
    with sqlite3.connect(db) as conn:
        per_video = conn.execute("SELECT video_id, count(*) FROM video_summaries WHERE status = 'scored' "
                                 "GROUP BY video_id").fetchall()
        segments = conn.execute("SELECT video_id, count(*), count(DISTINCT segment) FROM scores "
                                "GROUP BY video_id").fetchall()
    assert len(per_video) == 8 and all(n == 1 for _, n in per_video)
    assert len(segments) == 8 and all(n == 4 and d == 4 for _, n, d in segments)
    assert len(store.get_videos()) == 8


def test_export_csv_and_parquet_and_run_description(setup: dict, tmp_path: Path) -> None:
    summary = _score(setup, workers=0)
    store = open_store(setup["url"])
    files = export_run(store, summary.run_id, tmp_path / "out", "csv")
    with open(files["videos"], newline="") as handle:
        videos = list(csv.DictReader(handle))
    assert len(videos) == 8 and {v["status"] for v in videos} == {"scored", "failed"}
    with open(files["scores"], newline="") as handle:
        scores = list(csv.DictReader(handle))
    assert len(scores) == 16 and scores[0]["path"].endswith(".mp4")
    db_scores = {(s["video_id"], s["segment"]): s["score"] for s in store.video_scores(summary.run_id)}
    for row in scores:
        assert float(row["score"]) == pytest.approx(db_scores[(int(row["video_id"]), int(row["segment"]))], abs=1e-12)
    pq = pytest.importorskip("pyarrow.parquet")
    files = export_run(store, summary.run_id, tmp_path / "out", "parquet")
    table = pq.read_table(files["scores"])
    assert table.num_rows == 16 and table.schema.field("score").type == "double"
    assert pq.read_table(files["events"]).num_rows == len(store.run_events(summary.run_id))
    info = describe_scoring_run(store, summary.run_id, top=2)
    assert info["counts"] == dict(videos=8, scored=4, failed=4, segments=16, events=len(store.run_events(summary.run_id)))
    assert len(info["top_videos"]) == 2 and info["top_videos"][0]["max_score"] >= info["top_videos"][1]["max_score"]
    assert sorted(Path(f["path"]).name for f in info["failures"]) == ["empty.mp4", "notes.mp4", "short.mp4",
                                                                       "truncated.mp4"]
    from vkit.registry.errors import StoreError

    other = store.start_run("demo-score", "x", {}, seed=0)
    with pytest.raises(StoreError, match=f"run {other} .* has no scoring results"):
        export_run(store, other, tmp_path / "out")
    assert describe_scoring_run(store, other) is None
