"""The pretraining objectives by name, and which one ``auto`` picks.

- ``vicreg`` (:class:`~vkit.core.ssl.vicreg.VICReg`): two augmented clips of one
  video, any backbone.
- ``mae`` (:class:`~vkit.core.ssl.mae.TubeMAE`): tube-masked autoencoding,
  ViT-type backbones (``TimeSformer``) only.

``auto`` is ``vicreg`` for every backbone, by measurement (``docs/pretrain.md``,
``benchmarks/recommendation.py``): after 15 epochs on the generated catalogue a
linear probe of the hidden genre reached 0.37-0.42 on a VICReg-pretrained small
TimeSformer and 0.15-0.18 (chance 0.17) on the same TimeSformer trained with
``mae`` (class token or patch-token mean alike), and 0.78-0.82 on a
VICReg-pretrained ``TinyC3D`` (0.53 at random initialisation).

Example::

    objective = build_objective("auto", backbone)                  # VICReg
    objective = build_objective("mae", backbone, mask_ratio=0.9)   # TimeSformer only
"""
from __future__ import annotations

from typing import Any

from torch import nn

from vkit.registry.errors import ConfigError, did_you_mean

__all__ = ["AUTO_OBJECTIVE", "OBJECTIVES", "build_objective", "resolve_objective"]

#: Objective names ``vkit pretrain --objective`` takes (besides ``auto``).
OBJECTIVES: tuple[str, ...] = ("vicreg", "mae")
#: What ``auto`` means (chosen by measurement, docs/pretrain.md).
AUTO_OBJECTIVE = "vicreg"


def resolve_objective(name: str, backbone: nn.Module) -> str:
    """``name`` checked against ``backbone`` (``auto`` resolved); a :class:`ConfigError` names what fits."""
    from vkit.core.ssl.mae import supports_mae

    if name == "auto":
        return AUTO_OBJECTIVE
    if name not in OBJECTIVES:
        raise ConfigError(f"objective={name!r}{did_you_mean(str(name), OBJECTIVES)}; expected 'auto' or one of {list(OBJECTIVES)}")
    if name == "mae" and not supports_mae(backbone):
        raise ConfigError(f"objective='mae' needs a ViT-type backbone (TimeSformer); {type(backbone).__name__} "
                          "has no patch tokens to mask: use objective='vicreg' (any backbone)")
    return name


def build_objective(name: str, backbone: nn.Module, **kwargs: Any) -> nn.Module:
    """The objective module around ``backbone`` (``kwargs``: its arguments, e.g. ``mask_ratio``, ``expander``)."""
    from vkit.core.ssl.mae import TubeMAE
    from vkit.core.ssl.vicreg import VICReg

    name = resolve_objective(name, backbone)
    cls = VICReg if name == "vicreg" else TubeMAE
    try:
        return cls(backbone, **kwargs)
    except TypeError as err:
        raise ConfigError(f"objective {name!r}: {err}") from err
