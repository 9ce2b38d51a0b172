"""Issue 21's scoring faults through the installed ``vkit`` command, on SQLite and PostgreSQL.

- item 3: a file rewritten while ``vkit score`` runs never leaves rows of one
  content under another content's sha256; its copies are still scored (or
  deduplicated against the right rows); one that keeps changing is ``changed``.
- item 5: a FIFO or a symlink to ``/dev/zero``/``/dev/urandom`` is refused
  before a byte is read (no hang), in an archive and in a recommendation
  ``items.csv``; SIGTERM or SIGKILL to ``vkit score`` leaves no worker behind.

Every command runs as a subprocess with a timeout, so a hang fails the test
instead of hanging the suite. The test seams (a file rewritten right before
decoding, a decode that never ends) live in :mod:`scoring_faults_support`.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
WORKFLOWS = HERE.parent / "workflows"
sys.path.insert(0, str(WORKFLOWS))
import test_score_support as support  # noqa: E402

VKIT = str(Path(sys.executable).with_name("vkit"))
TASK = "demo-score-faults"


def _env(builtins: bool = False, **extra: str) -> dict[str, str]:
    """The subprocesses' environment: the test plugins importable; the built-in verticals only with ``builtins``."""
    path = os.pathsep.join([str(HERE), str(WORKFLOWS), os.environ.get("PYTHONPATH", "")])
    env = dict(os.environ, PYTHONPATH=path, OMP_NUM_THREADS="1", **extra)
    if not builtins:
        env["VKIT_NO_AUTOLOAD"] = "1"
    return env


def _score_args(db: str, *args: str) -> list[str]:
    return [VKIT, "--db", db, "--plugin", "scoring_faults_support", "score", TASK, *args]


def _score(db: str, archive: Path, ckpt: Path, *more: str, timeout: float = 180, **env: str) -> dict[str, Any]:
    """``vkit score --json`` of ``archive``; fails the test on a hang (timeout) or a non-zero exit."""
    done = subprocess.run(_score_args(db, str(archive), "--checkpoint", str(ckpt), "--json", "--batch-size", "4",
                                      *more), capture_output=True, text=True, env=_env(**env), timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Videos of four contents A-D, the checkpoint, and what the model scores on each content (by sha256)."""
    import numpy as np
    import torch

    root = tmp_path_factory.mktemp("contents")
    files = {name: support.write_good(root / f"{name}.mp4", seed=seed, frames=24)
             for name, seed in (("A", 1), ("B", 2), ("C", 4), ("D", 5))}
    ckpt = support.make_checkpoint(root / "model.safetensors")
    scorer = support.ConvScorer(ckpt)
    reference = {}
    for path in files.values():
        with torch.inference_mode():
            reference[_sha(path)] = scorer.score(torch.from_numpy(np.ascontiguousarray(scorer.decode(str(path))))).numpy()
    return dict(files=files, ckpt=ckpt, reference=reference)


def _rows(db: str, run_id: int) -> dict[str, dict[str, Any]]:
    """``{file name: dict(video row, summary, scores)}`` of run ``run_id``."""
    from vkit.core.store import open_store

    with open_store(db) as store:
        videos = {v["id"]: v for v in store.get_videos()}
        out = {}
        for summary in store.video_summaries(run_id):
            video = videos[summary["video_id"]]
            scores = [s["score"] for s in sorted(store.video_scores(run_id, video["id"]), key=lambda s: s["segment"])]
            out[Path(video["path"]).name] = dict(video=video, summary=summary, scores=scores)
    return out


def _check_rows_match_content(rows: dict[str, dict[str, Any]], reference: dict[str, Any]) -> None:
    """Every scored video's rows are the scores of the content its sha256 names."""
    for name, row in rows.items():
        if row["summary"]["status"] == "scored":
            sha = row["summary"]["video_sha256"]
            assert sha == row["video"]["sha256"], name
            assert row["scores"] == pytest.approx(list(reference[sha]), abs=1e-5), f"{name}: rows of another content"


def test_item3_file_rewritten_while_scoring_keeps_rows_under_the_right_sha256(store_url, clips, tmp_path):
    files, ckpt, reference = clips["files"], clips["ckpt"], clips["reference"]
    assert len({tuple(v.round(5)) for v in reference.values()}) == 4  # the four contents score apart
    archive = tmp_path / "archive"
    archive.mkdir()
    for name, content in (("a.mp4", "A"), ("copy.mp4", "A"), ("x.mp4", "C"), ("z.mp4", "B")):
        shutil.copyfile(files[content], archive / name)
    # a.mp4 (A) becomes B after it is hashed, once; x.mp4 (C) changes on every try: D, C, D
    rewrites = {str(archive / "a.mp4"): [str(files["B"])],
                str(archive / "x.mp4"): [str(files["D"]), str(files["C"]), str(files["D"])]}
    data = _score(store_url, archive, ckpt, "--workers", "1", VKIT_TEST_REWRITES=json.dumps(rewrites))
    assert (data["scored"], data["changed"], data["duplicates"], data["failed"]) == (2, 1, 1, 0), data
    assert [Path(f["path"]).name for f in data["failures"]] == ["x.mp4"]
    assert "changed while being scored (3 tries" in data["failures"][0]["error"]

    rows = _rows(store_url, data["run_id"])
    _check_rows_match_content(rows, reference)
    assert rows["a.mp4"]["video"]["sha256"] == _sha(files["B"])          # retried: the content it has now
    assert rows["copy.mp4"]["video"]["sha256"] == _sha(files["A"])       # A's copy is still scored, as A
    assert rows["copy.mp4"]["summary"]["status"] == "scored"
    assert rows["z.mp4"]["summary"]["status"] == "duplicate"             # B: deduplicated against B's right rows
    assert rows["z.mp4"]["video"]["error"].startswith(f"duplicate of {archive / 'a.mp4'}")
    changed = rows["x.mp4"]
    assert (changed["video"]["status"], changed["summary"]["status"]) == ("changed", "changed")
    assert changed["video"]["sha256"] is None and changed["summary"]["video_sha256"] is None
    assert changed["scores"] == []                                         # no row under any sha256
    shown = subprocess.run([VKIT, "--db", store_url, "runs", "show", str(data["run_id"]), "--json"], capture_output=True,
                           text=True, env=_env(), timeout=120)
    scoring = json.loads(shown.stdout)["scoring"]
    assert (scoring["counts"]["scored"], scoring["counts"]["changed"], scoring["counts"]["duplicates"]) == (2, 1, 1)
    assert [Path(f["path"]).name for f in scoring["failures"]] == ["x.mp4"]

    again = _score(store_url, archive, ckpt, "--workers", "0")            # the file has settled: scored now
    assert (again["scored"], again["skipped"], again["changed"], again["failed"]) == (1, 3, 0, 0), again
    rows = _rows(store_url, again["run_id"])
    _check_rows_match_content(rows, reference)
    assert rows["x.mp4"]["video"]["sha256"] == _sha(files["D"])


def _fifo_archive(root: Path, good: Path) -> Path:
    root.mkdir()
    shutil.copyfile(good, root / "good.mp4")
    os.mkfifo(root / "pipe.mp4")
    os.symlink("/dev/zero", root / "zero.mp4")
    os.symlink("/dev/urandom", root / "random.mp4")
    return root


def test_item5_fifo_and_device_links_in_an_archive_fail_without_hanging(store_url, clips, tmp_path):
    archive = _fifo_archive(tmp_path / "archive", clips["files"]["A"])
    began = time.monotonic()
    data = _score(store_url, archive, clips["ckpt"], "--workers", "2", timeout=120)
    assert time.monotonic() - began < 120
    assert (data["scored"], data["failed"], data["status"]) == (1, 3, "finished"), data
    errors = {Path(f["path"]).name: f["error"] for f in data["failures"]}
    assert errors == {"pipe.mp4": f"{archive / 'pipe.mp4'}: not a regular file (FIFO)",
                      "zero.mp4": f"{archive / 'zero.mp4'}: not a regular file (character device)",
                      "random.mp4": f"{archive / 'random.mp4'}: not a regular file (character device)"}
    rows = _rows(store_url, data["run_id"])
    for name, error in errors.items():
        assert (rows[name]["video"]["status"], rows[name]["summary"]["status"]) == ("failed", "failed")
        assert rows[name]["video"]["error"] == error and rows[name]["video"]["sha256"] is None
    assert rows["good.mp4"]["summary"]["status"] == "scored"


def _pids_alive(pids: list[int]) -> list[int]:
    alive = []
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        stat = Path(f"/proc/{pid}/stat")
        if stat.exists() and stat.read_text().rsplit(")", 1)[-1].split()[0] == "Z":
            continue  # a zombie: dead, not yet reaped
        alive.append(pid)
    return alive


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_item5_no_decoding_worker_outlives_a_killed_score_job(signum, sqlite_url, clips, tmp_path):
    archive = tmp_path / "archive"
    for i in range(4):
        support.write_good(archive / f"v{i}.mp4", seed=10 + i)
    stuck = tmp_path / "stuck"
    stuck.mkdir()
    log = tmp_path / "stderr.txt"
    with open(log, "w") as stderr:  # a file, not a pipe: an orphan worker holding it cannot stall the test
        job = subprocess.Popen(_score_args(sqlite_url, str(archive), "--checkpoint", str(clips["ckpt"]), "--workers",
                                           "2", "--json"), env=_env(VKIT_TEST_STUCK_DECODE=str(stuck)),
                               stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        deadline = time.monotonic() + 120
        while len(list(stuck.iterdir())) < 2 and time.monotonic() < deadline and job.poll() is None:
            time.sleep(0.2)
        workers = [int(p.name) for p in stuck.iterdir()]
        assert len(workers) == 2 and job.pid not in workers, (workers, job.poll())
        job.send_signal(signum)
        job.wait(timeout=60)
    finally:
        if job.poll() is None:
            job.kill()
    deadline = time.monotonic() + 15
    while _pids_alive(workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    alive = _pids_alive(workers)
    for pid in alive:  # the test's own leftovers: never left spinning
        os.kill(pid, signal.SIGKILL)
    assert alive == [], f"decoding workers {alive} outlived vkit score ({signum!r})"
    err = log.read_text()
    if signum == signal.SIGTERM:  # stopped as by Ctrl-C: the run is closed, not left 'running'
        from vkit.core.store import open_store

        assert job.returncode == 130 and "Aborted" in err, err[-2000:]  # as on Ctrl-C
        with open_store(sqlite_url) as store:
            (run,) = store.list_runs()
        assert run["status"] == "interrupted" and "Terminated: SIGTERM" in run["error"]


def _items_data(root: Path, clips: dict[str, Any]) -> Path:
    """A tiny recommendation data folder: 12 items with videos (one of them a FIFO), 24 users' histories."""
    videos = root / "videos"
    videos.mkdir(parents=True)
    for i in range(12):
        shutil.copyfile(clips["files"]["ABCD"[i % 4]], videos / f"v{i}.mp4")
    (videos / "v3.mp4").unlink()
    os.mkfifo(videos / "v3.mp4")
    with open(root / "items.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([("item_id", "video")] + [(f"v{i}", f"videos/v{i}.mp4") for i in range(12)])
    with open(root / "interactions.csv", "w", newline="") as handle:
        rows = [(f"u{u:02d}", f"v{(u + k) % 12}", 1700000000 + 10 * k) for u in range(24) for k in range(5)]
        csv.writer(handle).writerows([("user_id", "item_id", "timestamp")] + rows)
    return root


def test_item5_fifo_video_in_items_csv_is_refused_and_the_run_finishes(clips, tmp_path, sqlite_url):
    from vkit.core.store import open_store

    data = _items_data(tmp_path / "data", clips)
    done = subprocess.run([VKIT, "--db", sqlite_url, "run", "recommendation", "--data", str(data), "--workers", "1",
                           "--work-dir", str(tmp_path / "work"), "--set", "train.epochs=1", "--set", "compare.models=[]",
                           "--set", "eval.ks=(5,10)"],
                          capture_output=True, text=True, env=_env(builtins=True), timeout=300)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    with open_store(sqlite_url) as store:
        run = next(r for r in store.list_runs() if r["kind"] == "train")
        skipped = {r["item_id"]: r["values"]["reason"] for r in store.run_predictions(run["id"], "skipped")}
        videos = {Path(v["path"]).name: v for v in store.get_videos()}
    fifo = str((data / "videos" / "v3.mp4").resolve())
    assert skipped["item:v3"] == f"content masked: {fifo}: not a regular file (FIFO)"
    assert videos["v3.mp4"]["status"] == "failed" and videos["v2.mp4"]["status"] == "ok"
