"""Per-group aggregates of a scoring job (e.g. per session, per learner), stored as metrics of the scoring run.

A scorer with ``group_aggregates(videos)`` (see :class:`~vkit.core.scoring.VideoScorer`)
gets the newest summaries of the job's videos by its model: this run's and, when the
job resumed, earlier runs' (``Store.model_summaries``), so the aggregates cover every
video of the job, with or without ``--aggregate-only``. Each number becomes one
``metrics`` row of the scoring run: ``split`` = the group kind, ``key`` =
``<group>/<name>``, ``step`` = 0 (``vkit export RUN --table metrics`` lists them).

Example::

    store_group_aggregates(store, run_id, scorer, video_ids)   # -> 12 rows
    store.run_metrics(run_id, split="session")
    # [{"split": "session", "key": "session01/mean_level", "value": 2.1, ...}, ...]
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from vkit.registry.errors import ConfigError

#: Longest group kind and ``<group>/<name>`` key the ``metrics`` table holds.
MAX_KIND, MAX_KEY = 50, 200


def store_group_aggregates(store: Any, run_id: int, scorer: Any, video_ids: Sequence[int]) -> int:
    """Compute ``scorer.group_aggregates`` over ``video_ids`` and log them as metrics of ``run_id``; rows written.

    A scorer without ``group_aggregates`` (or a job with no scored video) writes nothing.
    """
    aggregate = getattr(scorer, "group_aggregates", None)
    if not callable(aggregate) or not video_ids:
        return 0
    videos = store.model_summaries(scorer.model_sha256, video_ids)
    if not videos:
        return 0
    groups = aggregate(videos) or {}
    rows = metric_rows(groups, owner=type(scorer).__name__)
    for kind, metrics in rows.items():
        store.log_metrics(run_id, metrics, step=0, split=kind)
    return sum(len(m) for m in rows.values())


def metric_rows(groups: Mapping[str, Mapping[str, Mapping[str, Any]]], owner: str) -> dict[str, dict[str, float]]:
    """``{kind: {"<group>/<name>": value}}`` from ``{kind: {group: {name: value}}}``; a ``ConfigError`` naming
    ``owner`` and the entry for anything else (non-numbers, keys too long for the ``metrics`` table)."""
    if not isinstance(groups, Mapping):
        raise ConfigError(f"{owner}.group_aggregates returned {type(groups).__name__}; expected {{kind: {{group: {{name: number}}}}}}")
    out: dict[str, dict[str, float]] = {}
    for kind, members in groups.items():
        if not isinstance(kind, str) or not 0 < len(kind) <= MAX_KIND or not isinstance(members, Mapping):
            raise ConfigError(f"{owner}.group_aggregates: group kind {kind!r} must be a str of 1-{MAX_KIND} "
                              f"characters mapping groups to {{name: number}}")
        metrics = out.setdefault(kind, {})
        for group, values in members.items():
            if not isinstance(values, Mapping):
                raise ConfigError(f"{owner}.group_aggregates[{kind!r}][{group!r}]: expected {{name: number}}, got {values!r}")
            for name, value in values.items():
                key = f"{group}/{name}"
                if len(key) > MAX_KEY:
                    raise ConfigError(f"{owner}.group_aggregates[{kind!r}]: key {key[:60]!r}... is longer than {MAX_KEY}")
                if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isinf(value):
                    raise ConfigError(f"{owner}.group_aggregates[{kind!r}][{group!r}][{name!r}]: expected a number, "
                                      f"got {value!r}")
                metrics[key] = float(value)
    return out


__all__ = ["store_group_aggregates", "metric_rows"]
