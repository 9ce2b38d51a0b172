"""Several processes writing scores at once: every row lands exactly once, and no "database is locked" reaches them.

Four writer processes start together (a barrier file) and each writes 10,000
score rows of its own run, in transactions of 500 rows, over the SAME videos
(each also upserts the videos table, so the writers contend on both tables);
on SQLite (WAL, ``BEGIN IMMEDIATE``, busy timeout) and on PostgreSQL.
"""
from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from vkit.core.store import open_store

WRITERS, ROWS, BATCH, VIDEOS = 4, 10_000, 500, 20

_WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from vkit.core.store import open_store

    url, index, rows, batch, videos, barrier = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), Path(sys.argv[6])
    store = open_store(url)
    store.list_runs(limit=1)  # connected
    barrier.with_name(f"ready{index}").touch()
    while not barrier.exists():
        time.sleep(0.01)
    with store.track_run("concurrency", "test", {"writer": index}, seed=index, kind="score") as run_id:
        per_video = rows // videos
        for start in range(0, rows, batch):
            chunk = range(start, min(start + batch, rows))
            ids = store.upsert_videos([dict(path=f"/shared/v{i // per_video:03d}.mp4", status="ok") for i in chunk])
            store.add_scores(run_id, [dict(video_id=ids[f"/shared/v{i // per_video:03d}.mp4"], segment=i % per_video,
                                           start=float(i), end=i + 1.0, score=index + i / rows, values={"w": index})
                                      for i in chunk])
    print(run_id)
""")


def test_four_writers_lose_and_duplicate_nothing(store_url: str, tmp_path: Path) -> None:
    open_store(store_url).close()  # schema created once, before the writers race
    barrier = tmp_path / "go"
    procs = [
        subprocess.Popen([sys.executable, "-c", _WRITER, store_url, str(i), str(ROWS), str(BATCH), str(VIDEOS), str(barrier)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(WRITERS)
    ]
    deadline = time.monotonic() + 120
    while not all((tmp_path / f"ready{i}").exists() for i in range(WRITERS)) and time.monotonic() < deadline:
        time.sleep(0.05)  # every writer imported and connected: release them together
    barrier.touch()
    outputs = [proc.communicate(timeout=300) for proc in procs]
    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode == 0, err[-3000:]
        assert "locked" not in (out + err).lower(), err[-3000:]
    run_ids = sorted(int(out.strip().splitlines()[-1]) for out, _ in outputs)
    assert len(set(run_ids)) == WRITERS

    with open_store(store_url) as store:
        assert store.counts()["scores"] == WRITERS * ROWS
        assert len(store.get_videos()) == VIDEOS  # the shared videos upserted by all four, once each
        with store.engine.connect() as conn:
            distinct = conn.exec_driver_sql(
                "SELECT count(*) FROM (SELECT DISTINCT run_id, video_id, segment FROM scores) AS d").scalar()
            per_run = dict(conn.exec_driver_sql("SELECT run_id, count(*) FROM scores GROUP BY run_id").fetchall())
            scores = conn.exec_driver_sql("SELECT run_id, score FROM scores").fetchall()
        assert distinct == WRITERS * ROWS
        assert per_run == dict.fromkeys(run_ids, ROWS)
        for run_id in run_ids:
            run = store.get_run(run_id)
            assert run["status"] == "finished" and run["kind"] == "score", run
            writer = run["config"]["writer"]
            mine = sorted(s for r, s in scores if r == run_id)
            assert mine == pytest.approx([writer + i / ROWS for i in range(ROWS)])  # each row its writer's value
