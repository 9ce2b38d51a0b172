"""FrameSampler: the one frame-sampling rule, checked against mmaction2's SampleFrames (test mode) where they agree."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from mmaction.datasets.transforms import SampleFrames

from vkit.core.sampling import FrameSampler
from vkit.registry.errors import ConfigError, DataError

LENGTHS = [1, 2, 3, 5, 7, 8, 16, 31, 60, 97, 128, 250, 301, 1000, 7919]
SHAPES = [(1, 1), (1, 4), (1, 16), (2, 2), (3, 3), (4, 2), (7, 6), (24, 16), (32, 1), (32, 6)]


def _mmaction(frames: int, clip_len: int, num_clips: int, interval: int = 1) -> np.ndarray:
    sampler = SampleFrames(clip_len=clip_len, frame_interval=interval, num_clips=num_clips, test_mode=True,
                           out_of_bound_opt="repeat_last")
    return sampler.transform(dict(total_frames=frames, start_index=0))["frame_inds"].reshape(num_clips, clip_len)


@pytest.mark.parametrize("segments, per", SHAPES)
def test_uniform_is_mmaction_tsn_test_sampling(segments: int, per: int) -> None:
    """uniform == SampleFrames(clip_len=1, num_clips=S*T, test_mode=True) frame for frame, short videos included."""
    sampler = FrameSampler("uniform", segments, per)
    for frames in LENGTHS:
        expected = _mmaction(frames, 1, segments * per).reshape(segments, per)
        np.testing.assert_array_equal(sampler.indices(frames), expected, err_msg=f"{frames} frames")


@pytest.mark.parametrize("per, interval", [(2, 1), (4, 1), (6, 1), (16, 1), (4, 2), (8, 4)])
def test_one_dense_clip_is_mmaction_3d_test_sampling(per: int, interval: int) -> None:
    """dense, one segment == SampleFrames(clip_len=T, frame_interval=i, num_clips=1, test_mode=True, repeat_last)
    (clip_len=1 takes mmaction2's 2D path, which is our uniform)."""
    sampler = FrameSampler("dense", 1, per, frame_interval=interval)
    for frames in LENGTHS:
        np.testing.assert_array_equal(sampler.indices(frames), _mmaction(frames, per, 1, interval),
                                      err_msg=f"{frames} frames")


@pytest.mark.parametrize("segments, per", [(2, 4), (4, 3), (8, 2), (32, 6)])
def test_dense_clips_tiling_the_video_agree_with_mmaction(segments: int, per: int) -> None:
    """Several dense clips agree with mmaction2's where the clips tile the video; otherwise each stays in its segment."""
    frames = segments * per
    np.testing.assert_array_equal(FrameSampler("dense", segments, per).indices(frames),
                                  _mmaction(frames, per, segments))
    long = FrameSampler("dense", segments, per).indices(frames * 10)
    bounds = np.arange(segments + 1) * frames * 10 / segments
    assert all(bounds[s] <= long[s, 0] and long[s, -1] < bounds[s + 1] for s in range(segments))
    assert (np.diff(long, axis=1) == 1).all()  # consecutive frames


def test_dense_examples_short_videos_repeat_the_last_frame() -> None:
    sampler = FrameSampler("dense", 32, 4)
    assert sampler.indices(60)[0].tolist() == [0, 1, 2, 3] and sampler.indices(60)[31].tolist() == [56, 57, 58, 59]
    assert FrameSampler("dense", 2, 4).indices(3).tolist() == [[0, 1, 2, 2], [0, 1, 2, 2]]
    assert FrameSampler("dense", 1, 4).indices(10).tolist() == [[3, 4, 5, 6]]
    assert FrameSampler("dense", 1, 3, frame_interval=4).indices(6).tolist() == [[0, 4, 4]]


def test_segments_span_clip_seconds_around_each_centre() -> None:
    """A training-length clip (T frames over clip_seconds) centred in each segment; a clip longer than its segment is uniform."""
    sampler = FrameSampler("segments", 10, 4, clip_seconds=2.0)
    assert sampler.indices(8000, fps=8.0)[0].tolist() == [394, 398, 402, 406]  # 16 frames around 400, every 4th
    grid = FrameSampler("segments", 24, 16, clip_seconds=2.0).indices(384, fps=8.0)
    assert grid[0].tolist() == list(range(16)) and grid[-1].tolist() == list(range(368, 384))
    np.testing.assert_array_equal(FrameSampler("segments", 5, 3, clip_seconds=60.0).indices(97, fps=8.0),
                                  FrameSampler("uniform", 5, 3).indices(97))


def test_bad_settings_and_videos_are_one_line_errors() -> None:
    with pytest.raises(ConfigError, match=r"mode='sparse'; expected one of \('uniform', 'segments', 'dense'\)"):
        FrameSampler("sparse")
    with pytest.raises(ConfigError, match="num_segments=0; expected an int >= 1"):
        FrameSampler("uniform", 0, 4)
    with pytest.raises(ConfigError, match="clip_seconds is given with mode 'segments' and only then"):
        FrameSampler("segments", 4, 4)
    with pytest.raises(ConfigError, match="only mode 'dense' steps over frames"):
        FrameSampler("uniform", 4, 4, frame_interval=2)
    with pytest.raises(DataError, match="got 0, 2, 3"):
        FrameSampler("uniform", 2, 3).indices(0)
    with pytest.raises(DataError, match="needs the video's fps, got None"):
        FrameSampler("segments", 2, 3, clip_seconds=1.0).indices(100)
    assert FrameSampler(**FrameSampler("dense", 3, 2).settings) == FrameSampler("dense", 3, 2)


def test_read_decodes_the_sampled_frames(tmp_path: Path) -> None:
    from vkit.core.video import write_video

    frames = np.stack([np.full((16, 16, 3), 12 * t, np.uint8) for t in range(20)])  # frame t has brightness 12 t
    video = write_video(tmp_path / "ramp.mp4", frames, fps=10)
    for sampler in (FrameSampler("uniform", 4, 2), FrameSampler("dense", 3, 3), FrameSampler("segments", 2, 2, clip_seconds=1.0)):
        clips = sampler.read(video, (16, 16))
        assert clips.shape == (sampler.num_segments, sampler.frames_per_segment, 16, 16, 3) and clips.dtype == np.uint8
        np.testing.assert_allclose(clips.mean((2, 3, 4)), 12 * sampler.indices(20, fps=10.0), atol=4)
