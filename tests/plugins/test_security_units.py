"""security-anomaly: MIL loss, events, annotations, data discovery, MotionStats, feature cache, generator truth."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from vkit.plugins.security.annotations import Annotation, frame_labels, parse_line, read_annotations, write_annotations
from vkit.core.events import events as detect_events
from vkit.core.events import frame_scores, segment_of_frame
from vkit.plugins.security.loss import mil_ranking_loss
from vkit.registry.errors import ConfigError, DataError


# ------------------------------------------------------------------ MIL ranking loss
def test_hinge_is_one_minus_top_anomalous_plus_top_normal():
    parts = mil_ranking_loss(torch.tensor([[0.1, 0.9, 0.3]]), torch.tensor([[0.2, 0.4, 0.0]]), 0.0, 0.0)
    assert parts["loss_hinge"].item() == pytest.approx(1 - 0.9 + 0.4)
    assert parts["loss_sparsity"].item() == 0.0 and parts["loss_smooth"].item() == 0.0


def test_hinge_is_zero_when_margin_is_met_and_averaged_over_pairs():
    anomalous = torch.tensor([[1.0, 0.0], [0.5, 0.2]])
    normal = torch.tensor([[0.0, 0.0], [0.3, 0.1]])
    parts = mil_ranking_loss(anomalous, normal, 0.0, 0.0)
    assert parts["loss_hinge"].item() == pytest.approx((0.0 + (1 - 0.5 + 0.3)) / 2)


def test_sparsity_and_smoothness_terms_on_the_anomalous_bag_only():
    anomalous = torch.tensor([[0.2, 0.6, 0.1]])
    normal = torch.tensor([[0.9, 0.9, 0.9]])  # never enters the regularisers
    parts = mil_ranking_loss(anomalous, normal, lambda_sparsity=2.0, lambda_smooth=3.0)
    assert parts["loss_sparsity"].item() == pytest.approx(2.0 * (0.2 + 0.6 + 0.1))
    assert parts["loss_smooth"].item() == pytest.approx(3.0 * ((0.2 - 0.6) ** 2 + (0.6 - 0.1) ** 2))
    assert parts["loss_hinge"].item() == pytest.approx(1 - 0.6 + 0.9)


def test_combined_loss_with_sultani_defaults():
    anomalous, normal = torch.tensor([[0.0, 1.0, 0.5]]), torch.tensor([[0.25, 0.0, 0.0]])
    total = sum(mil_ranking_loss(anomalous, normal).values()).item()
    expected = (1 - 1.0 + 0.25) + 8e-5 * 1.5 + 8e-5 * (1.0 + 0.25)
    assert total == pytest.approx(expected, rel=1e-6)


def test_loss_rejects_mismatched_batches():
    with pytest.raises(ConfigError, match=r"\(2, 3\) and \(1, 3\)"):
        mil_ranking_loss(torch.zeros(2, 3), torch.zeros(1, 3))


# ------------------------------------------------------------------ events
def test_frame_scores_follow_their_segment():
    assert segment_of_frame(8, 4).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert frame_scores([0.1, 0.9, 0.8, 0.2], 8).tolist() == [0.1, 0.1, 0.9, 0.9, 0.8, 0.8, 0.2, 0.2]


def test_events_threshold_min_duration_and_seconds():
    """security's events are core's one rule (vkit.core.events), with the run's threshold and min_duration."""
    scores = [0.1, 0.9, 0.1, 0.7, 0.8, 0.95, 0.6, 0.2, 0.51, 0.52, 0.53, 0.9]
    events = detect_events(scores, 0.5, step=0.5, min_duration=1.5, kind="anomaly")
    # element 1 alone lasts 0.5 s (dropped); elements 3-6 last 2 s; elements 8-11 run to the end (2 s)
    assert [(e["start"], e["end"], e["first"], e["last"]) for e in events] == [(1.5, 3.5, 3, 6), (4.0, 6.0, 8, 11)]
    assert [e["score"] for e in events] == [0.95, 0.9]
    assert detect_events(scores, 0.5, step=0.5, min_duration=0.5)[0]["start"] == 0.5
    # the one rule counts a score equal to the threshold (as decide() does); security's old rule was strictly above
    assert [(e["start"], e["end"]) for e in detect_events([0.5, 0.5], 0.5)] == [(0.0, 2.0)]


def test_events_reject_bad_step():
    with pytest.raises(ConfigError, match="step .* must be > 0, got 0"):
        detect_events([1.0], 0.5, step=0)


# ------------------------------------------------------------------ annotations and data discovery
def test_annotation_round_trip_and_labels(tmp_path):
    notes = [Annotation("Running001.mp4", "Running", ((3, 5),)), Annotation("Normal_001.mp4", "Normal")]
    path = write_annotations(tmp_path / "Temporal_Anomaly_Annotation.txt", notes)
    assert path.read_text().splitlines() == ["Running001.mp4  Running  3  5  -1  -1", "Normal_001.mp4  Normal  -1  -1  -1  -1"]
    back = read_annotations(path)
    assert back["Running001.mp4"].intervals == ((3, 5),) and back["Normal_001.mp4"].intervals == ()
    assert frame_labels(((3, 5), (8, 20)), 10) == [0, 0, 0, 1, 1, 1, 0, 0, 1, 1]


def test_annotation_parse_errors_name_the_line():
    assert parse_line("Arrest001_x264.mp4  Arrest  4500  5100  6000  6100").intervals == ((4500, 5100), (6000, 6100))
    with pytest.raises(DataError, match=r"ann.txt:3: frame numbers must be integers"):
        parse_line("a.mp4 Cat x 3 -1 -1", "ann.txt:3")
    with pytest.raises(DataError, match=r"bad interval \(9, 2\)"):
        parse_line("a.mp4 Cat 9 2 -1 -1")


def _ucf_tree(root: Path, with_lists: bool) -> None:
    for rel in ("Anomaly-Videos/Arrest/Arrest001.mp4", "Anomaly-Videos/Arrest/Arrest002.mp4",
                "Normal_Videos_event/Normal_001.mp4", "Normal_Videos_event/Normal_002.mp4"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"")
    write_annotations(root / "Temporal_Anomaly_Annotation_for_Testing_Videos.txt",
                      [Annotation("Arrest002.mp4", "Arrest", ((10, 20),)), Annotation("Normal_002.mp4", "Normal")])
    if with_lists:
        (root / "Anomaly_Train.txt").write_text("Arrest/Arrest001.mp4\nNormal_Videos_event/Normal_002.mp4\n")
        (root / "Anomaly_Test.txt").write_text("Arrest/Arrest002.mp4\nNormal_Videos_event/Normal_001.mp4\n")


def test_discovery_without_lists_puts_annotated_videos_in_test(tmp_path):
    from vkit.plugins.security.data import AnomalyVideoDataset

    _ucf_tree(tmp_path, with_lists=False)
    test = AnomalyVideoDataset(tmp_path, "test")
    assert [(r.name, r.label, r.category, r.intervals) for r in test.records] == [
        ("Arrest002.mp4", 1, "Arrest", ((10, 20),)), ("Normal_002.mp4", 0, "Normal", ())]
    assert [r.name for r in AnomalyVideoDataset(tmp_path, "train").records] == ["Arrest001.mp4", "Normal_001.mp4"]


def test_discovery_with_split_lists(tmp_path):
    from vkit.plugins.security.data import AnomalyVideoDataset

    _ucf_tree(tmp_path, with_lists=True)
    assert [r.name for r in AnomalyVideoDataset(tmp_path, "train").records] == ["Arrest001.mp4", "Normal_002.mp4"]
    assert [r.name for r in AnomalyVideoDataset(tmp_path, "test").records] == ["Arrest002.mp4", "Normal_001.mp4"]
    with pytest.raises(ConfigError, match="split='val'"):
        AnomalyVideoDataset(tmp_path, "val")


def test_test_split_needs_intervals_for_anomalous_videos(tmp_path):
    from vkit.plugins.security.data import AnomalyVideoDataset

    _ucf_tree(tmp_path, with_lists=True)
    (tmp_path / "Anomaly_Test.txt").write_text("Arrest/Arrest001.mp4\n")
    with pytest.raises(DataError, match="'Arrest001.mp4' has no frame intervals"):
        AnomalyVideoDataset(tmp_path, "test")


# ------------------------------------------------------------------ MotionStats and the feature cache
def _motion(**kw):
    import vkit.plugins.security.motion  # noqa: F401  (registers MotionStats)
    from vkit.registry.registries import BACKBONES

    return BACKBONES.build(dict(type="MotionStats", **kw))


def test_motion_stats_sees_where_something_moves():
    net = _motion(grids=((4, 1),), trail=2, trail_window=3, window=3)
    clip = torch.full((1, 3, 3, 16, 16), 100.0)
    assert net.feature_dim == 12
    assert net(net.normalize(clip)).abs().sum().item() == 0.0  # a static scene has no motion
    for t in range(3):  # a bright 2x2 square moving right by 3 px per frame in rows 9-10 (band 2 of 4: rows 8-11)
        clip[0, :, t, 9:11, 2 + 3 * t:4 + 3 * t] = 250.0
    feats = net(net.normalize(clip))[0].reshape(3, 4)  # (energy, peak, extent) x bands
    assert (feats[:, 2] > 0).all() and feats[:, [0, 1, 3]].abs().sum().item() == 0.0
    with pytest.raises(ConfigError, match="grids=\\[\\]"):
        _motion(grids=[])


def test_feature_extractor_caches_by_sha256(tmp_path):
    from vkit.core.video import write_video
    from vkit.plugins.security.features import feature_embedder, feature_extractor

    assert feature_embedder(dict(type="MotionStats"), 32, 4).sampler.indices(60)[0].tolist() == [0, 1, 2, 3]
    assert feature_embedder(dict(type="MotionStats"), 32, 4).sampler.indices(60)[31].tolist() == [56, 57, 58, 59]
    assert feature_embedder(dict(type="MotionStats"), 2, 4).sampler.indices(3).tolist() == [[0, 1, 2, 2], [0, 1, 2, 2]]
    frames = np.zeros((12, 32, 32, 3), np.uint8)
    for t in range(12):
        frames[t, 10:16, 2 * t:2 * t + 4] = 255
    video = write_video(tmp_path / "v.mp4", frames, fps=4)
    _motion()
    extractor = feature_embedder(dict(type="MotionStats"), num_segments=4, frames_per_segment=3, size=(32, 32),
                                 cache_dir=tmp_path / "cache")
    feats, info = extractor(video, sha256="abc")
    assert feats.shape == (4, 51) and info == dict(frames=12, fps=4.0, duration=3.0)
    cached = extractor.cache_dir / "abc.safetensors"
    assert cached.is_file() and extractor.cache_dir.name.startswith("MotionStats-")
    video.unlink()  # the cache answers without the video
    again, info2 = extractor(tmp_path / "v.mp4", sha256="abc")
    assert np.array_equal(again, feats) and info2 == info
    other = feature_embedder(dict(type="MotionStats", window=3), num_segments=4, frames_per_segment=3,
                             size=(32, 32), cache_dir=tmp_path / "cache")
    assert other.cache_dir != extractor.cache_dir
    old_sidecar = dict(backbone=dict(type="MotionStats"), num_segments=4, frames_per_segment=3, size=[32, 32], seed=0)
    assert feature_extractor(old_sidecar).settings == feature_extractor(dict(extractor.settings, feature_dim=51)).settings
    with pytest.raises(DataError):
        other(tmp_path / "v.mp4", sha256="abc")


# ------------------------------------------------------------------ the generator's ground truth
def _moving(frames: np.ndarray) -> np.ndarray:
    """(T-1, H, W) masks of pixels that changed by more than codec/sensor noise."""
    f = frames.astype(np.int16)
    return np.abs(f[1:] - f[:-1]).max(-1) > 25


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    from vkit.plugins.security.synthetic import generate

    root = tmp_path_factory.mktemp("sec")
    annotation = generate(root, seed=3, num_normal=2, num_anomalous=3, test_fraction=0.5)
    return root, read_annotations(annotation)


def _decoded(path: Path) -> np.ndarray:
    from vkit.core.video import probe, read_clip

    info = probe(path)
    return read_clip(path, range(info.frames), frames=info.frames)


def _inside(t: int, interval: tuple[int, int], margin: int = 1) -> bool:
    return interval[0] - margin <= t <= interval[1] + margin


def test_generator_writes_ucf_layout_and_annotations(generated):
    root, notes = generated
    assert sorted(notes) == ["Falling001.mp4", "Intrusion002.mp4", "Normal_000.mp4", "Normal_001.mp4", "Running000.mp4"]
    assert (root / "Anomaly-Videos/Running/Running000.mp4").is_file() and (root / "Normal_Videos/Normal_001.mp4").is_file()
    assert notes["Normal_000.mp4"].intervals == () and len(notes["Running000.mp4"].intervals) == 1
    assert (root / "Anomaly_Test.txt").read_text().split() == [
        "Anomaly-Videos/Falling/Falling001.mp4", "Anomaly-Videos/Intrusion/Intrusion002.mp4", "Normal_Videos/Normal_001.mp4"]
    assert (root / "Anomaly_Train.txt").read_text().split() == [
        "Anomaly-Videos/Running/Running000.mp4", "Normal_Videos/Normal_000.mp4"]


def test_intrusion_moves_in_the_restricted_zone_only_during_its_interval(generated):
    from vkit.plugins.security.synthetic import RESTRICTED

    root, notes = generated
    interval = notes["Intrusion002.mp4"].intervals[0]
    zone = _moving(_decoded(root / "Anomaly-Videos/Intrusion/Intrusion002.mp4"))[:, : int(RESTRICTED[1]) + 4]
    active = [t for t in range(len(zone)) if zone[t].sum() > 3]
    assert active and all(_inside(t, interval) for t in active)
    assert sum(_inside(t, interval, 0) for t in active) >= (interval[1] - interval[0]) // 2
    for name in ("Normal_000.mp4", "Normal_001.mp4"):  # nobody ever walks there in normal videos
        assert _moving(_decoded(root / "Normal_Videos" / name))[:, : int(RESTRICTED[1]) + 4].sum() == 0


def test_faller_moves_off_the_walkway_only_during_its_interval(generated):
    from vkit.plugins.security.synthetic import LANES, PERSON

    root, notes = generated
    interval = notes["Falling001.mp4"].intervals[0]
    moving = _moving(_decoded(root / "Anomaly-Videos/Falling/Falling001.mp4"))
    walkway = np.zeros(moving.shape[1], bool)
    for lane in LANES:
        walkway[int(lane - PERSON[1] / 2) - 2: int(lane + PERSON[1] / 2) + 3] = True
    off = moving[:, ~walkway].reshape(len(moving), -1).sum(1)
    active = [t for t in range(len(off)) if off[t] > 3]
    assert active and all(_inside(t, interval) for t in active)
    normal = _moving(_decoded(root / "Normal_Videos/Normal_000.mp4"))
    assert normal[:, ~walkway].sum() == 0


def test_runner_changes_many_more_pixels_per_frame_during_its_interval(generated):
    """A 3x7 walker at <= 1.2 px/frame changes its edge columns only; the runner (4-6 px/frame) its whole body twice."""
    root, notes = generated
    start, end = notes["Running000.mp4"].intervals[0]
    changed = _moving(_decoded(root / "Anomaly-Videos/Running/Running000.mp4")).reshape(59, -1).sum(1)
    inside = changed[start:end].mean()  # pairs (t, t+1) with both frames in the interval
    outside = np.concatenate([changed[: start - 1], changed[end + 1:]]).mean()
    assert inside > outside + 30, (inside, outside)
