"""vkit plugin: the security vertical, declared through the ``vkit.plugins`` entry point like any third-party plugin.

Import-light on purpose (no torch here): the task class is returned by
``vkit_tasks``; the torch-backed components are imported, and registered into
the registries vkit hands over, only inside ``vkit_register_components``.
``vkit_report_sections`` adds event keyframes, false alarms on normal videos and a timeline per camera to
a run's report (:mod:`vkit.plugins.security.report_sections`).
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
    from vkit.plugins.security.data import AnomalyVideoDataset
    from vkit.plugins.security.model import MILAnomalyModel, MILScoringHead
    from vkit.plugins.security.motion import MotionStats

    registries["BACKBONES"].register_module(module=MotionStats)
    registries["HEADS"].register_module(module=MILScoringHead)
    registries["MODELS"].register_module(module=MILAnomalyModel)
    registries["DATASETS"].register_module(module=AnomalyVideoDataset)


@hookimpl
def vkit_report_sections(run: dict[str, Any], store: Any) -> list[Any] | None:
    from vkit.plugins.security.report_sections import report_sections

    return report_sections(run, store)
