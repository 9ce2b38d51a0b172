"""torchvision's video networks built here: ``VideoResNet`` (``r3d_18``, ``mc3_18``, ``r2plus1d_18``) and ``S3D``.

torchvision cannot be installed beside this torch, so the networks of
``torchvision/models/video/resnet.py`` (Tran et al., "A Closer Look at
Spatiotemporal Convolutions", 2018) and ``s3d.py`` (Xie et al., "Rethinking
Spatiotemporal Feature Learning", 2018) are written out again with **the same
module names**, so that a state dict saved from torchvision (``model.state_dict()``:
``stem.0.weight``, ``layer1.0.conv1.0.weight``, ``features.5.branch1.1.0.0.weight``
...) loads as it is with ``pretrained=``; the classifier (``fc.`` / ``classifier.``)
is ignored. Nothing is downloaded: the weights come from the user's file. Parity with
torchvision itself (keys, shapes, features) is tested on fixtures it wrote
(``tests/fixtures/torchvision/``); MViT and Swin3D are in ``torchvision_mvit`` / ``torchvision_swin3d``.

Example::

    net = BACKBONES.build(dict(type="VideoResNet", arch="r3d_18", pretrained="r3d_18.pth"))
    net(torch.randn(1, 3, 16, 112, 112)).shape     # (1, 512)
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from vkit.core.backbones.feature_map import FeatureMapBackbone, as_size
from vkit.registry.errors import ConfigError, did_you_mean
from vkit.registry.registries import BACKBONES

#: torchvision's Kinetics-400 normalisation (0..1 scale: mean 0.43216, 0.394666, 0.37645) in 0..255.
KINETICS_MEAN = (110.2008, 100.63983, 95.99475)
KINETICS_STD = (58.14765, 56.46975, 55.332195)


def _conv(cin: int, cout: int, kind: str, stride: int, mid: int) -> nn.Module:
    """One spatiotemporal conv as torchvision names it: ``3d`` (3x3x3), ``2d`` (1x3x3) or ``2+1d`` (a Sequential)."""
    if kind == "3d":
        return nn.Conv3d(cin, cout, 3, stride=stride, padding=1, bias=False)
    if kind == "2d":
        return nn.Conv3d(cin, cout, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1), bias=False)
    return nn.Sequential(  # (2+1)D: spatial then temporal, with BN + ReLU between (keys .0, .1, .3)
        nn.Conv3d(cin, mid, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1), bias=False),
        nn.BatchNorm3d(mid), nn.ReLU(inplace=True),
        nn.Conv3d(mid, cout, (3, 1, 1), stride=(stride, 1, 1), padding=(1, 0, 0), bias=False))


def _kinetics_normalisation(in_channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """torchvision's Kinetics mean/std for RGB; their channel average repeated for any other channel count."""
    if in_channels == 3:
        return KINETICS_MEAN, KINETICS_STD
    return (float(sum(KINETICS_MEAN) / 3),) * in_channels, (float(sum(KINETICS_STD) / 3),) * in_channels


class _Block(nn.Module):
    """torchvision's ``BasicBlock``: ``conv1`` (conv, BN, ReLU), ``conv2`` (conv, BN), ``downsample``."""

    def __init__(self, cin: int, cout: int, kind: str, stride: int) -> None:
        super().__init__()
        mid = (cin * cout * 27) // (cin * 9 + 3 * cout)  # torchvision uses this one width for both (2+1)D convs
        self.conv1 = nn.Sequential(_conv(cin, cout, kind, stride, mid), nn.BatchNorm3d(cout), nn.ReLU(inplace=True))
        self.conv2 = nn.Sequential(_conv(cout, cout, kind, 1, mid), nn.BatchNorm3d(cout))
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or cin != cout:
            ds = (1, stride, stride) if kind == "2d" else (stride, stride, stride)
            self.downsample = nn.Sequential(nn.Conv3d(cin, cout, 1, stride=ds, bias=False), nn.BatchNorm3d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        return self.relu(self.conv2(self.conv1(x)) + residual)


class _VideoResNet18(nn.Module):
    """The network itself: ``stem``, ``layer1``-``layer4`` (two blocks each); no ``avgpool``/``fc``."""

    def __init__(self, kinds: Sequence[str], stem: str, in_channels: int, width: int) -> None:
        super().__init__()
        if stem == "2+1d":
            mid = max(1, width * 45 // 64)
            self.stem = nn.Sequential(
                nn.Conv3d(in_channels, mid, (1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False),
                nn.BatchNorm3d(mid), nn.ReLU(inplace=True),
                nn.Conv3d(mid, width, (3, 1, 1), stride=1, padding=(1, 0, 0), bias=False),
                nn.BatchNorm3d(width), nn.ReLU(inplace=True))
        else:
            self.stem = nn.Sequential(
                nn.Conv3d(in_channels, width, (3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3), bias=False),
                nn.BatchNorm3d(width), nn.ReLU(inplace=True))
        cin = width
        for i, kind in enumerate(kinds):
            cout = width * 2 ** i
            stride = 1 if i == 0 else 2
            setattr(self, f"layer{i + 1}", nn.Sequential(_Block(cin, cout, kind, stride), _Block(cout, cout, kind, 1)))
            cin = cout
        self.out_channels = cin
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
        return x


@BACKBONES.register_module()
class VideoResNet(FeatureMapBackbone):
    """torchvision's ``r3d_18`` / ``mc3_18`` / ``r2plus1d_18`` without ``fc``; pooled by averaging; ``feature_dim`` 512.

    16 frames of 112 px (torchvision's Kinetics-400 setting), Kinetics mean/std.
    ``T' = T / 8`` (``r3d_18``, ``r2plus1d_18``) or ``T`` (``mc3_18``: only its
    first stage is 3-D).

    Args:
        arch: ``'r3d_18'``, ``'mc3_18'`` or ``'r2plus1d_18'``.
        num_frames, input_size, in_channels, output, pretrained: see :class:`Backbone`.
        width: channels of the stem (64 as in torchvision; smaller only for tests: its weights will not load).
    """

    ARCHS: ClassVar[dict[str, tuple[tuple[str, ...], str]]] = {
        "r3d_18": (("3d",) * 4, "3d"),
        "mc3_18": (("3d", "2d", "2d", "2d"), "3d"),
        "r2plus1d_18": (("2+1d",) * 4, "2+1d"),
    }
    prefers_channels_last_3d = True
    pretrained_ignore = ("net.fc.",)  # torchvision's Kinetics classifier

    def __init__(self, arch: str = "r3d_18", num_frames: int = 16, input_size: int | Sequence[int] = 112,
                 in_channels: int = 3, output: str = "pooled", pretrained: str | Path | None = None,
                 width: int = 64) -> None:
        super().__init__(output=output, pretrained=pretrained)
        if arch not in self.ARCHS:
            raise ConfigError(f"backbone 'VideoResNet': arch={arch!r}{did_you_mean(str(arch), self.ARCHS)}; "
                              f"expected one of {sorted(self.ARCHS)}")
        if not isinstance(width, int) or width < 1:
            raise ConfigError(f"backbone 'VideoResNet': width={width!r}; expected a positive int (64 for torchvision's)")
        kinds, stem = self.ARCHS[arch]
        self.arch = arch
        self.net = _VideoResNet18(kinds, stem, in_channels, width)
        self.feature_dim = self.net.out_channels
        self.num_frames = int(num_frames)
        self.input_size = as_size(input_size, "VideoResNet")
        self.in_channels = in_channels
        self.mean, self.std = _kinetics_normalisation(in_channels)
        self.load_pretrained(pretrained)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    @classmethod
    def smoke_config(cls) -> dict[str, Any]:
        return dict(width=8, num_frames=8, input_size=32)


def _cna(cin: int, cout: int, kernel: Any = 1, stride: Any = 1, padding: Any = 0) -> nn.Sequential:
    """torchvision's ``Conv3dNormActivation``: conv (no bias), BN (eps 1e-3, momentum 1e-3), ReLU."""
    return nn.Sequential(nn.Conv3d(cin, cout, kernel, stride=stride, padding=padding, bias=False),
                         nn.BatchNorm3d(cout, eps=0.001, momentum=0.001), nn.ReLU(inplace=True))


def _sep(cin: int, cout: int, k: int, stride: int, pad: int) -> nn.Sequential:
    """torchvision's ``TemporalSeparableConv``: (1, k, k) then (k, 1, 1)."""
    return nn.Sequential(_cna(cin, cout, (1, k, k), (1, stride, stride), (0, pad, pad)),
                         _cna(cout, cout, (k, 1, 1), (stride, 1, 1), (pad, 0, 0)))


class _SepInception(nn.Module):
    """torchvision's ``SepInceptionBlock3D``: four branches concatenated over channels."""

    def __init__(self, cin: int, b0: int, b1_mid: int, b1: int, b2_mid: int, b2: int, b3: int) -> None:
        super().__init__()
        self.branch0 = _cna(cin, b0)
        self.branch1 = nn.Sequential(_cna(cin, b1_mid), _sep(b1_mid, b1, 3, 1, 1))
        self.branch2 = nn.Sequential(_cna(cin, b2_mid), _sep(b2_mid, b2, 3, 1, 1))
        self.branch3 = nn.Sequential(nn.MaxPool3d(3, stride=1, padding=1), _cna(cin, b3))
        self.out_channels = b0 + b1 + b2 + b3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)], 1)


class _S3DNet(nn.Module):
    """``features`` of torchvision's ``S3D`` (no ``avgpool``/``classifier``)."""

    BLOCKS = ((64, 96, 128, 16, 32, 32), (128, 128, 192, 32, 96, 64), "pool3",
              (192, 96, 208, 16, 48, 64), (160, 112, 224, 24, 64, 64), (128, 128, 256, 24, 64, 64),
              (112, 144, 288, 32, 64, 64), (256, 160, 320, 32, 128, 128), "pool2",
              (256, 160, 320, 32, 128, 128), (384, 192, 384, 48, 128, 128))

    def __init__(self, in_channels: int, width: int = 64) -> None:
        super().__init__()
        w = lambda c: max(1, c * width // 64)  # noqa: E731 - torchvision's widths at width=64
        layers: list[nn.Module] = [
            _sep(in_channels, w(64), 7, 2, 3), nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
            _cna(w(64), w(64)), _sep(w(64), w(192), 3, 1, 1),
            nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))]
        cin = w(192)
        for spec in self.BLOCKS:
            if spec == "pool3":
                layers.append(nn.MaxPool3d(3, stride=2, padding=1))
            elif spec == "pool2":
                layers.append(nn.MaxPool3d(2, stride=2))
            else:
                block = _SepInception(cin, *(w(c) for c in spec))
                layers.append(block)
                cin = block.out_channels
        self.features = nn.Sequential(*layers)
        self.out_channels = cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


@BACKBONES.register_module()
class S3D(FeatureMapBackbone):
    """torchvision's ``s3d`` (separable 3-D Inception) without its classifier; averaged; ``feature_dim`` 1024.

    Kinetics-400 setting: at least 14 frames of 224 px (its mean/std as ``VideoResNet``'s).

    Args:
        num_frames, input_size, in_channels, output, pretrained: see :class:`Backbone`.
        width: channels of the stem (64 as in torchvision, every width scaled with it; smaller only for
            tests: its weights will not load).
    """

    prefers_channels_last_3d = True
    pretrained_ignore = ("net.classifier.",)

    def __init__(self, num_frames: int = 16, input_size: int | Sequence[int] = 224, in_channels: int = 3,
                 output: str = "pooled", pretrained: str | Path | None = None, width: int = 64) -> None:
        super().__init__(output=output, pretrained=pretrained)
        if not isinstance(width, int) or width < 1:
            raise ConfigError(f"backbone 'S3D': width={width!r}; expected a positive int (64 for torchvision's)")
        self.net = _S3DNet(in_channels, width)
        self.feature_dim = self.net.out_channels
        self.num_frames = int(num_frames)
        self.input_size = as_size(input_size, "S3D")
        self.in_channels = in_channels
        self.mean, self.std = _kinetics_normalisation(in_channels)
        self.load_pretrained(pretrained)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def stage_modules(self) -> list[list[nn.Module]]:
        """Stem (``features.0-4``), then the Inception groups 3 (``5-6``), 4 (``7-12``) and 5 (``13-15``)."""
        f = list(self.net.features.children())
        return [f[:5], f[5:7], f[7:13], f[13:]]

    @classmethod
    def smoke_config(cls) -> dict[str, Any]:
        return dict(width=8, num_frames=8, input_size=32)  # T and H/W halve 3 and 5 times


__all__ = ["KINETICS_MEAN", "KINETICS_STD", "S3D", "VideoResNet"]
