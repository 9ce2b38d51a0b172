"""core/ssl: the VICReg loss, tube masking, the objectives' choice, views and the clip cache."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import vkit.core.backbones  # noqa: F401  (registers the backbones)
from vkit.core.ssl.augment import ClipAugment, VolumeAugment
from vkit.core.ssl.mae import TubeMAE, supports_mae, tube_mask
from vkit.core.ssl.objectives import build_objective, resolve_objective
from vkit.core.ssl.train import ClipCache, Pretrainer
from vkit.core.ssl.vicreg import vicreg_loss
from vkit.registry.errors import ConfigError, DataError
from vkit.registry.registries import BACKBONES


def _tiny_vit():
    return BACKBONES.build(dict(type="TimeSformer", num_frames=4, input_size=16, embed_dims=16, num_heads=2,
                                num_transformer_layers=1, patch_size=4))


def test_vicreg_loss_terms():
    torch.manual_seed(0)
    z = torch.randn(32, 8) * 3
    same, parts = vicreg_loss(z, z.clone())
    assert parts["invariance"] == 0.0
    assert parts["variance"] == pytest.approx(0.0, abs=1e-3)  # std ~3 > 1: no hinge
    collapsed, cparts = vicreg_loss(torch.zeros(32, 8), torch.zeros(32, 8))
    assert cparts["variance"] == pytest.approx(1.0, abs=0.02) and collapsed > same
    with pytest.raises(ConfigError, match="at least 2 clips"):
        vicreg_loss(torch.zeros(1, 8), torch.zeros(1, 8))


def test_tube_mask_keeps_the_same_patches_in_every_frame():
    keep = tube_mask(3, 16, 0.75, torch.Generator().manual_seed(0))
    assert keep.shape == (3, 4)
    assert all(len(set(row.tolist())) == 4 for row in keep)
    mae = TubeMAE(_tiny_vit(), mask_ratio=0.75, decoder_dim=16, decoder_heads=2)
    x = torch.randn(2, 3, 4, 16, 16)
    visible = mae.encode_visible(x, tube_mask(2, 16, 0.75))
    assert visible.shape == (2, 4, 4, 16)  # (N, T, kept patches, D)
    loss, parts = mae.loss([x])
    assert torch.isfinite(loss) and parts["visible_tokens"] == 16
    assert mae.targets(x).shape == (2, 4, 16, 3 * 4 * 4)


def test_objective_choice_and_refusals():
    tiny = BACKBONES.build(dict(type="TinyC3D", widths=(4, 8), num_frames=4, input_size=(16, 16)))
    assert resolve_objective("auto", tiny) == "vicreg"
    assert supports_mae(_tiny_vit()) and not supports_mae(tiny)
    with pytest.raises(ConfigError, match="needs a ViT-type backbone"):
        resolve_objective("mae", tiny)
    with pytest.raises(ConfigError, match="did you mean 'vicreg'"):
        resolve_objective("vicrag", tiny)
    with pytest.raises(ConfigError, match="objective 'vicreg'"):
        build_objective("vicreg", tiny, no_such_arg=1)


def test_views_shapes_and_ranges():
    clips = torch.rand(3, 3, 4, 20, 20) * 255
    views = ClipAugment((16, 16))(clips)
    assert views.shape == (3, 3, 4, 16, 16) and float(views.min()) >= 0 and float(views.max()) <= 255
    with pytest.raises(ConfigError, match="flip"):
        ClipAugment((16, 16), flip=2)
    volumes = VolumeAugment((8, 12, 12))(torch.randn(2, 1, 10, 14, 14))
    assert volumes.shape == (2, 1, 8, 12, 12)


def test_clip_cache_roundtrip_and_bad_names(tmp_path):
    cache = ClipCache(tmp_path / "clips")
    sha = "ab" * 32
    cache.put(sha, np.full((2, 3, 4, 8, 8), 7.0, np.float32))
    got = cache.get(sha)
    assert got.dtype == np.uint8 and got.shape == (2, 3, 4, 8, 8) and int(got[0, 0, 0, 0, 0]) == 7
    cache.put("cd" * 32, np.full((1, 1, 4, 8, 8), 0.25, np.float32))
    assert cache.get("cd" * 32).dtype == np.float16
    with pytest.raises(DataError, match="not a sha256"):
        cache.path("../escape")
    with pytest.raises(DataError, match="missing or unreadable"):
        cache.get("ef" * 32)


def test_pretrainer_state_roundtrip(tmp_path):
    def trainer():
        torch.manual_seed(0)
        net = BACKBONES.build(dict(type="TinyC3D", widths=(4, 8), num_frames=4, input_size=(16, 16)))
        return Pretrainer(build_objective("vicreg", net, expander=(16,)), ClipAugment((16, 16)), net, epochs=3,
                          batch_size=2, lr=1e-3, steps_per_epoch=2)

    videos = [np.random.default_rng(i).integers(0, 255, (2, 3, 4, 18, 18), dtype=np.uint8) for i in range(4)]
    first = trainer()
    first.train_epoch(videos)
    first.save_state(tmp_path / "state.safetensors")
    second = trainer()
    second.load_state(tmp_path / "state.safetensors")
    assert second.epoch == 1 and second.scheduler.last_epoch == first.scheduler.last_epoch
    for a, b in zip(first.objective.state_dict().values(), second.objective.state_dict().values()):
        assert torch.equal(a, b)
    after = first.train_epoch(videos)["loss"]
    second.load_state(tmp_path / "state.safetensors")  # the random generators are global: restore them again
    assert second.train_epoch(videos)["loss"] == pytest.approx(after)
    with pytest.raises(DataError, match="at least 2"):
        second.train_epoch(videos[:1])
