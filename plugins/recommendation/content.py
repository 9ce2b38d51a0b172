"""Item content: one embedding per video from a frozen registered backbone, cached by video sha256 + backbone config.

:class:`ClipStats` is the default backbone: parameter-free appearance and
motion statistics (what it computes is listed in its docstring); any
BACKBONES entry works (``content.backbone=dict(type='X3D', setting='s',
pretrained='x3d_s.safetensors')`` for real footage).

:class:`ItemEncoder` embeds a list of videos: each file is hashed (sha256),
looked up in the cache ``<cache_dir>/<Backbone>-<key>/<sha256>.npy`` (``key``
hashes the backbone config, the clip sampling and the seed), and only the
missing ones are decoded (:func:`vkit.core.video.read_clip`, frames resized
while decoding) and encoded in batches. A missing or unreadable video does not
stop the run: its row is masked (``mask[i] = False``, zero features) and its
reason returned in ``failures``.

Example::

    encoder = ItemEncoder(dict(type="ClipStats"), num_frames=16, size=(32, 32), cache_dir=Path("/tmp/emb"))
    result = encoder.encode(["a.mp4", "b.mp4"])
    result.features.shape, result.mask, result.failures    # (2, 16), [True, True], []
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vkit.core.backbones.base import Backbone
from vkit.registry.errors import ConfigError, DataError, VkitError


class ClipStats(Backbone):
    """Appearance and motion statistics of a clip; no parameters.

    Per pair of consecutive frames (inputs scaled to 0..1, ``g`` the grey
    frame, ``gx, gy`` its spatial and ``gt`` its temporal difference):

    * colour: mean and standard deviation of each RGB channel (6);
    * texture: mean gradient magnitude, and the orientation tensor
      ``(E[gx²] - E[gy²], 2 E[gx gy]) / (E[gx²] + E[gy²])`` (dominant edge
      orientation as a doubled angle, 2), its strength (1), and the spatial
      frequency proxy ``E|∇g| / std(g)`` (1);
    * motion: ``E|gt|`` relative to the gradient magnitude (speed, 1), the
      normal-flow direction ``(E[gt gx], E[gt gy]) / E[|∇g|²]`` (2), the share
      of pixels that change more than the noise (1), and the frame-to-frame
      change of the mean grey level (flicker, 1).

    Args:
        num_frames, input_size: the declared clip shape (any ``T >= 2`` and size work).
        noise_floor: change (0..1) below which a pixel counts as still.
        output, pretrained: see :class:`~vkit.core.backbones.Backbone` (no weights: ``pretrained`` stays ``None``).

    Example::

        net = ClipStats()
        net(net.normalize(torch.rand(2, 3, 16, 32, 32) * 255)).shape   # (2, 16)
    """

    def __init__(self, num_frames: int = 16, input_size: Sequence[int] = (32, 32), noise_floor: float = 0.05,
                 output: str = "pooled", pretrained: str | Path | None = None) -> None:
        super().__init__(output=output, pretrained=pretrained)
        if not 0.0 <= float(noise_floor) < 1.0:
            raise ConfigError(f"backbone 'ClipStats': noise_floor={noise_floor!r}; expected 0 <= x < 1")
        self.noise_floor = float(noise_floor)
        self.feature_dim = 16
        self.num_frames = int(num_frames)
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.mean, self.std = (0.0, 0.0, 0.0), (255.0, 255.0, 255.0)  # inputs become 0..1
        self.load_pretrained(pretrained)

    def forward_temporal(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[2] < 2:
            raise DataError(f"backbone 'ClipStats': needs T >= 2 frames, got {tuple(x.shape)}")
        eps = 1e-6
        frames = x[:, :, 1:]  # (N, C, T-1, H, W)
        color = torch.cat([frames.mean((3, 4)), frames.std((3, 4))], 1).transpose(1, 2)  # (N, T-1, 6)
        grey = x.mean(1)  # (N, T, H, W)
        g = grey[:, 1:, 1:-1, 1:-1]
        gx = (grey[:, 1:, 1:-1, 2:] - grey[:, 1:, 1:-1, :-2]) / 2
        gy = (grey[:, 1:, 2:, 1:-1] - grey[:, 1:, :-2, 1:-1]) / 2
        gt = (grey[:, 1:] - grey[:, :-1])[:, :, 1:-1, 1:-1]
        mag = (gx ** 2 + gy ** 2).sqrt()
        jxx, jyy, jxy = (gx ** 2).mean((2, 3)), (gy ** 2).mean((2, 3)), (gx * gy).mean((2, 3))
        energy = jxx + jyy + eps
        orient = torch.stack([(jxx - jyy) / energy, 2 * jxy / energy], -1)
        strength = orient.norm(dim=-1, keepdim=True)
        mean_mag = mag.mean((2, 3))
        freq = mean_mag / (g.std((2, 3)) + eps)
        speed = gt.abs().mean((2, 3)) / (mean_mag + eps)
        flow = torch.stack([(gt * gx).mean((2, 3)), (gt * gy).mean((2, 3))], -1) / energy.unsqueeze(-1)
        moving = (gt.abs() > self.noise_floor).float().mean((2, 3))
        flicker = (grey[:, 1:].mean((2, 3)) - grey[:, :-1].mean((2, 3))).abs()
        scalars = torch.stack([mean_mag, freq, speed, moving, flicker], -1)
        return torch.cat([color, orient, strength, scalars, flow], -1)

    @classmethod
    def smoke_config(cls) -> dict[str, Any]:
        return dict(num_frames=4, input_size=(16, 16))


@dataclass
class Embeddings:
    """What :meth:`ItemEncoder.encode` returns.

    Attributes:
        features: ``(N, D)`` float32, zeros where ``mask`` is False.
        mask: ``(N,)`` bool, True where the video was embedded.
        sha256: each video's sha256 (``None`` when it could not be read).
        failures: ``[dict(index, path, reason)]`` of the masked videos.
        cached: how many came from the cache.
    """

    features: np.ndarray
    mask: np.ndarray
    sha256: list[str | None]
    failures: list[dict[str, Any]] = field(default_factory=list)
    cached: int = 0


def frame_indices(frames: int, num_frames: int) -> np.ndarray:
    """``num_frames`` consecutive indices from the middle of a ``frames``-long video (repeats when it is shorter)."""
    start = max(0, (frames - num_frames) // 2)
    return np.clip(start + np.arange(num_frames), 0, frames - 1)


def load_clip(path: str | Path, num_frames: int, size: Sequence[int]) -> np.ndarray:
    """``(3, T, H, W)`` float32 in 0..255: ``num_frames`` consecutive frames from the middle of the video."""
    from vkit.core.video import probe, read_clip

    info = probe(path)
    frames = read_clip(path, frame_indices(info.frames, num_frames), (int(size[0]), int(size[1])), frames=info.frames)
    return np.ascontiguousarray(frames.transpose(3, 0, 1, 2), dtype=np.float32)


class ItemEncoder:
    """Frozen backbone embeddings of videos, cached by video sha256 and a hash of these settings.

    Args:
        backbone: a BACKBONES config (``dict(type=...)``).
        num_frames: frames per clip (``T``), consecutive, from the middle of the video.
        size: clip ``(H, W)``.
        cache_dir: folder of the cache (``None``: no cache).
        seed: seeds the backbone's random initialisation (part of the cache key).
        batch_size: clips per backbone call.
    """

    def __init__(self, backbone: dict, num_frames: int = 16, size: Sequence[int] = (32, 32),
                 cache_dir: str | Path | None = None, seed: int = 0, batch_size: int = 64) -> None:
        if not isinstance(backbone, dict) or "type" not in backbone:
            raise ConfigError(f"content.backbone: expected a BACKBONES config dict with 'type', got {backbone!r}")
        if int(num_frames) < 1 or len(tuple(size)) != 2 or min(int(s) for s in size) < 1:
            raise ConfigError(f"content: num_frames={num_frames!r}, size={size!r}; expected a positive int and (H, W)")
        self.backbone_cfg = dict(backbone)
        self.num_frames, self.size = int(num_frames), (int(size[0]), int(size[1]))
        self.seed, self.batch_size = int(seed), max(1, int(batch_size))
        self.settings = dict(backbone=self.backbone_cfg, num_frames=self.num_frames, size=list(self.size), seed=self.seed)
        self.key = hashlib.sha256(json.dumps(self.settings, sort_keys=True, default=str).encode()).hexdigest()[:16]
        name = str(self.backbone_cfg["type"]).replace(".", "_").replace("/", "_")
        self.cache_dir = Path(cache_dir) / f"{name}-{self.key}" if cache_dir is not None else None
        self._net: Any = None

    @property
    def net(self) -> Backbone:
        """The frozen backbone (built on first use)."""
        if self._net is None:
            from vkit.core.backbones import prepare_for_inference
            from vkit.registry.registries import BACKBONES

            torch.manual_seed(self.seed)
            self._net = prepare_for_inference(BACKBONES.build(dict(self.backbone_cfg)))
        return self._net

    @torch.inference_mode()
    def embed_clips(self, clips: np.ndarray | torch.Tensor) -> np.ndarray:
        """Embeddings ``(N, D)`` float32 of clips ``(N, 3, T, H, W)`` in 0..255."""
        x = torch.as_tensor(clips, dtype=torch.float32)
        out = [self.net.infer(self.net.normalize(x[i:i + self.batch_size]), temporal=False)
               for i in range(0, len(x), self.batch_size)]
        return torch.cat(out).float().numpy()

    def encode(self, paths: Sequence[str | Path | None]) -> Embeddings:
        """Embed every video of ``paths`` (``None``: no video for that item, masked)."""
        from vkit.core.store.provenance import sha256_file

        n = len(paths)
        rows: list[np.ndarray | None] = [None] * n
        shas: list[str | None] = [None] * n
        failures: list[dict[str, Any]] = []
        todo: list[tuple[int, np.ndarray]] = []
        cached = 0
        for i, path in enumerate(paths):
            if path is None:
                failures.append(dict(index=i, path=None, reason="no video for this item"))
                continue
            try:
                shas[i] = sha256_file(path)[0]
            except OSError as err:
                failures.append(dict(index=i, path=str(path), reason=f"missing or unreadable ({err.strerror or err})"))
                continue
            hit = self._cached(shas[i])
            if hit is not None:
                rows[i], cached = hit, cached + 1
                continue
            try:
                todo.append((i, load_clip(path, self.num_frames, self.size)))
            except VkitError as err:
                failures.append(dict(index=i, path=str(path), reason=str(err)))
        for start in range(0, len(todo), self.batch_size):
            chunk = todo[start:start + self.batch_size]
            feats = self.embed_clips(np.stack([clip for _, clip in chunk]))
            for (i, _), feat in zip(chunk, feats):
                rows[i] = feat
                self._store(shas[i], feat)
        dim = next((r.shape[0] for r in rows if r is not None), int(getattr(self.net, "feature_dim", 0)))
        features = np.zeros((n, dim), np.float32)
        mask = np.zeros(n, bool)
        for i, row in enumerate(rows):
            if row is not None:
                features[i], mask[i] = row, True
        for failure in failures:
            shas[failure["index"]] = None
        return Embeddings(features, mask, shas, failures, cached)

    def _cached(self, sha: str | None) -> np.ndarray | None:
        if self.cache_dir is None or sha is None:
            return None
        file = self.cache_dir / f"{sha}.npy"
        if not file.is_file():
            return None
        try:
            return np.load(file, allow_pickle=False).astype(np.float32)
        except (OSError, ValueError):  # a truncated file: recompute and overwrite
            return None

    def _store(self, sha: str | None, feat: np.ndarray) -> None:
        if self.cache_dir is None or sha is None:
            return
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        settings = self.cache_dir / "settings.json"
        if not settings.is_file():
            settings.write_text(json.dumps(self.settings, indent=2, sort_keys=True, default=str))
        tmp = self.cache_dir / f"{sha}.tmp.npy"
        np.save(tmp, np.ascontiguousarray(feat, dtype=np.float32), allow_pickle=False)
        tmp.replace(self.cache_dir / f"{sha}.npy")
