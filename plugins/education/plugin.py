"""vkit plugin: the education vertical, declared through the ``vkit.plugins`` entry point like any third-party plugin.

Import-light on purpose: ``vkit_tasks`` returns the task class; ``vkit_cli_commands``
``vkit engagement-pseudonymise`` (links named by salted learner hashes, scored instead of
the recordings) and ``vkit engagement-report`` (per-session summaries of a scoring run);
``vkit_report_sections`` puts the same summaries, lowest engagement first, at the top of a scoring run's
report (:mod:`vkit.plugins.education.report_sections`).
The generic components the task uses (``OrdinalHead``, ``OrdinalMetric``, ``SignalMLP``)
live in core and register there.
"""
from __future__ import annotations

from typing import Any

from vkit.hooks.hookspecs import hookimpl


@hookimpl
def vkit_tasks() -> list[type]:
    from vkit.plugins.education.task import EducationEngagementTask

    return [EducationEngagementTask]


@hookimpl
def vkit_cli_commands() -> list[Any]:
    from vkit.plugins.education.report import engagement_pseudonymise_cmd, engagement_report_cmd

    return [engagement_pseudonymise_cmd, engagement_report_cmd]


@hookimpl
def vkit_report_sections(run: dict[str, Any], store: Any) -> list[Any] | None:
    from vkit.plugins.education.report_sections import report_sections

    return report_sections(run, store)
