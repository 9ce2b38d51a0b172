"""Segment features of ``security-anomaly``: a frozen registered backbone over dense clips, cached on disk.

Each video is cut into ``num_segments`` equal segments (Sultani et al. use 32);
from each, ``frames_per_segment`` consecutive frames around its centre form one
clip (``FrameSampler("dense")``: motion features difference neighbouring
frames), resized to ``size``. The frozen backbone turns the clips into
``(num_segments, D)`` features; :class:`~vkit.core.embedding.FrozenEmbedder`
caches them by video sha256 and the embedder's identity (backbone config,
sampler, size, seed).

Example::

    embedder = feature_embedder(dict(type="MotionStats"), frames_per_segment=6, cache_dir=Path("/tmp/feats"))
    feats, info = embedder("video.mp4")      # (32, 51) float32, {"frames": 60, "fps": 10.0, "duration": 6.0}
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from vkit.core.embedding import FrozenEmbedder
from vkit.core.sampling import FrameSampler

KIND = "security-anomaly-features"


def feature_embedder(backbone: Mapping[str, Any], num_segments: int = 32, frames_per_segment: int = 6,
                     size: Sequence[int] = (64, 64), *, cache_dir: str | Path | None = None, seed: int = 0,
                     batch_size: int = 64) -> FrozenEmbedder:
    """The task's embedder: ``backbone`` over ``num_segments`` dense clips of ``frames_per_segment`` frames."""
    return FrozenEmbedder(backbone, FrameSampler("dense", int(num_segments), int(frames_per_segment)), size,
                          seed=seed, kind=KIND, batch_size=batch_size, cache_dir=cache_dir)


def feature_extractor(settings: Mapping[str, Any], cache_dir: str | Path | None = None,
                      batch_size: int = 64) -> FrozenEmbedder:
    """The embedder a checkpoint's sidecar describes (its ``features``; a sidecar written before
    :class:`FrozenEmbedder` names ``num_segments`` and ``frames_per_segment`` instead of a sampler)."""
    if "sampler" in settings:
        return FrozenEmbedder.from_settings(settings, cache_dir=cache_dir, batch_size=batch_size)
    return feature_embedder(dict(settings["backbone"]), int(settings["num_segments"]), int(settings["frames_per_segment"]),
                            tuple(settings["size"]), cache_dir=cache_dir, seed=int(settings.get("seed", 0)),
                            batch_size=batch_size)
