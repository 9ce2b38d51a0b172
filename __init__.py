"""vkit: a plugin-based video-AI toolkit for industry verticals.

The repository root is the ``vkit`` package (``package-dir`` maps ``vkit`` to
``.``); its sub-packages are ``vkit.core``, ``vkit.registry``,
``vkit.plugins`` and ``vkit.workflows``. This module runs before any of them
and imports none: ``import vkit.registry`` must not load pluggy, and
``import vkit`` must not import torch, mmengine or MONAI. ``vkit.hookimpl``
is loaded the first time it is asked for.

Example::

    from vkit import hookimpl

    @hookimpl
    def vkit_tasks():
        ...
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from vkit.hooks.hookspecs import hookimpl

__version__ = "0.1.0"
__all__ = ["hookimpl", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "hookimpl":
        from vkit.hooks.hookspecs import hookimpl

        return hookimpl
    raise AttributeError(f"module 'vkit' has no attribute {name!r}")
