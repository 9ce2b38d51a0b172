"""Put a backbone in its fastest CPU inference form: eval mode, no grads, preferred memory format.

Example::

    net = prepare_for_inference(BACKBONES.build(dict(type="X3D", setting="s")))
    feats = net.infer(clips)          # torch.inference_mode, channels_last_3d for conv nets
"""
from __future__ import annotations

import torch
from torch import nn

from vkit.core.backbones.base import Backbone
from vkit.registry.errors import ConfigError

MEMORY_FORMATS: dict[str, torch.memory_format] = {
    "contiguous": torch.contiguous_format,
    "channels_last_3d": torch.channels_last_3d,
}


def resolve_memory_format(backbone: Backbone, memory_format: str = "auto") -> torch.memory_format:
    """The ``torch.memory_format`` that ``memory_format`` means for ``backbone``.

    Args:
        backbone: the backbone; ``'auto'`` reads its ``prefers_channels_last_3d`` capability.
        memory_format: ``'auto'``, ``'contiguous'`` or ``'channels_last_3d'``.
    """
    if memory_format == "auto":
        return torch.channels_last_3d if backbone.prefers_channels_last_3d else torch.contiguous_format
    if memory_format not in MEMORY_FORMATS:
        raise ConfigError(f"prepare_for_inference: memory_format={memory_format!r}; "
                          f"expected 'auto' or one of {sorted(MEMORY_FORMATS)}")
    return MEMORY_FORMATS[memory_format]


def to_memory_format(module: nn.Module, memory_format: torch.memory_format) -> nn.Module:
    """Re-lay every 5-D parameter and buffer of ``module`` in ``memory_format`` (others untouched).

    ``nn.Module.to(memory_format=torch.channels_last_3d)`` fails on modules
    that also hold 4-D weights; this converts only the 5-D ones (Conv3d).
    """
    return module._apply(lambda t: t.contiguous(memory_format=memory_format) if t.dim() == 5 else t)


def prepare_for_inference(backbone: Backbone, memory_format: str = "auto") -> Backbone:
    """Switch ``backbone`` to eval mode, freeze it and lay it out for fast CPU inference (in place).

    With ``'auto'``, conv nets (``prefers_channels_last_3d = True``) get
    ``torch.channels_last_3d`` weights, and their ``forward`` converts inputs
    to it; transformers stay contiguous. Run it with :meth:`Backbone.infer`
    (``torch.inference_mode``).

    Args:
        backbone: any :class:`Backbone`.
        memory_format: ``'auto'``, ``'contiguous'`` or ``'channels_last_3d'``.

    Returns:
        The same backbone, for chaining.
    """
    if not isinstance(backbone, Backbone):
        raise ConfigError(f"prepare_for_inference: expected a vkit Backbone, got {type(backbone).__name__}")
    fmt = resolve_memory_format(backbone, memory_format)
    backbone.eval()
    backbone.requires_grad_(False)
    to_memory_format(backbone, fmt)
    backbone.memory_format = fmt
    return backbone
