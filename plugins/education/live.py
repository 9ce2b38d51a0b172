"""Education under ``vkit watch``: per-learner streams grouped by session, and the live class summary.

A learner's stream names its session and learner in its query
(``tcp://host:9001?session=s1&learner=ana``) or its path
(``.../<session>/<learner>.ts``). The learner is never stored or printed: the
stream's stored path is ``live://<session>/pseudo-<hash>`` (the hash of
:func:`vkit.plugins.education.privacy.learner_hash` with ``$VKIT_LEARNER_SALT``,
the rule of ``vkit engagement-pseudonymise``; a path that already is a
``pseudo-<hash>`` link keeps its hash).

Every ``--summary-every`` seconds :meth:`ClassSummary.summaries` says, per
session, how many of its learners were low for the whole last ``span``
seconds: every window that ended in that span scored at or below the
checkpoint's ``low_level`` (an expected level, as ``vkit score``'s events).
Until a session has been watched for ``span`` seconds, the span is the time
watched so far (``s1 1 of 2 learners low for the last 1 second``).

Example::

    live = live_adapter(scorer, specs, span=120.0)     # {0: ("s1", "live://s1/pseudo-3fa2b9c01d7e"), ...}
    for group, text, values in live.summaries(streams):
        print(group, text)                            # s1 4 of 20 learners low for the last 2 minutes
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import PurePath
from typing import Any

from vkit.plugins.education.privacy import SALT_ENV, learner_hash, pseudonym_of
from vkit.registry.errors import ConfigError


def stream_identity(labels: dict[str, str], shown: str, salt: str | None) -> tuple[str, str]:
    """``(session, stored path)`` of a learner's stream: ``live://<session>/pseudo-<hash>``."""
    from urllib.parse import urlsplit

    session, learner = labels.get("session"), labels.get("learner")
    parts = urlsplit(shown)
    path = PurePath(parts.path if parts.scheme and parts.netloc else shown.split("?", 1)[0])
    if not session:
        session = path.parent.name if path.parent.name else "session"
    if not learner:  # a file's or URL path's stem, else the URL's host and port
        learner = path.stem if path.name else parts.netloc or shown
    pseudonym = pseudonym_of(learner)
    if pseudonym is None:
        if not salt:
            raise ConfigError(f"watch: learner streams are stored under a pseudonym: set {SALT_ENV} (the salt of "
                              f"`vkit engagement-pseudonymise`; any secret string, kept to compare reports)")
        pseudonym = learner_hash(learner, salt)
    safe_session = "".join(c if c.isalnum() or c in "-_." else "_" for c in session)[:100] or "session"
    return safe_session, f"live://{safe_session}/pseudo-{pseudonym}"


def _span_text(seconds: float) -> str:
    if seconds >= 60 and abs(seconds / 60 - round(seconds / 60)) < 1e-9:
        minutes = int(round(seconds / 60))
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    return f"{seconds:g} second{'s' if seconds != 1 else ''}"


class ClassSummary:
    """Per-session live summaries of learner streams (see the module docstring).

    Args:
        sessions: ``{stream index: (session, stored path)}``.
        low_score: a window scoring at or below this is low (``low_level / (levels - 1)``).
        span: seconds a learner must have been low to count.
    """

    def __init__(self, sessions: dict[int, tuple[str, str]], low_score: float, span: float) -> None:
        self.sessions, self.low_score, self.span = sessions, float(low_score), float(span)

    def summaries(self, streams: Sequence[Any]) -> list[tuple[str, str, dict[str, Any]]]:
        """``(session, text, values)`` per session, from each stream's recent ``(stream end time, score)`` pairs.

        The span a session's text names is the time actually watched when that is shorter than ``span``
        (``min(span, observed)``, observed: its longest-watched stream's scored time), and a learner counts as low
        when watched for that whole span and low in every window of it.
        """
        groups: dict[str, list[tuple[str, list[tuple[float, float]], float]]] = {}
        for stream in streams:
            session, shown = self.sessions[stream.state.index]
            recent = list(stream.recent)
            watched = recent[-1][0] - recent[0][0] + stream.hop if recent else 0.0
            groups.setdefault(session, []).append((shown.rsplit("/", 1)[-1], recent, watched))
        out = []
        for session, learners in sorted(groups.items()):
            span = min(self.span, max(watched for _, _, watched in learners))
            low = sorted(name for name, recent, watched in learners if span > 0 and self._low(recent, watched, span))
            during = f"for the last {_span_text(span)}" if span > 0 else "(nothing scored yet)"
            text = f"{len(low)} of {len(learners)} learners low {during}"
            out.append((session, text, dict(learners=len(learners), low=len(low), window_seconds=self.span,
                                            observed_seconds=span, low_learners=low)))
        return out

    def _low(self, recent: list[tuple[float, float]], watched: float, span: float) -> bool:
        """Watched for the whole last ``span`` seconds, and every window that ended in it at or below ``low_score``."""
        if watched < span - 1e-9:
            return False
        newest = recent[-1][0]
        window = [score for end, score in recent if end > newest - span - 1e-9]
        return bool(window) and all(score <= self.low_score + 1e-12 for score in window)


def live_adapter(scorer: Any, specs: Sequence[Any], span: float = 120.0, salt: str | None = None) -> ClassSummary:
    """The education task's live side for ``vkit watch``: stream identities (pseudonyms) and the class summary.

    Each ``spec`` is a :class:`~vkit.workflows.watch.sources.SourceSpec`; its ``shown`` path is replaced by the
    pseudonymous ``live://<session>/pseudo-<hash>`` (so no row names a learner).
    """
    salt = salt if salt is not None else os.environ.get(SALT_ENV)
    sessions = {}
    for index, spec in enumerate(specs):
        sessions[index] = stream_identity(dict(spec.labels), spec.shown, salt)
        spec.shown = sessions[index][1]
    levels = int(getattr(scorer, "num_levels", 4))
    low_score = float(getattr(scorer, "low_level")) / max(1, levels - 1)
    return ClassSummary(sessions, low_score, span)


__all__ = ["ClassSummary", "live_adapter", "stream_identity"]
