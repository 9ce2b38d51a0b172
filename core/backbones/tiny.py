"""``TinyC3D``: a ~50k-parameter 3-D CNN that trains in seconds on 2 CPU cores (tests, quick defaults)."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vkit.core.backbones.base import Backbone
from vkit.registry.errors import ConfigError
from vkit.registry.registries import BACKBONES


def _block(cin: int, cout: int, pool: tuple[int, int, int]) -> list[nn.Module]:
    return [nn.Conv3d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm3d(cout), nn.ReLU(inplace=True),
            nn.MaxPool3d(pool, stride=pool)]


@BACKBONES.register_module()
class TinyC3D(Backbone):
    """Conv3d+BN+ReLU+MaxPool stages; spatial size halves per stage, time halves from the third on.

    Args:
        widths: output channels of each stage (default ``(16, 32, 48)``: ~57k
            parameters with 3 input channels); ``feature_dim`` is the last.
        num_frames: ``T`` expected (any ``T`` works; this is the declared default).
        input_size: ``(H, W)`` expected (any size >= ``2**len(widths)`` works).
        in_channels: ``C`` (1 for single-channel volumes).
        modality: ``'video'`` (default; 0..255 ImageNet mean/std for 3 channels, 127.5/127.5 otherwise) or ``'volume'`` (mean 0, std 1).
        pool: global pooling of the pooled output: ``'avg'`` (default), ``'max'``
            (a small finding anywhere in the volume, e.g. a lesion) or ``'avgmax'``
            (both, concatenated: ``feature_dim`` doubles).
        output, pretrained: see :class:`Backbone`.

    Example::

        net = BACKBONES.build(dict(type="TinyC3D", widths=(8, 16), num_frames=8))
        net(torch.randn(2, 3, 8, 64, 64)).shape   # (2, 16)
    """

    prefers_channels_last_3d = True

    def __init__(self, widths: Sequence[int] = (16, 32, 48), num_frames: int = 8,
                 input_size: Sequence[int] = (64, 64), in_channels: int = 3, modality: str = "video",
                 pool: str = "avg", output: str = "pooled", pretrained: str | Path | None = None) -> None:
        super().__init__(output=output, pretrained=pretrained)
        widths = tuple(int(w) for w in widths)
        if not widths or min(widths) < 1:
            raise ConfigError(f"backbone 'TinyC3D': widths={widths!r}; expected a non-empty list of positive ints")
        if pool not in ("avg", "max", "avgmax"):
            raise ConfigError(f"backbone 'TinyC3D': pool={pool!r}; expected 'avg', 'max' or 'avgmax'")
        self.pool = pool
        if modality not in ("video", "volume"):
            raise ConfigError(f"backbone 'TinyC3D': modality={modality!r}; expected 'video' or 'volume'")
        self.modality = modality  # type: ignore[misc]  # instance override of the class default
        layers: list[nn.Module] = []
        cin = in_channels
        for i, width in enumerate(widths):
            layers += _block(cin, width, (2 if i >= 2 else 1, 2, 2))
            cin = width
        self.features = nn.Sequential(*layers)
        self.feature_dim = widths[-1] * (2 if pool == "avgmax" else 1)
        self.num_frames = int(num_frames)
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.in_channels = in_channels
        if modality == "volume":
            self.mean, self.std = (0.0,) * in_channels, (1.0,) * in_channels
        elif in_channels != 3:
            self.mean, self.std = (127.5,) * in_channels, (127.5,) * in_channels
        self.load_pretrained(pretrained)

    def stage_modules(self) -> list[list[nn.Module]]:
        """No stem, then one stage per Conv-BN-ReLU-Pool block (what ``train.freeze=N`` counts)."""
        blocks = list(self.features.children())
        return [[], *[blocks[i:i + 4] for i in range(0, len(blocks), 4)]]

    def forward_temporal(self, x: torch.Tensor) -> torch.Tensor:
        fmap = self.features(x)
        if self.pool == "avg":
            return fmap.mean((3, 4)).transpose(1, 2)
        peak = fmap.amax((3, 4))
        per_step = peak if self.pool == "max" else torch.cat([fmap.mean((3, 4)), peak], 1)
        return per_step.transpose(1, 2)

    def forward_pooled(self, x: torch.Tensor) -> torch.Tensor:
        fmap = self.features(x)
        if self.pool == "avg":
            return fmap.mean((2, 3, 4))
        peak = fmap.amax((2, 3, 4))
        return peak if self.pool == "max" else torch.cat([fmap.mean((2, 3, 4)), peak], 1)

    @classmethod
    def smoke_config(cls) -> dict[str, Any]:
        return dict(widths=(4, 8), num_frames=4, input_size=(16, 16))
