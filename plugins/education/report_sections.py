"""The education vertical's sections of a run report (its ``vkit_report_sections`` hook): teacher-first.

For a ``vkit score education-engagement`` run, at the top of the page:

- **Sessions, lowest engagement first**: one row per session (learners, mean level and its name, learners with
  a low-engagement stretch) and the sentence ``vkit engagement-report`` prints
  (:func:`~vkit.plugins.education.report.session_summary`);
- one section per session (the lowest :data:`MAX_SESSIONS`), lowest first: that sentence, each learner's level
  over time (lowest first, level names on the axis, low-engagement stretches shaded and named so, panels titled
  ``session / learner``) and a per-learner table.

They stand in for the generic top-scoring videos, scores over time and top events (there, the highest
score, i.e. the most engaged learner, came first). Learners are shown as salted hashes only
(:mod:`vkit.plugins.education.privacy`); without ``$VKIT_LEARNER_SALT``, recordings named in clear are shown
as ``learner #N`` and the page says how to get hashes. A ``--aggregate-only`` run has no timelines: its
per-session aggregates are shown as a table, lowest first.

Example::

    sections = report_sections(dict(run, report_dir="report/"), store)   # None for other tasks' runs
    [s.title for s in sections]   # ['Sessions, lowest engagement first', 'Session session-b', 'Session session-a']
"""
from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path, PurePath
from typing import Any

import numpy as np

from vkit.core.reporting import REPLACEABLE, ReportSection, plain_text

#: At most this many sessions get their own section (the lowest; the overview lists all).
MAX_SESSIONS = 8
TASK = "education-engagement"


def report_sections(run: dict[str, Any], store: Any) -> list[ReportSection] | None:
    """The teacher-first sections of an ``education-engagement`` scoring run (a training run: its levels on the
    test split); ``None`` for any other run."""
    if run.get("task") != TASK:
        return None
    if run.get("kind") == "train":
        return _level_sections(run, store)
    if run.get("kind") != "score":
        return None
    if (run.get("config") or {}).get("aggregate_only"):
        return _aggregate_sections(store, int(run["id"]))
    if not store.video_scores(int(run["id"])):
        return None
    from vkit.plugins.education.privacy import SALT_ENV
    from vkit.plugins.education.report import session_timelines

    salt = os.environ.get(SALT_ENV, "")
    shown = _learner_names(store, int(run["id"]), salt)
    sessions = session_timelines(store, int(run["id"]), salt, learner=shown)
    note = None if salt or not shown.unnamed else (
        f"{shown.unnamed} recording(s) are named by learner in clear and {SALT_ENV} is not set: they are shown as "
        "'learner #N'; set the salt (or score the links of `vkit engagement-pseudonymise`) to see salted hashes.")
    return _session_sections(sessions, Path(run["report_dir"]), note, "learner" if shown.numbers else "learner (salted hash)")


class _LearnerNames:
    """A recording's stem as shown: a link's hash, the salted hash, or (no salt) ``learner #N`` in stem order."""

    def __init__(self, stems: list[str], salt: str) -> None:
        from vkit.plugins.education.privacy import pseudonym_of

        self.salt = salt
        clear = sorted({s for s in stems if pseudonym_of(s) is None})
        self.numbers = {} if salt else {stem: n for n, stem in enumerate(clear, start=1)}
        self.unnamed = 0 if salt else len(clear)

    def __call__(self, stem: str) -> str:
        from vkit.plugins.education.privacy import shown_learner

        return f"learner #{self.numbers[stem]}" if stem in self.numbers else shown_learner(stem, self.salt)


def _learner_names(store: Any, run_id: int, salt: str) -> _LearnerNames:
    ids = {s["video_id"] for s in store.video_summaries(run_id)}
    stems = [PurePath(v["path"]).stem for v in store.get_videos() if v["id"] in ids]
    return _LearnerNames(stems, salt)


def _session_sections(sessions: dict[str, dict[str, dict[str, Any]]], out: Path, note: str | None,
                      column: str = "learner (salted hash)") -> list[ReportSection]:
    from vkit.plugins.education.report import (level_name, lowest_first, plot_session, session_mean, session_summary,
                                               sessions_lowest_first)
    from vkit.plugins.education.timeline import clock

    ordered = sessions_lowest_first(sessions)
    overview = [{"session": name, "learners": len(learners), "mean level": round(session_mean(learners), 2),
                 "level": level_name(session_mean(learners)),
                 "learners with low engagement": sum(1 for line in learners.values() if line["stretches"]),
                 "summary": session_summary(learners)} for name, learners in ordered]
    lowest = ordered[0][0] if ordered else None
    text = (f"{len(ordered)} session(s), the lowest engagement first; lowest: {lowest}: "
            f"{session_summary(ordered[0][1])}." if ordered else "no session scored")
    out_sections = [ReportSection("Sessions, lowest engagement first", table=overview,
                                  text=text + (f" {note}" if note else ""), top=True, replaces=REPLACEABLE)]
    for index, (name, learners) in enumerate(ordered[:MAX_SESSIONS]):
        rows = [{column: learner, "mean level": round(line["mean_level"], 2),
                 "level": level_name(line["mean_level"]), "low engagement (s)": round(line["low_seconds"]),
                 "low stretches": len(line["stretches"]),
                 "first low stretch": (f"{clock(line['stretches'][0][0])}-{clock(line['stretches'][0][1])}"
                                       if line["stretches"] else "")} for learner, line in lowest_first(learners)]
        image = plot_session(name, learners, out / f"education_session_{index}.png")
        low = sum(1 for line in learners.values() if line["stretches"])
        out_sections.append(ReportSection(
            f"Session {name}", table=rows, image=image, top=True, replaces=REPLACEABLE,
            text=(f"{name}: {session_summary(learners)}. Mean level {session_mean(learners):.2f} "
                  f"({level_name(session_mean(learners))}); {low} of {len(learners)} learners had a "
                  "low-engagement stretch.")))
    return out_sections


def _level_sections(run: dict[str, Any], store: Any) -> list[ReportSection] | None:
    """A training run: how well each engagement level is recognised on the test split, named by level."""
    from vkit.plugins.education.task import LEVEL_NAMES

    names = list(((run.get("config") or {}).get("metric") or {}).get("level_names") or LEVEL_NAMES)
    rows = [r for r in store.run_predictions(int(run["id"]), split="test")
            if r.get("label") is not None and r.get("prediction") is not None]
    pairs = [(int(r["label"]), int(r["prediction"])) for r in rows
             if 0 <= r["label"] < len(names) and 0 <= r["prediction"] < len(names)]
    if not pairs:
        return None
    matrix = np.zeros((len(names), len(names)), dtype=int)
    for truth, predicted in pairs:
        matrix[truth, predicted] += 1
    recalls = [f"{names[i]} {matrix[i, i]} of {matrix[i].sum()}" for i in range(len(names)) if matrix[i].sum()]
    off = matrix.copy()
    np.fill_diagonal(off, 0)
    worst = np.unravel_index(int(off.argmax()), off.shape)
    confusion = (f"; the most common mistake: {names[worst[0]]} taken for {names[worst[1]]} ({off[worst]} clips)"
                 if off.max() else "")
    image = plot_levels(Path(run["report_dir"]) / "education_levels.png", matrix, names)
    return [ReportSection("Engagement levels on the test split", image=image, top=True, text=(
        f"{len(pairs)} test clips; recognised per level: {', '.join(recalls)}{confusion}."))]


@plain_text()  # level names from the config are drawn as text
def plot_levels(path: Path, matrix: Any, names: list[str]) -> Path:
    """The confusion matrix with the level names on both axes (rows: the true level), counts and row shares."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.2, 4.2), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    shares = matrix / matrix.sum(axis=1, keepdims=True).clip(min=1)
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, f"{count}\n{shares[i, j]:.0%}", ha="center", va="center", fontsize=8,
                color="white" if shares[i, j] > 0.5 else "black")
    ticks = range(len(names))
    ax.set_xticks(ticks, names, fontsize=8)
    ax.set_yticks(ticks, names, fontsize=8)
    ax.set(xlabel="predicted level", ylabel="true level", title="engagement level: truth against prediction")
    fig.savefig(path)
    return path


def _aggregate_sections(store: Any, run_id: int) -> list[ReportSection]:
    """A ``--aggregate-only`` run: the per-session aggregates (no timelines were kept), lowest mean level first."""
    from vkit.plugins.education.report import aggregate_lines, level_name

    rows = store.run_metrics(run_id, split="session")
    sessions: dict[str, dict[str, float]] = defaultdict(dict)
    for row in rows:
        name, _, key = str(row["key"]).rpartition("/")
        sessions[name][key] = float(row["value"])
    table = [{"session": name, "learners": int(agg.get("recordings", 0)),
              "mean level": round(agg.get("mean_level", float("nan")), 2),
              "level": level_name(agg["mean_level"]) if "mean_level" in agg else "",
              "share of time low": round(agg.get("low_share", float("nan")), 3),
              "learners with low engagement": int(agg.get("learners_low", 0))}
             for name, agg in sorted(sessions.items(), key=lambda kv: (kv[1].get("mean_level", 9.0), kv[0]))]
    text = (f"{len(table)} session(s), the lowest engagement first (an aggregate-only run: per-session numbers, "
            "no timelines)") if table else aggregate_lines(rows)[0]
    return [ReportSection("Sessions, lowest engagement first", table=table or None, top=True, replaces=REPLACEABLE,
                          text=text)]


__all__ = ["MAX_SESSIONS", "plot_levels", "report_sections"]
