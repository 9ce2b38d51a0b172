"""`score_archive` and leases in one process: a video another live job holds is waited for, then left to it."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import test_score_support as support  # noqa: E402

from vkit.core.store import open_store  # noqa: E402
from vkit.workflows.scoring.score import ScoreOptions, score_archive  # noqa: E402

PLUGIN = ["test_score_support"]


@pytest.fixture(autouse=True)
def _only_the_test_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VKIT_NO_AUTOLOAD", "1")


def test_a_video_held_by_a_live_job_is_left_to_it_and_taken_once_free(tmp_path: Path) -> None:
    root = tmp_path / "archive"
    support.make_archive(root, good=3, bad=False)
    ckpt = support.make_checkpoint(tmp_path / "m.safetensors")
    url = f"sqlite:///{tmp_path / 'vkit.db'}"
    sha = support.ConvScorer(ckpt).model_sha256
    store = open_store(url)
    other = store.start_run("demo-score", "x", {}, seed=None, model_sha256=sha, kind="score")   # alive: this pid
    held = store.upsert_videos([dict(path=str(root / "good0.mp4"))])[str(root / "good0.mp4")]
    assert store.claim_video(other, sha, held, seconds=3600) is not None
    first = score_archive("demo-score", [str(root)], str(ckpt), db_url=url, plugins=PLUGIN,
                          options=ScoreOptions(workers=0, lease_seconds=1.0))
    assert (first.scored, first.held_elsewhere) == (2, 1)          # waited three lease lengths, then left it
    store.finish_run(other, "failed", "gave up")                   # the holder ends: its lease is free at once
    second = score_archive("demo-score", [str(root)], str(ckpt), db_url=url, plugins=PLUGIN,
                           options=ScoreOptions(workers=0, lease_seconds=1.0))
    assert (second.scored, second.skipped, second.held_elsewhere) == (1, 2, 0)
    store.close()
