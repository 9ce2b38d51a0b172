"""vkit plugin: the medical vertical, declared through the ``vkit.plugins`` entry point like any third-party plugin.

Import-light on purpose: the task class is returned by ``vkit_tasks``; the
MONAI-backed dataset is imported, and registered into the registries vkit
hands over, only inside ``vkit_register_components``. ``vkit_preview`` shows a
scan's middle slice in the run report (:mod:`vkit.plugins.medical.preview`).
"""
from __future__ import annotations

from typing import Any

from vkit.hooks.hookspecs import hookimpl


@hookimpl
def vkit_tasks() -> list[type]:
    from vkit.plugins.medical.task import MedicalDiagnosisTask

    return [MedicalDiagnosisTask]


@hookimpl
def vkit_register_components(registries: dict[str, Any]) -> None:
    from vkit.plugins.medical.data import MedicalVolumeDataset

    registries["DATASETS"].register_module(module=MedicalVolumeDataset)


@hookimpl
def vkit_preview(path: Any) -> list[Any] | None:
    from vkit.plugins.medical.preview import scan_preview

    return scan_preview(path)
