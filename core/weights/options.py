"""The backbone config keys about pretrained weights, and a config without them (imports nothing of vkit)."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: What a backbone config may say about its starting weights (:mod:`vkit.core.weights`).
OPTIONS = ("pretrained", "pretrained_prefix", "pretrained_strict")


def without_pretrained(cfg: Any) -> Any:
    """``cfg`` (nested dicts/lists) with ``pretrained`` / ``pretrained_prefix`` / ``pretrained_strict`` dropped
    from every component config (a mapping with a ``type``): the config a trained model is rebuilt from,
    whose weights come from its own checkpoint, never from the files it started from.

    Example::

        without_pretrained(dict(backbones=dict(video=dict(type="X3D", pretrained="x3d.pth"))))
        # {'backbones': {'video': {'type': 'X3D'}}}
    """
    if isinstance(cfg, Mapping):
        component = "type" in cfg
        return {k: without_pretrained(v) for k, v in cfg.items() if not (component and k in OPTIONS)}
    if isinstance(cfg, list):
        return [without_pretrained(v) for v in cfg]
    if isinstance(cfg, tuple):
        return tuple(without_pretrained(v) for v in cfg)
    return cfg


__all__ = ["OPTIONS", "without_pretrained"]
