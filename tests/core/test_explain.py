"""Explanations (vkit.core.explain): maps are highest where the label lives, on tiny models trained here.

- Grad-CAM (monai.visualize.GradCAM) and occlusion (OcclusionSensitivity) of a tiny MONAI ResNet trained to
  tell a bright cube from noise: the peak falls inside the planted cube and the map's mass inside it is at
  least twice the cube's share of the volume.
- Temporal saliency of a tiny clip model trained to spot a two-frame flash: the flash's segment drops most.
- Temporal saliency of a SegmentScorer on a real MP4 whose square moves in one segment only.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from vkit.core.explain import clip_saliency, grad_cam, mass_share, model_inputs, occlusion, scorer_saliency, segment_bounds
from vkit.registry.errors import ConfigError

SIDE, CUBE = 16, 6
FRAMES, FLASH = 16, 2


@pytest.fixture(scope="module", autouse=True)
def _components(one_torch_thread):
    from vkit.hooks.manager import get_plugin_manager

    get_plugin_manager().register_components()


def _volumes(n: int, rng: np.random.Generator):
    """Noise volumes; odd ones hold a bright cube at a random place (label 1)."""
    x = rng.normal(0, 1, (n, 1, SIDE, SIDE, SIDE)).astype(np.float32)
    masks = np.zeros((n, SIDE, SIDE, SIDE), bool)
    for i in range(1, n, 2):
        c = rng.integers(0, SIDE - CUBE, 3)
        region = (slice(c[0], c[0] + CUBE), slice(c[1], c[1] + CUBE), slice(c[2], c[2] + CUBE))
        x[(i, 0, *region)] += 2.0
        masks[(i, *region)] = True
    return torch.from_numpy(x), torch.arange(n) % 2, masks


def _train(model: torch.nn.Module, batches, steps: int) -> torch.nn.Module:
    torch.manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), 3e-3)
    for _ in range(steps):
        x, y, modality = batches()
        loss = torch.nn.functional.cross_entropy(model({modality: x}, mode="tensor"), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


@pytest.fixture(scope="module")
def volume_model():
    """A tiny MONAI ResNet-10 (8-64 channels, no first-stage striding) that learnt 'a bright cube is there'."""
    from vkit.core.model import build_model

    torch.manual_seed(0)
    model = build_model(dict(backbones=dict(volume=dict(
        type="MonaiResNet", depth=10, widen_factor=0.125, num_frames=SIDE, input_size=SIDE, conv1_t_stride=1,
        no_max_pool=True)), head=dict(type="ClsHead", num_classes=2)))
    rng = np.random.default_rng(0)
    return _train(model, lambda: (*_volumes(8, rng)[:2], "volume"), steps=30)


def _cases():
    x, _, masks = _volumes(8, np.random.default_rng(5))
    return [(x[i], masks[i]) for i in range(1, 8, 2)]


def test_grad_cam_peaks_inside_the_planted_cube_and_leaves_the_model_untouched(volume_model):
    for volume, mask in _cases():
        found = grad_cam(volume_model, model_inputs(volume_model, {"volume": volume}), target=1)
        peak = found.peak
        assert found.layer == "backbones.volume.net.layer2"  # layer3/4 (4 and 2 voxels a side) are too coarse
        assert found.heat.shape == (SIDE, SIDE, SIDE) and 0 <= found.heat.min() and found.heat.max() == 1.0
        assert mask[peak["frame"], peak["y"], peak["x"]], (peak, np.argwhere(mask).mean(0))
        assert mass_share(found.heat, mask) >= 2 * mask.mean()
        assert abs(sum(found.per_frame) - 1) < 1e-6 and found.target == "1" and found.score > 0.5
    assert not any(m._forward_hooks or m._backward_hooks for m in volume_model.modules())  # MONAI's hooks: on a copy


def test_occlusion_is_highest_where_hiding_the_cube_costs_the_score(volume_model):
    volume, mask = _cases()[0]
    found = occlusion(volume_model, model_inputs(volume_model, {"volume": volume}), target=1, classes=["no", "cube"])
    assert found.target == "cube" and found.notes["mask_size"] == [4, 4, 4]
    assert mask[found.peak["frame"], found.peak["y"], found.peak["x"]]
    assert mass_share(found.heat, mask) >= 2 * mask.mean()


def test_a_named_layer_is_used_and_a_wrong_one_is_named_with_the_choices(volume_model):
    inputs = model_inputs(volume_model, {"volume": _cases()[0][0]})
    assert grad_cam(volume_model, inputs, target_layer="backbones.volume.net.layer1").layer == "backbones.volume.net.layer1"
    with pytest.raises(ConfigError, match=r"'backbones.volume.net.layr2' is not a module.*did you mean 'backbones.volume.net.layer2'"):
        grad_cam(volume_model, inputs, target_layer="backbones.volume.net.layr2")
    with pytest.raises(ConfigError, match=r"class 'tumour'.*classes are \['no', 'cube'\]"):
        grad_cam(volume_model, inputs, target="tumour", classes=["no", "cube"])


def _clips(n: int, rng: np.random.Generator, at: int | None = None):
    """Noise clips (1 channel, 0..255 scale); odd ones flash a bright square for two frames (at ``at`` or random)."""
    x = rng.normal(100, 20, (n, 1, FRAMES, 16, 16)).astype(np.float32)
    for i in range(1, n, 2):
        t = int(rng.integers(0, FRAMES - FLASH + 1)) if at is None else at
        r, c = rng.integers(0, 12, 2)
        x[i, 0, t:t + FLASH, r:r + 4, c:c + 4] = 250.0
    return torch.from_numpy(x), torch.arange(n) % 2


def test_temporal_saliency_of_a_clip_model_peaks_at_the_flash():
    from vkit.core.model import build_model

    torch.manual_seed(0)
    model = build_model(dict(backbones=dict(video=dict(type="TinyC3D", widths=(4, 8), in_channels=1, num_frames=FRAMES,
                                                       input_size=(16, 16), pool="max")),
                             head=dict(type="ClsHead", num_classes=2),
                             data_preprocessor=dict(mean=dict(video=[127.5]), std=dict(video=[127.5]))))
    rng = np.random.default_rng(1)

    def batch():
        x, y = _clips(16, rng)
        return model.data_preprocessor(dict(inputs=dict(video=x), label=y, case_id=list(range(16))))["inputs"]["video"], y, "video"

    _train(model, batch, steps=40)
    clip = _clips(2, np.random.default_rng(9), at=10)[0][1]
    for occlude in ("blur", "drop"):
        found = clip_saliency(model, model_inputs(model, {"video": clip}), segments=8, occlude=occlude, target=1)
        assert found.peak["segment"] == 5 and (found.peak["start"], found.peak["end"]) == (10, 12), found.segments
        others = [s["saliency"] for s in found.segments if s["segment"] != 5]
        assert found.peak["saliency"] > 0.2 and max(others) < found.peak["saliency"] / 2
        assert np.argmax(found.per_frame) in (10, 11) and found.summary()["segments"][5]["end"] == 12


class _Motion:
    """A SegmentScorer scoring motion: the mean absolute frame difference of each segment's clip."""

    def __new__(cls):
        from vkit.core.sampling import FrameSampler
        from vkit.core.scoring import SegmentScorer

        class Motion(SegmentScorer):
            sampler, size, model_sha256 = FrameSampler("uniform", 8, 4), (32, 32), "motion-v1"

            def score(self, clips):
                return (clips[:, :, 1:] - clips[:, :, :-1]).abs().mean((1, 2, 3, 4)) / 255

        return Motion()


def test_temporal_saliency_of_a_segment_scorer_peaks_where_the_video_moves(tmp_path):
    from vkit.core.video import write_video

    rng = np.random.default_rng(0)
    frames = np.repeat(rng.integers(0, 60, (1, 32, 32, 3), dtype=np.uint8), 32, axis=0)
    for t in range(12, 16):  # segment 3 of 8: a square crosses the frame
        frames[t, 10:20, 6 * (t - 12):6 * (t - 12) + 10] = 240
    video = write_video(tmp_path / "cam.mp4", frames, fps=8.0)
    for occlude in ("blur", "drop"):
        found = scorer_saliency(_Motion(), video, occlude=occlude)
        assert found.peak["segment"] == 3 and found.unit == "s", found.segments
        assert found.peak["start"] == pytest.approx(1.5) and found.peak["end"] == pytest.approx(2.0)
        assert found.score == max(s["score"] for s in found.segments)


def test_segment_bounds_follow_the_sampler_rule_and_refuse_nonsense():
    assert segment_bounds(10, 4) == [(0, 2), (2, 5), (5, 7), (7, 10)]
    assert segment_bounds(3, 8) == [(0, 1), (1, 2), (2, 3)]
    with pytest.raises(ConfigError, match="segments >= 1"):
        segment_bounds(10, 0)


@pytest.mark.parametrize("name", ["X3D", "TSM"])
def test_grad_cam_maps_mmaction_clips_3d_and_per_frame_2d(name):
    """X3D gives (1, C, T', H', W') maps; TSM a 2-D ResNet's (T', C, H', W') per frame, unfolded as mmaction2 does."""
    from vkit.core.model import build_model
    from vkit.registry.registries import BACKBONES

    torch.manual_seed(0)
    model = build_model(dict(backbones=dict(video=dict(type=name, **BACKBONES.get(name).smoke_config())),
                             head=dict(type="ClsHead", num_classes=3))).eval()
    net = model.backbones["video"]
    clip = torch.rand(net.in_channels, net.num_frames, *net.input_size) * 255
    found = grad_cam(model, model_inputs(model, {"video": clip}), target=2)
    assert found.heat.shape == (net.num_frames, *net.input_size) and np.isfinite(found.heat).all()
    assert found.layer.startswith("backbones.video.net.") and found.target == "2"
