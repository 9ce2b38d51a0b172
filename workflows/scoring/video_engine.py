"""The engine of ``vkit score`` behind ``RunContext.score_videos``: what ``vkit run`` installs as ``ctx.video_engine``.

A task inside ``vkit run`` hands a VideoScorer and a list of paths to
``ctx.score_videos`` (e.g. the recommendation task's item embedder); this runs
them as a scoring run of their own (``kind='score'``, ``model_sha256`` = the
scorer's), with everything ``vkit score`` does: videos recorded in the
``videos`` table, each video leased, hashed and skipped when this model
already scored the same content (resume by sha256: a second run with the
same scorer decodes nothing), failures recorded with their reason, the local
(``DataLoader`` workers) or Ray engine. The outcomes are then read back from
the store, so a video scored by an earlier run counts as scored with the
values that run stored (vectors of an embedding scorer are the segment rows'
``values``).

Example::

    engine = functools.partial(engine_score_videos, store=store, task="recommendation", plugin="recommendation",
                               manager=manager, options=ScoreOptions(engine="ray"), parent_run=7)
    ctx.video_engine = engine
    outcomes = ctx.score_videos(scorer, ["/data/v1.mp4", "/data/v2.mp4"])
"""
from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import numpy as np


def _registered(scorer: Any, plugins: Sequence[str] = ()) -> Any:
    """The factory of an already built scorer (picklable with ``functools.partial``; a Ray actor gets a copy):
    the plugins' components are registered first, so the scorer can build registered backbones there too."""
    from vkit.hooks.manager import get_plugin_manager

    get_plugin_manager(extra=tuple(plugins)).register_components()
    return scorer


def engine_score_videos(scorer: Any, paths: Sequence[str], *, store: Any, task: str, plugin: str, manager: Any,
                        options: Any = None, parent_run: int | None = None,
                        plugins: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Score ``paths`` with ``scorer`` through the ``vkit score`` engine; one outcome per path, in order.

    Outcomes are those of :meth:`vkit.core.task.RunContext.score_videos`:
    ``dict(path, status='scored'|'failed', sha256, segments, error)``.

    Args:
        scorer: a :class:`~vkit.core.scoring.VideoScorer` (picklable for ``engine='ray'``).
        paths: video files (a missing one is a ``failed`` outcome, recorded in the store).
        store, manager: the run's open store and plugin manager (``vkit_video_scored`` hooks hear each video).
        task, plugin: names the scoring run is recorded under.
        options: a :class:`~vkit.workflows.scoring.score.ScoreOptions` (engine, workers, batch size, device).
        parent_run: the ``vkit run`` this scoring serves (kept in the scoring run's config).
        plugins: extra plugin modules (``--plugin``), registered again in Ray actors.
    """
    from vkit.workflows.scoring.score import ScoreOptions, ScoreSummary, score_leased
    from vkit.workflows.scoring.engine import check_scorer

    options = options or ScoreOptions()
    check_scorer(scorer, f"task {task!r} (plugin {plugin!r}), ctx.score_videos")
    full = [os.path.abspath(p) for p in paths]
    unique = list(dict.fromkeys(full))
    config = dict(purpose="ctx.score_videos", parent_run=parent_run, scorer=type(scorer).__name__,
                  videos=len(unique), **asdict(options))
    if unique:
        with store.track_run(task, plugin, config, seed=None, model_sha256=scorer.model_sha256, kind="score",
                             versions={"plugins": manager.versions()}) as run_id:
            summary = ScoreSummary(run_id=run_id, task=task, db_url=store.url, engine=options.engine,
                                   videos=len(unique))
            factory = functools.partial(_registered, scorer, tuple(plugins))
            score_leased(store, run_id, scorer, factory, unique, [], options, summary, manager, False,
                         True)  # progress: a bar on a terminal, one closing line when piped (vkit.core.progress)
    found = stored_outcomes(store, scorer.model_sha256, unique)
    return [dict(found[f], path=str(p)) for p, f in zip(paths, full)]


def stored_outcomes(store: Any, model_sha256: str, paths: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``{path: outcome}``: the newest segment rows model ``model_sha256`` stored for each video's current content.

    A video counts as scored when a run with that model has a ``scored``
    summary of the content (sha256) the video has now — at its own path or, for
    a ``duplicate``, at the path that content was scored at; its ``segments``
    are the rows' ``values`` (vectors) or ``score`` (scalars) by segment.
    Otherwise it is ``failed`` with the ``videos`` row's error (or why it was not scored).
    """
    import sqlalchemy as sa

    from vkit.core.store.models import Run, Score, Video, VideoSummary

    videos = {v["path"]: v for v in store.get_videos(list(paths))}
    shas = sorted({v["sha256"] for v in videos.values() if v["sha256"]})
    newest: dict[str, tuple[int, int]] = {}  # content sha256 -> (video_id, run_id) of its newest scored summary
    rows: dict[str, list[Any]] = {}
    with store.session(write=False) as session:
        for start in range(0, len(shas), 500):
            chunk = shas[start:start + 500]
            summaries = session.execute(
                sa.select(VideoSummary.video_sha256, VideoSummary.video_id, VideoSummary.run_id)
                .join(Run, Run.id == VideoSummary.run_id).join(Video, Video.id == VideoSummary.video_id)
                .where(Run.model_sha256 == model_sha256, VideoSummary.status == "scored",
                       VideoSummary.video_sha256.in_(chunk), VideoSummary.video_sha256 == Video.sha256)
                .order_by(VideoSummary.scored_at, VideoSummary.id)).all()
            newest.update({sha: (video_id, run_id) for sha, video_id, run_id in summaries})  # the last one wins
        for sha, (video_id, run_id) in newest.items():
            scores = session.execute(sa.select(Score.segment, Score.score, Score.values)
                                     .where(Score.run_id == run_id, Score.video_id == video_id)
                                     .order_by(Score.segment)).all()
            rows[sha] = [values if values is not None else score for _, score, values in scores]
    out: dict[str, dict[str, Any]] = {}
    for path in paths:
        video = videos.get(path)
        if video is None:
            out[path] = dict(path=path, status="failed", sha256=None, segments=None, error=f"{path}: not recorded")
            continue
        segments = rows.get(video["sha256"]) if video["sha256"] else None
        if segments:
            out[path] = dict(path=path, status="scored", sha256=video["sha256"], error=None,
                             segments=np.asarray(segments, dtype=np.float64))
        else:
            why = video.get("error") or f"{path}: not scored (held by another job, or no segment rows stored)"
            out[path] = dict(path=path, status="failed", sha256=video.get("sha256"), segments=None, error=why)
    return out


__all__ = ["engine_score_videos", "stored_outcomes"]
