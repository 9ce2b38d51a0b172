"""vkit.registry: the bottom layer — the MMEngine registries and the error classes (imports nothing else of vkit).

Attributes load lazily so that ``import vkit`` (and ``vkit --help``) stays
free of mmengine, torch and MONAI::

    from vkit.registry import BACKBONES, build_component
"""
from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "build_component": "vkit.registry.registries",
    "REGISTRIES": "vkit.registry.registries",
    "MODELS": "vkit.registry.registries",
    "BACKBONES": "vkit.registry.registries",
    "FUSIONS": "vkit.registry.registries",
    "HEADS": "vkit.registry.registries",
    "DATASETS": "vkit.registry.registries",
    "METRICS": "vkit.registry.registries",
    "TRANSFORMS": "vkit.registry.registries",
    "COMPRESSORS": "vkit.registry.registries",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vkit.registry' has no attribute {name!r}")
