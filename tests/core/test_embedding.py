"""FrozenEmbedder: seeded without touching the global RNG, cached by content sha256 + identity, a VideoScorer of vectors."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from vkit.core.embedding import FrozenEmbedder
from vkit.core.sampling import FrameSampler
from vkit.core.scoring import VideoScorer, score_videos
from vkit.registry.errors import ConfigError, DataError

TINY = dict(type="TinyC3D", widths=(4, 8), num_frames=4, input_size=(16, 16))


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from vkit.core.video import write_video

    frames = np.zeros((12, 16, 16, 3), np.uint8)
    for t in range(12):
        frames[t, 4:10, t:t + 4] = 255
    return write_video(tmp_path_factory.mktemp("embed") / "v.mp4", frames, fps=4)


def test_the_global_rng_state_is_unchanged_and_weights_follow_the_seed(video: Path) -> None:
    from vkit.core.backbones import prepare_for_inference
    from vkit.registry.registries import BACKBONES

    torch.manual_seed(1234)
    before = torch.random.get_rng_state()
    embedder = FrozenEmbedder(TINY, FrameSampler("dense", 2, 4), (16, 16), seed=7)
    feats, _ = embedder(video)
    assert torch.equal(torch.random.get_rng_state(), before)  # building and embedding drew nothing from it
    torch.manual_seed(7)  # the weights are those a build right after manual_seed(seed) gives (caches stay valid)
    reference = prepare_for_inference(BACKBONES.build(dict(TINY)))
    clips = torch.as_tensor(embedder.decode(str(video)))
    assert torch.equal(reference.infer(reference.normalize(clips), temporal=False), torch.as_tensor(feats))
    again, _ = FrozenEmbedder(TINY, FrameSampler("dense", 2, 4), (16, 16), seed=7)(video)
    other, _ = FrozenEmbedder(TINY, FrameSampler("dense", 2, 4), (16, 16), seed=8)(video)
    assert feats.shape == (2, 8) and np.array_equal(feats, again) and not np.allclose(feats, other)


def test_disk_cache_by_content_sha256_and_identity(video: Path, tmp_path: Path) -> None:
    embedder = FrozenEmbedder(TINY, FrameSampler("dense", 4, 3), (16, 16), cache_dir=tmp_path)
    feats, info = embedder(video, sha256="abc")
    assert info == dict(frames=12, fps=4.0, duration=3.0) and (embedder.cache_dir / "abc.safetensors").is_file()
    assert embedder.cache_dir.name == f"TinyC3D-{embedder.model_sha256[:16]}"
    assert np.array_equal(embedder(tmp_path / "gone.mp4", sha256="abc")[0], feats)  # the cache answers without the video
    identities = {FrozenEmbedder(TINY, sampler, (16, 16), cache_dir=tmp_path).cache_dir
                  for sampler in (FrameSampler("dense", 4, 3), FrameSampler("dense", 4, 2), FrameSampler("uniform", 4, 3))}
    assert len(identities) == 3
    (embedder.cache_dir / "bad.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(DataError, match="bad.safetensors' is unreadable .*delete it to recompute"):
        embedder(video, sha256="bad")
    rebuilt = FrozenEmbedder.from_settings(embedder.settings, cache_dir=tmp_path)
    assert rebuilt.model_sha256 == embedder.model_sha256 and rebuilt.cache_dir == embedder.cache_dir


def test_a_video_scorer_of_vectors(video: Path) -> None:
    embedder = FrozenEmbedder(TINY, FrameSampler("dense", 4, 3), (16, 16))
    assert isinstance(embedder, VideoScorer) and embedder.embedding and embedder.num_segments == 4
    scored, failed = score_videos(embedder, [str(video)])
    assert not failed and scored[0]["segments"].shape == (4, 8) and scored[0]["events"] == []
    assert np.allclose(scored[0]["segments"], embedder(video)[0], atol=1e-5)
    with pytest.raises(ConfigError, match="expected a BACKBONES config dict with 'type'"):
        FrozenEmbedder(dict(name="x"), FrameSampler(), (16, 16))
