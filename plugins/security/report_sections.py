"""The security vertical's sections of a run report (its ``vkit_report_sections`` hook).

For a ``security-anomaly`` run that scored videos (a training run scores its test split; a ``vkit score`` run
its archive):

- **events, highest score first** (the top :data:`MAX_EVENTS`, at the top of the page): per event a strip of
  :data:`KEYFRAMES` frames read from the scored file inside the event (:func:`vkit.core.video.read_clip`), above
  the video's score curve with the event shaded red, the annotated stretch green, the keyframes' times marked;
- **false alarms on normal videos**: the normal videos (label 0 of a training run's test split; a file under a
  ``Normal_Videos*``/``Training*Normal*``/``Testing*Normal*`` folder of a scoring run) with the most events,
  then the highest scores: their score curves with each event shaded;
- **timeline per camera**: a camera is the folder that holds its recordings; its videos in name order end to
  end, scores over the whole stretch, events red, annotated stretches green.

Example::

    sections = report_sections(dict(run, report_dir="report/"), store)   # None for other tasks' runs
"""
from __future__ import annotations

import fnmatch
from collections import defaultdict
from pathlib import Path, PurePath
from typing import Any

import numpy as np

from vkit.core.reporting import ReportSection, plain_text

TASK = "security-anomaly"
#: Events shown with keyframes, normal videos plotted, cameras on the timeline, frames per keyframe strip.
MAX_EVENTS, MAX_NORMAL, MAX_CAMERAS, KEYFRAMES = 4, 4, 8, 4
#: A camera's timeline shows at most this many of its videos (the first in name order).
MAX_TIMELINE_VIDEOS = 200
SCORE, EVENT, TRUTH = "#1f4e99", "#d62728", "#2ca02c"


def report_sections(run: dict[str, Any], store: Any) -> list[ReportSection] | None:
    """Event keyframes, false alarms on normal videos and a timeline per camera of a ``security-anomaly`` run."""
    if run.get("task") != TASK or run.get("kind") not in ("train", "score"):
        return None
    videos = _scored_videos(store, int(run["id"]))
    if not videos:
        return None
    out = Path(run["report_dir"])
    sections = _event_sections(videos, out)
    sections.append(_false_alarms(videos, _normal_paths(store, int(run["id"])), out))
    timeline = _camera_timeline(videos, out)
    if timeline is not None:
        sections.append(timeline)
    return sections


def _scored_videos(store: Any, run_id: int) -> list[dict[str, Any]]:
    """Per scored video of the run: ``path``, ``fps``, ``frames``, ``duration``, ``scores`` [(start, end, score)],
    ``events`` (detected rows), ``truth`` [(start, end)]."""
    from vkit.core.ground_truth import GROUND_TRUTH

    summaries = {s["video_id"]: s for s in store.video_summaries(run_id) if s["status"] == "scored"}
    if not summaries:
        return []
    scores: dict[int, list[tuple[float, float, float]]] = defaultdict(list)
    for row in store.video_scores(run_id):
        if row["score"] is not None:
            scores[row["video_id"]].append((float(row["start"]), float(row["end"]), float(row["score"])))
    events: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for event in store.run_events(run_id):
        events[event["video_id"]].append(event)
    out = []
    for video in store.get_videos():
        if video["id"] not in summaries:
            continue
        mine = events.get(video["id"], [])
        out.append(dict(id=video["id"], path=str(video["path"]), fps=float(video.get("fps") or 0.0),
                        frames=int(video.get("frames") or 0), duration=float(video.get("duration") or 0.0),
                        max_score=summaries[video["id"]]["max_score"], scores=scores.get(video["id"], []),
                        events=[e for e in mine if e["kind"] != GROUND_TRUTH],
                        truth=[(float(e["start"]), float(e["end"])) for e in mine if e["kind"] == GROUND_TRUTH]))
    return out


def title(path: str) -> str:
    """``folder / file`` of a video (two cameras may both hold a ``0001.mp4``)."""
    p = PurePath(path)
    return f"{p.parent.name} / {p.name}" if p.parent.name else p.name


def is_normal_path(path: str) -> bool:
    """Whether ``path`` lies in a folder of normal videos of the UCF-Crime layout (``Normal_Videos*``, ...)."""
    from vkit.plugins.security.data import NORMAL_GLOBS

    folders = [g.split("/")[0] for g in NORMAL_GLOBS]
    return any(fnmatch.fnmatchcase(part, pattern) for part in PurePath(path).parts[:-1] for pattern in folders)


def _normal_paths(store: Any, run_id: int) -> set[str] | None:
    """The normal videos a training run labelled (its test rows' ``label`` 0); ``None``: no labels (tell by folder)."""
    rows = [r for r in store.run_predictions(run_id) if r.get("label") is not None
            and isinstance(r.get("values"), dict) and r["values"].get("path")]
    if not rows:
        return None
    return {str(Path(r["values"]["path"]).resolve()) for r in rows if int(r["label"]) == 0}


# ---------------------------------------------------------------------------------------------- events
def _event_sections(videos: list[dict[str, Any]], out: Path) -> list[ReportSection]:
    ranked = sorted(((float(e["score"] or 0.0), v, e) for v in videos for e in v["events"]),
                    key=lambda t: (-t[0], t[1]["path"], float(t[2]["start"])))[:MAX_EVENTS]
    if not ranked:
        return [ReportSection("Events with keyframes", top=True, text=(
            f"no event detected in the {len(videos)} scored video(s)"))]
    sections = []
    for rank, (score, video, event) in enumerate(ranked, start=1):
        start, end = float(event["start"]), float(event["end"])
        frames, times, why = _keyframes(video, start, end)
        image = plot_event(out / f"security_event_{rank}.png", video, (start, end), frames, times)
        truth = ("overlaps the annotated stretch" if any(a < end and start < b for a, b in video["truth"])
                 else "outside any annotated stretch" if video["truth"] else "")
        text = (f"{event['kind']} from {start:.1f} s to {end:.1f} s of {title(video['path'])} "
                f"({video['duration']:.1f} s), score {score:.3f}" + (f"; {truth}" if truth else "")
                + (f"; keyframes: {why}" if why else f"; keyframes at {', '.join(f'{t:.1f} s' for t in times)}"))
        sections.append(ReportSection(f"Event {rank}: {title(video['path'])} {start:.1f}-{end:.1f} s",
                                      image=image, text=text, top=True))
    return sections


def _keyframes(video: dict[str, Any], start: float, end: float) -> tuple[list[np.ndarray], list[float], str]:
    """``KEYFRAMES`` frames evenly inside ``[start, end]`` read from the video, their times, and why none if none."""
    from vkit.core.files import check_regular
    from vkit.core.video import probe, read_clip

    try:
        path = Path(video["path"])
        check_regular(path)  # a FIFO or a device named like a video is not opened
        info = probe(path)
        fps, count = info.fps or video["fps"], info.frames or video["frames"]
        first, last = int(start * fps), min(int(np.ceil(end * fps)) - 1, count - 1)
        indices = np.unique(np.linspace(first, max(first, last), KEYFRAMES).round().astype(int))
        height = min(96, info.height)
        size = (height, max(1, round(info.width * height / info.height)))
        frames = list(read_clip(path, indices, size=size, frames=count))
        return frames, [i / fps for i in indices], ""
    except Exception as err:  # noqa: BLE001 - a moved or unreadable file: the curve is still shown, the reason said
        return [], [], f"file not available ({type(err).__name__}: {str(err)[:120]})"


@plain_text()  # file names are drawn as text, never as mathtext
def plot_event(path: Path, video: dict[str, Any], span: tuple[float, float], frames: list[np.ndarray],
               times: list[float]) -> Path:
    """One event: its keyframes side by side (each with its time) above the video's score curve (the event red,
    the annotated stretch green, the keyframes' times dotted)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 3.8 if frames else 2.0), dpi=100)
    if frames:
        strip, centres = _strip(frames)
        top = fig.add_axes((0.08, 0.47, 0.9, 0.47))
        top.imshow(strip)
        for x, t in zip(centres, times):
            top.text(x, -3, f"{t:.1f} s", ha="center", va="bottom", fontsize=8)
        top.set_axis_off()
        curve = fig.add_axes((0.08, 0.1, 0.9, 0.3))
    else:
        curve = fig.add_axes((0.08, 0.22, 0.9, 0.62))
    _curve(curve, video, [span])
    for t in times:
        curve.axvline(t, color="black", lw=0.8, ls=":")
    fig.suptitle(f"{title(video['path'])}: keyframes of the event and score over time (red: this event; "
                 "green: annotated)", fontsize=8, x=0.08, ha="left", y=0.995)
    fig.savefig(path)
    return path


def _strip(frames: list[np.ndarray], gap: int = 4) -> tuple[np.ndarray, list[float]]:
    """The frames side by side on white (``gap`` px apart) and each one's centre column."""
    height = max(f.shape[0] for f in frames)
    width = sum(f.shape[1] for f in frames) + gap * (len(frames) - 1)
    strip = np.full((height, width, 3), 255, dtype=np.uint8)
    x, centres = 0, []
    for frame in frames:
        strip[:frame.shape[0], x:x + frame.shape[1]] = frame
        centres.append(x + frame.shape[1] / 2)
        x += frame.shape[1] + gap
    return strip, centres


def _curve(ax: Any, video: dict[str, Any], spans: list[tuple[float, float]], offset: float = 0.0) -> None:
    """The video's segment scores (midpoints) with ``spans`` red and its annotated stretches green."""
    if video["scores"]:
        ax.plot([offset + (a + b) / 2 for a, b, _ in video["scores"]], [s for _, _, s in video["scores"]],
                color=SCORE, lw=1.4)
    for a, b in video["truth"]:
        ax.axvspan(offset + a, offset + b, color=TRUTH, alpha=0.22, lw=0)
    for a, b in spans:
        ax.axvspan(offset + a, offset + b, ymin=0.0, ymax=1.0, color=EVENT, alpha=0.25, lw=0)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("anomaly score", fontsize=8)
    ax.set_xlabel("time (s)", fontsize=8)
    ax.grid(alpha=0.3)


# ---------------------------------------------------------------------------------------------- normal videos
def _false_alarms(videos: list[dict[str, Any]], labelled: set[str] | None, out: Path) -> ReportSection:
    if labelled is not None:
        normal = [v for v in videos if str(Path(v["path"]).resolve()) in labelled]
        how = "label 0 of the test split"
    else:
        normal = [v for v in videos if is_normal_path(v["path"])]
        how = "files under a Normal_Videos* / Training*Normal* / Testing*Normal* folder"
    name = "False alarms on normal videos"
    if not normal:
        return ReportSection(name, text=f"no normal video among the {len(videos)} scored ({how})")
    alarms = [v for v in normal if v["events"]]
    shown = sorted(normal, key=lambda v: (-len(v["events"]), -(v["max_score"] or 0.0), v["path"]))[:MAX_NORMAL]
    image = plot_normal(out / "security_false_alarms.png", shown)
    seconds = sum(float(e["end"]) - float(e["start"]) for v in alarms for e in v["events"])
    text = (f"{len(alarms)} of {len(normal)} normal videos ({how}) have events: "
            f"{sum(len(v['events']) for v in alarms)} false alarm(s), {seconds:.1f} s in all. Plotted: the "
            f"{len(shown)} with the most events, then the highest scores.")
    table = [dict(video=title(v["path"]), events=len(v["events"]), **{"max score": round(float(v["max_score"] or 0.0), 4)})
             for v in shown]
    return ReportSection(name, text=text, image=image, table=table)


@plain_text()
def plot_normal(path: Path, videos: list[dict[str, Any]]) -> Path:
    """One panel per normal video: its score curve, each event (a false alarm) shaded red."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 0.8 + 1.5 * len(videos)), dpi=100)
    fig.subplots_adjust(left=0.08, right=0.98, top=1 - 0.45 / (0.8 + 1.5 * len(videos)), bottom=0.5 / (0.8 + 1.5 * len(videos)),
                        hspace=0.6)
    axes = fig.subplots(len(videos), 1, squeeze=False)[:, 0]
    for ax, video in zip(axes, videos):
        _curve(ax, video, [(float(e["start"]), float(e["end"])) for e in video["events"]])
        ax.set_title(f"{title(video['path'])}: {len(video['events'])} false alarm(s)", fontsize=8, loc="left")
    fig.suptitle("normal videos: score over time (red: events, i.e. false alarms)", fontsize=9)
    fig.savefig(path)
    return path


# ---------------------------------------------------------------------------------------------- cameras
def clock(seconds: float) -> str:
    """``h:mm:ss`` of ``seconds`` (rounded)."""
    h, rest = divmod(int(round(seconds)), 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}"


def _camera_timeline(videos: list[dict[str, Any]], out: Path) -> ReportSection | None:
    cameras: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for video in videos:
        cameras[str(PurePath(video["path"]).parent)].append(video)
    if not cameras:
        return None
    busiest = sorted(cameras.items(), key=lambda kv: (-sum(len(v["events"]) for v in kv[1]), kv[0]))[:MAX_CAMERAS]
    shown = [(k, sorted(v, key=lambda x: x["path"])[:MAX_TIMELINE_VIDEOS]) for k, v in busiest]
    image = plot_cameras(out / "security_cameras.png", shown)
    table = [dict(camera=PurePath(k).name or k, videos=len(v), events=sum(len(x["events"]) for x in v),
                  recorded=clock(sum(x["duration"] for x in v))) for k, v in busiest]
    more = "" if len(busiest) == len(cameras) else f" (the {len(busiest)} with the most events of {len(cameras)})"
    if any(len(v) > MAX_TIMELINE_VIDEOS for _, v in busiest):
        more += f"; at most the first {MAX_TIMELINE_VIDEOS} videos of a camera are drawn"
    return ReportSection("Timeline per camera", image=image, table=table, text=(
        f"a camera is the folder holding its recordings; each one's videos in name order, end to end{more}"))


@plain_text()
def plot_cameras(path: Path, cameras: list[tuple[str, list[dict[str, Any]]]]) -> Path:
    """One row per camera: its videos end to end (thin grey lines between them), events red, annotated green."""
    from matplotlib.figure import Figure

    height = 0.6 + 1.3 * len(cameras)
    fig = Figure(figsize=(7.5, height), dpi=100)
    fig.subplots_adjust(left=0.08, right=0.98, top=1 - 0.25 / height, bottom=0.45 / height, hspace=0.8)
    axes = fig.subplots(len(cameras), 1, squeeze=False)[:, 0]
    for ax, (camera, videos) in zip(axes, cameras):
        offset = 0.0
        for video in videos:
            _curve(ax, video, [(float(e["start"]), float(e["end"])) for e in video["events"]], offset)
            offset += video["duration"] or (video["scores"][-1][1] if video["scores"] else 0.0)
            ax.axvline(offset, color="grey", lw=0.5)
        ax.set_xlim(0, max(offset, 1e-6))
        events = sum(len(v["events"]) for v in videos)
        ax.set_title(f"camera {PurePath(camera).name or camera}: {len(videos)} video(s), {events} event(s)",
                     fontsize=8, loc="left")
        ax.set_xlabel("recorded time (s)", fontsize=8)
    fig.savefig(path)
    return path


__all__ = ["KEYFRAMES", "MAX_EVENTS", "MAX_TIMELINE_VIDEOS", "clock", "is_normal_path", "plot_cameras", "plot_event", "plot_normal",
           "report_sections", "title"]
