"""The Ray engine writes the same rows as the local engine (one short run on a local Ray instance)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
import test_score_support as support  # noqa: E402

from vkit.core.store import open_store  # noqa: E402
from vkit.workflows.scoring.score import ScoreOptions, score_archive  # noqa: E402


@pytest.mark.slow
def test_ray_engine_matches_local_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("ray.data")
    monkeypatch.setenv("VKIT_NO_AUTOLOAD", "1")
    monkeypatch.setenv("PYTHONPATH", str(HERE))        # Ray workers import the test plugin by name
    monkeypatch.setenv("VKIT_TEST_HOOK_LOG", str(tmp_path / "hook.jsonl"))
    root = tmp_path / "archive"
    support.make_archive(root, good=3)
    ckpt = support.make_checkpoint(tmp_path / "model.safetensors")
    runs = {}
    for engine, url in (("local", tmp_path / "local.db"), ("ray", tmp_path / "ray.db")):
        summary = score_archive("demo-score", [str(root)], str(ckpt), db_url=f"sqlite:///{url}",
                                plugins=["test_score_support"],
                                options=ScoreOptions(engine=engine, workers=1, batch_size=5, videos_per_task=4))
        assert (summary.scored, summary.failed, summary.skipped) == (3, 4, 0), engine
        store = open_store(f"sqlite:///{url}")
        paths = {v["id"]: v["path"] for v in store.get_videos()}
        runs[engine] = dict(
            videos={v["path"]: (v["status"], v["error"], v["sha256"], v["frames"]) for v in store.get_videos()},
            scores={(paths[s["video_id"]], s["segment"]): (s["start"], s["end"], s["score"])
                    for s in store.video_scores(summary.run_id)},
            events={(paths[e["video_id"]], e["kind"], e["start"]) for e in store.run_events(summary.run_id)},
            summaries={paths[s["video_id"]]: (s["status"], s["error"]) for s in store.video_summaries(summary.run_id)},
        )
    local, ray = runs["local"], runs["ray"]
    assert ray["videos"] == local["videos"] and ray["summaries"] == local["summaries"]
    assert ray["events"] == local["events"] and ray["scores"].keys() == local["scores"].keys()
    assert len(local["scores"]) == 12
    for key, (start, end, score) in local["scores"].items():
        assert ray["scores"][key][:2] == (start, end)
        assert abs(ray["scores"][key][2] - score) <= 1e-5
    assert len((tmp_path / "hook.jsonl").read_text().splitlines()) == 14   # the hook ran per video on both engines


@pytest.mark.slow
def test_ray_job_claims_each_video_before_decoding_and_takes_a_killed_jobs_videos_over(tmp_path: Path) -> None:
    """A Ray job and a local job on one archive: the Ray actor claims one video at a time (not all up front),
    so both score; the local job is SIGKILLed mid-video and the Ray job takes its leased video over; every
    video ends scored exactly once."""
    pytest.importorskip("ray.data")
    import json
    import os
    import signal
    import subprocess
    import time

    import sqlalchemy as sa

    from vkit.core.store.models import VideoLease, VideoSummary

    videos = 8
    root = tmp_path / "archive"
    support.make_archive(root, good=videos, bad=False)
    ckpt = support.make_checkpoint(tmp_path / "model.safetensors")
    url = f"sqlite:///{tmp_path / 'vkit.db'}"
    store = open_store(url)
    gate = tmp_path / "gate"                                    # score() waits for it (after claim and decode)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
               VKIT_NO_AUTOLOAD="1", OMP_NUM_THREADS="1", VKIT_TEST_SCORE_GATE=str(gate))
    cmd = [str(Path(sys.executable).with_name("vkit")), "--db", url, "--plugin", "test_score_support", "score",
           "demo-score", str(root), "--checkpoint", str(ckpt), "--json", "--batch-size", "4", "--commit-every", "1",
           "--lease-seconds", "4"]
    ray_job = subprocess.Popen(cmd + ["--engine", "ray", "--workers", "1"], env=dict(env, VKIT_TEST_SCORE_DELAY="1.0"),
                               cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    local_job = None

    def leases(run_id: int | None) -> list[int]:
        with store.session(write=False) as session:
            return list(session.scalars(sa.select(VideoLease.video_id).where(VideoLease.run_id == run_id)))

    def written_by(run_id: int | None) -> int:
        with store.session(write=False) as session:
            return session.scalar(sa.select(sa.func.count()).select_from(VideoSummary)
                                  .where(VideoSummary.run_id == run_id))

    def run_of(proc: subprocess.Popen) -> int | None:
        return next((r["id"] for r in store.list_runs(status="running") if r["pid"] == proc.pid), None)

    try:
        deadline = time.monotonic() + 180
        ray_run = None
        while not (ray_run and leases(ray_run)) and time.monotonic() < deadline:   # the Ray actor claims its first
            assert ray_job.poll() is None, ray_job.communicate()                      # video and waits at the gate
            ray_run = ray_run or run_of(ray_job)
            time.sleep(0.05)
        time.sleep(1.0)
        claimed_first = leases(ray_run)
        local_job = subprocess.Popen(cmd + ["--workers", "0"], env=dict(env, VKIT_TEST_SCORE_DELAY="1.0"),
                                     cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        while run_of(local_job) is None and time.monotonic() < deadline:
            assert local_job.poll() is None, local_job.communicate()
            time.sleep(0.05)
        local_run = run_of(local_job)
        gate.write_text("go")
        victim_held: list[int] = []
        while not victim_held and time.monotonic() < deadline:   # both score; the local job dies mid-video
            assert local_job.poll() is None, (written_by(ray_run), written_by(local_run), local_job.communicate())
            if written_by(local_run) >= 1:
                victim_held = leases(local_run)
            time.sleep(0.05)
        local_job.send_signal(signal.SIGKILL)
        local_job.communicate()
        out, err = ray_job.communicate(timeout=180)
        assert ray_job.returncode == 0, err.decode()[-3000:]
        survivor = json.loads(out)
    finally:
        for proc in (ray_job, local_job):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert len(claimed_first) == 1                               # one video claimed, not the whole archive
    assert victim_held, "the local job held no lease when it was killed"
    with store.session(write=False) as session:
        owner = dict(session.execute(sa.select(VideoSummary.video_id, VideoSummary.run_id)
                                     .where(VideoSummary.status == "scored")).all())
        rows = session.scalar(sa.select(sa.func.count()).select_from(VideoSummary))
    assert len(owner) == videos and rows == videos               # every video scored exactly once
    local_scored = sum(1 for run in owner.values() if run == local_run)
    assert local_scored >= 1 and survivor["scored"] == videos - local_scored >= 1   # the work was split
    assert all(owner[v] == ray_run for v in victim_held)         # the killed job's leased video was taken over
    assert store.get_run(local_run)["status"] == "interrupted" and survivor["status"] == "finished"
    store.close()
