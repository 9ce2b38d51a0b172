"""Scoring results: segment scores, events and one summary per video and run, and what a model already scored.

Example::

    store.add_video_results(run_id, [{"video_id": 1, "status": "scored", "scores": [...], "events": []}])
    store.scored_video_ids(model_sha256)         # {1}
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from vkit.core.store.base import StoreBase, _pairs, _pick
from vkit.core.store.engine import mask_secrets
from vkit.core.store.models import SCORED_STATUSES, Event, Run, Score, Video, VideoSummary, utcnow
from vkit.core.store.paths import display_text
from vkit.core.store.upsert import upsert
from vkit.registry.errors import StoreError

_SCORE_FIELDS = ("video_id", "segment", "start", "end", "score", "values", "wall_time", "scored_at")
_EVENT_FIELDS = ("video_id", "kind", "start", "end", "score", "status", "opened_at", "closed_at", "keyframe_path",
                 "keyframe_sha256")  # the last five: live events of ``vkit watch`` (migration 0010)
_SCORE_KEYS = frozenset(_SCORE_FIELDS)


class Results(StoreBase):
    """The ``scores``, ``events`` and ``video_summaries`` tables."""

    def add_scores(self, run_id: int, rows: Iterable[Mapping[str, Any]]) -> int:
        """Record segment scores (``video_id``, ``segment``, ``start``, ``end``, ``score``, ``values``); idempotent."""
        clean = [_score_row(run_id, row) for row in rows]
        with self.session() as session:
            self._check_refs(session, run_id, {row["video_id"] for row in clean})
            return upsert(session, Score.__table__, clean, keys=("run_id", "video_id", "segment"), owned=True)

    def add_events(self, run_id: int, rows: Iterable[Mapping[str, Any]]) -> int:
        """Record events (``video_id``, ``kind``, ``start``, ``end``, ``score``); same (video, kind, start) updates."""
        clean = [_event_row(run_id, row) for row in rows]
        with self.session() as session:
            self._check_refs(session, run_id, {row["video_id"] for row in clean})
            return upsert(session, Event.__table__, clean, keys=("run_id", "video_id", "kind", "start"))

    def add_video_results(self, run_id: int, results: Iterable[Mapping[str, Any]], *,
                          segment_rows: bool = True) -> list[dict[str, Any]]:
        """Record a batch of scored (or failed) videos in ONE transaction: scores, events and a summary each.

        Each result carries ``video_id``, ``status`` (``scored``/``failed``),
        optional ``error``, lists ``scores`` and ``events`` (rows as for
        :meth:`add_scores` / :meth:`add_events`, without ``video_id``) and optional
        ``aggregates`` (name -> number, kept in the summary's ``values`` with the
        event count). ``segment_rows=False`` (``vkit score --aggregate-only``)
        writes only the summaries: computed from the scores and events, which
        are then dropped.

        Returns:
            one dict per video, the payload of the ``vkit_video_scored`` hook:
            ``path``, ``sha256``, ``status``, ``error``, ``max_score``,
            ``mean_score`` and ``events`` (``start``/``end``/``score``).
        """
        with self.session() as session:
            return self._write_results(session, run_id, [dict(r) for r in results], segment_rows)

    def _write_results(self, session: Session, run_id: int, results: list[dict[str, Any]],
                       segment_rows: bool = True) -> list[dict[str, Any]]:
        if not results:
            return []
        scores, events, summaries = [], [], []
        for result in results:
            video_id = result.get("video_id")
            scores += [_score_row(run_id, {**s, "video_id": video_id}) for s in result.get("scores", ())]
            events += [_event_row(run_id, {**e, "video_id": video_id}) for e in result.get("events", ())]
            summaries.append(_summary_row(run_id, result))
        self._check_refs(session, run_id, {s["video_id"] for s in summaries})
        shas = _pairs(session, sa.select(Video.id, Video.sha256).where(Video.id.in_([s["video_id"] for s in summaries])))
        paths = _pairs(session, sa.select(Video.id, Video.path).where(Video.id.in_(list(shas))))
        for summary in summaries:
            summary["video_sha256"] = shas[summary["video_id"]]
        if segment_rows:
            upsert(session, Score.__table__, scores, keys=("run_id", "video_id", "segment"), owned=True)
            upsert(session, Event.__table__, events, keys=("run_id", "video_id", "kind", "start"))
        else:
            events = []
        upsert(session, VideoSummary.__table__, summaries, keys=("run_id", "video_id"))
        return [_hook_payload(s, paths, events) for s in summaries]

    def scored_video_ids(self, model_sha256: str) -> set[int]:
        """Ids of videos already scored by the model with checkpoint sha256 ``model_sha256`` (in any run).

        A video counts only if its summary is ``scored`` and its content
        (sha256) has not changed since; failed videos are retried.
        """
        query = (
            sa.select(VideoSummary.video_id)
            .join(Run, Run.id == VideoSummary.run_id)
            .join(Video, Video.id == VideoSummary.video_id)
            .where(Run.model_sha256 == model_sha256, VideoSummary.status == "scored")
            .where(VideoSummary.video_sha256.is_not_distinct_from(Video.sha256))
        )
        with self.session(write=False) as session:
            return set(session.scalars(query))

    def video_scores(self, run_id: int, video_id: int | None = None) -> list[dict[str, Any]]:
        """Segment scores of run ``run_id`` (optionally one video), by video and segment."""
        where = [Score.run_id == run_id] + ([Score.video_id == video_id] if video_id is not None else [])
        return self._select(Score, *where, order_by=(Score.video_id, Score.segment))

    def run_events(self, run_id: int, video_id: int | None = None) -> list[dict[str, Any]]:
        """Events of run ``run_id`` (optionally one video), by video and start."""
        where = [Event.run_id == run_id] + ([Event.video_id == video_id] if video_id is not None else [])
        return self._select(Event, *where, order_by=(Event.video_id, Event.start, Event.kind))

    def video_summaries(self, run_id: int) -> list[dict[str, Any]]:
        """Per-video summaries of scoring run ``run_id``, by video id."""
        return self._select(VideoSummary, VideoSummary.run_id == run_id, order_by=(VideoSummary.video_id,))

    def model_summaries(self, model_sha256: str, video_ids: Sequence[int]) -> list[dict[str, Any]]:
        """The newest ``scored`` summary of each of ``video_ids`` by this model (any run) whose content is unchanged.

        What a resumed job aggregates over: videos scored in earlier runs count with their stored summary.
        Each row is a ``video_summaries`` row plus the video's ``path`` and ``duration``.
        """
        query = (
            sa.select(VideoSummary, Video.path, Video.duration)
            .join(Run, Run.id == VideoSummary.run_id)
            .join(Video, Video.id == VideoSummary.video_id)
            .where(Run.model_sha256 == model_sha256, VideoSummary.status == "scored",
                   VideoSummary.video_id.in_([int(i) for i in video_ids]))
            .where(VideoSummary.video_sha256.is_not_distinct_from(Video.sha256))
            .order_by(VideoSummary.scored_at, VideoSummary.id)
        )
        newest: dict[int, dict[str, Any]] = {}
        with self.session(write=False) as session:
            for summary, path, duration in session.execute(query):
                row = {c.name: getattr(summary, c.key) for c in VideoSummary.__table__.columns}
                newest[summary.video_id] = dict(row, path=path, duration=duration)
        return [newest[i] for i in sorted(newest)]


def _score_row(run_id: int, row: Mapping[str, Any]) -> dict[str, Any]:
    """The hot path of bulk writes: checks inline (``_pick`` only to word the error); ``values`` are encoded by upsert."""
    get = row.get
    if (not row.keys() <= _SCORE_KEYS or get("video_id") is None or get("segment") is None or get("start") is None
            or get("end") is None):
        _pick(row, _SCORE_FIELDS, "scores", required=("video_id", "segment", "start", "end"))
    clean = {**row, "run_id": run_id}
    score = clean.get("score")
    if score is not None and type(score) is not float:
        clean["score"] = float(score)
    return clean


def _event_row(run_id: int, row: Mapping[str, Any]) -> dict[str, Any]:
    clean = _pick(row, _EVENT_FIELDS, "events", required=("video_id", "kind", "start", "end"))
    return dict(clean, run_id=run_id, start=float(clean["start"]), end=float(clean["end"]))


def _summary_row(run_id: int, result: Mapping[str, Any]) -> dict[str, Any]:
    status, video_id = result.get("status"), result.get("video_id")
    if video_id is None or status not in SCORED_STATUSES:
        raise StoreError(f"video result {dict(result)!r}: needs 'video_id' and status one of {SCORED_STATUSES}")
    values = [float(s["score"]) for s in result.get("scores", ()) if s.get("score") is not None]
    finite = [v for v in values if math.isfinite(v)]
    error = result.get("error")
    return dict(
        run_id=run_id, video_id=video_id, status=status,
        error=None if error is None else display_text(mask_secrets(str(error))),
        segments=len(result.get("scores", ())), max_score=max(finite) if finite else None,
        mean_score=sum(finite) / len(finite) if finite else None, scored_at=utcnow(),
        values=_summary_values(result) if status == "scored" else None,
    )


def _summary_values(result: Mapping[str, Any]) -> dict[str, Any]:
    """``{"events": count, **aggregates}``; an aggregate must be a finite number (or None)."""
    values: dict[str, Any] = {"events": len(result.get("events", ()))}
    aggregates = result.get("aggregates") or {}
    if not isinstance(aggregates, Mapping):
        raise StoreError(f"video {result.get('video_id')}: aggregates must map names to numbers, got {aggregates!r}")
    for key, value in aggregates.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not math.isfinite(value)):
            raise StoreError(f"video {result.get('video_id')}: aggregate {key!r} must be a finite number, got {value!r}")
        values[str(key)] = value
    return values


def _hook_payload(summary: dict[str, Any], paths: dict[int, str], events: list[dict[str, Any]]) -> dict[str, Any]:
    mine = [e for e in events if e["video_id"] == summary["video_id"]]
    return dict(
        path=paths[summary["video_id"]], sha256=summary["video_sha256"], status=summary["status"],
        error=summary["error"], max_score=summary["max_score"], mean_score=summary["mean_score"],
        events=[dict(start=e["start"], end=e["end"], score=e.get("score")) for e in sorted(mine, key=lambda e: e["start"])],
    )
