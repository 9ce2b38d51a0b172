"""Events of a live score series, opened and closed as window scores arrive, by the scorer's own rule.

The rule is the one ``vkit score`` applies: :func:`vkit.core.scoring.video_results`
(``scorer.summarize``) over the series so far, each window lasting ``step``
seconds. An event is ``open`` while a new window could still extend it
(it reaches the series' end, or fewer than ``merge_gap`` seconds of other
windows follow it) and ``closed`` after; at a file's end every event is
``closed`` (a stretch that reaches the end ends there, as in ``vkit score``);
when the stream dies or the watch stops, open events are ``interrupted``.

Once no event is open and the series is long (``keep`` windows), all but its
last windows are let go, so memory stays bounded on an endless stream.

Example::

    tracker = LiveEvents(scorer, step=1.0, start=0.0)
    changes = tracker.add(0.9)      # [{'action': 'open', 'event': {...,'status': 'open'}}] once the rule opens one
    changes = tracker.finish("closed")
"""
from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import numpy as np


class LiveEvents:
    """One stream's live events over one stretch of continuous windows.

    Args:
        scorer: the task's scorer (its ``summarize``: the event rule; ``event_rule['merge_gap']`` if it has one).
        step: seconds per window (the hop).
        start: stream time of the first window.
        keep: windows kept before the older half of a settled series is let go.
    """

    def __init__(self, scorer: Any, step: float, start: float, keep: int = 4096, first_index: int = 0) -> None:
        self.scorer, self.step, self.start, self.keep = scorer, float(step), float(start), int(keep)
        self.first_index = int(first_index)  # the stream's window number of ``series[0]``
        merge_gap = float((getattr(scorer, "event_rule", None) or {}).get("merge_gap", 0.0) or 0.0)
        self.merge = int(math.floor((merge_gap + 1e-9) / self.step))  # windows a gap may last and still merge
        self.series: list[float] = []
        self.open: dict[tuple[str, float], dict[str, Any]] = {}
        self.closed: set[tuple[str, float]] = set()

    def _events(self) -> list[dict[str, Any]]:
        from vkit.core.scoring import video_results

        info = SimpleNamespace(duration=len(self.series) * self.step, fps=None, frames=len(self.series))
        events = video_results(np.asarray(self.series, dtype=np.float64), info, self.scorer)["events"]
        out = []
        for event in events:
            last = int(round(event["end"] / self.step)) - 1
            out.append(dict(event, start=round(self.start + event["start"], 3), end=round(self.start + event["end"], 3),
                            first=self.first_index + int(round(event["start"] / self.step)), last=last))
        return out

    def add(self, score: float) -> list[dict[str, Any]]:
        """One more window score; returns the changes: ``dict(action='open'|'update'|'close', event=row)``."""
        self.series.append(float(score))
        changes = []
        n = len(self.series)
        for event in self._events():
            key = (event["kind"], event["start"])
            if key in self.closed:
                continue
            settled = n - 1 - event["last"] > self.merge
            row = {k: event[k] for k in ("kind", "start", "end", "score")}
            row["first"] = event["first"]
            if key not in self.open:
                self.open[key] = row
                changes.append(dict(action="open", event=dict(row, status="open")))
            elif self.open[key] != row:
                self.open[key] = row
                if not settled:
                    changes.append(dict(action="update", event=dict(row, status="open")))
            if settled:
                del self.open[key]
                self.closed.add(key)
                changes.append(dict(action="close", event=dict(row, status="closed")))
        self._trim()
        return changes

    def finish(self, status: str) -> list[dict[str, Any]]:
        """The stretch ends (``closed``: a file's end; ``interrupted``: the stream died or the watch stopped)."""
        changes = []
        if status == "closed" and self.series:  # the rule's final word on events reaching the end
            for event in self._events():
                key = (event["kind"], event["start"])
                if key in self.closed:
                    continue
                row = {k: event[k] for k in ("kind", "start", "end", "score")}
                row["first"] = event["first"]
                if key not in self.open:
                    changes.append(dict(action="open", event=dict(row, status="open")))
                self.open[key] = row
        for key, row in list(self.open.items()):
            changes.append(dict(action="close", event=dict(row, status=status)))
            self.closed.add(key)
        self.open.clear()
        return changes

    def _trim(self) -> None:
        if self.open or len(self.series) < self.keep:
            return
        drop = len(self.series) - (self.merge + 1)  # every closed event lies before the last merge + 1 windows
        self.series = self.series[drop:]
        self.start += drop * self.step
        self.first_index += drop
        self.closed = set()


__all__ = ["LiveEvents"]
