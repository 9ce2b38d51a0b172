"""Item content: one embedding per video from a frozen registered backbone, stored by video sha256 + backbone config.

:class:`ClipStats` is the default backbone: parameter-free appearance and
motion statistics (what it computes is listed in its docstring); any
BACKBONES entry works (``content.backbone=dict(type='X3D', setting='s',
pretrained='x3d_s.safetensors')`` for real footage).

:func:`item_embedder` is a :class:`~vkit.core.embedding.FrozenEmbedder` (a
VideoScorer whose output is a vector per video): the task hands it to
``ctx.score_videos``, so item embeddings run through the batch-scoring engine
of ``vkit score`` (videos table, resume by sha256 — the cache key is the
embedder's ``model_sha256``, a hash of the backbone config, clip sampling,
size and seed —, failures recorded, ``--engine ray``). :func:`embed_items`
turns the outcomes into the item matrix: a missing or unreadable video does
not stop the run, its row is masked (``mask[i] = False``, zero features) and
its reason returned.

Example::

    scorer = item_embedder(dict(type="ClipStats"), num_frames=16, size=(32, 32))
    features, mask, shas, failures = embed_items(["a.mp4", None], scorer, ctx.score_videos)
    features.shape, mask       # (2, 16), [True, False]
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vkit.core.backbones.base import Backbone
from vkit.core.embedding import FrozenEmbedder
from vkit.core.sampling import FrameSampler
from vkit.registry.errors import ConfigError, DataError

KIND = "recommendation-item-embedding"


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


def item_embedder(backbone: Mapping[str, Any], num_frames: int = 16, size: Sequence[int] = (32, 32),
                  seed: int = 0) -> FrozenEmbedder:
    """The item-content embedder: ``backbone`` over the middle ``num_frames`` consecutive frames of a video.

    A :class:`~vkit.core.embedding.FrozenEmbedder` with one ``dense`` clip: given to
    ``ctx.score_videos`` (the batch-scoring engine of ``vkit score`` inside ``vkit run``),
    its ``model_sha256`` (backbone config, sampler, size, seed) makes the engine's resume
    by video sha256 the embedding cache (a video embedded before with the same settings is
    not decoded again) and its vector is read back from the store.

    Example::

        embedder = item_embedder(dict(type="ClipStats"), num_frames=16, size=(32, 32))
        embedder.score(torch.as_tensor(embedder.decode("a.mp4"))).shape    # (1, 16)
    """
    if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
        raise ConfigError(f"content: num_frames={num_frames!r}; expected a positive int")
    return FrozenEmbedder(backbone, FrameSampler("dense", 1, num_frames), size, seed=seed, kind=KIND)


def embed_items(paths: Sequence[str | Path | None], scorer: FrozenEmbedder,
                score_videos: Any) -> tuple[np.ndarray, np.ndarray, list[str | None], list[dict[str, Any]]]:
    """``(features (N, D), mask (N,), sha256s, failures)`` of the items' videos through ``score_videos``.

    ``score_videos`` is ``ctx.score_videos`` (the run's engine). An item without a
    video, or whose video fails, is masked (zero row) and listed in ``failures``
    as ``dict(index, path, reason)``.
    """
    n = len(paths)
    wanted = [(i, str(p)) for i, p in enumerate(paths) if p is not None]
    outcomes = score_videos(scorer, [p for _, p in wanted]) if wanted else []
    failures = [dict(index=i, path=None, reason="no video for this item") for i, p in enumerate(paths) if p is None]
    rows: dict[int, np.ndarray] = {}
    shas: list[str | None] = [None] * n
    for (i, path), outcome in zip(wanted, outcomes):
        if outcome["status"] == "scored" and outcome["segments"] is not None:
            rows[i] = np.asarray(outcome["segments"], dtype=np.float32).reshape(-1, np.shape(outcome["segments"])[-1]).mean(0)
            shas[i] = outcome["sha256"]
        else:
            missing = "missing video; " if not Path(path).exists() else ""
            failures.append(dict(index=i, path=path, reason=f"{missing}{outcome['error']}"))
    dims = {r.shape[0] for r in rows.values()}
    if len(dims) > 1:
        raise DataError(f"content: embeddings of different widths {sorted(dims)} (stored by different backbones?)")
    features = np.zeros((n, dims.pop() if dims else 0), np.float32)
    mask = np.zeros(n, bool)
    for i, row in rows.items():
        features[i], mask[i] = row, True
    return features, mask, shas, sorted(failures, key=lambda f: f["index"])
