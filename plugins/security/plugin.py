"""vkit plugin: the security vertical, declared through the ``vkit.plugins`` entry point like any third-party plugin.

Import-light on purpose (no torch here): the task class is returned by
``vkit_tasks``; the torch-backed components (``MotionStats`` backbone,
``MILScoringHead``, ``MILAnomalyModel``, ``AnomalyVideoDataset``) are
imported, and so registered, only inside ``vkit_register_components``.
"""
from __future__ import annotations

from typing import Any

from vkit.hooks.hookspecs import hookimpl


@hookimpl
def vkit_tasks() -> list[type]:
    from vkit.plugins.security.task import SecurityAnomalyTask

    return [SecurityAnomalyTask]


@hookimpl
def vkit_register_components(registries: dict[str, Any]) -> None:
    # Importing these modules registers MotionStats (BACKBONES), MILScoringHead (HEADS),
    # MILAnomalyModel (MODELS) and AnomalyVideoDataset (DATASETS).
    import vkit.plugins.security.data  # noqa: F401
    import vkit.plugins.security.model  # noqa: F401
    import vkit.plugins.security.motion  # noqa: F401
