"""``SignalMLP``: an encoder for side signals (interaction logs, sensor readings) fused with video.

Side signals reach the model as a tiny "clip" ``(N, D, T, 1, 1)``: ``D``
standardised values (channels) over ``T`` time steps (``T = 1`` for one value
per clip). A 1x1x1-convolution MLP encodes every time step; the pooled output
is the mean over time. Registered in BACKBONES so ``VideoModel`` builds it
beside a video backbone and a FUSIONS module combines the two::

    model = MODELS.build(dict(
        type="VideoModel",
        backbones=dict(video=dict(type="TinyC3D"), signals=dict(type="SignalMLP", in_channels=3)),
        fusion=dict(type="Concat", dim=32),
        head=dict(type="OrdinalHead", num_classes=4)))
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vkit.core.backbones.base import Backbone
from vkit.registry.errors import ConfigError
from vkit.registry.registries import BACKBONES


class SignalMLP(Backbone):
    """Per-time-step MLP (1x1x1 convolutions) over ``D`` side signals; ``feature_dim`` is the last width.

    The signals are expected already standardised (mean 0, std 1): ``mean``/``std``
    are 0 and 1, as for a volume in its own intensity scale.

    Args:
        in_channels: ``D``, the number of signals.
        widths: hidden and output widths (default ``(16, 16)``).
        num_frames: ``T`` time steps expected (1: one value per clip).
        output, pretrained: see :class:`Backbone`.

    Example::

        net = BACKBONES.build(dict(type="SignalMLP", in_channels=3))
        net(torch.randn(8, 3, 1, 1, 1)).shape   # (8, 16)
    """

    modality = "volume"  # already-normalised values: no pixel mean/std

    def __init__(self, in_channels: int = 3, widths: Sequence[int] = (16, 16), num_frames: int = 1,
                 output: str = "pooled", pretrained: str | Path | None = None) -> None:
        super().__init__(output=output, pretrained=pretrained)
        widths = tuple(int(w) for w in widths)
        if not isinstance(in_channels, int) or in_channels < 1:
            raise ConfigError(f"backbone 'SignalMLP': in_channels={in_channels!r}; expected a positive int (signals per clip)")
        if not widths or min(widths) < 1:
            raise ConfigError(f"backbone 'SignalMLP': widths={widths!r}; expected a non-empty list of positive ints")
        layers: list[nn.Module] = []
        cin = in_channels
        for width in widths:
            layers += [nn.Conv3d(cin, width, 1), nn.ReLU(inplace=True)]
            cin = width
        self.mlp = nn.Sequential(*layers)
        self.in_channels = in_channels
        self.feature_dim = widths[-1]
        self.num_frames = int(num_frames)
        self.input_size = (1, 1)
        self.mean, self.std = (0.0,) * in_channels, (1.0,) * in_channels
        self.load_pretrained(pretrained)

    def forward_temporal(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x).mean((3, 4)).transpose(1, 2)

    @classmethod
    def smoke_config(cls) -> dict[str, Any]:
        return dict(in_channels=3, widths=(4,))


BACKBONES.register_module(module=SignalMLP)
