"""Rolling windows of a live stream, and the state one stream shares between its reader and the engine.

A window is ``window`` frames (``round(window_seconds * fps)``), a new one every
``hop`` frames. Its clip is chosen by the scorer's own
:class:`~vkit.core.sampling.FrameSampler` with one segment over the window's
frames, so windows that tile a file (``hop == window``, ``N = S * window``)
give exactly the clips ``vkit score`` samples from its ``S`` segments. Only
frames resized to the scorer's size are kept (and one preview frame per
window for keyframes), at most one window's worth.

Stream time counts frames at the stream's nominal rate from its first frame;
after a reconnect it goes on from where it stopped plus the wall time the
stream was away, and windows start afresh (no window spans a gap).

Example::

    cutter = WindowCutter(sampler, window=10, hop=10, size=(64, 64))
    for frame in frames:                       # av.VideoFrame
        for window in cutter.add(frame, wall_time=time.time()):
            window["frames"].shape             # (T, 64, 64, 3) uint8
"""
from __future__ import annotations

import dataclasses
import threading
from collections import deque
from typing import Any

import numpy as np

from vkit.registry.errors import ConfigError

#: Widest preview frame kept for keyframes, in pixels.
PREVIEW_WIDTH = 320


def window_sampler(sampler: Any) -> Any:
    """The scorer's sampler over one window: the same mode and clip, one segment."""
    return dataclasses.replace(sampler, num_segments=1)


class WindowCutter:
    """Frames in, windows out: ``window`` frames every ``hop`` frames, sampled by ``sampler`` (one segment).

    Args:
        sampler: the scorer's :class:`~vkit.core.sampling.FrameSampler` (its ``num_segments`` is ignored).
        window: frames per window (>= 1).
        hop: frames between window starts (1 <= hop).
        size: ``(height, width)`` the kept frames are resized to (``None``: original size).
        fps: the stream's frame rate (stream time, and ``segments`` sampling).
    """

    def __init__(self, sampler: Any, window: int, hop: int, size: tuple[int, int] | None, fps: float) -> None:
        if window < 1 or hop < 1:
            raise ConfigError(f"watch: a window needs >= 1 frame and a hop >= 1 frame, got window={window}, hop={hop} "
                              f"(at {fps:g} fps: raise --window / --hop)")
        self.sampler, self.window, self.hop, self.size, self.fps = window_sampler(sampler), window, hop, size, fps
        self.picks = self.sampler.indices(window, fps)[0]  # frame indices inside a window
        self.middle = window // 2
        self._frames: deque[np.ndarray | None] = deque(maxlen=window)
        self._previews: dict[int, np.ndarray] = {}
        self._wanted = set(int(i) for i in self.picks)
        self.count = 0  # frames seen since this cutter started (this connection)

    def add(self, frame: Any, wall_time: float, base_time: float) -> list[dict[str, Any]]:
        """Take one decoded frame; return the window it completes (or nothing).

        ``base_time``: stream time of this cutter's first frame.
        """
        from vkit.core.video import _to_array

        position = self.count
        self.count += 1
        start = position - self.window + 1  # the window this frame would end
        # the offsets of this frame in the windows it belongs to; keep a resized copy only if one samples it
        first = -(-max(0, start) // self.hop) * self.hop
        offsets = {position - s for s in range(first, position + 1, self.hop)}
        keep = not offsets.isdisjoint(self._wanted)
        self._frames.append(_to_array(frame, self.size) if keep else None)
        if self.middle in offsets:
            self._previews[position] = _preview(frame)
        if start < 0 or start % self.hop:
            return []
        frames = np.stack([self._frames[int(i)] for i in self.picks])
        preview = self._previews.pop(start + self.middle, None)
        for old in [p for p in self._previews if p < start]:
            del self._previews[old]
        return [dict(frames=frames, start=base_time + start / self.fps,
                     end=base_time + (start + self.window) / self.fps, wall_time=wall_time, preview=preview,
                     new_frames=self.window if start == 0 else self.hop)]


def _preview(frame: Any) -> np.ndarray:
    """The frame as RGB at most :data:`PREVIEW_WIDTH` wide (a keyframe's source)."""
    from vkit.core.video import _to_array

    width, height = int(frame.width), int(frame.height)
    if width > PREVIEW_WIDTH:
        height, width = max(2, round(height * PREVIEW_WIDTH / width)) // 2 * 2, PREVIEW_WIDTH
    return _to_array(frame, (height, width))


class StreamState:
    """What one stream's reader hands the engine: finished windows (bounded, oldest dropped), counters, notices.

    Args:
        index: the stream's position among the sources.
        spec: its :class:`~vkit.workflows.watch.sources.SourceSpec`.
        sampler, size: the scorer's sampler and frame size.
        window_seconds, hop_seconds: window length and hop in seconds.
        queue: windows that may wait for scoring; when full the oldest is dropped (its new frames counted).
    """

    def __init__(self, index: int, spec: Any, sampler: Any, size: tuple[int, int] | None, window_seconds: float,
                 hop_seconds: float, queue: int = 8) -> None:
        self.index, self.spec, self.sampler, self.size = index, spec, sampler, size
        self.window_seconds, self.hop_seconds = float(window_seconds), float(hop_seconds)
        self._lock = threading.RLock()
        self._room = threading.Condition(self._lock)  # a file read at full speed waits here for a free slot
        self._windows: deque[dict[str, Any]] = deque()
        self.queue = max(1, int(queue))
        self.notices: deque[dict[str, Any]] = deque()
        self.counters = dict(frames=0, windows=0, dropped_windows=0, dropped_frames=0, corrupt_packets=0,
                             reconnects=0, gaps=0)
        self.state, self.error, self.fps = "connecting", None, None
        self.cutter: WindowCutter | None = None
        self.next_time = 0.0  # stream time of the next connection's first frame
        self.base_time = 0.0  # stream time of this connection's first frame
        self.last_frame_time: float | None = None
        self.away_since: float | None = None  # wall time the stream dropped
        self.window_index = 0
        self.frames_this_connection = 0
        self.done = False

    # ---------------------------------------------------------------- reader side
    def connected(self, fps: float, wall: float) -> None:
        """A (re)connection delivered its first frame."""
        with self._lock:
            self.fps = fps
            if self.away_since is not None:
                self.next_time += max(0.0, wall - self.away_since)
                self.counters["reconnects"] += 1
                self.notices.append(dict(kind="connected", wall=wall, time=self.next_time))
            self.away_since = None
            window = max(1, round(self.window_seconds * fps))
            hop = max(1, round(self.hop_seconds * fps))
            self.cutter = WindowCutter(self.sampler, window, hop, self.size, fps)
            self.base_time = self.next_time
            self.frames_this_connection = 0
            self.state = "playing"

    def add_frame(self, frame: Any, wall: float, stop: threading.Event | None = None) -> None:
        """One decoded frame: into the current window; a finished window into the queue. When the queue is full the
        oldest window is dropped (a live source, or a file played in real time); a file read at full speed waits."""
        assert self.cutter is not None
        windows = self.cutter.add(frame, wall, self.base_time)
        if windows and not self.spec.live and not self.spec.realtime:
            with self._room:  # nothing is lost from a recording: decoding waits for scoring
                self._room.wait_for(lambda: len(self._windows) < self.queue or (stop is not None and stop.is_set()))
        with self._lock:
            self.frames_this_connection += 1
            self.counters["frames"] += 1
            self.last_frame_time = self.base_time + self.frames_this_connection / self.cutter.fps
            for window in windows:
                window.update(stream=self.index, index=self.window_index)
                self.window_index += 1
                self.counters["windows"] += 1
                if len(self._windows) >= self.queue:
                    dropped = self._windows.popleft()
                    self.counters["dropped_windows"] += 1
                    self.counters["dropped_frames"] += dropped["new_frames"]
                self._windows.append(window)

    def disconnected(self, wall: float, reason: str) -> None:
        """The stream ended or failed (a live source: the reader reconnects)."""
        with self._lock:
            if self.away_since is None:
                self.away_since = wall
                self.next_time = self.last_frame_time if self.last_frame_time is not None else self.next_time
                self.counters["gaps"] += 1
                self.notices.append(dict(kind="disconnected", wall=wall, time=self.next_time, reason=reason))
            self.state, self.error = "reconnecting", reason

    def note_error(self, error: str) -> None:
        with self._lock:
            self.error = error

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.counters[name] += n

    def ended(self, error: str | None) -> None:
        """The reader stopped for good (a file's end, ``stop``, or an error)."""
        with self._lock:
            self.state, self.done = "ended", True
            if error:
                self.error = error
            self.notices.append(dict(kind="ended", wall=None, time=self.last_frame_time, reason=error))

    # ---------------------------------------------------------------- engine side
    def take(self, limit: int) -> list[dict[str, Any]]:
        """Up to ``limit`` waiting windows, oldest first."""
        with self._lock:
            out = []
            while self._windows and len(out) < limit:
                out.append(self._windows.popleft())
            if out:
                self._room.notify_all()
            return out

    def wake(self) -> None:
        """Wake a reader waiting for room (the watch is stopping)."""
        with self._lock:
            self._room.notify_all()

    def pending(self) -> int:
        with self._lock:
            return len(self._windows)

    def take_notices(self) -> list[dict[str, Any]]:
        with self._lock:
            out = list(self.notices)
            self.notices.clear()
            return out

    def snapshot(self) -> dict[str, Any]:
        """Counters and state (what the stream's summary row holds)."""
        with self._lock:
            return dict(self.counters, state=self.state, fps=self.fps, error=self.error)


__all__ = ["PREVIEW_WIDTH", "StreamState", "WindowCutter", "window_sampler"]
