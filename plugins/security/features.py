"""Segment features of whole videos from a frozen registered backbone, cached on disk.

Each video is cut into ``num_segments`` equal spans of frames (Sultani et al.
use 32); from each span the ``frames_per_segment`` consecutive frames around
its centre form one clip, resized to ``size``. The backbone (frozen, eval
mode) turns the ``(num_segments, C, T, H, W)`` clips into ``(num_segments, D)``
features.

Cache: ``cache_dir/<Backbone>-<hash>/<video sha256>.safetensors`` where the
hash covers the backbone config, the sampling settings and the seed (random
initialisations differ by seed); each file carries the video's frame count
and fps as metadata, so a cached video is never decoded again.

Example::

    extractor = FeatureExtractor(dict(type="MotionStats"), frames_per_segment=6, cache_dir=Path("/tmp/feats"))
    feats, info = extractor("video.mp4")      # (32, 51) float32, {"frames": 60, "fps": 10.0, "duration": 6.0}
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vkit.registry.errors import ConfigError, DataError


def segment_frame_indices(num_frames: int, num_segments: int, frames_per_segment: int) -> np.ndarray:
    """``(num_segments, frames_per_segment)`` frame indices: consecutive frames centred in each equal span.

    Short videos repeat frames (indices are clamped to the video).

    Example::

        segment_frame_indices(60, 32, 4)[0]   # array([0, 1, 2, 3])
    """
    if num_frames < 1 or num_segments < 1 or frames_per_segment < 1:
        raise DataError(f"segment sampling: need positive counts, got num_frames={num_frames}, "
                        f"num_segments={num_segments}, frames_per_segment={frames_per_segment}")
    centres = (np.arange(num_segments) + 0.5) * num_frames / num_segments
    starts = np.clip(np.floor(centres - frames_per_segment / 2).astype(int), 0, max(0, num_frames - frames_per_segment))
    return np.clip(starts[:, None] + np.arange(frames_per_segment)[None, :], 0, num_frames - 1)


def sample_clips(path: str | Path, num_segments: int, frames_per_segment: int,
                 size: Sequence[int]) -> tuple[np.ndarray, Any]:
    """Clips ``(num_segments, 3, T, H, W)`` float32 in 0..255 of one video and its :class:`~vkit.core.video.VideoInfo`.

    Frames are consecutive within each clip (:func:`segment_frame_indices`),
    not spread over the segment as :func:`vkit.core.video.sample_segments`
    does, because motion features difference neighbouring frames. Decoding
    streams through :func:`vkit.core.video.read_clip` (only sampled frames are
    converted, resized while decoding).
    """
    from vkit.core.video import probe, read_clip

    info = probe(path)
    index = segment_frame_indices(info.frames, num_segments, frames_per_segment)
    frames = read_clip(path, index.reshape(-1), (int(size[0]), int(size[1])), frames=info.frames)
    clips = frames.reshape(num_segments, frames_per_segment, *frames.shape[1:])  # (S, T, H, W, 3)
    return np.ascontiguousarray(clips.transpose(0, 4, 1, 2, 3), dtype=np.float32), info


def _sha256(path: Path) -> str:
    from vkit.core.store.provenance import sha256_file

    return sha256_file(path)[0]


class FeatureExtractor:
    """Frozen backbone features per segment, cached by video sha256 and a hash of these settings.

    Args:
        backbone: a BACKBONES config (``dict(type=...)``).
        num_segments: segments per video (32 in Sultani et al.).
        frames_per_segment: frames per clip (``T``).
        size: clip ``(H, W)``.
        cache_dir: folder of the cache (``None``: no cache).
        seed: seeds the backbone's random initialisation (part of the cache key).
        batch_size: clips per backbone call.
    """

    def __init__(self, backbone: dict, num_segments: int = 32, frames_per_segment: int = 6,
                 size: Sequence[int] = (64, 64), cache_dir: str | Path | None = None, seed: int = 0,
                 batch_size: int = 64) -> None:
        if not isinstance(backbone, dict) or "type" not in backbone:
            raise ConfigError(f"features.backbone: expected a BACKBONES config dict with 'type', got {backbone!r}")
        if int(num_segments) < 1 or int(frames_per_segment) < 1:
            raise ConfigError(f"features: num_segments={num_segments!r}, frames_per_segment={frames_per_segment!r}; "
                              "expected positive ints")
        if len(tuple(size)) != 2 or min(int(s) for s in size) < 1:
            raise ConfigError(f"features.size: expected (H, W) positive ints, got {size!r}")
        self.backbone_cfg = dict(backbone)
        self.num_segments, self.frames_per_segment = int(num_segments), int(frames_per_segment)
        self.size = (int(size[0]), int(size[1]))
        self.seed, self.batch_size = int(seed), max(1, int(batch_size))
        settings = dict(backbone=self.backbone_cfg, num_segments=self.num_segments,
                        frames_per_segment=self.frames_per_segment, size=list(self.size), seed=self.seed)
        self.settings = settings
        self.key = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]
        name = str(self.backbone_cfg["type"]).replace(".", "_").replace("/", "_")
        self.cache_dir = Path(cache_dir) / f"{name}-{self.key}" if cache_dir is not None else None
        self._net: Any = None

    @property
    def net(self) -> Any:
        """The frozen backbone (built on first use)."""
        if self._net is None:
            from vkit.core.backbones import prepare_for_inference
            from vkit.registry.registries import BACKBONES

            torch.manual_seed(self.seed)
            self._net = prepare_for_inference(BACKBONES.build(dict(self.backbone_cfg)))
        return self._net

    @property
    def feature_dim(self) -> int:
        return int(self.net.feature_dim)

    @torch.inference_mode()
    def encode(self, clips: np.ndarray | torch.Tensor) -> np.ndarray:
        """Features ``(N, D)`` float32 of clips ``(N, 3, T, H, W)`` in 0..255."""
        x = torch.as_tensor(clips, dtype=torch.float32)
        out = [self.net.infer(self.net.normalize(x[i:i + self.batch_size])) for i in range(0, len(x), self.batch_size)]
        return torch.cat(out).float().numpy()

    def __call__(self, path: str | Path, sha256: str | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Features ``(num_segments, D)`` of the video at ``path`` and its info (``frames``, ``fps``, ``duration``).

        Raises :class:`~vkit.registry.errors.DataError` naming the file when it cannot be decoded.
        """
        path = Path(path)
        cached = None
        if self.cache_dir is not None:
            cached = self.cache_dir / f"{sha256 or _sha256(path)}.safetensors"
            if cached.is_file():
                return self._read(cached)
        clips, video = sample_clips(path, self.num_segments, self.frames_per_segment, self.size)
        feats = self.encode(clips)
        info = dict(frames=video.frames, fps=video.fps, duration=video.duration)
        if cached is not None:
            self._write(cached, feats, info)
        return feats, info

    def _write(self, path: Path, feats: np.ndarray, info: dict[str, Any]) -> None:
        from safetensors.numpy import save_file

        path.parent.mkdir(parents=True, exist_ok=True)
        settings = path.parent / "settings.json"
        if not settings.is_file():
            settings.write_text(json.dumps(self.settings, indent=2, sort_keys=True, default=str))
        tmp = path.with_suffix(".tmp")
        save_file({"features": np.ascontiguousarray(feats, dtype=np.float32)}, str(tmp),
                  metadata={k: str(v) for k, v in info.items()})
        tmp.replace(path)

    @staticmethod
    def _read(path: Path) -> tuple[np.ndarray, dict[str, Any]]:
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="np") as handle:
                feats, meta = handle.get_tensor("features"), handle.metadata() or {}
        except Exception as err:  # a truncated or foreign file
            raise DataError(f"feature cache file {str(path)!r} is unreadable ({err}); delete it to recompute") from err
        info = dict(frames=int(meta["frames"]), fps=float(meta["fps"]), duration=float(meta["duration"]))
        return feats, info


def feature_extractor(settings: dict[str, Any], cache_dir: str | Path | None = None, batch_size: int = 64) -> FeatureExtractor:
    """The extractor described by ``settings`` (:attr:`FeatureExtractor.settings`, as a checkpoint's sidecar keeps them)."""
    return FeatureExtractor(dict(settings["backbone"]), int(settings["num_segments"]), int(settings["frames_per_segment"]),
                            tuple(settings["size"]), cache_dir=cache_dir, seed=int(settings.get("seed", 0)),
                            batch_size=batch_size)
