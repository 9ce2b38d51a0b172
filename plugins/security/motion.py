"""``MotionStats``: a fixed (parameter-free) motion backbone, registered in BACKBONES.

What its features are, honestly: no learned weights at all, only frame
differencing and fixed pooling. For each pair of consecutive frames of a clip,
a pixel *moves* when its largest change over the RGB channels exceeds
``noise_floor`` (sensor/codec noise stays below it). Three maps follow:

* ``energy``: the change above the noise floor (how strong the motion is);
* ``peak``: the share of moving pixels in ``window x window`` neighbourhoods
  (how much of a small region moves);
* ``extent``: the same share over ``trail_window`` neighbourhoods of the union
  of the last ``trail`` moving masks (how far a moving thing travelled within
  the clip: a runner's trail is several times a walker's).

Each map is pooled over every grid of ``grids`` (mean for energy, max for the
two densities): the default ``((16, 1), (1, 1))`` keeps 16 horizontal bands
(*where*, vertically, something moves: the embedded scenes have horizontal
walkways) and the whole frame (*how much/how fast*, wherever it is). These
features separate the embedded data set's anomalies (speed, falls off the
walkway, motion in a zone nobody enters); they carry no appearance or
semantics, so for real footage select a learned backbone with
``features.backbone`` (e.g. ``dict(type='X3D', setting='s', pretrained=...)``)
or use grids like ``((8, 8), (1, 1))`` for cameras without such a layout.

Example::

    import vkit.plugins.security.motion  # registers MotionStats (the plugin hook does this)
    
    net = BACKBONES.build(dict(type="MotionStats"))
    net(net.normalize(torch.rand(2, 3, 6, 64, 64) * 255)).shape   # (2, 51)
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from vkit.core.backbones.base import Backbone
from vkit.registry.errors import ConfigError, DataError
from vkit.registry.registries import BACKBONES


def _grids(grids: Any) -> tuple[tuple[int, int], ...]:
    try:
        out = tuple((int(g), int(g)) if isinstance(g, (int, float)) else (int(g[0]), int(g[1])) for g in grids)
    except (TypeError, ValueError, IndexError):
        out = ()
    if not out or min(min(g) for g in out) < 1:
        raise ConfigError(f"backbone 'MotionStats': grids={grids!r}; expected a list of (rows, cols) positive ints, "
                          "e.g. ((16, 1), (1, 1))")
    return out


def _window(value: Any, key: str) -> tuple[int, int]:
    """``k`` or ``(h, w)`` as an odd ``(h, w)`` (so the window is centred on its pixel)."""
    try:
        h, w = (int(value), int(value)) if isinstance(value, (int, float)) else (int(value[0]), int(value[1]))
    except (TypeError, ValueError, IndexError):
        h = w = 0
    if h < 1 or w < 1:
        raise ConfigError(f"backbone 'MotionStats': {key}={value!r}; expected a positive int or (height, width)")
    return h | 1, w | 1


class MotionStats(Backbone):
    """Motion energy, local moving share and travelled extent pooled over grids; no parameters.

    Args:
        grids: pooling grids ``(rows, cols)``; ``feature_dim = 3 * sum(rows * cols)``.
        noise_floor: per-channel change (0..1 units) below which a pixel does not move.
        window: side of the neighbourhood of the ``peak`` map (pixels, odd).
        trail: number of consecutive moving masks united for the ``extent`` map.
        trail_window: side of the neighbourhood of the ``extent`` map (pixels, odd).
        num_frames: ``T`` per clip (declared default; any ``T >= 2`` works).
        input_size: ``(H, W)`` declared default (any size works).
        output, pretrained: see :class:`~vkit.core.backbones.Backbone`; there are no weights, so
            ``pretrained`` must stay ``None``.
    """

    def __init__(self, grids: Sequence[Any] = ((16, 1), (1, 1)), noise_floor: float = 0.04, window: int | Sequence[int] = 7,
                 trail: int = 5, trail_window: int | Sequence[int] = (7, 31), num_frames: int = 6,
                 input_size: Sequence[int] = (64, 64), output: str = "pooled",
                 pretrained: str | Path | None = None) -> None:
        super().__init__(output=output, pretrained=pretrained)
        if not 0.0 <= float(noise_floor) < 1.0:
            raise ConfigError(f"backbone 'MotionStats': noise_floor={noise_floor!r}; expected 0 <= x < 1")
        if int(trail) < 1:
            raise ConfigError(f"backbone 'MotionStats': trail={trail!r}; expected a positive int")
        self.grids = _grids(grids)
        self.noise_floor, self.window = float(noise_floor), _window(window, 'window')
        self.trail, self.trail_window = int(trail), _window(trail_window, 'trail_window')
        self.feature_dim = 3 * sum(r * c for r, c in self.grids)
        self.num_frames = int(num_frames)
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.mean, self.std = (0.0, 0.0, 0.0), (255.0, 255.0, 255.0)  # inputs become 0..1
        self.load_pretrained(pretrained)  # no weights: only checks the file (a URL is refused)

    def forward_temporal(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[2] < 2:
            raise DataError(f"backbone 'MotionStats': needs T >= 2 frames to difference, got {tuple(x.shape)}")
        change = (x[:, :, 1:] - x[:, :, :-1]).abs().amax(1)  # (N, T-1, H, W): largest change over channels
        n, t, h, w = change.shape
        moving = (change > self.noise_floor).to(x.dtype)
        trail = torch.stack([moving[:, max(0, i - self.trail + 1):i + 1].amax(1) for i in range(t)], 1)
        energy = F.relu(change - self.noise_floor).reshape(n * t, 1, h, w)
        peak = self._density(moving.reshape(n * t, 1, h, w), self.window)
        extent = self._density(trail.reshape(n * t, 1, h, w), self.trail_window)
        parts = []
        for grid in self.grids:
            parts += [F.adaptive_avg_pool2d(energy, grid), F.adaptive_max_pool2d(peak, grid),
                      F.adaptive_max_pool2d(extent, grid)]
        return torch.cat([p.reshape(n, t, -1) for p in parts], dim=2)

    @staticmethod
    def _density(mask: torch.Tensor, k: tuple[int, int]) -> torch.Tensor:
        """Share of moving pixels in the ``(h, w)`` neighbourhood of every pixel."""
        return F.avg_pool2d(mask, k, stride=1, padding=(k[0] // 2, k[1] // 2), count_include_pad=True)

    @classmethod
    def smoke_config(cls) -> dict[str, Any]:
        return dict(grids=((2, 2), (1, 1)), window=3, trail_window=5, num_frames=4, input_size=(16, 16))
