"""The ``VideoScorer`` contract between a task and ``vkit score`` (batch scoring of archives).

A task that scores videos implements ``Task.build_scorer(checkpoint, device)``
and returns an object with this shape; the scoring engine (local worker
processes or Ray actors) does the rest: inventory, resume, batching, store
writes, progress.

Example (a task's side)::

    class MyScorer:
        num_segments = 32

        def __init__(self, checkpoint, device="cpu"):
            self.model, meta = ...                  # load safetensors + JSON meta
            self.model_sha256 = meta["sha256"]

        def decode(self, path):                     # worker process: file → clips
            return sample_segments(path, self.num_segments, frames_per_segment=8, size=(112, 112))

        def score(self, clips):                     # model process: (B, C, T, H, W) → (B,)
            return self.model(clips).sigmoid().flatten()

        def summarize(self, segment_scores, info):  # per video: events in seconds
            return dict(events=find_events(segment_scores, info))
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import torch

    from vkit.core.video import VideoInfo


@runtime_checkable
class VideoScorer(Protocol):
    """What a task hands ``vkit score``: decode in workers, score in batches, summarise per video.

    Attributes:
        model_sha256: identifies the model; a video already scored by the same
            model is skipped when a job is re-run.
        num_segments: segments per video (one score each).

    Optional attributes the engine reads when present:
        min_frames: shorter videos fail as "too short" (default ``num_segments``).
        memory_format: ``"channels_last_3d"`` (default) or ``"contiguous"``, the
            layout of the batch buffer handed to :meth:`score`.
    """

    model_sha256: str
    num_segments: int

    def decode(self, path: str) -> np.ndarray:
        """Clips of one video, ``(num_segments, C, T, H, W)`` float32; raise ``DataError`` on a bad file."""

    def score(self, clips: torch.Tensor) -> torch.Tensor:
        """Scores ``(B,)`` in [0, 1] for a batch of clips ``(B, C, T, H, W)`` from any videos."""

    def summarize(self, segment_scores: np.ndarray, info: VideoInfo) -> dict[str, Any]:
        """Per-video results: at least ``events``, a list of ``{"kind", "start", "end", "score"}`` in seconds."""
