"""vkit: a plugin-based video-AI toolkit for industry verticals.

The repository root is the ``vkit`` package (``package-dir`` maps ``vkit`` to
``.``); its sub-packages are ``vkit.core``, ``vkit.registry``,
``vkit.plugins`` and ``vkit.workflows``. This module stays import-light:
``import vkit`` must not import torch, mmengine or MONAI.

Example::

    from vkit import hookimpl

    @hookimpl
    def vkit_tasks():
        ...
"""
from __future__ import annotations

from vkit.hooks.hookspecs import hookimpl

__version__ = "0.1.0"
__all__ = ["hookimpl", "__version__"]
