"""Unit tests of the pieces of `vkit score`: inventory walk, per-video preparation, cross-video clip batching, options."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import test_score_support as support  # noqa: E402

from vkit.registry.errors import ConfigError, DataError  # noqa: E402
from vkit.workflows.scoring.inventory import find_videos  # noqa: E402
from vkit.workflows.scoring.score import ScoreOptions  # noqa: E402
from vkit.workflows.scoring.engine import ClipBatcher, VideoStream, check_scorer, prepare_video, score_items  # noqa: E402


def test_find_videos_walks_folders_globs_and_survives_symlink_loops(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    for rel in ("a/one.mp4", "a/b/two.MKV", "a/b/notes.txt", "a/.hidden.mp4", "three.avi"):
        (tmp_path / rel).write_bytes(b"x")
    os.symlink(tmp_path / "a", tmp_path / "a" / "b" / "loop")          # a loop back to an ancestor
    found = find_videos([tmp_path / "a"])
    assert found == [str(tmp_path / "a/b/two.MKV"), str(tmp_path / "a/one.mp4")]
    assert find_videos([str(tmp_path / "*.avi"), str(tmp_path / "a")]) == sorted(found + [str(tmp_path / "three.avi")])
    assert find_videos([str(tmp_path / "a/b/notes.txt")]) == [str(tmp_path / "a/b/notes.txt")]  # named files are taken
    with pytest.raises(DataError, match=r"'.*missing': no such file or folder"):
        find_videos([tmp_path / "missing"])
    with pytest.raises(DataError, match="matches no file"):
        find_videos([str(tmp_path / "*.mov")])


def test_find_videos_follows_a_symlinked_folder_once(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "v.mp4").write_bytes(b"x")
    (tmp_path / "archive").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "archive" / "link")
    assert find_videos([tmp_path / "archive"]) == [str(tmp_path / "archive" / "link" / "v.mp4")]


@pytest.fixture(scope="module")
def scorer(tmp_path_factory: pytest.TempPathFactory) -> support.ConvScorer:
    ckpt = support.make_checkpoint(tmp_path_factory.mktemp("ckpt") / "model.safetensors")
    return support.ConvScorer(ckpt)


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    root = tmp_path_factory.mktemp("videos")
    return [str(support.write_good(root / f"v{i}.mp4", seed=i, frames=12 + 4 * i)) for i in range(3)]


def test_check_scorer_names_what_is_missing(scorer: support.ConvScorer) -> None:
    check_scorer(scorer, "task 'demo-score'")

    class NoSha:
        num_segments = 2

        def decode(self, path): ...

        def score(self, clips): ...

        def summarize(self, scores, info): ...

    with pytest.raises(ConfigError, match=r"task 'x'.*lacks \['model_sha256'\]"):
        check_scorer(NoSha(), "task 'x'")
    bad = NoSha()
    bad.model_sha256 = ""
    with pytest.raises(ConfigError, match="model_sha256 must be a non-empty str"):
        check_scorer(bad, "task 'x'")


def test_prepare_video_hashes_probes_decodes_and_skips(scorer: support.ConvScorer, videos: list[str]) -> None:
    item = prepare_video(videos[0], None, scorer)
    assert item["status"] == "scored" and item["error"] is None
    assert item["tensor"].shape == (4, 3, 4, 32, 32) and item["tensor"].dtype == torch.float32
    video = item["video"]
    assert video["status"] == "ok" and video["frames"] == 12 and video["fps"] == pytest.approx(8.0)
    assert video["size"] == os.path.getsize(videos[0]) and len(video["sha256"]) == 64
    skipped = prepare_video(videos[0], video["sha256"], scorer)
    assert skipped["status"] == "skipped" and "tensor" not in skipped
    changed = prepare_video(videos[0], "0" * 64, scorer)              # content changed since: scored again
    assert changed["status"] == "scored"
    missing = prepare_video(videos[0] + ".gone", None, scorer)
    assert missing["status"] == "failed" and "unreadable" in missing["error"]


def test_batcher_scores_across_videos_like_one_video_at_a_time(scorer: support.ConvScorer, videos: list[str]) -> None:
    items = [prepare_video(v, None, scorer) for v in videos]
    expected = {}
    with torch.inference_mode():
        for item in items:
            expected[item["path"]] = scorer.score(item["tensor"]).numpy()
    seen_shapes = []
    original = scorer.score

    def spy(clips: torch.Tensor) -> torch.Tensor:
        seen_shapes.append((clips.shape[0], clips.is_contiguous(memory_format=torch.channels_last_3d)))
        return original(clips)

    scorer.score = spy
    try:
        outcomes = list(score_items(iter([prepare_video(v, None, scorer) for v in videos]), ClipBatcher(scorer, 5)))
    finally:
        del scorer.score
    assert [n for n, _ in seen_shapes] == [5, 5, 2]                    # 12 clips of 3 videos in batches of 5
    assert all(channels_last for _, channels_last in seen_shapes)
    assert sorted(o["path"] for o in outcomes) == sorted(videos)
    for outcome in outcomes:
        scores = np.array([s["score"] for s in outcome["scores"]])
        np.testing.assert_allclose(scores, expected[outcome["path"]], atol=1e-6)
        assert [s["segment"] for s in outcome["scores"]] == [0, 1, 2, 3]
        duration = outcome["video"]["duration"]
        assert outcome["scores"][-1]["end"] == pytest.approx(duration)
        assert all(e["kind"] == "high" for e in outcome["events"]) and "tensor" not in outcome


def test_video_stream_shards_jobs_over_workers(scorer: support.ConvScorer, videos: list[str]) -> None:
    from torch.utils.data import DataLoader

    jobs = [(v, None) for v in videos] + [(videos[0] + ".gone", None)]
    loader = DataLoader(VideoStream(jobs, scorer), batch_size=None, num_workers=2, collate_fn=lambda x: x,
                        multiprocessing_context="fork")
    items = list(loader)
    assert sorted(i["path"] for i in items) == sorted(p for p, _ in jobs)   # each job once
    assert sum(i["status"] == "failed" for i in items) == 1


def test_score_options_validate() -> None:
    with pytest.raises(ConfigError, match="batch_size must be an int >= 1 or 'auto', got 0"):
        ScoreOptions(batch_size=0)
    with pytest.raises(ConfigError, match=r"engine='spark'; expected one of \['local', 'ray'\]"):
        ScoreOptions(engine="spark")
    with pytest.raises(ConfigError, match="workers must be an int >= 0"):
        ScoreOptions(workers=-1)
