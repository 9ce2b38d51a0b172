"""Wrappers over MONAI's 3-D networks for volumes (``spatial_dims=3``): features before the classifier.

A scan ``(N, C, D, H, W)`` goes in with depth as ``T``; ``forward_temporal``
gives one feature per remaining depth slice ``(N, D', feature_dim)``.
Volumes are expected already intensity-normalised by the task's transforms
(``mean`` 0, ``std`` 1).

Example::

    net = BACKBONES.build(dict(type="MonaiResNet", depth=18, in_channels=1))
    net(torch.randn(2, 1, 64, 64, 64)).shape      # (2, 512)
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from vkit.core.backbones.base import capture_output
from vkit.core.backbones.feature_map import FeatureMapBackbone, as_size
from vkit.registry.errors import ConfigError, did_you_mean
from vkit.registry.registries import BACKBONES


class MonaiVolumeBackbone(FeatureMapBackbone):
    """Common attributes of the MONAI wrappers (volume modality, identity normalisation)."""

    modality = "volume"
    prefers_channels_last_3d = True

    def _declare(self, num_frames: int, input_size: int | Sequence[int], in_channels: int) -> None:
        if not isinstance(num_frames, int) or num_frames < 1:
            raise ConfigError(f"backbone {self.registry_name()!r}: num_frames={num_frames!r}; expected a positive int")
        self.num_frames = num_frames
        self.input_size = as_size(input_size, self.registry_name())
        self.in_channels = in_channels
        self.mean, self.std = (0.0,) * in_channels, (1.0,) * in_channels


def _build(owner: str, factory: Any, kwargs: dict[str, Any]) -> torch.nn.Module:
    try:
        return factory(**kwargs)
    except (TypeError, ValueError, KeyError) as err:
        raise ConfigError(f"backbone {owner!r}: MONAI cannot build {factory.__name__}({kwargs!r}): {err}") from err


@BACKBONES.register_module()
class MonaiDenseNet121(MonaiVolumeBackbone):
    """MONAI ``DenseNet121(spatial_dims=3)``: ``features`` + ReLU, before the classifier; ``feature_dim`` 1024.

    Args:
        num_frames: depth ``D`` expected (default 96, a common CT crop).
        input_size: ``(H, W)`` expected (default 96).
        in_channels: scan channels (default 1).
        output, pretrained: see :class:`Backbone`.
        **overrides: arguments of MONAI's ``DenseNet121`` (``init_features``,
            ``growth_rate``, ``block_config``, ``norm`` ...).
    """

    pretrained_ignore = ("net.class_layers.",)  # the classifier a bundle's weights carry is not used

    def __init__(self, num_frames: int = 96, input_size: int | Sequence[int] = 96, in_channels: int = 1,
                 output: str = "pooled", pretrained: str | Path | None = None, **overrides: Any) -> None:
        super().__init__(output=output, pretrained=pretrained)
        self._declare(num_frames, input_size, in_channels)
        from monai.networks.nets import DenseNet121

        kwargs = {"spatial_dims": 3, "in_channels": in_channels, "out_channels": 1, **overrides, "pretrained": False}
        self.net = _build("MonaiDenseNet121", DenseNet121, kwargs)
        self.feature_dim = int(self.net.class_layers.out.in_features)
        self.load_pretrained(pretrained)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.net.features(x))  # class_layers start with this ReLU, then pool + linear

    @classmethod
    def smoke_config(cls) -> dict[str, Any]:
        return dict(num_frames=32, input_size=32, init_features=8, growth_rate=4, block_config=(1, 1, 1, 1))


@BACKBONES.register_module()
class MonaiResNet(MonaiVolumeBackbone):
    """MONAI 3-D ``ResNet`` (``resnet10`` ... ``resnet200``, MedicalNet layouts) without its FC layer.

    ``feature_dim`` is 512 for depths 10-34, 2048 from 50 (times ``widen_factor``).

    Args:
        depth: 10, 18, 34, 50, 101, 152 or 200.
        num_frames: depth ``D`` expected (default 96).
        input_size: ``(H, W)`` expected (default 96).
        in_channels: scan channels (default 1).
        output, pretrained: see :class:`Backbone`.
        **overrides: arguments of MONAI's ``ResNet`` (``widen_factor``,
            ``conv1_t_stride``, ``no_max_pool``, ``shortcut_type`` ...).
    """

    DEPTHS: ClassVar[tuple[int, ...]] = (10, 18, 34, 50, 101, 152, 200)
    pretrained_ignore = ("net.fc.",)  # built without its FC layer: a bundle's fc.* is not loaded

    def __init__(self, depth: int = 18, num_frames: int = 96, input_size: int | Sequence[int] = 96,
                 in_channels: int = 1, output: str = "pooled", pretrained: str | Path | None = None,
                 **overrides: Any) -> None:
        super().__init__(output=output, pretrained=pretrained)
        if depth not in self.DEPTHS:
            raise ConfigError(f"backbone 'MonaiResNet': depth={depth!r}"
                              f"{did_you_mean(str(depth), [str(d) for d in self.DEPTHS])}; expected one of {self.DEPTHS}")
        self._declare(num_frames, input_size, in_channels)
        from monai.networks.nets import resnet

        factory = getattr(resnet, f"resnet{depth}")
        kwargs = {"spatial_dims": 3, "n_input_channels": in_channels, **overrides,
                  "feed_forward": False, "pretrained": False}
        self.net = _build("MonaiResNet", factory, kwargs)
        self.depth = depth
        self.feature_dim = int(self.net.in_planes)  # channels out of layer4
        self.load_pretrained(pretrained)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        with capture_output(self.net.layer4) as seen:
            self.net(x)
        return seen[-1]

    @classmethod
    def smoke_config(cls) -> dict[str, Any]:
        return dict(depth=10, widen_factor=0.25, num_frames=16, input_size=16)
