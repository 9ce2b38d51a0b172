"""Wrappers over mmaction2 1.2.0 backbones, built through mmaction2's own registry.

After :func:`vkit.core.compat.ensure_mmaction`, each wrapper builds ``mmaction.registry.MODELS.build(dict(type=..., pretrained=None, ...))``
with the settings of mmaction2's configs (``configs/recognition/*``), calls the
network's ``init_weights()`` (random init: nothing can be downloaded), and pools
its output as the matching mmaction2 head does. Keyword overrides go straight
to the mmaction2 class (``depth=18``, ``embed_dims=64``, ``arch=dict(...)``), so
tests build tiny variants.

Example::

    net = BACKBONES.build(dict(type="X3D", setting="m"))     # 16 x 224 x 224, D = 432
    net(torch.randn(1, 3, 16, 224, 224)).shape               # (1, 432)
"""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from vkit.core.backbones.base import Backbone, capture_output, reject_urls
from vkit.core.backbones.feature_map import FeatureMapBackbone, as_size
from vkit.core.compat import ensure_mmaction
from vkit.registry.errors import ConfigError, did_you_mean
from vkit.registry.registries import BACKBONES

KINETICS_X3D_MEAN = (114.75, 114.75, 114.75)
KINETICS_X3D_STD = (57.38, 57.38, 57.38)


@contextlib.contextmanager
def _quiet_mmengine() -> Iterator[None]:
    """Hide mmengine's per-parameter ``init_weights`` dump (one INFO record per tensor) while building."""
    from mmengine.logging import MMLogger

    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        logger.setLevel(level)


def build_mmaction(cfg: dict[str, Any], owner: str) -> nn.Module:
    """Build ``cfg`` with mmaction2's MODELS registry (scope ``mmaction``) and run its ``init_weights``.

    Args:
        cfg: mmaction2 backbone config (``type`` plus its arguments); URLs anywhere in it are refused.
        owner: the vkit backbone's name, for messages.
    """
    reject_urls(cfg, owner)
    ensure_mmaction()
    from mmaction.registry import MODELS

    with _quiet_mmengine():
        try:
            net = MODELS.build({**cfg, "_scope_": "mmaction"})
        except (TypeError, KeyError, ValueError, AssertionError) as err:
            raise ConfigError(f"backbone {owner!r}: mmaction2 cannot build {cfg!r}: "
                              f"{type(err).__name__}: {err}") from err
        if hasattr(net, "init_weights"):
            net.init_weights()
    return net


class MMActionBackbone(Backbone):
    """Common constructor of the mmaction2 wrappers: builds ``self.net`` and sets the declared attributes."""

    #: mmaction2's class the ``**overrides`` go to (its arguments are the config keys the wrapper accepts too).
    mm_type: ClassVar[str] = ""

    @classmethod
    def upstream_class(cls) -> type | None:
        """mmaction2's class of :attr:`mm_type` (``None`` without mmaction2)."""
        try:
            ensure_mmaction()
            from mmaction.registry import MODELS
        except Exception:  # noqa: BLE001 - no mmaction2: the build reports it
            return None
        return MODELS.get(f"mmaction.{cls.mm_type}") if cls.mm_type else None

    def __init__(self, mm_cfg: dict[str, Any], num_frames: int, input_size: int | Sequence[int],
                 in_channels: int, output: str, pretrained: str | Path | None,
                 mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__(output=output, pretrained=pretrained)
        name = self.registry_name()
        if not isinstance(num_frames, int) or num_frames < 1:
            raise ConfigError(f"backbone {name!r}: num_frames={num_frames!r}; expected a positive int")
        self.num_frames = num_frames
        self.input_size = as_size(input_size, name)
        self.in_channels = in_channels
        if in_channels == len(mean):
            self.mean, self.std = tuple(mean), tuple(std)
        else:
            self.mean, self.std = (float(sum(mean) / len(mean)),) * in_channels, (float(sum(std) / len(std)),) * in_channels
        self.net = build_mmaction(mm_cfg, name)


@BACKBONES.register_module()
class X3D(MMActionBackbone, FeatureMapBackbone):
    """X3D (mmaction2 ``X3D``), settings of ``x3d_s_13x6x1`` / ``x3d_m_16x5x1``; pooled like ``X3DHead``.

    mmaction2 builds S and M with the same network (``gamma_w=1, gamma_b=2.25,
    gamma_d=2.2``, ``feature_dim`` 432); they differ in the clip: S takes 13
    frames of 160 px, M 16 frames of 224 px. Temporal output keeps ``T' = T``.

    Args:
        setting: ``'s'`` or ``'m'``.
        num_frames, input_size: override the setting's clip (any size works).
        in_channels: input channels.
        output, pretrained: see :class:`Backbone`.
        **overrides: arguments of mmaction2's ``X3D`` (``gamma_w``, ``gamma_d``, ``se_ratio`` ...).
    """

    mm_type = "X3D"

    SETTINGS: ClassVar[dict[str, dict[str, Any]]] = {
        "s": dict(arch=dict(gamma_w=1, gamma_b=2.25, gamma_d=2.2), num_frames=13, input_size=(160, 160)),
        "m": dict(arch=dict(gamma_w=1, gamma_b=2.25, gamma_d=2.2), num_frames=16, input_size=(224, 224)),
    }
    prefers_channels_last_3d = True

    def __init__(self, setting: str = "s", num_frames: int | None = None, input_size: int | Sequence[int] | None = None,
                 in_channels: int = 3, output: str = "pooled", pretrained: str | Path | None = None,
                 **overrides: Any) -> None:
        if setting not in self.SETTINGS:
            raise ConfigError(f"backbone 'X3D': setting={setting!r}{did_you_mean(str(setting), self.SETTINGS)}; "
                              f"expected one of {sorted(self.SETTINGS)}")
        preset = self.SETTINGS[setting]
        cfg = {"type": "X3D", **preset["arch"], "in_channels": in_channels, "pretrained": None, **overrides}
        super().__init__(cfg, num_frames or preset["num_frames"], input_size or preset["input_size"],
                         in_channels, output, pretrained, KINETICS_X3D_MEAN, KINETICS_X3D_STD)
        self.setting = setting
        self.feature_dim = int(self.net.feat_dim)
        self.load_pretrained(pretrained)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    @classmethod
    def smoke_config(cls) -> dict[str, Any]:
        return dict(num_frames=4, input_size=32, gamma_w=0.34, gamma_b=1.0, gamma_d=0.5)


@BACKBONES.register_module()
class SlowOnly(MMActionBackbone, FeatureMapBackbone):
    """SlowOnly R50 (mmaction2 ``ResNet3dSlowOnly``), settings of ``slowonly_r50_8xb16-8x8x1``; pooled like ``I3DHead``.

    8 frames of 224 px, ``feature_dim`` 2048 (depth 50); ``T' = T``.

    Args:
        depth: ResNet depth (18, 34, 50, 101, 152).
        num_frames, input_size, in_channels, output, pretrained: see :class:`Backbone`.
        **overrides: arguments of ``ResNet3dSlowOnly`` (``base_channels``, ``inflate`` ...).
    """

    mm_type = "ResNet3dSlowOnly"

    prefers_channels_last_3d = True

    def __init__(self, depth: int = 50, num_frames: int = 8, input_size: int | Sequence[int] = 224,
                 in_channels: int = 3, output: str = "pooled", pretrained: str | Path | None = None,
                 **overrides: Any) -> None:
        cfg = {"type": "ResNet3dSlowOnly", "depth": depth, "pretrained": None, "pretrained2d": False,
               "lateral": False, "conv1_kernel": (1, 7, 7), "conv1_stride_t": 1, "pool1_stride_t": 1,
               "inflate": (0, 0, 1, 1), "norm_eval": False, "in_channels": in_channels, **overrides}
        super().__init__(cfg, num_frames, input_size, in_channels, output, pretrained,
                         (123.675, 116.28, 103.53), (58.395, 57.12, 57.375))
        self.feature_dim = int(self.net.feat_dim)
        self.load_pretrained(pretrained)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    @classmethod
    def smoke_config(cls) -> dict[str, Any]:
        return dict(depth=18, base_channels=8, num_frames=4, input_size=32)


@BACKBONES.register_module()
class TSM(MMActionBackbone, FeatureMapBackbone):
    """TSM R50 (mmaction2 ``ResNetTSM``, temporal shift 1/8), settings of ``tsm_r50_1x1x8``; pooled like ``TSMHead``.

    A 2-D ResNet over the ``N*T`` frames with ``num_segments = T``: the input
    must have exactly ``num_frames`` frames. 8 frames of 224 px, ``feature_dim``
    2048; ``T' = T``.

    Args:
        depth: ResNet depth (18, 34, 50, 101, 152).
        num_frames: ``T`` (mmaction2's ``num_segments``).
        input_size, in_channels, output, pretrained: see :class:`Backbone`.
        **overrides: arguments of ``ResNetTSM`` (``shift_div``, ``shift_place`` ...).
    """

    mm_type = "ResNetTSM"

    fixed_num_frames = True

    def __init__(self, depth: int = 50, num_frames: int = 8, input_size: int | Sequence[int] = 224,
                 in_channels: int = 3, output: str = "pooled", pretrained: str | Path | None = None,
                 **overrides: Any) -> None:
        cfg = {"type": "ResNetTSM", "depth": depth, "num_segments": num_frames, "shift_div": 8,
               "pretrained": None, "pretrained2d": False, "norm_eval": False, "in_channels": in_channels,
               **overrides}
        super().__init__(cfg, num_frames, input_size, in_channels, output, pretrained,
                         (123.675, 116.28, 103.53), (58.395, 57.12, 57.375))
        self.feature_dim = int(self.net.feat_dim)
        self.load_pretrained(pretrained)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        n, c, t, h, w = x.shape
        frames = x.transpose(1, 2).reshape(n * t, c, h, w)
        fmap = self.net(frames)  # (N*T, D, h', w')
        return fmap.reshape(n, t, *fmap.shape[1:]).transpose(1, 2)

    @classmethod
    def smoke_config(cls) -> dict[str, Any]:
        return dict(depth=18, num_frames=4, input_size=32)


@BACKBONES.register_module()
class TimeSformer(MMActionBackbone):
    """TimeSformer (mmaction2 ``TimeSformer``), settings of ``timesformer_divST_8x32x1``.

    ViT-B/16 with divided space-time attention on 8 frames of 224 px,
    ``feature_dim`` 768. Pooled: the class token (what ``TimeSformerHead``
    reads). Temporal: the mean of each frame's patch tokens (``T' = T``). Its
    position embeddings fix both ``num_frames`` and ``input_size``.

    Args:
        num_frames, input_size, in_channels, output, pretrained: see :class:`Backbone`.
        **overrides: arguments of mmaction2's ``TimeSformer`` (``embed_dims``,
            ``num_heads``, ``num_transformer_layers``, ``patch_size``, ``attention_type`` ...).
    """

    mm_type = "TimeSformer"

    fixed_num_frames = True
    fixed_input_size = True

    def __init__(self, num_frames: int = 8, input_size: int | Sequence[int] = 224, in_channels: int = 3,
                 output: str = "pooled", pretrained: str | Path | None = None, **overrides: Any) -> None:
        size = as_size(input_size, "TimeSformer")
        if size[0] != size[1]:
            raise ConfigError(f"backbone 'TimeSformer': input_size={input_size!r}; mmaction2's TimeSformer needs H == W")
        cfg = {"type": "TimeSformer", "num_frames": num_frames, "img_size": size[0], "patch_size": 16,
               "embed_dims": 768, "in_channels": in_channels, "dropout_ratio": 0.0, "transformer_layers": None,
               "attention_type": "divided_space_time", "norm_cfg": dict(type="LN", eps=1e-6),
               "pretrained": None, **overrides}
        super().__init__(cfg, num_frames, size, in_channels, output, pretrained,
                         (127.5, 127.5, 127.5), (127.5, 127.5, 127.5))
        self.feature_dim = int(self.net.embed_dims)
        self.load_pretrained(pretrained)

    def forward_pooled(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def forward_temporal(self, x: torch.Tensor) -> torch.Tensor:
        n, t = x.shape[0], x.shape[2]
        with capture_output(self.net.transformer_layers) as seen:
            self.net(x)
        tokens = self.net.norm(seen[-1])
        if self.net.attention_type == "space_only":  # (N*T, 1 + P, D)
            return tokens.reshape(n, t, -1, self.feature_dim)[:, :, 1:].mean(2)
        return tokens[:, 1:].reshape(n, -1, t, self.feature_dim).mean(1)  # tokens ordered (P, T)

    @classmethod
    def smoke_config(cls) -> dict[str, Any]:
        return dict(num_frames=4, input_size=32, embed_dims=32, num_heads=2, num_transformer_layers=1)


@BACKBONES.register_module()
class Swin3D(MMActionBackbone, FeatureMapBackbone):
    """Video Swin Transformer (mmaction2 ``SwinTransformer3D``), settings of ``swin-tiny-p244-w877_32x2x1``.

    Swin-T, patch (2, 4, 4), window (8, 7, 7) on 32 frames of 224 px,
    ``feature_dim`` 768; pooled like ``I3DHead`` (average). ``T' = T / 2``.

    Args:
        arch: ``'tiny'``, ``'small'``, ``'base'``, ``'large'`` or a dict
            (``embed_dims``, ``depths``, ``num_heads``).
        num_frames, input_size, in_channels, output, pretrained: see :class:`Backbone`.
        **overrides: arguments of ``SwinTransformer3D`` (``window_size``, ``patch_size`` ...).
    """

    mm_type = "SwinTransformer3D"

    def __init__(self, arch: str | dict[str, Any] = "tiny", num_frames: int = 32,
                 input_size: int | Sequence[int] = 224, in_channels: int = 3, output: str = "pooled",
                 pretrained: str | Path | None = None, **overrides: Any) -> None:
        cfg = {"type": "SwinTransformer3D", "arch": arch, "pretrained": None, "pretrained2d": False,
               "patch_size": (2, 4, 4), "window_size": (8, 7, 7), "mlp_ratio": 4.0, "qkv_bias": True,
               "qk_scale": None, "drop_rate": 0.0, "attn_drop_rate": 0.0, "drop_path_rate": 0.1,
               "patch_norm": True, "in_channels": in_channels, **overrides}
        super().__init__(cfg, num_frames, input_size, in_channels, output, pretrained,
                         (123.675, 116.28, 103.53), (58.395, 57.12, 57.375))
        self.feature_dim = int(self.net.num_features[self.net.out_indices[-1]])
        self.load_pretrained(pretrained)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    @classmethod
    def smoke_config(cls) -> dict[str, Any]:
        return dict(arch=dict(embed_dims=8, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1]),
                    window_size=(2, 4, 4), num_frames=4, input_size=32)


@BACKBONES.register_module()
class MViT(MMActionBackbone):
    """MViTv2 (mmaction2 ``MViT``), settings of ``mvit-small-p244_16x4x1``.

    MViTv2-S on 16 frames of 224 px, ``feature_dim`` 768. Pooled: the class
    token (what ``MViTHead`` reads); temporal: the patch tokens averaged over
    space (``T' = T / 2``). Relative position tables are sized for
    ``num_frames`` x ``input_size``, so both are fixed.

    Args:
        arch: ``'tiny'``, ``'small'``, ``'base'``, ``'large'`` or a dict
            (``embed_dims``, ``num_layers``, ``num_heads``, ``downscale_indices``).
        num_frames, input_size, in_channels, output, pretrained: see :class:`Backbone`.
        **overrides: arguments of mmaction2's ``MViT``.
    """

    mm_type = "MViT"

    fixed_num_frames = True
    fixed_input_size = True

    def __init__(self, arch: str | dict[str, Any] = "small", num_frames: int = 16,
                 input_size: int | Sequence[int] = 224, in_channels: int = 3, output: str = "pooled",
                 pretrained: str | Path | None = None, **overrides: Any) -> None:
        size = as_size(input_size, "MViT")
        if size[0] != size[1]:
            raise ConfigError(f"backbone 'MViT': input_size={input_size!r}; mmaction2's MViT needs H == W")
        cfg = {"type": "MViT", "arch": arch, "spatial_size": size[0], "temporal_size": num_frames,
               "in_channels": in_channels, "drop_path_rate": 0.2, "pretrained": None, "out_scales": -1,
               "with_cls_token": True, "output_cls_token": True, **overrides}
        super().__init__(cfg, num_frames, size, in_channels, output, pretrained,
                         (114.75, 114.75, 114.75), (57.375, 57.375, 57.375))
        self.feature_dim = int(self.net.blocks[-1].out_dims)
        self.load_pretrained(pretrained)

    def forward_pooled(self, x: torch.Tensor) -> torch.Tensor:
        _patch, cls_token = self.net(x)[-1]
        return cls_token

    def forward_temporal(self, x: torch.Tensor) -> torch.Tensor:
        patch, _cls = self.net(x)[-1]  # (N, D, T', H', W')
        return patch.mean((3, 4)).transpose(1, 2)

    @classmethod
    def smoke_config(cls) -> dict[str, Any]:
        return dict(arch=dict(embed_dims=8, num_layers=2, num_heads=1, downscale_indices=[1]),
                    num_frames=4, input_size=32)
