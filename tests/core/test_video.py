"""Tests of vkit.core.video: write, probe, streaming sampling, and a DataError for every bad file."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vkit.core.sampling import sample_segments, segment_indices
from vkit.core.video import (
    VideoInfo,
    iter_frames,
    probe,
    read_clip,
    write_video,
)
from vkit.registry.errors import DataError

T, H, W, FPS = 16, 48, 64, 8


def _frames(t: int = T) -> np.ndarray:
    """Frame i is uniformly grey at brightness 15*i; its left half carries a red square marker."""
    frames = np.zeros((t, H, W, 3), np.uint8)
    for i in range(t):
        frames[i] = 15 * i
    frames[:, 8:24, 8:24] = (255, 0, 0)
    return frames


def _brightness(clip: np.ndarray) -> np.ndarray:
    """Mean brightness of each frame's right half (away from the marker)."""
    return clip[..., :, clip.shape[-2] // 2:, :].astype(np.float64).mean(axis=(-3, -2, -1))


@pytest.fixture(scope="module")
def mp4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_video(tmp_path_factory.mktemp("video") / "clip.mp4", _frames(), fps=FPS)


def test_write_and_probe(mp4: Path) -> None:
    info = probe(mp4)
    assert isinstance(info, VideoInfo)
    assert (info.frames, info.fps, info.width, info.height) == (T, FPS, W, H)
    assert info.duration == pytest.approx(T / FPS, abs=0.15)
    assert info.codec in ("h264", "mpeg4") and info.size == mp4.stat().st_size > 0
    assert info.path == str(mp4)
    assert mp4.read_bytes()[4:8] == b"ftyp"


def test_write_mpeg4_and_generator(tmp_path: Path) -> None:
    path = write_video(tmp_path / "g.mp4", (f for f in _frames(6)), fps=5, codec="mpeg4")
    info = probe(path)
    assert (info.codec, info.frames, info.fps) == ("mpeg4", 6, 5.0)
    assert np.allclose(_brightness(read_clip(path, range(6))), 15 * np.arange(6), atol=3)


def test_read_clip_content_any_order(mp4: Path) -> None:
    clip = read_clip(mp4, [15, 0, 7, 7])
    assert clip.shape == (4, H, W, 3) and clip.dtype == np.uint8
    assert np.allclose(_brightness(clip), [225, 0, 105, 105], atol=3)
    marker = clip[:, 12:20, 12:20].astype(int).mean(axis=(1, 2))
    assert (marker[:, 0] > 200).all() and (marker[:, 1:] < 60).all()  # red survives encoding


def test_read_clip_tolerates_short_container_count(mp4: Path) -> None:
    # containers may count a frame or two more than decode: the tail repeats the last real frame
    clip = read_clip(mp4, [16, 2, 17], frames=T + 2)
    assert np.allclose(_brightness(clip), [225, 30, 225], atol=3)
    with pytest.raises(DataError, match=r"truncated: frames \[16\] requested, only 16 of 20 frames decode"):
        read_clip(mp4, [16], frames=T + 4)


def test_iter_frames_step_and_resize(mp4: Path) -> None:
    frames = list(iter_frames(mp4, size=(24, 32), step=4))
    assert len(frames) == 4 and all(f.shape == (24, 32, 3) for f in frames)
    assert np.allclose(_brightness(np.stack(frames)), [0, 60, 120, 180], atol=4)


def test_segment_indices() -> None:
    assert segment_indices(16, 4, 2).tolist() == [[1, 3], [5, 7], [9, 11], [13, 15]]
    assert segment_indices(16, 2, 2).tolist() == [[2, 6], [10, 14]]
    assert segment_indices(3, 2, 3).tolist() == [[0, 0, 1], [1, 2, 2]]  # short video: repeats
    with pytest.raises(DataError, match=r"got 0, 2, 3"):
        segment_indices(0, 2, 3)


@pytest.mark.parametrize(("segments", "per", "size"), [(4, 2, (24, 32)), (2, 3, (16, 16)), (32, 1, None)])
def test_sample_segments_shapes_and_content(mp4: Path, segments: int, per: int, size: tuple | None) -> None:
    out = sample_segments(mp4, num_segments=segments, frames_per_segment=per, size=size)
    h, w = size or (H, W)
    assert out.shape == (segments, per, h, w, 3) and out.dtype == np.uint8
    expected = 15 * segment_indices(T, segments, per)
    assert np.allclose(_brightness(out), expected, atol=4)


def test_sample_segments_reuses_info(mp4: Path) -> None:
    info = probe(mp4)
    out = sample_segments(mp4, 2, 2, (16, 16), info=info)
    assert np.allclose(_brightness(out), [[30, 90], [150, 210]], atol=4)


# --- bad inputs: each a DataError naming the file and the reason ------------------------------


def _bad(path: Path, reason: str) -> None:
    for call in (lambda: probe(path), lambda: sample_segments(path, 2, 2, (16, 16)), lambda: read_clip(path, [0, 1])):
        with pytest.raises(DataError, match=reason) as info:
            call()
        assert str(path) in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    _bad(tmp_path / "nope.mp4", r"missing \(no such file\)")


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "empty.mp4").write_bytes(b"")
    _bad(tmp_path / "empty.mp4", r"empty file \(0 bytes\)")


def test_text_file_renamed(tmp_path: Path) -> None:
    (tmp_path / "notes.mp4").write_text("these are my notes, not a video\n" * 20)
    _bad(tmp_path / "notes.mp4", r"not a video file")


def test_truncated_head_only(mp4: Path, tmp_path: Path) -> None:
    cut = tmp_path / "head.mp4"
    cut.write_bytes(mp4.read_bytes()[:200])  # ftyp + part of the index
    _bad(cut, r"truncated or corrupt MP4/MOV file")


def test_truncated_half(mp4: Path, tmp_path: Path) -> None:
    data = mp4.read_bytes()
    cut = tmp_path / "half.mp4"
    cut.write_bytes(data[: len(data) // 2])
    assert probe(cut).frames == T  # the index (faststart) survives, the frames do not
    for call in (lambda: sample_segments(cut, 4, 2, (16, 16)), lambda: read_clip(cut, [15])):
        with pytest.raises(DataError, match=r"truncated") as info:
            call()
        assert str(cut) in str(info.value)


def test_no_video_stream(tmp_path: Path) -> None:
    import av

    path = tmp_path / "audio.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 8000
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)
    _bad(path, r"no video stream \(streams: audio\)")


def test_directory_and_bad_arguments(mp4: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"not a regular file"):
        probe(tmp_path)
    with pytest.raises(DataError, match=r"expected frame indices >= 0, got -1"):
        read_clip(mp4, [-1])
    with pytest.raises(DataError, match=r"frame indices \[40\] out of range: the video has 16 frames"):
        read_clip(mp4, [3, 40])
    with pytest.raises(DataError, match=r"size: expected \(height, width\) of positive ints, got \(0, 4\)"):
        read_clip(mp4, [0], size=(0, 4))
    with pytest.raises(DataError, match=r"step: expected an int >= 1, got 0"):
        list(iter_frames(mp4, step=0))


def test_write_video_validates(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"odd\.mp4: frames are 5x4; yuv420p video needs even width and height"):
        write_video(tmp_path / "odd.mp4", np.zeros((2, 4, 5, 3), np.uint8), fps=4)
    assert not (tmp_path / "odd.mp4").exists()
    with pytest.raises(DataError, match=r"frame 0: expected uint8 \(H, W, 3\) RGB, got float32"):
        write_video(tmp_path / "f.mp4", np.zeros((2, 4, 4, 3), np.float32), fps=4)
    with pytest.raises(DataError, match=r"fps: expected a positive number, got 0"):
        write_video(tmp_path / "z.mp4", np.zeros((2, 4, 4, 3), np.uint8), fps=0)
    with pytest.raises(DataError, match=r"no frames to write"):
        write_video(tmp_path / "none.mp4", [], fps=4)
    with pytest.raises(DataError, match=r"frame 1 is 6x4, expected 4x4"):
        write_video(tmp_path / "mixed.mp4", [np.zeros((4, 4, 3), np.uint8), np.zeros((4, 6, 3), np.uint8)], fps=4)
