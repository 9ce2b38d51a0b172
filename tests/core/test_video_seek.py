"""Seek-based sampling returns exactly the frames sequential decoding gives, on H.264 and MPEG-4 with B-frames."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

import vkit.core.video as video
from vkit.core.sampling import sample_segments, segment_indices
from vkit.core.video import read_clip

FRAMES, H, W = 150, 64, 96


def _content(t: int) -> np.ndarray:
    """Frame t: textured noise that moves and brightens with t (each frame unique, B-frames worth coding)."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 200, size=(H // 8, W // 8, 3), dtype=np.uint8)
    frame = np.kron(np.roll(base, t, axis=1), np.ones((8, 8, 1), np.uint8))
    return np.clip(frame.astype(np.int16) + t % 50, 0, 255).astype(np.uint8)


def _write(path: Path, codec: str) -> Path:
    """``FRAMES`` frames at 25 fps, a keyframe every 24 frames and B-frames, written with PyAV."""
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream(codec, rate=Fraction(25))
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.codec_context.gop_size = 24
        if codec == "libx264":
            stream.options = {"bframes": "3", "crf": "20", "sc_threshold": "0"}
        else:
            stream.codec_context.max_b_frames = 2
            stream.options = {"qscale": "4"}
        for t in range(FRAMES):
            for packet in stream.encode(av.VideoFrame.from_ndarray(_content(t), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _has_b_frames(path: Path) -> bool:
    """Decode order differs from display order somewhere (a packet shown before one decoded earlier)."""
    with av.open(str(path)) as container:
        pts = [p.pts for p in container.demux(container.streams.video[0]) if p.size]
    return any(b < a for a, b in zip(pts, pts[1:]))


CODECS = [c for c in ("libx264", "mpeg4") if c in av.codecs_available]


@pytest.fixture(scope="module", params=CODECS)
def bframe_video(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = _write(tmp_path_factory.mktemp("seek") / f"{request.param}.mp4", request.param)
    assert _has_b_frames(path), f"{request.param}: the encoder wrote no B-frames"
    return path


def test_seek_sampling_equals_sequential_decoding(bframe_video: Path) -> None:
    grid = segment_indices(FRAMES, 6, 4).reshape(-1)                 # stretches spread over several GOPs
    picks = np.concatenate([grid, [0, 23, 24, 25, 47, 48, 149, 100, 3]])  # GOP edges, the last frame, any order
    sequential = read_clip(bframe_video, picks, seek=False)
    assert video._decode_seeking(bframe_video, picks.tolist(), None) is not None   # no silent fall-back
    seeking = read_clip(bframe_video, picks)
    assert seeking.shape == (len(picks), H, W, 3)
    np.testing.assert_array_equal(seeking, sequential)
    resized = read_clip(bframe_video, picks, size=(32, 48))
    np.testing.assert_array_equal(resized, read_clip(bframe_video, picks, size=(32, 48), seek=False))
    np.testing.assert_array_equal(sample_segments(bframe_video, 5, 3, (32, 32)),
                                  sample_segments(bframe_video, 5, 3, (32, 32), seek=False))


def test_seeking_decodes_only_the_sampled_stretches(bframe_video: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    decoded = []
    real = video._to_array

    def counting(frame: av.VideoFrame, size: tuple[int, int] | None) -> np.ndarray:
        decoded.append(frame.pts)
        return real(frame, size)

    monkeypatch.setattr(video, "_to_array", counting)
    seeks = []
    original_seek = av.container.InputContainer.seek

    def spy(self: av.container.InputContainer, *args: object, **kwargs: object) -> None:
        seeks.append(args[0])
        return original_seek(self, *args, **kwargs)

    monkeypatch.setattr(av.container.InputContainer, "seek", spy)
    read_clip(bframe_video, [1, 2, 130, 131])                        # two stretches, five GOPs apart
    assert len(decoded) == 4                                         # only the wanted frames are converted
    assert len(seeks) == 2                                           # the first GOP, then straight to the 6th


def test_files_without_timestamps_fall_back_to_sequential(bframe_video: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(video, "_frame_index", lambda container, stream: None)
    np.testing.assert_array_equal(read_clip(bframe_video, [5, 140]), read_clip(bframe_video, [5, 140], seek=False))
