"""``vkit engagement-report SCORE_RUN``: per-session timelines, per-learner aggregates and a teacher-facing summary.

Reads what ``vkit score education-engagement`` stored for one scoring run
(segment scores and ``low-engagement`` events per recording; of a run scored
with ``--aggregate-only``, only the per-session aggregates). A recording at
``.../<session>/<learner>.mp4`` belongs to that session and learner. Learners
are shown only as salted hashes (``sha256(salt + learner)``, 12 hex digits);
the salt comes from an environment variable (``VKIT_LEARNER_SALT`` by default)
and is never printed or stored. Writes one PNG per session (each learner's
engagement over time, low stretches shaded) and prints per session: the
teacher summary, and per learner the mean level and low-engagement seconds.

Example::

    export VKIT_LEARNER_SALT=$(openssl rand -hex 16)
    vkit engagement-pseudonymise lessons/ --farm pseudo/     # pseudo/<session>/pseudo-<hash>.mp4 -> lessons/...
    vkit score education-engagement pseudo/ --checkpoint 12         # -> scoring run 13; no learner id in the store
    vkit engagement-report 13 --out report/
"""
from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path, PurePath
from typing import Any

import click

from vkit.core.reporting import plain_text
from vkit.core.run_checkpoint import MAX_RUN_ID
from vkit.plugins.education.privacy import SALT_ENV, learner_hash, pseudonymise, shown_learner
from vkit.registry.errors import ConfigError, StoreError

def session_timelines(store: Any, run_id: int, salt: str,
                      learner: Callable[[str], str] | None = None) -> dict[str, dict[str, dict[str, Any]]]:
    """``{session: {learner hash: dict(times, levels, stretches, mean_level, low_seconds, path)}}`` of a scoring run.

    ``learner``: how a recording's stem is shown (default: its salted hash, :func:`shown_learner`).
    """
    shown = learner or (lambda stem: shown_learner(stem, salt))
    run = store.get_run(run_id)
    if run is None:
        raise StoreError(f"no run {run_id} in {store.url}")
    scores = store.video_scores(run_id)
    if not scores:
        raise StoreError(f"run {run_id} has no segment scores (not a `vkit score education-engagement` run?)")
    paths = {v["id"]: v["path"] for v in store.get_videos()}
    events = defaultdict(list)
    for e in store.run_events(run_id):
        if e["kind"] == "low-engagement":
            events[e["video_id"]].append((float(e["start"]), float(e["end"])))
    per_video: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for s in scores:
        per_video[s["video_id"]].append(s)
    out: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for video_id, rows in per_video.items():
        rows.sort(key=lambda r: r["segment"])
        path = PurePath(paths[video_id])
        levels = [3.0 * float(r["score"]) for r in rows]
        spans = sorted(events.get(video_id, []))
        out[path.parent.name or "session"][shown(path.stem)] = dict(
            times=[(float(r["start"]) + float(r["end"])) / 2 for r in rows], levels=levels, stretches=spans,
            mean_level=sum(levels) / len(levels), low_seconds=sum(b - a for a, b in spans), path=str(path))
    return dict(out)


#: At most this many learners get a panel in a session's plot (the lowest mean levels; the table lists all).
MAX_PANELS = 12


def level_name(level: float, names: tuple[str, ...] | None = None) -> str:
    """The name of the level nearest to ``level`` (``1.2`` -> ``"low"``)."""
    from vkit.plugins.education.task import LEVEL_NAMES

    names = names or LEVEL_NAMES
    return names[min(len(names) - 1, max(0, int(round(level))))]


def lowest_first(learners: dict[str, dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """The learners of a session, lowest mean level first (ties by name)."""
    return sorted(learners.items(), key=lambda kv: (kv[1]["mean_level"], kv[0]))


def session_mean(learners: dict[str, dict[str, Any]]) -> float:
    """A session's mean level: the mean of its learners' mean levels."""
    return sum(line["mean_level"] for line in learners.values()) / max(1, len(learners))


def sessions_lowest_first(sessions: dict[str, dict[str, dict[str, Any]]]) -> list[tuple[str, dict[str, dict[str, Any]]]]:
    """The sessions of :func:`session_timelines`, lowest mean level first (ties by name)."""
    return sorted(sessions.items(), key=lambda kv: (session_mean(kv[1]), kv[0]))


def session_summary(learners: dict[str, dict[str, Any]]) -> str:
    """The teacher-facing sentence of one session (:func:`~vkit.plugins.education.timeline.teacher_summary`)."""
    from vkit.plugins.education.timeline import teacher_summary

    return teacher_summary({k: v["stretches"] for k, v in learners.items()})


@plain_text()  # session and learner names are drawn as text, never as mathtext
def plot_session(name: str, learners: dict[str, dict[str, Any]], path: Path) -> Path:
    """A PNG of each learner's expected engagement level over time, lowest mean level first (at most
    ``MAX_PANELS``), the level names on the axis and the low-engagement stretches shaded; each panel titled
    ``session / learner``."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    from vkit.plugins.education.task import LEVEL_NAMES

    order = lowest_first(learners)[:MAX_PANELS]
    fig = Figure(figsize=(8, 1.0 + 1.3 * len(order)), dpi=100, layout="constrained")
    axes = fig.subplots(len(order), 1, sharex=True, squeeze=False)[:, 0]
    for ax, (learner, line) in zip(axes, order):
        ax.plot(line["times"], line["levels"], color="tab:blue", lw=1.5)
        for a, b in line["stretches"]:
            ax.axvspan(a, b, color="tab:red", alpha=0.25, lw=0)
        ax.set_ylim(-0.2, len(LEVEL_NAMES) - 0.8)
        ax.set_yticks(range(len(LEVEL_NAMES)), LEVEL_NAMES, fontsize=7)
        ax.set_title(f"{name} / {learner}   mean level {line['mean_level']:.2f} "
                     f"({level_name(line['mean_level'])})", fontsize=8, loc="left")
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("time in the lesson (mm:ss)")
    from matplotlib.ticker import FuncFormatter

    from vkit.plugins.education.timeline import clock

    axes[-1].xaxis.set_major_formatter(FuncFormatter(lambda x, _: clock(max(x, 0.0))))
    axes[0].legend(handles=[Line2D([], [], color="tab:blue", label="engagement level"),
                            Patch(color="tab:red", alpha=0.25, label="low engagement")],
                   fontsize=7, loc="lower left", bbox_to_anchor=(0.0, 1.12), ncol=2, frameon=False)
    shown = "" if len(order) == len(learners) else f" (the {len(order)} lowest of {len(learners)})"
    fig.suptitle(f"session {name}: engagement over time, lowest first{shown}", fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def aggregate_lines(rows: list[dict[str, Any]]) -> list[str]:
    """One line per session from the ``session`` metrics of a ``--aggregate-only`` scoring run (no timelines there)."""
    sessions: dict[str, dict[str, float]] = defaultdict(dict)
    for row in rows:
        name, _, key = str(row["key"]).rpartition("/")
        sessions[name][key] = float(row["value"])
    if not sessions:
        return ["no per-session aggregates stored for this run"]
    lines = []
    for name, agg in sorted(sessions.items()):
        n = int(agg.get("recordings", 0))
        lines.append(f"{name}: {n} learners, mean level {agg.get('mean_level', float('nan')):.2f}, "
                     f"{agg.get('low_share', float('nan')):.0%} of the time below the low level, "
                     f"{int(agg.get('learners_low', 0))} of {n} learners with a low stretch "
                     f"({int(agg.get('low_stretches', 0))} stretches; aggregate-only run: no timelines)")
    return lines


def scoring_run(store: Any, run_id: int) -> dict[str, Any]:
    """Run ``run_id`` if it is a ``vkit score education-engagement`` run; else a ``StoreError``/``ConfigError`` naming it.

    Example::

        scoring_run(store, 3)   # ConfigError: run 3 is a 'score' run of task 'security-anomaly'; ...
    """
    from vkit.plugins.education.task import EducationEngagementTask

    run = store.get_run(run_id)
    if run is None:
        raise StoreError(f"no run {run_id} in {store.url} (see `vkit runs list`)")
    task = EducationEngagementTask.name
    if run.get("task") != task or run.get("kind") != "score":
        raise ConfigError(f"run {run_id} is a {run.get('kind')!r} run of task {run.get('task')!r}; engagement-report "
                          f"reads the runs of `vkit score {task}` (see `vkit runs list --task {task}`)")
    return run


@click.command("engagement-report")
@click.argument("run_id", type=click.IntRange(1, MAX_RUN_ID))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for one timeline PNG per session (default: no images).")
@click.option("--salt-env", default=SALT_ENV, show_default=True, help="Environment variable holding the learner salt.")
@click.pass_context
def engagement_report_cmd(ctx: click.Context, run_id: int, out: Path | None, salt_env: str) -> None:
    """Per-session engagement summary of scoring run RUN_ID (learners as salted hashes)."""
    from vkit.core.store import open_store

    obj = ctx.find_root().obj or {}
    store = open_store(obj.get("db_url"), create=False, read_only=True)  # a mistyped --db is named, never created
    run = scoring_run(store, run_id)
    if (run.get("config") or {}).get("aggregate_only"):
        for line in aggregate_lines(store.run_metrics(run_id, split="session")):
            click.echo(line)
        return
    sessions = session_timelines(store, run_id, os.environ.get(salt_env, ""))
    for name, learners in sessions_lowest_first(sessions):
        click.echo(f"{name}: {session_summary(learners)}")
        for learner, line in lowest_first(learners):
            click.echo(f"  {learner}  mean level {line['mean_level']:.2f}  low engagement {line['low_seconds']:.0f} s")
        if out is not None:
            click.echo(f"  timeline: {plot_session(name, learners, out / f'{name}.png')}")


@click.command("engagement-pseudonymise")
@click.argument("recordings", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--farm", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder of pseudonymous links to score instead of the recordings.")
@click.option("--salt-env", default=SALT_ENV, show_default=True, help="Environment variable holding the learner salt.")
@click.option("--replace", is_flag=True, help="Relink a farm made with another salt (its old links are removed).")
def engagement_pseudonymise_cmd(recordings: tuple[Path, ...], farm: Path, salt_env: str, replace: bool) -> None:
    """Link RECORDINGS (files or folders of <session>/<learner>.mp4) as FARM/<session>/pseudo-<salted hash>.mp4.

    Then `vkit score education-engagement FARM --checkpoint RUN`: the store holds only the links' paths,
    so learner ids never reach it; `vkit engagement-report` shows the same hashes. The farm keeps a
    fingerprint of its salt: another salt is refused unless --replace.
    """
    from vkit.plugins.education.data import VIDEO_SUFFIXES

    files = sorted(str(f) for r in recordings for f in ([r] if r.is_file() else r.rglob("*"))
                   if f.is_file() and f.suffix.lower() in VIDEO_SUFFIXES)
    if not files:
        raise ConfigError(f"no recordings ({', '.join(VIDEO_SUFFIXES)}) in {[str(r) for r in recordings]}")
    pseudonymise(files, farm, os.environ.get(salt_env, ""), replace=replace)
    click.echo(f"{len(files)} recordings linked under {farm}; next: vkit score education-engagement {farm} --checkpoint RUN")


__all__ = ["MAX_PANELS", "SALT_ENV", "aggregate_lines", "engagement_pseudonymise_cmd", "engagement_report_cmd",
           "learner_hash", "level_name", "lowest_first", "plot_session", "session_mean", "session_summary",
           "sessions_lowest_first", "pseudonymise", "scoring_run", "session_timelines"]
