"""The Ray engine writes the same rows as the local engine (one short run on a local Ray instance)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
import test_score_support as support  # noqa: E402

from vkit.core.store import open_store  # noqa: E402
from vkit.workflows.score import ScoreOptions, score_archive  # noqa: E402


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
