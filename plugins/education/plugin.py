"""vkit plugin: the education vertical, declared through the ``vkit.plugins`` entry point like any third-party plugin.

Import-light on purpose: ``vkit_tasks`` returns the task class; the generic
components it uses (``OrdinalHead``, ``OrdinalMetric``, ``SignalMLP``) live in
core and register there, and ``EngagementClips`` is registered in DATASETS
through the ``registries`` argument, only when components are needed.
"""
from __future__ import annotations

from typing import Any

from vkit.hooks.hookspecs import hookimpl


@hookimpl
def vkit_tasks() -> list[type]:
    from vkit.plugins.education.task import EducationEngagementTask

    return [EducationEngagementTask]
