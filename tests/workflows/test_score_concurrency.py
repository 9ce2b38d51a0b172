"""Cooperating `vkit score` processes on one archive and one store (SQLite and the real PostgreSQL).

Each test starts several installed ``vkit score`` console scripts on the same
archive with the same checkpoint. They start scoring together (a gate file the
test plugin waits for), so the work must be split; one may be SIGKILLed and the
others must take its leased videos over. Every video ends scored exactly once,
and so does every content: the archive also holds two copies of one video
(another name, another folder), recorded as duplicates by whichever job meets them.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
import test_score_support as support  # noqa: E402

from vkit.core.store import open_store  # noqa: E402
from vkit.core.store.models import Run, VideoLease, VideoSummary  # noqa: E402

VKIT = str(Path(sys.executable).with_name("vkit"))
VIDEOS = 8  # distinct contents; the archive also holds COPIES copies of good0.mp4
COPIES = 2
pytestmark = pytest.mark.slow  # about 11 vkit processes in all (each pays the CLI start-up): ~40 s on 2 idle cores


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("concurrent")
    files = support.make_archive(root / "archive", good=VIDEOS, bad=False)
    (root / "archive" / "backup").mkdir()
    for copy in (root / "archive" / "good0 copy.mp4", root / "archive" / "backup" / "good0.mp4")[:COPIES]:
        shutil.copy(files["good0"], copy)
    return root / "archive", support.make_checkpoint(root / "model.safetensors")


def _sqlite(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'vkit.db'}"


#: (backend, processes): each backend runs once with two jobs and once with more (the suite stays fast: every
#: process pays vkit's start-up).
SPLIT = [pytest.param("sqlite", 2, id="sqlite-2jobs"),
         pytest.param("postgresql", 4, id="postgresql-4jobs", marks=pytest.mark.postgres)]
KILL = [pytest.param("sqlite", 2, id="sqlite-2jobs"),
        pytest.param("postgresql", 3, id="postgresql-3jobs", marks=pytest.mark.postgres)]


@pytest.fixture
def store_url(request: pytest.FixtureRequest, tmp_path: Path):
    if request.node.callspec.params["backend"] == "sqlite":
        yield _sqlite(tmp_path)
        return
    yield request.getfixturevalue("pg_url")


def _start(count: int, url: str, archive: tuple[Path, Path], tmp_path: Path, delay: float = 0.15):
    """``count`` `vkit score` processes, released together once each has its run row; returns them and the store."""
    root, ckpt = archive
    open_store(url).close()                                  # the schema exists before the jobs race to open it
    gate = tmp_path / "gate"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
               VKIT_NO_AUTOLOAD="1", VKIT_TEST_SCORE_DELAY=str(delay), VKIT_TEST_SCORE_GATE=str(gate))
    cmd = [VKIT, "--db", url, "--plugin", "test_score_support", "score", "demo-score", str(root), "--checkpoint",
           str(ckpt), "--json", "--workers", "0", "--batch-size", "4", "--commit-every", "1", "--lease-seconds", "4"]
    procs = [subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(count)]
    store = open_store(url)
    deadline = time.monotonic() + 120
    while len(store.list_runs(status="running")) < count and time.monotonic() < deadline:
        assert all(p.poll() is None for p in procs), [p.communicate() for p in procs if p.poll() is not None]
        time.sleep(0.1)
    gate.write_text("go")
    return procs, store


def _finish(procs: list[subprocess.Popen]) -> list[dict]:
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err.decode()
        results.append(json.loads(out))
    return results


def _scored_per_video(store) -> Counter:
    """Scored summaries per video; also checks each content was scored once and its copies recorded once each."""
    with store.session(write=False) as session:
        rows = session.execute(sa.select(VideoSummary.video_id, VideoSummary.video_sha256, VideoSummary.status)).all()
    scored = [(video, sha) for video, sha, status in rows if status == "scored"]
    assert set(Counter(sha for _, sha in scored).values()) == {1}                # each content scored once
    duplicates = Counter(video for video, _, status in rows if status == "duplicate")
    assert len(duplicates) == COPIES and set(duplicates.values()) == {1}        # each copy recorded once
    return Counter(video for video, _ in scored)


@pytest.mark.parametrize(("backend", "jobs"), SPLIT)
def test_jobs_split_the_archive_and_score_each_video_once(backend: str, jobs: int, store_url: str, archive,
                                                          tmp_path: Path) -> None:
    procs, store = _start(jobs, store_url, archive, tmp_path)
    summaries = _finish(procs)
    per_video = _scored_per_video(store)
    assert len(per_video) == VIDEOS and set(per_video.values()) == {1}          # every video exactly once
    assert sum(s["scored"] for s in summaries) == VIDEOS                        # nobody redid another's video
    assert sum(s["duplicates"] for s in summaries) == COPIES                    # nor another path's content
    assert all(s["scored"] >= 1 for s in summaries), [s["scored"] for s in summaries]   # the work was split
    assert all(s["failed"] == 0 and s["status"] == "finished" for s in summaries)
    assert len(store.video_scores(summaries[0]["run_id"])) == 4 * summaries[0]["scored"]
    with store.session(write=False) as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(VideoLease)) == 0   # all released
    store.close()


@pytest.mark.parametrize(("backend", "jobs"), KILL)
def test_a_killed_job_is_taken_over(backend: str, jobs: int, store_url: str, archive, tmp_path: Path) -> None:
    procs, store = _start(jobs, store_url, archive, tmp_path, delay=0.3)
    victim = procs[0]
    victim_run = next(r["id"] for r in store.list_runs(status="running") if r["pid"] == victim.pid)
    deadline = time.monotonic() + 60
    held: list[int] = []
    while time.monotonic() < deadline:
        with store.session(write=False) as session:
            done = session.scalar(sa.select(sa.func.count()).select_from(VideoSummary)
                                  .where(VideoSummary.run_id == victim_run))
            held = list(session.scalars(sa.select(VideoLease.video_id).where(VideoLease.run_id == victim_run)))
        if done >= 1 and held:
            break
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    victim.communicate()
    assert held, "the victim held no lease when it was killed"
    survivors = _finish(procs[1:])
    per_video = _scored_per_video(store)
    assert len(per_video) == VIDEOS and set(per_video.values()) == {1}
    with store.session(write=False) as session:
        rows = session.execute(sa.select(VideoSummary.video_id, VideoSummary.run_id, VideoSummary.status)
                               .where(VideoSummary.status.in_(("scored", "duplicate")))).all()  # a copy: 'duplicate'
        status = session.scalar(sa.select(Run.status).where(Run.id == victim_run))
    owner = {video: run for video, run, _ in rows}
    assert all(owner[v] != victim_run for v in held)                             # its leased videos were taken over
    assert status == "interrupted"
    victim_scored = sum(1 for _, run, state in rows if run == victim_run and state == "scored")
    assert sum(s["scored"] for s in survivors) == VIDEOS - victim_scored
    store.close()
