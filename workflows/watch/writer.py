"""The rows of a watch run: window scores, live events (with keyframes), per-stream summaries, alerts.

Rows wait in memory for at most ``every`` seconds (an event change is
committed at the next :meth:`WatchWriter.flush`, which the engine calls at
once) and are written in one transaction per flush, with the store's
idempotent upserts (:func:`vkit.core.store.upsert.upsert`): an event row is
keyed by (run, video, kind, start), so an ``open`` row becomes ``closed`` in
place. Alerts are stored in the same transaction as their event; after the
commit they go to the webhook and to ``--json``.

Example::

    writer = WatchWriter(store, run_id, work_dir, emit=print, sender=None)
    writer.add_score(video_id, window, 0.42, scored_at)
    writer.add_event(video_id, change, preview)
    writer.flush()
"""
from __future__ import annotations

import hashlib
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vkit.core.store.models import utcnow


def _utc(seconds: float | None) -> Any:
    import datetime as dt

    return None if seconds is None else dt.datetime.fromtimestamp(seconds, dt.timezone.utc)


class WatchWriter:
    """Buffers and commits one watch run's rows (see the module docstring).

    Args:
        store: the open store.
        run_id: the watch run.
        work_dir: where keyframes go (``keyframes/`` under it).
        emit: called with each JSON line's payload after its rows are committed (``--json``).
        sender: the :class:`~vkit.workflows.watch.alerts.WebhookSender`, or ``None`` (no alerts rows then).
        every: longest a row waits for its commit, in seconds.
        streams: ``{video_id: shown source}`` (named in the JSON lines).
    """

    def __init__(self, store: Any, run_id: int, work_dir: Path, emit: Callable[[dict[str, Any]], None],
                 sender: Any = None, every: float = 0.5, streams: dict[int, str] | None = None) -> None:
        self.store, self.run_id, self.work_dir, self.emit, self.sender = store, run_id, Path(work_dir), emit, sender
        self.every, self.streams = float(every), dict(streams or {})
        self._scores: list[dict[str, Any]] = []
        self._events: dict[tuple[int, str, float], dict[str, Any]] = {}
        self._alerts: list[tuple[tuple[int, str, float], str, dict[str, Any]]] = []
        self._summaries: dict[int, dict[str, Any]] = {}
        self._summary_rows: list[dict[str, Any]] = []
        self._keyframes: dict[tuple[int, str, float], str] = {}  # event key -> its keyframe's path
        self._lines: list[dict[str, Any]] = []
        self._since = time.monotonic()
        self.committed_scores = 0
        self.latencies: deque[float] = deque(maxlen=10000)  # seconds from a window's last frame to its committed row

    # ---------------------------------------------------------------- queueing
    def add_score(self, video_id: int, window: dict[str, Any], score: float | None, scored_at: float,
                  values: Any = None) -> None:
        row = dict(run_id=self.run_id, video_id=video_id, segment=int(window["index"]), start=float(window["start"]),
                   end=float(window["end"]), score=None if score is None else float(score), values=values,
                   wall_time=_utc(window["wall_time"]), scored_at=_utc(scored_at))
        self._scores.append(row)

    def add_event(self, video_id: int, change: dict[str, Any], preview: Any = None) -> None:
        """Queue an event change (``open``/``update``/``close`` of :class:`~vkit.workflows.watch.live_events.LiveEvents`,
        or a gap); an ``open`` with a ``preview`` frame saves the event's keyframe."""
        event, action = change["event"], change["action"]
        key = (video_id, str(event["kind"]), float(event["start"]))
        row = self._events.setdefault(key, dict(run_id=self.run_id, video_id=video_id, kind=key[1], start=key[2]))
        row.update(end=float(event["end"]), score=event.get("score"), status=event["status"])
        now = utcnow()
        if action == "open":
            row["opened_at"] = _utc(change.get("wall")) or now
            if preview is not None:
                row["keyframe_path"], row["keyframe_sha256"] = self._keyframe(key, preview)
                self._keyframes[key] = row["keyframe_path"]
        if event["status"] != "open":
            row["closed_at"] = _utc(change.get("wall")) or now
        if action in ("open", "close"):
            payload = dict(type="event", action=action, run_id=self.run_id, stream=self.streams.get(video_id),
                           video_id=video_id, kind=key[1], start=key[2], end=row["end"], score=row["score"],
                           status=row["status"], keyframe=self._keyframes.get(key), at=now.isoformat())
            self._alerts.append((key, action, payload))

    def add_summary(self, video_id: int, segments: int, max_score: float | None, mean_score: float | None,
                    values: dict[str, Any]) -> None:
        self._summaries[video_id] = dict(run_id=self.run_id, video_id=video_id, video_sha256=None, status="scored",
                                         segments=int(segments), max_score=max_score, mean_score=mean_score,
                                         scored_at=utcnow(), values=values)

    def add_live_summary(self, group: str, step: int, text: str, values: dict[str, Any]) -> None:
        self._summary_rows.append(dict(run_id=self.run_id, group_name=group, step=int(step), at=utcnow(), text=text,
                                       values=values))
        self._lines.append(dict(type="summary", run_id=self.run_id, group=group, step=int(step), text=text, **values))

    def line(self, payload: dict[str, Any]) -> None:
        """A JSON line printed after the next commit."""
        self._lines.append(payload)

    def due(self) -> bool:
        return bool(self._events) or time.monotonic() - self._since >= self.every

    def pending(self) -> bool:
        return bool(self._scores or self._events or self._summaries or self._summary_rows or self._lines)

    # ---------------------------------------------------------------- writing
    def _keyframe(self, key: tuple[int, str, float], preview: Any) -> tuple[str, str]:
        """Save ``preview`` (RGB) as ``keyframes/<video>-<kind>-<start ms>.jpg``; its absolute path and sha256."""
        import io

        from PIL import Image

        folder = self.work_dir / "keyframes"
        folder.mkdir(parents=True, exist_ok=True)
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in key[1])[:40]
        path = folder / f"{key[0]}-{safe}-{int(round(key[2] * 1000))}.jpg"
        buffer = io.BytesIO()
        Image.fromarray(preview).save(buffer, format="JPEG", quality=85)
        data = buffer.getvalue()
        path.write_bytes(data)
        return str(path.resolve()), hashlib.sha256(data).hexdigest()

    def flush(self) -> None:
        """Commit every queued row in one transaction; then hand stored alerts to the webhook and print JSON lines."""
        self._since = time.monotonic()
        if not self.pending():
            return
        scores, events, alerts = self._scores, list(self._events.values()), self._alerts
        summaries, live_rows, lines = list(self._summaries.values()), self._summary_rows, self._lines
        self._scores, self._events, self._alerts, self._summaries, self._summary_rows, self._lines = [], {}, [], {}, [], []
        try:
            stored = self._commit(scores, events, alerts, summaries, live_rows)
        except BaseException:  # (Ctrl-C mid-commit, a busy store) nothing was written: the rows wait for the next flush
            self._scores[:0], self._alerts[:0], self._summary_rows[:0], self._lines[:0] = scores, alerts, live_rows, lines
            for row in events:
                self._events.setdefault((row["video_id"], row["kind"], row["start"]), row)
            for row in summaries:
                self._summaries.setdefault(row["video_id"], row)
            raise
        committed = time.time()
        self.committed_scores += len(scores)
        self.latencies.extend(committed - r["wall_time"].timestamp() for r in scores if r["wall_time"] is not None)
        for alert_id, payload in stored:
            self.sender.offer(alert_id, payload)
        for _, _, payload in alerts:
            self.emit(payload)
        for payload in lines:
            self.emit(payload)

    def _commit(self, scores: list[dict[str, Any]], events: list[dict[str, Any]], alerts: list[Any],
                summaries: list[dict[str, Any]], live_rows: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any]]]:
        """One transaction of every queued row; returns the stored alerts ``(alert id, payload)`` for the webhook."""
        import sqlalchemy as sa

        from vkit.core.store.models import Alert, Event, LiveSummary, Score, VideoSummary
        from vkit.core.store.upsert import upsert

        stored: list[tuple[int, dict[str, Any]]] = []
        with self.store.session() as session:
            if scores:
                upsert(session, Score.__table__, scores, keys=("run_id", "video_id", "segment"))
            if events:
                upsert(session, Event.__table__, events, keys=("run_id", "video_id", "kind", "start"))
            if summaries:
                upsert(session, VideoSummary.__table__, summaries, keys=("run_id", "video_id"))
            if live_rows:
                upsert(session, LiveSummary.__table__, live_rows, keys=("run_id", "group_name", "step"))
            if alerts:
                ids = self._event_ids(session, {key for key, _, _ in alerts})
                for key, _, payload in alerts:
                    payload["event_id"] = ids.get(key)
                if self.sender is not None:
                    rows = [dict(run_id=self.run_id, event_id=ids[key], action=action, payload=payload,
                                 status="pending", attempts=0, created_at=utcnow())
                            for key, action, payload in alerts if key in ids]
                    upsert(session, Alert.__table__, rows, keys=("run_id", "event_id", "action"), update=())
                    found = session.execute(sa.select(Alert.id, Alert.event_id, Alert.action)
                                            .where(Alert.run_id == self.run_id,
                                                   Alert.event_id.in_([r["event_id"] for r in rows])))
                    by_key = {(event_id, action): alert_id for alert_id, event_id, action in found}
                    stored = [(by_key[(ids[key], action)], payload) for key, action, payload in alerts
                              if key in ids and (ids[key], action) in by_key]
        return stored

    def _event_ids(self, session: Any, keys: set[tuple[int, str, float]]) -> dict[tuple[int, str, float], int]:
        import sqlalchemy as sa

        from vkit.core.store.models import Event

        videos = sorted({k[0] for k in keys})
        rows = session.execute(sa.select(Event.id, Event.video_id, Event.kind, Event.start)
                               .where(Event.run_id == self.run_id, Event.video_id.in_(videos)))
        return {(video_id, kind, float(start)): event_id for event_id, video_id, kind, start in rows
                if (video_id, kind, float(start)) in keys}


__all__ = ["WatchWriter"]
