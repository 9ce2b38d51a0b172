"""``FrozenEmbedder``: features of sampled clips from a frozen registered backbone, cached by content and identity.

A video's clips (its :class:`~vkit.core.sampling.FrameSampler`, resized to
``size``) go through a frozen backbone (eval mode, BatchNorm folded) and come
out as one vector per segment, ``(num_segments, D)``. The embedder's identity,
:attr:`FrozenEmbedder.model_sha256`, hashes the backbone config, the sampler,
the size and the seed (a randomly initialised backbone differs by seed), so
features are cached by the video's content sha256 plus that identity:

- in the **store**: a ``FrozenEmbedder`` is a :class:`~vkit.core.scoring.VideoScorer`
  with ``embedding = True``; given to ``ctx.score_videos`` / ``vkit score``, its vectors
  are segment rows, and a video it embedded before is skipped (resume by sha256);
- on **disk**: with ``cache_dir``, ``embedder(path)`` keeps
  ``cache_dir/<Backbone>-<identity>/<video sha256>.safetensors`` (with the video's frames,
  fps and duration), so a cached video is never decoded again.

The backbone is built with the seed inside :func:`torch.random.fork_rng`: its
initialisation draws from a generator seeded for it alone, and the global
random state of the caller (a training run's) is the same after as before.

Example::

    embedder = FrozenEmbedder(dict(type="MotionStats"), FrameSampler("dense", 32, 6), (64, 64), cache_dir="/tmp/feats")
    feats, info = embedder("video.mp4")      # (32, 51) float32, {"frames": 60, "fps": 10.0, "duration": 6.0}
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vkit.core.sampling import FrameSampler
from vkit.core.scoring import SegmentScorer
from vkit.registry.errors import ConfigError, DataError

__all__ = ["FrozenEmbedder"]


class FrozenEmbedder(SegmentScorer):
    """Frozen backbone features per segment (a VideoScorer whose scores are vectors), cached by content + identity.

    Args:
        backbone: a BACKBONES config (``dict(type=...)``).
        sampler: the clips of a video (one vector per segment).
        size: clip ``(H, W)``.
        seed: seeds the backbone's random initialisation (part of the identity).
        kind: names what the features are for (part of the identity).
        batch_size: clips per backbone call.
        cache_dir: folder of the disk cache (``None``: none).

    Example::

        embedder = FrozenEmbedder(dict(type="ClipStats"), FrameSampler("dense", 1, 16), (32, 32))
        embedder.score(torch.as_tensor(embedder.decode("a.mp4"))).shape    # (1, 16)
    """

    embedding = True
    memory_format = "contiguous"

    def __init__(self, backbone: Mapping[str, Any], sampler: FrameSampler, size: Sequence[int] = (64, 64), *,
                 seed: int = 0, kind: str = "frozen-features", batch_size: int = 64,
                 cache_dir: str | Path | None = None) -> None:
        if not isinstance(backbone, Mapping) or "type" not in backbone:
            raise ConfigError(f"{kind}: backbone: expected a BACKBONES config dict with 'type', got {backbone!r}")
        if len(tuple(size)) != 2 or min(int(s) for s in size) < 1:
            raise ConfigError(f"{kind}: size: expected (H, W) positive ints, got {size!r}")
        self.backbone_cfg, self.sampler = dict(backbone), sampler
        self.size = (int(size[0]), int(size[1]))
        self.seed, self.kind, self.batch_size = int(seed), str(kind), max(1, int(batch_size))
        self.settings: dict[str, Any] = dict(kind=self.kind, backbone=self.backbone_cfg, sampler=sampler.settings,
                                             size=list(self.size), seed=self.seed)
        if self.backbone_cfg.get("pretrained") is not None:  # the weights' bytes, not their path, are the model
            from vkit.core.weights.load import pretrained_sha256

            self.settings["pretrained_sha256"] = pretrained_sha256(self.backbone_cfg["pretrained"], owner=f"{kind}: backbone")
        self.model_sha256: str = hashlib.sha256(json.dumps(self.settings, sort_keys=True, default=str).encode()).hexdigest()
        name = str(self.backbone_cfg["type"]).replace(".", "_").replace("/", "_")
        self.cache_dir = Path(cache_dir) / f"{name}-{self.model_sha256[:16]}" if cache_dir is not None else None
        self.min_frames = 1
        self.device = torch.device("cpu")
        self._net: Any = None

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], **kwargs: Any) -> FrozenEmbedder:
        """The embedder :attr:`settings` describe (as a checkpoint sidecar keeps them); ``kwargs``: ``cache_dir``, ``batch_size``."""
        embedder = cls(dict(settings["backbone"]), FrameSampler(**dict(settings["sampler"])), tuple(settings["size"]),
                       seed=int(settings.get("seed", 0)), kind=str(settings.get("kind", "frozen-features")), **kwargs)
        recorded, now = settings.get("pretrained_sha256"), embedder.settings.get("pretrained_sha256")
        if recorded is not None and recorded != now:  # (a sidecar written before vkit recorded it is not checked)
            from vkit.registry.errors import CheckpointError

            raise CheckpointError(f"{embedder.kind}: backbone pretrained={settings['backbone'].get('pretrained')!r} has "
                                  f"sha256 {str(now)[:16]}…, but the model was trained on features of weights with "
                                  f"sha256 {str(recorded)[:16]}…: the file changed since; restore it or train again")
        return embedder

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_net": None}  # a worker or Ray actor builds its own

    @property
    def net(self) -> Any:
        """The frozen backbone, built on first use from the seed alone (the global random state is left as it was)."""
        if self._net is None:
            from vkit.core.backbones import prepare_for_inference
            from vkit.registry.registries import BACKBONES

            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed)
                self._net = prepare_for_inference(BACKBONES.build(dict(self.backbone_cfg))).to(self.device)
        return self._net

    def to(self, device: str | torch.device) -> FrozenEmbedder:
        """Run the backbone on ``device``."""
        self.device = torch.device(device)
        if self._net is not None:
            self._net.to(self.device)
        return self

    @property
    def feature_dim(self) -> int:
        return int(self.net.feature_dim)

    @torch.inference_mode()
    def score(self, clips: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Features ``(B, D)`` float32 of clips ``(B, 3, T, H, W)`` in 0..255, pooled over time, in batches."""
        net = self.net
        x = torch.as_tensor(clips, dtype=torch.float32)
        out = [net.infer(net.normalize(x[i:i + self.batch_size].to(self.device)), temporal=False)
               for i in range(0, len(x), self.batch_size)]
        return torch.cat(out).float().cpu() if out else torch.zeros(0, self.feature_dim)

    def encode(self, clips: torch.Tensor | np.ndarray) -> np.ndarray:
        """:meth:`score` as a NumPy array."""
        return self.score(clips).numpy()

    def summarize(self, segment_scores: np.ndarray, info: Any) -> dict[str, Any]:
        return {}

    def __call__(self, path: str | Path, sha256: str | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Features ``(num_segments, D)`` of the video at ``path`` and its ``frames``, ``fps``, ``duration``,
        from the disk cache when it holds the video's content (``sha256``: its hash, if known).

        Raises :class:`~vkit.registry.errors.DataError` naming the file when it cannot be decoded.
        """
        from vkit.core.video import probe

        cached = None
        if self.cache_dir is not None:
            if sha256 is None:
                from vkit.core.store.provenance import sha256_file

                sha256 = sha256_file(path)[0]
            cached = self.cache_dir / f"{sha256}.safetensors"
            if cached.is_file():
                return self._read(cached)
        video = probe(path)
        feats = self.encode(self.prepare(self.sampler.read(path, self.size, info=video)))
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
            info = dict(frames=int(meta["frames"]), fps=float(meta["fps"]), duration=float(meta["duration"]))
        except Exception as err:  # a truncated or foreign file
            raise DataError(f"feature cache file {str(path)!r} is unreadable ({err}); delete it to recompute") from err
        return feats, info
