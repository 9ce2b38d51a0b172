"""Per-session and per-learner engagement aggregates of a scoring job (stored as metrics of the scoring run).

Each scored recording ``.../<session>/<learner>.mp4`` brings its summary (``values``:
``mean_level``, ``low_share``, ``low_stretches``, ``low_seconds``, written by
``EngagementScorer.summarize``). A learner is named only by the salted hash of
:func:`~vkit.plugins.education.privacy.learner_hash`: the one a link's stem
carries (``pseudo-<hash>``, ``vkit engagement-pseudonymise``), else the hash with the salt
from ``$VKIT_LEARNER_SALT``; without a salt, clear-named recordings count for
their session but give no per-learner rows (a warning says so).

Example::

    engagement_groups([dict(path="/l/s1/pseudo-3fa2b9c01d7e.mp4", duration=60.0, mean_score=0.6,
                            values=dict(mean_level=1.8, low_share=0.25, low_stretches=1, low_seconds=15.0))], 4)
    # {"session": {"s1": {"recordings": 1, "mean_level": 1.8, "low_share": 0.25, "low_stretches": 1,
    #                     "low_seconds": 15.0, "learners_low": 1}},
    #  "learner": {"3fa2b9c01d7e": {"recordings": 1, "mean_level": 1.8, ..., "sessions_low": 1}}}
"""
from __future__ import annotations

import os
import warnings
from collections import defaultdict
from collections.abc import Sequence
from pathlib import PurePath
from typing import Any


def _recording(video: dict[str, Any], num_levels: int) -> dict[str, float | None]:
    """The numbers one recording contributes (``mean_level`` from ``mean_score`` on summaries without values)."""
    values = video.get("values") or {}
    level = values.get("mean_level")
    if level is None and video.get("mean_score") is not None:
        level = float(video["mean_score"]) * (num_levels - 1)
    return dict(mean_level=level, low_share=values.get("low_share"),
                low_stretches=values.get("low_stretches", values.get("events")), low_seconds=values.get("low_seconds"))


def _combine(recordings: Sequence[tuple[float, dict[str, Any]]], low_name: str) -> dict[str, float]:
    """Duration-weighted means of levels and shares, sums of stretches and seconds, over ``(weight, numbers)``;
    ``low_name``: the count of recordings with a low stretch."""
    out: dict[str, float] = dict(recordings=len(recordings))
    for name in ("mean_level", "low_share"):
        known = [(w, r[name]) for w, r in recordings if r[name] is not None]
        if known:
            total = sum(w for w, _ in known)
            out[name] = round(sum(w * v for w, v in known) / total, 4)
    for name in ("low_stretches", "low_seconds"):
        known = [r[name] for _, r in recordings if r[name] is not None]
        if known:
            out[name] = round(float(sum(known)), 3)
    stretches = [r["low_stretches"] for _, r in recordings if r["low_stretches"] is not None]
    if stretches:
        out[low_name] = sum(1 for n in stretches if n > 0)
    return out


def engagement_groups(videos: Sequence[dict[str, Any]], num_levels: int = 4,
                      salt: str | None = None) -> dict[str, dict[str, dict[str, float]]]:
    """``{"session": {name: numbers}, "learner": {hash: numbers}}`` over scored recordings' summaries.

    Args:
        videos: ``Store.model_summaries`` rows (``path``, ``duration``, ``mean_score``, ``values``).
        num_levels: engagement levels of the model (the score is the expected level / (levels - 1)).
        salt: the learner salt (default ``$VKIT_LEARNER_SALT``).

    ``numbers``: ``recordings``, duration-weighted ``mean_level`` and ``low_share``, summed
    ``low_stretches`` and ``low_seconds``; ``learners_low`` (per session) / ``sessions_low`` (per learner):
    recordings with a low stretch.
    """
    from vkit.plugins.education.privacy import SALT_ENV, learner_hash, pseudonym_of

    salt = os.environ.get(SALT_ENV, "") if salt is None else salt
    sessions: dict[str, list[tuple[float, dict[str, Any]]]] = defaultdict(list)
    learners: dict[str, list[tuple[float, dict[str, Any]]]] = defaultdict(list)
    unnamed = 0
    for video in videos:
        path = PurePath(str(video["path"]))
        item = (float(video.get("duration") or 1.0), _recording(video, num_levels))
        sessions[path.parent.name or "session"].append(item)
        if pseudonym := pseudonym_of(path.stem):
            learners[pseudonym].append(item)
        elif salt:
            learners[learner_hash(path.stem, salt)].append(item)
        else:
            unnamed += 1
    if unnamed:
        warnings.warn(f"{unnamed} recording(s) are named by learner in clear and {SALT_ENV} is not set: no per-learner "
                      "aggregates for them (set the salt, or score the links of `vkit engagement-pseudonymise`)",
                      stacklevel=2)
    groups = dict(session={name: _combine(items, "learners_low") for name, items in sorted(sessions.items())})
    if learners:
        groups["learner"] = {name: _combine(items, "sessions_low") for name, items in sorted(learners.items())}
    return groups
