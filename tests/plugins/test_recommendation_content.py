"""recommendation item content through the batch-scoring engine: vectors stored by sha256, resume, failures, Ray."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vkit.plugins.recommendation.content import embed_items, item_embedder
from vkit.plugins.recommendation.synthetic import render_item


@pytest.fixture()
def videos(tmp_path: Path) -> list[str]:
    from vkit.core.video import write_video

    paths = []
    for i in range(3):
        path = tmp_path / "videos" / f"v{i}.mp4"
        write_video(path, render_item(0, i, i), fps=8, crf=20)
        paths.append(str(path))
    bad = tmp_path / "videos" / "bad.mp4"
    bad.write_bytes(b"not a video")
    return [*paths, str(bad), str(tmp_path / "videos" / "gone.mp4")]


def _engine(tmp_path: Path, **options):
    import functools

    from vkit.core.store import open_store
    from vkit.hooks.manager import get_plugin_manager
    from vkit.workflows.scoring.score import ScoreOptions
    from vkit.workflows.scoring.video_engine import engine_score_videos

    tmp_path.mkdir(parents=True, exist_ok=True)
    store = open_store(f"sqlite:///{tmp_path / 'vkit.db'}")
    manager = get_plugin_manager()
    manager.register_components(require="recommendation")
    engine = functools.partial(engine_score_videos, store=store, task="recommendation", plugin="recommendation",
                               manager=manager, options=ScoreOptions(**{"workers": 0, **options}))
    return store, engine


def test_embeddings_go_through_the_engine_resume_by_sha256_and_match_the_in_process_loop(tmp_path, videos):
    from vkit.core.scoring import score_in_process

    store, engine = _engine(tmp_path)
    scorer = item_embedder(dict(type="ClipStats"), num_frames=8, size=(16, 16))
    first = engine(scorer, videos)
    assert [o["status"] for o in first] == ["scored"] * 3 + ["failed"] * 2
    assert all(o["segments"].shape == (1, 16) for o in first[:3])
    assert "bad.mp4" in first[3]["error"] and "No such file" in first[4]["error"]
    # the vectors are segment rows of a scoring run of this scorer (score NULL, values the vector), scalars untouched
    run = next(r for r in store.list_runs() if r["kind"] == "score")
    assert run["model_sha256"] == scorer.model_sha256 and len(store.video_summaries(run["id"])) == 5
    rows = store.video_scores(run["id"])
    assert len(rows) == 3 and all(r["score"] is None and len(r["values"]) == 16 for r in rows)
    failed = {Path(v["path"]).name: v for v in store.get_videos() if v["status"] == "failed"}
    assert set(failed) == {"bad.mp4", "gone.mp4"}
    # a second run decodes nothing (resume by video sha256 + scorer settings) and returns the same vectors
    again = engine(item_embedder(dict(type="ClipStats"), num_frames=8, size=(16, 16)), videos)
    second = max(r["id"] for r in store.list_runs() if r["kind"] == "score")
    assert second != run["id"] and not store.video_scores(second)
    for a, b in zip(first[:3], again[:3]):
        assert b["status"] == "scored" and np.array_equal(a["segments"], b["segments"])
    # another backbone setting is another model: embedded afresh
    other = engine(item_embedder(dict(type="ClipStats"), num_frames=4, size=(16, 16)), videos[:1])
    assert other[0]["status"] == "scored" and not np.array_equal(other[0]["segments"], first[0]["segments"])
    # the default seam (no engine installed) computes the same vectors in this process
    here = score_in_process(scorer, videos)
    assert [o["status"] for o in here] == [o["status"] for o in first]
    np.testing.assert_allclose(here[1]["segments"], first[1]["segments"], rtol=1e-5, atol=1e-6)


def test_an_item_video_copied_under_another_name_gets_the_vectors_of_its_content(tmp_path, videos):
    import shutil

    store, engine = _engine(tmp_path)
    copy = str(Path(videos[0]).with_name("v0 copy.mp4"))
    shutil.copy(videos[0], copy)
    out = engine(item_embedder(dict(type="ClipStats"), num_frames=8, size=(16, 16)), [videos[0], copy])
    assert [o["status"] for o in out] == ["scored", "scored"]               # the copy: a duplicate, not decoded
    np.testing.assert_array_equal(out[0]["segments"], out[1]["segments"])
    run = max(r["id"] for r in store.list_runs() if r["kind"] == "score")
    assert sorted(s["status"] for s in store.video_summaries(run)) == ["duplicate", "scored"]
    assert len(store.video_scores(run)) == 1


def test_embed_items_masks_items_without_a_usable_video(tmp_path, videos):
    from vkit.core.task import RunContext

    ctx = RunContext(store=None, run_id=0, work_dir=tmp_path / "w", data_root=tmp_path / "d")
    scorer = item_embedder(dict(type="ClipStats"), num_frames=8, size=(16, 16))
    features, mask, shas, failures = embed_items([videos[0], None, videos[3], videos[4], videos[1]], scorer,
                                                 ctx.score_videos)
    assert features.shape == (5, 16) and mask.tolist() == [True, False, False, False, True]
    assert not features[~mask].any() and shas[0] and shas[1] is None
    reasons = {f["index"]: f["reason"] for f in failures}
    assert reasons[1] == "no video for this item" and "bad.mp4" in reasons[2] and reasons[3].startswith("missing video")


def test_an_embedding_scorer_must_return_one_vector_per_clip():
    import torch

    from vkit.registry.errors import ConfigError
    from vkit.workflows.scoring.engine import _segment_values

    from vkit.core.embedding import FrozenEmbedder
    from vkit.core.sampling import FrameSampler

    class Flat(FrozenEmbedder):
        def score(self, clips):
            return torch.zeros(len(clips))

    flat = Flat(dict(type="ClipStats"), FrameSampler("dense", 1, 2), (8, 8))
    with pytest.raises(ConfigError, match=r"expected \(2, D\)"):
        _segment_values(flat.score(torch.zeros(2, 3, 2, 8, 8)), 2, flat)


@pytest.mark.slow
def test_ray_engine_embeds_like_the_local_one(tmp_path, videos):
    pytest.importorskip("ray.data")
    _, local = _engine(tmp_path / "a")
    _, ray = _engine(tmp_path / "b", engine="ray", workers=1)
    scorer = item_embedder(dict(type="ClipStats"), num_frames=8, size=(16, 16))
    here, there = local(scorer, videos), ray(scorer, videos)
    assert [o["status"] for o in there] == [o["status"] for o in here]
    np.testing.assert_allclose(there[0]["segments"], here[0]["segments"], rtol=1e-5, atol=1e-6)
