"""The engine of ``vkit watch``: one model, batches across streams, live events, rows committed as they come.

Each source has a reader thread (:class:`~vkit.workflows.watch.sources.StreamReader`)
that cuts windows into its stream's bounded queue. This loop (the main
thread) takes waiting windows of every stream round-robin into one batch
(``batch_size`` clips at most, never waiting for a batch to fill), prepares
them with the scorer's own ``prepare`` and scores them with one
``scorer.score`` call, then updates each stream's
:class:`~vkit.workflows.watch.live_events.LiveEvents` and hands the rows to the
:class:`~vkit.workflows.watch.writer.WatchWriter` (committed at least every
``commit_seconds``; event changes at once).

Example::

    engine = WatchEngine(scorer, streams, writer, WatchOptions(window=1.0))
    engine.run(stop)            # until every source ended, ``--for`` passed or ``stop`` is set
"""
from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from vkit.registry.errors import ConfigError


@dataclass
class WatchOptions:
    """How ``vkit watch`` runs (the CLI's options; see ``docs/watch.md``)."""

    window: float | None = None
    hop: float | None = None
    batch_size: int = 8
    device: str = "cpu"
    precision: str = "fp32"
    queue: int = 8
    seconds: float | None = None
    realtime: bool = False
    follow: bool = False
    rtsp_transport: str = "tcp"
    open_timeout: float = 5.0
    commit_seconds: float = 0.2
    summary_every: float = 60.0
    summary_span: float = 120.0
    webhook: str | None = None
    webhook_queue: int = 1000
    webhook_retries: int = 5
    webhook_timeout: float = 5.0

    def __post_init__(self) -> None:
        for name in ("batch_size", "queue", "webhook_queue"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"watch: {name} must be an int >= 1, got {value!r}")
        for name in ("window", "hop", "seconds"):
            value = getattr(self, name)
            if value is not None and not float(value) > 0:
                raise ConfigError(f"watch: {name} must be seconds > 0, got {value!r}")
        if self.rtsp_transport not in ("tcp", "udp"):
            raise ConfigError(f"watch: rtsp_transport={self.rtsp_transport!r}; expected 'tcp' or 'udp'")


MAX_WINDOW_SECONDS = 3600.0


def window_seconds(scorer: Any, meta: dict[str, Any], window: float | None, hop: float | None) -> tuple[float, float]:
    """Window length and hop in seconds: given, else the checkpoint's (``sampling.window_seconds`` /
    ``hop_seconds``), else the scorer's training clip (``clip_seconds`` of a ``segments`` sampler). The hop
    defaults to the window, or to the checkpoint's hop when the window is the checkpoint's too."""
    sampling = dict(meta.get("sampling") or {}) if isinstance(meta, dict) else {}
    if window is not None:
        sampling.pop("hop_seconds", None)  # the checkpoint's hop belongs to the checkpoint's window
    if window is None:
        window = sampling.get("window_seconds") or getattr(scorer, "window_seconds", None)
    if window is None and getattr(getattr(scorer, "sampler", None), "clip_seconds", None):
        window = float(scorer.sampler.clip_seconds)
    if window is None:
        raise ConfigError("watch: the checkpoint stores no window length (sampling.window_seconds) and its scorer "
                          "samples no fixed clip length; pass --window SECONDS (and --hop SECONDS)")
    if hop is None:
        hop = sampling.get("hop_seconds") or window
    window, hop = float(window), float(hop)
    for name, value in (("--window", window), ("--hop", hop)):
        if not 0 < value <= MAX_WINDOW_SECONDS:  # NaN fails too
            raise ConfigError(f"watch: {name} {value:g} s; expected more than 0 and at most {MAX_WINDOW_SECONDS:g} s "
                              "(a live window is scored when it ends: a longer one would never give a score)")
    return window, hop


def check_windowed(scorer: Any, owner: str) -> None:
    """A scorer ``vkit watch`` can drive: a :class:`~vkit.core.scoring.SegmentScorer`-like sampler, size and prepare."""
    from vkit.core.sampling import FrameSampler

    missing = [n for n in ("sampler", "prepare", "score", "summarize") if not hasattr(scorer, n)]
    if missing or not isinstance(getattr(scorer, "sampler", None), FrameSampler):
        raise ConfigError(f"{owner}: its scorer ({type(scorer).__name__}) does not score windows: vkit watch needs a "
                          f"vkit.core.scoring.SegmentScorer (a FrameSampler 'sampler', 'size', prepare, score, "
                          f"summarize); missing {missing or ['sampler (a FrameSampler)']}")
    if getattr(scorer, "embedding", False):
        raise ConfigError(f"{owner}: its scorer returns embeddings, not scores: nothing to watch")


class StreamScoring:
    """What the engine keeps per stream: its events tracker, score stats, the newest preview frame (keyframes)."""

    def __init__(self, state: Any, video_id: int, scorer: Any, hop: float) -> None:
        self.state, self.video_id, self.scorer, self.hop = state, video_id, scorer, hop
        self.events: Any = None
        self.scored = 0
        self.max_score: float | None = None
        self.total = 0.0
        self.preview: np.ndarray | None = None  # the newest window's middle frame: an opening event's keyframe
        self.recent: deque[tuple[float, float]] = deque(maxlen=4096)  # (stream end time, score): live summaries
        self.gap_start: float | None = None
        self.last_end: float | None = None

    def tracker(self, window: dict[str, Any]) -> Any:
        from vkit.workflows.watch.live_events import LiveEvents

        if self.events is None:
            self.events = LiveEvents(self.scorer, self.hop, window["start"], first_index=window["index"])
        return self.events


class WatchEngine:
    """Scores the windows of every stream with one scorer; see the module docstring.

    Args:
        scorer: the task's scorer (already in the chosen precision).
        streams: one :class:`StreamScoring` per source (their readers already started).
        writer: the run's :class:`~vkit.workflows.watch.writer.WatchWriter`.
        options: the :class:`WatchOptions`.
        live: a task's live summary (education: :class:`vkit.plugins.education.live.ClassSummary`), or ``None``.
    """

    def __init__(self, scorer: Any, streams: list[StreamScoring], writer: Any, options: WatchOptions,
                 live: Any = None) -> None:
        self.scorer, self.streams, self.writer, self.options, self.live = scorer, streams, writer, options, live
        self.model_seconds = 0.0
        self.batches = 0
        self._turn = 0
        self._summary_at = time.monotonic() + options.summary_every
        self._summary_step = 0
        self._stats_at = 0.0

    def run(self, stop: threading.Event) -> str:
        """Score until every stream ended (``'ended'``), ``options.seconds`` passed (``'time'``) or ``stop`` (``'stopped'``)."""
        deadline = None if self.options.seconds is None else time.monotonic() + self.options.seconds
        while True:
            self._notices()
            batch = self._take()
            if batch:
                self._score(batch)
            if self.writer.due():
                self._stats()
                self.writer.flush()
            if self.live is not None and time.monotonic() >= self._summary_at:
                self._live_summary()
            if stop.is_set():
                return "stopped"
            if deadline is not None and time.monotonic() >= deadline:
                return "time"
            if not batch:
                if all(s.state.done and not s.state.pending() and not s.state.notices for s in self.streams):
                    self._notices()
                    return "ended"
                time.sleep(0.005)

    # ---------------------------------------------------------------- scoring
    def _take(self) -> list[tuple[StreamScoring, dict[str, Any]]]:
        """Up to ``batch_size`` waiting windows, one stream after another (oldest windows first)."""
        batch: list[tuple[StreamScoring, dict[str, Any]]] = []
        n = len(self.streams)
        progress = True
        while len(batch) < self.options.batch_size and progress:
            progress = False
            for k in range(n):
                stream = self.streams[(self._turn + k) % n]
                for window in stream.state.take(1):
                    batch.append((stream, window))
                    progress = True
                if len(batch) >= self.options.batch_size:
                    break
        self._turn = (self._turn + 1) % max(1, n)
        return batch

    def _score(self, batch: list[tuple[StreamScoring, dict[str, Any]]]) -> None:
        import torch

        from vkit.workflows.scoring.engine import _segment_values

        clips = np.concatenate([self.scorer.prepare(window["frames"][None]) for _, window in batch])
        tensor = torch.from_numpy(np.ascontiguousarray(clips, dtype=np.float32)).to(self.options.device)
        began = time.perf_counter()
        with torch.inference_mode():
            out = self.scorer.score(tensor)
        values = _segment_values(out, len(batch), self.scorer)
        self.model_seconds += time.perf_counter() - began
        self.batches += 1
        scored_at = time.time()
        for (stream, window), value in zip(batch, values):
            self._one(stream, window, float(value), scored_at)

    def _one(self, stream: StreamScoring, window: dict[str, Any], value: float, scored_at: float) -> None:
        self.writer.add_score(stream.video_id, window, value, scored_at)
        stream.scored += 1
        stream.total += value
        stream.max_score = value if stream.max_score is None else max(stream.max_score, value)
        stream.recent.append((window["end"], value))
        stream.last_end = window["end"]
        if window.get("preview") is not None:
            stream.preview = window["preview"]
        tracker = stream.tracker(window)
        for change in tracker.add(value):
            preview = stream.preview if change["action"] == "open" else None
            self.writer.add_event(stream.video_id, dict(change, wall=window["wall_time"]), preview)

    # ---------------------------------------------------------------- stream notices
    def _notices(self) -> None:
        for stream in self.streams:
            for notice in stream.state.take_notices():
                self._notice(stream, notice)

    def _notice(self, stream: StreamScoring, notice: dict[str, Any]) -> None:
        kind = notice["kind"]
        if kind in ("disconnected", "ended"):
            self._drain(stream)  # windows already cut still count
            if stream.events is not None:
                status = "closed" if kind == "ended" and not stream.state.spec.live and not notice.get("reason") \
                    else "interrupted"
                for change in stream.events.finish(status):
                    preview = stream.preview if change["action"] == "open" else None
                    self.writer.add_event(stream.video_id, dict(change, wall=notice.get("wall")), preview)
                stream.events = None
            stream.preview = None
        if kind == "disconnected":
            stream.gap_start = notice["time"] or 0.0
            gap = dict(kind="gap", start=stream.gap_start, end=stream.gap_start, score=None, status="open")
            self.writer.add_event(stream.video_id, dict(action="open", event=gap, wall=notice["wall"]))
        elif kind == "connected" and stream.gap_start is not None:
            gap = dict(kind="gap", start=stream.gap_start, end=notice["time"], score=None, status="closed")
            self.writer.add_event(stream.video_id, dict(action="close", event=gap, wall=notice["wall"]))
            stream.gap_start = None
        elif kind == "ended" and stream.gap_start is not None:
            self.close_gap(stream, "interrupted")

    def close_gap(self, stream: StreamScoring, status: str) -> None:
        if stream.gap_start is None:
            return
        away = stream.state.away_since
        end = stream.gap_start + (max(0.0, time.time() - away) if away is not None else 0.0)
        gap = dict(kind="gap", start=stream.gap_start, end=end, score=None, status=status)
        self.writer.add_event(stream.video_id, dict(action="close", event=gap, wall=time.time()))
        stream.gap_start = None

    def _drain(self, stream: StreamScoring) -> None:
        """Score the stream's waiting windows now (before its events close)."""
        while True:
            windows = stream.state.take(self.options.batch_size)
            if not windows:
                return
            self._score([(stream, w) for w in windows])

    def stop_all(self, status: str = "interrupted") -> None:
        """The watch ends (``--for``, Ctrl-C, SIGTERM): open events and gaps close with ``status``; rows committed."""
        for stream in self.streams:
            if stream.events is not None:
                for change in stream.events.finish(status):
                    self.writer.add_event(stream.video_id, dict(change, wall=time.time()))
                stream.events = None
            self.close_gap(stream, status)
        self._stats(force=True)
        self.writer.flush()

    # ---------------------------------------------------------------- summaries
    def _stats(self, force: bool = False) -> None:
        """Each stream's summary row (counters, state), at most once a second (``force``: now)."""
        now = time.monotonic()
        if not force and now - self._stats_at < 1.0 and not all(s.state.done for s in self.streams):
            return
        self._stats_at = now
        for stream in self.streams:
            snap = stream.state.snapshot()
            values = {k: snap[k] for k in ("frames", "windows", "dropped_windows", "dropped_frames",
                                           "corrupt_packets", "reconnects", "gaps")}
            values.update(state=snap["state"], fps=snap["fps"], scored=stream.scored)
            mean = stream.total / stream.scored if stream.scored else None
            self.writer.add_summary(stream.video_id, stream.scored, stream.max_score, mean, values)

    def _live_summary(self) -> None:
        self._summary_at = time.monotonic() + self.options.summary_every
        for group, text, values in self.live.summaries(self.streams):
            self.writer.add_live_summary(group, self._summary_step, text, values)
        self._summary_step += 1
        self.writer.flush()

    def counters(self) -> list[dict[str, Any]]:
        """Per-stream counters for the final line."""
        out = []
        for stream in self.streams:
            snap = stream.state.snapshot()
            out.append(dict(stream=stream.state.spec.shown, video_id=stream.video_id, scored=stream.scored,
                            **{k: snap[k] for k in ("frames", "windows", "dropped_windows", "dropped_frames",
                                                    "corrupt_packets", "reconnects", "gaps", "state", "error")}))
        return out


__all__ = ["StreamScoring", "WatchEngine", "WatchOptions", "check_windowed", "window_seconds"]
