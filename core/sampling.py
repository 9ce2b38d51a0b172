"""``FrameSampler``: which frames of a video make the clips a model sees — one rule for training, scoring and predicting.

A video of ``N`` frames is cut into ``num_segments`` equal segments (segment
``s`` covers ``[s N / S, (s + 1) N / S)``); each segment gives one clip of
``frames_per_segment`` frames (``T``). Three modes say how a clip is picked:

``uniform``
    the ``S * T`` frames spread evenly over the video, each centred in its share:
    frame ``k`` is ``floor(k a + a / 2)`` with ``a = N / (S T)`` — exactly what
    mmaction2's ``SampleFrames(clip_len=1, num_clips=S * T, test_mode=True)``
    picks (TSN's test sampling). A clip thus spans its whole segment.
``segments``
    like ``uniform``, but each clip spans only ``clip_seconds`` (a training clip's
    duration, so motion plays at the speed the model learnt) around its segment's
    centre, its ``T`` frames evenly spread; a clip longer than its segment is the
    ``uniform`` clip.
``dense``
    ``T`` consecutive frames (every ``frame_interval``-th) centred in each segment,
    shifted inside the video at its ends; a video shorter than a clip repeats
    its last frame. With one segment this is mmaction2's
    ``SampleFrames(clip_len=T, frame_interval=i, num_clips=1, test_mode=True,
    out_of_bound_opt='repeat_last')``; with several, mmaction2 spreads the clips
    from the first frame to the last (PySlowFast's rule) while here each clip
    stays inside the segment whose score it gives — the two agree when the
    clips tile the video (``N = S T``).

Example::

    FrameSampler("uniform", num_segments=2, frames_per_segment=2).indices(16).tolist()   # [[2, 6], [10, 14]]
    FrameSampler("dense", num_segments=1, frames_per_segment=4).indices(10).tolist()     # [[3, 4, 5, 6]]
    FrameSampler("segments", 10, 4, clip_seconds=2.0).indices(8000, fps=8.0)[0].tolist() # [394, 398, 402, 406]
    clips = FrameSampler("dense", 32, 6).read("cam1.mp4", size=(64, 64))                 # (32, 6, 64, 64, 3) uint8
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vkit.registry.errors import ConfigError, DataError

if TYPE_CHECKING:  # pragma: no cover
    from vkit.core.video import VideoInfo

__all__ = ["MODES", "FrameSampler", "sample_segments", "segment_indices"]

#: The sampling modes (see the module docstring).
MODES = ("uniform", "segments", "dense")


@dataclass(frozen=True)
class FrameSampler:
    """Frame indices ``(num_segments, frames_per_segment)`` of a video, and the decoded clips.

    Args:
        mode: ``"uniform"``, ``"segments"`` or ``"dense"`` (module docstring).
        num_segments: equal segments of the video, one clip each (one score each when scoring).
        frames_per_segment: frames per clip (``T``).
        clip_seconds: ``segments`` only: the span of each clip in seconds.
        frame_interval: ``dense`` only: the step between a clip's frames.

    Example::

        FrameSampler("uniform", 4, 2).indices(16).tolist()   # [[1, 3], [5, 7], [9, 11], [13, 15]]
    """

    mode: str = "uniform"
    num_segments: int = 1
    frames_per_segment: int = 8
    clip_seconds: float | None = None
    frame_interval: int = 1

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"FrameSampler: mode={self.mode!r}; expected one of {MODES}")
        for name in ("num_segments", "frames_per_segment", "frame_interval"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ConfigError(f"FrameSampler: {name}={value!r}; expected an int >= 1")
        if (self.mode == "segments") != (self.clip_seconds is not None):
            raise ConfigError(f"FrameSampler: clip_seconds={self.clip_seconds!r} with mode {self.mode!r}; "
                              "clip_seconds is given with mode 'segments' and only then")
        if self.clip_seconds is not None and not float(self.clip_seconds) > 0:
            raise ConfigError(f"FrameSampler: clip_seconds={self.clip_seconds!r}; expected seconds > 0")
        if self.frame_interval != 1 and self.mode != "dense":
            raise ConfigError(f"FrameSampler: frame_interval={self.frame_interval!r} with mode {self.mode!r}; "
                              "only mode 'dense' steps over frames")

    @property
    def settings(self) -> dict[str, Any]:
        """The sampler as plain data (a checkpoint sidecar keeps it; ``FrameSampler(**settings)`` rebuilds it)."""
        return asdict(self)

    def indices(self, frames: int, fps: float | None = None) -> np.ndarray:
        """``int64`` frame indices ``(num_segments, frames_per_segment)`` of a video of ``frames`` frames.

        Args:
            frames: the video's frame count.
            fps: its frame rate (mode ``segments`` only: turns ``clip_seconds`` into frames).

        Raises:
            DataError: no frames, or mode ``segments`` without a positive ``fps``.
        """
        n, s, t = int(frames), int(self.num_segments), int(self.frames_per_segment)
        if n < 1:
            raise DataError(f"frame sampling: expected a video with frames, got {frames}, {s}, {t} "
                            "(frames, num_segments, frames_per_segment)")
        seg = n / s
        if self.mode == "dense":
            return self._dense(n, s, t)
        if self.mode == "segments":
            if fps is None or not fps > 0:
                raise DataError(f"frame sampling: mode 'segments' needs the video's fps, got {fps!r}")
            span = min(seg, max(1.0, float(self.clip_seconds) * float(fps)))  # type: ignore[arg-type]
            if span < seg:
                centres = (np.arange(s) + 0.5) * seg
                offsets = (np.arange(t) + 0.5) * span / t - span / 2
                return np.clip(np.floor(centres[:, None] + offsets[None, :]).astype(np.int64), 0, n - 1)
        share = n / float(s * t)  # mmaction2's SampleFrames(clip_len=1, num_clips=S*T, test_mode=True), to the bit
        points = np.arange(s * t) * share + share / 2.0
        return np.clip(points.astype(np.int64), 0, n - 1).reshape(s, t)

    def _dense(self, n: int, s: int, t: int) -> np.ndarray:
        reach = (t - 1) * self.frame_interval + 1  # frames one clip covers
        centres = (np.arange(s) + 0.5) * n / s
        starts = np.clip(np.floor(centres - reach / 2).astype(np.int64), 0, max(0, n - reach))
        grid = starts[:, None] + np.arange(t)[None, :] * self.frame_interval
        inside = grid < n  # a short video: past its end each clip repeats its last frame inside (mmaction2's repeat_last)
        last = np.max(np.where(inside, grid, 0), axis=1, keepdims=True)
        return np.where(inside, grid, last)

    def read(self, path: str | Path, size: tuple[int, int] | None, *, info: VideoInfo | None = None,
             seek: bool = True) -> np.ndarray:
        """The sampled frames of ``path`` as ``uint8`` RGB ``(num_segments, frames_per_segment, H, W, 3)``.

        Only the stretches holding sampled frames are decoded, resized to
        ``size`` (height, width) while decoding (:func:`vkit.core.video.read_clip`).

        Args:
            path: the video.
            size: ``(height, width)``; ``None`` keeps the original size.
            info: its :func:`~vkit.core.video.probe` result, if known.
            seek: decode from the keyframe before each sampled stretch.
        """
        from vkit.core.video import probe, read_clip

        info = info or probe(path)
        grid = self.indices(info.frames, info.fps)
        clip = read_clip(path, grid.reshape(-1), size, frames=info.frames, seek=seek)
        return clip.reshape(*grid.shape, *clip.shape[1:])


def segment_indices(frames: int, num_segments: int, frames_per_segment: int) -> np.ndarray:
    """``FrameSampler("uniform", num_segments, frames_per_segment).indices(frames)``: equal segments, frames evenly
    spaced and centred in each; a video shorter than ``num_segments * frames_per_segment`` repeats frames.

    Example::

        segment_indices(16, 2, 2).tolist()   # [[2, 6], [10, 14]]
    """
    if frames < 1 or num_segments < 1 or frames_per_segment < 1:
        raise DataError(f"segment_indices: expected positive frames, num_segments and frames_per_segment, "
                        f"got {frames}, {num_segments}, {frames_per_segment}")
    return FrameSampler("uniform", num_segments, frames_per_segment).indices(frames)


def sample_segments(path: str | Path, num_segments: int = 32, frames_per_segment: int = 8,
                    size: tuple[int, int] | None = (112, 112), *, info: VideoInfo | None = None,
                    seek: bool = True) -> np.ndarray:
    """The ``uniform`` frames of ``num_segments`` equal segments, ``frames_per_segment`` each, as ``uint8`` RGB
    ``(num_segments, frames_per_segment, H, W, 3)`` (:meth:`FrameSampler.read`).

    Example::

        sample_segments("cam1.mp4", 32, 8, (112, 112)).shape   # (32, 8, 112, 112, 3)
    """
    return FrameSampler("uniform", num_segments, frames_per_segment).read(path, size, info=info, seek=seek)
