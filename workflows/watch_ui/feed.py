"""What the live page shows, read from the store only: a watch run's streams, their newest window scores, events and
class summaries, polled and turned into snapshots and deltas.

The page never talks to the watch engine: whatever process writes the run
(``vkit watch``, or a test adding rows), :meth:`LiveFeed.poll` reads what is
new since the last poll (scores by id, events and summaries by content), so
the page works for a run watched on another machine sharing a PostgreSQL
store too. Tables are reflected from the database, so columns a newer schema
adds (an event's ``status`` and keyframe, a score's wall time) come along
without this module naming every one; values are made JSON-safe here and
shown as text by the page.

Example::

    feed = LiveFeed(open_store(url, read_only=True), run_id)
    delta = feed.poll()          # {"run": {...}, "streams": [...], "scores": [...], "events": [...], "summaries": [...]}
    feed.snapshot()              # everything the page needs to draw from scratch
"""
from __future__ import annotations

import datetime as dt
import math
from collections import deque
from typing import Any

import sqlalchemy as sa

from vkit.registry.errors import StoreError

__all__ = ["KEYFRAME_COLUMNS", "LiveFeed", "POINTS_KEPT"]

#: Points kept (and sent in a snapshot) per stream: the chart's rolling window.
POINTS_KEPT = 600
#: Scores read per poll at most (a page opened on a long run catches up over a few polls).
_SCORES_PER_POLL = 20_000
#: Events of a run shown at most (the newest).
_EVENTS_KEPT = 500
#: Event columns that may hold the keyframe file's path, in the order looked for.
KEYFRAME_COLUMNS = ("keyframe_path",)


def _plain(value: Any) -> Any:
    """A JSON-safe copy (timestamps as ISO text, NaN/inf as ``None``, bytes dropped)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


class LiveFeed:
    """Polls one run of a store for the live page.

    Args:
        store: an open :class:`~vkit.core.store.Store` (read-only is enough).
        run_id: the run to follow (a ``watch`` run; any run with scores works).

    Raises:
        StoreError: no such run.
    """

    def __init__(self, store: Any, run_id: int) -> None:
        self.store, self.run_id = store, int(run_id)
        if store.get_run(self.run_id) is None:
            raise StoreError(f"run {self.run_id} is not in store {store.url}")
        meta = sa.MetaData()
        names = set(sa.inspect(store.engine).get_table_names())
        self.t = {name: sa.Table(name, meta, autoload_with=store.engine)
                  for name in ("runs", "videos", "scores", "events", "video_summaries", "metrics") if name in names}
        self.summary_table = sa.Table("live_summaries", meta, autoload_with=store.engine) \
            if "live_summaries" in names else None
        self.keyframe_column = next((c for c in KEYFRAME_COLUMNS if c in self.t["events"].c), None)
        self.last_score_id = 0
        self.points: dict[int, deque[dict[str, Any]]] = {}
        self.streams: dict[int, dict[str, Any]] = {}
        self.events: dict[int, dict[str, Any]] = {}
        self.summaries: dict[str, dict[str, Any]] = {}
        self.run: dict[str, Any] = {}

    # ------------------------------------------------------------------ reads
    def poll(self) -> dict[str, Any]:
        """Read what changed since the last poll; returns the delta (empty lists when nothing did)."""
        with self.store.engine.connect() as conn:
            run = self._run(conn)
            scores = self._new_scores(conn)
            events = self._changed_events(conn)
            known = set(self.streams)
            wanted = {s["video_id"] for s in scores} | {e["video_id"] for e in events} | self._summary_videos(conn)
            streams = self._streams(conn, wanted - known)
            summaries = self._changed_summaries(conn)
        delta: dict[str, Any] = dict(run=run if run != self.run else None, streams=streams, scores=scores,
                                     events=events, summaries=summaries)
        self.run = run
        return delta

    def snapshot(self) -> dict[str, Any]:
        """Everything known so far: the run, every stream, its kept points, the events and the summaries."""
        return dict(run=self.run, streams=list(self.streams.values()),
                    scores=[p for points in self.points.values() for p in points],
                    events=sorted(self.events.values(), key=lambda e: e["id"]), summaries=list(self.summaries.values()))

    def keyframe_path(self, event_id: int) -> str | None:
        """The keyframe file the store records for event ``event_id`` of this run (``None``: none recorded)."""
        if self.keyframe_column is None:
            return None
        events = self.t["events"]
        with self.store.engine.connect() as conn:
            value = conn.scalar(sa.select(events.c[self.keyframe_column])
                                .where(events.c.id == int(event_id), events.c.run_id == self.run_id))
        return str(value) if value else None

    # ------------------------------------------------------------------ parts
    def _run(self, conn: sa.Connection) -> dict[str, Any]:
        runs = self.t["runs"]
        row = conn.execute(sa.select(runs.c.id, runs.c.task, runs.c.kind, runs.c.status, runs.c.started_at,
                                     runs.c.finished_at, runs.c.error).where(runs.c.id == self.run_id)).mappings().first()
        return _plain(dict(row)) if row is not None else {}

    def _new_scores(self, conn: sa.Connection) -> list[dict[str, Any]]:
        scores = self.t["scores"]
        extra = [c for c in scores.c if c.name not in ("run_id", "values")]
        rows = conn.execute(sa.select(*extra).where(scores.c.run_id == self.run_id, scores.c.id > self.last_score_id)
                            .order_by(scores.c.id).limit(_SCORES_PER_POLL)).mappings().all()
        out = []
        for row in rows:
            point = _plain(dict(row))
            self.last_score_id = max(self.last_score_id, int(row["id"]))
            self.points.setdefault(point["video_id"], deque(maxlen=POINTS_KEPT)).append(point)
            out.append(point)
        return out

    def _changed_events(self, conn: sa.Connection) -> list[dict[str, Any]]:
        events = self.t["events"]
        rows = conn.execute(sa.select(events).where(events.c.run_id == self.run_id)
                            .order_by(events.c.id.desc()).limit(_EVENTS_KEPT)).mappings().all()
        changed = []
        for row in rows:
            event = _plain({k: v for k, v in row.items() if k != "run_id"})
            if self.keyframe_column is not None:  # the page gets whether there is one, never the server's path
                event["keyframe"] = bool(event.pop(self.keyframe_column, None))
                event.pop("keyframe_sha256", None)
            if self.events.get(event["id"]) != event:
                self.events[event["id"]] = event
                changed.append(event)
        return sorted(changed, key=lambda e: e["id"])

    def _summary_videos(self, conn: sa.Connection) -> set[int]:
        summaries = self.t["video_summaries"]
        return set(conn.scalars(sa.select(summaries.c.video_id).where(summaries.c.run_id == self.run_id)))

    def _streams(self, conn: sa.Connection, ids: set[int]) -> list[dict[str, Any]]:
        if not ids:
            return []
        videos = self.t["videos"]
        cols = [c for c in videos.c if c.name not in ("path_bytes", "sha256", "size")]
        rows = conn.execute(sa.select(*cols).where(videos.c.id.in_(sorted(ids)))).mappings().all()
        out = []
        for row in rows:
            stream = _plain(dict(row))
            self.streams[stream["id"]] = stream
            out.append(stream)
        return sorted(out, key=lambda s: s["id"])

    def _changed_summaries(self, conn: sa.Connection) -> list[dict[str, Any]]:
        """The newest ``live_summaries`` row of each group (education: a session's class summary), when the
        store has that table (schema 0010)."""
        rows: list[dict[str, Any]] = []
        if self.summary_table is not None:
            table = self.summary_table
            query = sa.select(table).where(table.c.run_id == self.run_id).order_by(table.c.id.desc()).limit(200)
            rows = [_plain({k: v for k, v in r.items() if k != "run_id"}) for r in conn.execute(query).mappings()]
            rows.sort(key=lambda r: (r.get("step") or 0, r["id"]))
        changed = []
        for row in rows:
            key = str(row.get("group_name") or "")
            if self.summaries.get(key, {}).get("id") != row.get("id"):
                self.summaries[key] = row
                changed.append(row)
        return changed
