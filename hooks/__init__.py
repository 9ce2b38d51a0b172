"""vkit.hooks: the pluggy hookspecs and the plugin manager that discovers, loads and reports plugins.

It sits between ``vkit.core`` (it hands out :class:`~vkit.core.task.Task`
classes) and ``vkit.plugins``. Attributes load lazily so ``import vkit`` stays
free of mmengine and torch::

    from vkit.hooks import hookimpl, get_plugin_manager
"""
from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "hookimpl": "vkit.hooks.hookspecs",
    "hookspec": "vkit.hooks.hookspecs",
    "get_plugin_manager": "vkit.hooks.manager",
    "PluginManager": "vkit.hooks.manager",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vkit.hooks' has no attribute {name!r}")
