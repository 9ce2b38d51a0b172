"""Backbones: one interface ``(N, C, T, H, W) -> (N, D)`` or ``(N, T', D)`` over mmaction2, MONAI and vkit nets.

Importing this package (the lazy ``locations`` of the BACKBONES registry)
registers: ``TinyC3D``, ``SignalMLP`` (side signals for fusion); the mmaction2 wrappers ``X3D`` (``setting='s'|'m'``),
``SlowOnly``, ``TSM``, ``TimeSformer``, ``Swin3D``, ``MViT``; the MONAI
wrappers ``MonaiDenseNet121`` and ``MonaiResNet``; ``VideoResNet`` (torchvision's r3d_18 / mc3_18 /
r2plus1d_18), ``S3D``, ``TorchvisionMViT`` (mvit_v1_b / mvit_v2_s) and ``TorchvisionSwin3D`` (swin3d_t / _s / _b),
built here with torchvision's key names. torch, mmaction2 and MONAI
models are only built when a backbone is constructed.

Example::

    from vkit.registry.registries import BACKBONES
    from vkit.core.backbones import prepare_for_inference

    net = prepare_for_inference(BACKBONES.build(dict(type="X3D", setting="s")))
    feats = net.infer(net.example_input(batch=2))    # (2, 432)

See :class:`Backbone` for how to add one.
"""
from __future__ import annotations

from vkit.core.backbones.base import IMAGENET_MEAN, IMAGENET_STD, Backbone, capture_output, check_pretrained
from vkit.core.backbones.feature_map import FeatureMapBackbone
from vkit.core.backbones.inference import fold_batchnorm, prepare_for_inference, to_memory_format
from vkit.core.backbones.mmaction_nets import MViT, SlowOnly, Swin3D, TimeSformer, TSM, X3D, build_mmaction
from vkit.core.backbones.monai_nets import MonaiDenseNet121, MonaiResNet
from vkit.core.backbones.signals import SignalMLP
from vkit.core.backbones.tiny import TinyC3D
from vkit.core.backbones.torchvision_mvit import TorchvisionMViT
from vkit.core.backbones.torchvision_nets import S3D, VideoResNet
from vkit.core.backbones.torchvision_swin3d import TorchvisionSwin3D

__all__ = [
    "IMAGENET_MEAN", "IMAGENET_STD", "Backbone", "FeatureMapBackbone", "MViT", "MonaiDenseNet121", "MonaiResNet",
    "S3D", "SignalMLP", "SlowOnly", "Swin3D", "TSM", "TimeSformer", "TinyC3D", "TorchvisionMViT", "TorchvisionSwin3D", "VideoResNet", "X3D", "capture_output", "check_pretrained",
    "build_mmaction", "fold_batchnorm", "prepare_for_inference", "to_memory_format",
]
