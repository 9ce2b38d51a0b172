"""vkit plugin: the recommendation vertical (declared through the ``vkit.plugins`` entry point like any third-party plugin).

Import-light (no torch here): the task class comes from ``vkit_tasks``; the
components are registered through the ``registries`` argument of
``vkit_register_components``: MODELS ``Popularity``, ``BPRMF``, ``VBPR``,
``TwoTower``; BACKBONES ``ClipStats``; METRICS ``RankingMetric``.
``vkit_cli_commands`` adds ``vkit recommend`` (:mod:`vkit.plugins.recommendation.cli`).
``vkit_store_schema`` gives its ``recommendations`` table and migrations (:mod:`vkit.plugins.recommendation.store`).
``vkit_report_sections`` puts the model comparison chart, sample recommendations with their reasons and the
cold-start slice at the top of a training run's report (:mod:`vkit.plugins.recommendation.report_sections`).
"""
from __future__ import annotations

from typing import Any

from vkit.hooks.hookspecs import hookimpl


@hookimpl
def vkit_tasks() -> list[type]:
    from vkit.plugins.recommendation.task import RecommendationTask

    return [RecommendationTask]


@hookimpl
def vkit_register_components(registries: dict[str, Any]) -> None:
    from vkit.plugins.recommendation.content import ClipStats
    from vkit.plugins.recommendation.metric import RankingMetric
    from vkit.plugins.recommendation.models import MODEL_CLASSES

    for cls in MODEL_CLASSES.values():
        registries["MODELS"].register_module(module=cls)
    registries["BACKBONES"].register_module(module=ClipStats)
    registries["METRICS"].register_module(module=RankingMetric)


@hookimpl
def vkit_cli_commands() -> list[Any]:
    from vkit.plugins.recommendation.cli import recommend_cmd

    return [recommend_cmd]


@hookimpl
def vkit_store_schema() -> Any:
    from vkit.plugins.recommendation.store import SCHEMA

    return SCHEMA


@hookimpl
def vkit_report_sections(run: dict[str, Any], store: Any) -> list[Any] | None:
    from vkit.plugins.recommendation.report_sections import report_sections

    return report_sections(run, store)
