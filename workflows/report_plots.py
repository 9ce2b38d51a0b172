"""The run report's PNG plots (matplotlib's Agg canvas, never pyplot's global state; scikit-learn for the curves).

Every plot is drawn under :func:`vkit.core.reporting.plain_text`: a name from the
data (a video, a metric, a class) is shown as its characters, never as mathtext.

Every function writes one PNG and returns its path, or ``None`` when there is
nothing to draw (e.g. a single class in the labels).

Example::

    plot_classifier(out, labels=[0, 1, 1], probs=[[0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    # {'roc': out/'roc.png', 'pr': out/'pr.png', 'calibration': out/'calibration.png', 'confusion': out/'confusion.png'}
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vkit.core.reporting import plain_text

#: At most this many classes get their own one-vs-rest curve.
MAX_CURVES = 10


def figure(width: float = 4.6, height: float = 3.8) -> Any:
    """A matplotlib ``Figure`` on the Agg canvas (no display, no global backend)."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


@plain_text()
def plot_curves(path: Path, series: Mapping[str, Sequence[tuple[int, float]]], title: str, xlabel: str = "epoch") -> Path | None:
    """One line per ``{name: [(step, value), ...]}`` (NaN points dropped); ``None`` when no series has 2 points."""
    drawable = {k: [(s, v) for s, v in pts if v is not None and math.isfinite(v)] for k, pts in series.items()}
    drawable = {k: pts for k, pts in drawable.items() if pts}
    if not drawable or max(len(p) for p in drawable.values()) < 2:
        return None
    fig = figure(5.2, 3.6)
    ax = fig.add_subplot()
    for name, points in sorted(drawable.items()):
        steps, values = zip(*sorted(points))
        ax.plot(steps, values, marker="o" if len(steps) <= 30 else None, ms=3, label=name)
    ax.set(title=title, xlabel=xlabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(path)
    return path


def _one_vs_rest(labels: np.ndarray, probs: np.ndarray) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``(name, is_class, score)`` per curve with both outcomes present: the positive class for binary, each class (up to MAX_CURVES) otherwise."""
    if probs.shape[1] == 2:
        curves = [("positive", labels == 1, probs[:, 1])]
    else:
        curves = [(f"class {c}", labels == c, probs[:, c]) for c in range(min(probs.shape[1], MAX_CURVES))]
    return [c for c in curves if 0 < c[1].sum() < len(labels)]  # a curve needs both outcomes


@plain_text()
def plot_roc(path: Path, labels: np.ndarray, probs: np.ndarray) -> Path | None:
    """ROC curve(s) with AUC and the chance diagonal."""
    from sklearn.metrics import auc, roc_curve

    curves = _one_vs_rest(labels, probs)
    if not curves:
        return None
    fig = figure()
    ax = fig.add_subplot()
    for name, truth, score in curves:
        fpr, tpr, _ = roc_curve(truth, score)
        ax.plot(fpr, tpr, lw=2, label=f"{name} (AUC {auc(fpr, tpr):.3f})")
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="chance")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    ax.legend(loc="lower right", fontsize=8)
    fig.savefig(path)
    return path


@plain_text()
def plot_pr(path: Path, labels: np.ndarray, probs: np.ndarray) -> Path | None:
    """Precision-recall curve(s) with average precision and the prevalence line."""
    from sklearn.metrics import average_precision_score, precision_recall_curve

    curves = _one_vs_rest(labels, probs)
    if not curves:
        return None
    fig = figure()
    ax = fig.add_subplot()
    for name, truth, score in curves:
        precision, recall, _ = precision_recall_curve(truth, score)
        ax.plot(recall, precision, lw=2, label=f"{name} (AP {average_precision_score(truth, score):.3f})")
        ax.axhline(truth.mean(), ls=":", lw=1, color=ax.lines[-1].get_color())
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="recall", ylabel="precision", title="Precision-recall")
    ax.legend(loc="lower left", fontsize=8)
    fig.savefig(path)
    return path


def calibration(labels: np.ndarray, probs: np.ndarray, bins: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """``(mean confidence, accuracy, count)`` per non-empty bin and the expected calibration error.

    Binary: p(positive) against the positive rate; multi-class: the top
    probability against how often the top class is right.
    """
    if probs.shape[1] == 2:
        conf, hit = probs[:, 1], (labels == 1).astype(float)
    else:
        conf, hit = probs.max(axis=1), (probs.argmax(axis=1) == labels).astype(float)
    which = np.clip((conf * bins).astype(int), 0, bins - 1)
    rows = [(conf[which == b].mean(), hit[which == b].mean(), (which == b).sum()) for b in range(bins) if (which == b).any()]
    mean_conf, accuracy, count = (np.array(col, dtype=float) for col in zip(*rows))
    ece = float((np.abs(mean_conf - accuracy) * count).sum() / count.sum())
    return mean_conf, accuracy, count, ece


@plain_text()
def plot_calibration(path: Path, labels: np.ndarray, probs: np.ndarray) -> Path | None:
    """Reliability diagram: observed frequency against predicted probability per bin, with the ECE."""
    mean_conf, accuracy, count, ece = calibration(labels, probs)
    fig = figure()
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="perfectly calibrated")
    ax.plot(mean_conf, accuracy, marker="o", lw=2, label=f"model (ECE {ece:.3f})")
    for x, y, n in zip(mean_conf, accuracy, count):
        ax.annotate(str(int(n)), (x, y), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=7)
    which = "p(positive)" if probs.shape[1] == 2 else "top-class probability"
    ax.set(xlim=(0, 1), ylim=(0, 1.05), xlabel=f"predicted {which}", ylabel="observed frequency", title="Calibration")
    ax.legend(loc="upper left", fontsize=8)
    fig.savefig(path)
    return path


@plain_text()
def plot_confusion(path: Path, confusion: Any, class_names: Sequence[str] | None = None) -> Path:
    """A confusion matrix (rows = truth, columns = prediction) with its counts."""
    cm = np.asarray(confusion)
    names = [str(c) for c in class_names] if class_names else [str(i) for i in range(cm.shape[0])]
    fig = figure(1.8 + 0.6 * cm.shape[0], 1.5 + 0.6 * cm.shape[0])
    ax = fig.add_subplot()
    ax.imshow(cm, cmap="Blues")
    ticks = range(cm.shape[0])
    ax.set(xticks=ticks, yticks=ticks, xticklabels=names, yticklabels=names, xlabel="predicted", ylabel="true",
           title="Confusion matrix")
    top = cm.max() if cm.size else 0
    for (i, j), count in np.ndenumerate(cm):
        ax.text(j, i, str(int(count)), ha="center", va="center", color="white" if count > top / 2 else "black")
    fig.savefig(path)
    return path


def plot_classifier(out: Path, labels: Sequence[int], probs: Sequence[Sequence[float]],
                    predicted: Sequence[int] | None = None) -> dict[str, Path]:
    """ROC, precision-recall, calibration and confusion PNGs in ``out`` from labels and per-class probabilities."""
    from sklearn.metrics import confusion_matrix

    y = np.asarray(labels, dtype=int)
    p = np.asarray(probs, dtype=float)
    pred = p.argmax(axis=1) if predicted is None else np.asarray(predicted, dtype=int)
    plots = {
        "roc": plot_roc(out / "roc.png", y, p),
        "pr": plot_pr(out / "pr.png", y, p),
        "calibration": plot_calibration(out / "calibration.png", y, p),
        "confusion": plot_confusion(out / "confusion.png", confusion_matrix(y, pred, labels=range(p.shape[1]))),
    }
    return {k: v for k, v in plots.items() if v is not None}


#: Colours of the score-over-time plots: the score line, detected events, ground-truth stretches.
SCORE_COLOUR, EVENT_COLOUR, TRUTH_COLOUR = "#1f4e99", "#d62728", "#2ca02c"


@plain_text()
def plot_scores_over_time(path: Path, videos: Sequence[Mapping[str, Any]]) -> Path | None:
    """One panel per video: segment scores over time, ground truth shaded green, detected events as red bars; a legend.

    Each video is ``dict(name, scores=[(start, end, score)], events=[(start, end)], truth=[(start, end)], kinds=[str])``
    (``kinds``: the event kinds, named in the legend).
    """
    from matplotlib.patches import Patch

    videos = [v for v in videos if v["scores"]]
    if not videos:
        return None
    fig = figure(7.5, 1.7 * len(videos) + 0.6)
    axes = fig.subplots(len(videos), 1, squeeze=False)[:, 0]
    for ax, video in zip(axes, videos):
        times = [(s + e) / 2 for s, e, _ in video["scores"]]
        ax.plot(times, [v for _, _, v in video["scores"]], lw=1.5, color=SCORE_COLOUR, label="segment score")
        values = [v for _, _, v in video["scores"]]
        low, high = (0.0, 1.0) if 0.0 <= min(values) and max(values) <= 1.0 else ax.get_ylim()  # the contract's [0, 1]
        ax.set_ylim(low, high + 0.3 * (high - low))  # room above the curve for the event bars
        for start, end in video.get("truth", ()):  # the whole height: where the video is anomalous
            ax.axvspan(start, end, color=TRUTH_COLOUR, alpha=0.22, lw=0)
        for start, end in video.get("events", ()):  # a bar along the top: what the model flagged
            ax.axvspan(start, end, ymin=0.86, ymax=0.97, color=EVENT_COLOUR, alpha=0.75, lw=0)
        ax.set_title(str(video["name"]), fontsize=8, loc="left")
        ax.set_ylabel("score", fontsize=8)
        ax.grid(alpha=0.3)
    kinds = sorted({str(k) for v in videos for k in v.get("kinds", ())})
    event = f"detected: {', '.join(kinds)}" if kinds else "detected event"
    handles = [axes[0].lines[0], Patch(color=EVENT_COLOUR, alpha=0.75, label=event)]
    if any(v.get("truth") for v in videos):
        handles.append(Patch(color=TRUTH_COLOUR, alpha=0.22, label="ground truth"))
    axes[0].legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    axes[-1].set_xlabel("time (s)")
    fig.savefig(path)
    return path


#: Thumbnail size: tiles this high, the whole strip at most this wide (pixels).
THUMB_HEIGHT, THUMB_WIDTH = 60, 256


def _tile(frame: np.ndarray) -> Any:
    """A PIL RGB image of one frame: uint8 RGB as is, anything else (a slice) scaled min..max to grey."""
    from PIL import Image

    a = np.asarray(frame)
    if a.dtype == np.uint8 and a.ndim == 3 and a.shape[-1] == 3:
        return Image.fromarray(np.ascontiguousarray(a), "RGB")
    a = np.nan_to_num(a.astype(float))
    lo, hi = float(a.min()), float(a.max())
    grey = ((a - lo) / (hi - lo) * 255 if hi > lo else np.zeros_like(a)).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(grey), "L").convert("RGB")


def frame_strip(path: Path, frames: Sequence[np.ndarray], height: int = THUMB_HEIGHT, max_width: int = THUMB_WIDTH) -> Path:
    """Frames side by side (``height`` px high, scaled down to at most ``max_width`` px wide) as a PNG."""
    from PIL import Image

    tiles = [_tile(f) for f in frames]
    tiles = [t.resize((max(1, round(t.width * height / t.height)), height), Image.Resampling.BILINEAR) for t in tiles]
    gap = 2
    width = sum(t.width for t in tiles) + gap * (len(tiles) - 1)
    if width > max_width:
        scale = max_width / width
        tiles = [t.resize((max(1, int(t.width * scale)), max(1, int(height * scale))), Image.Resampling.BILINEAR)
                 for t in tiles]
    canvas = Image.new("RGB", (sum(t.width for t in tiles) + gap * (len(tiles) - 1), max(t.height for t in tiles)), "white")
    x = 0
    for t in tiles:
        canvas.paste(t, (x, 0))
        x += t.width + gap
    canvas.save(path, format="PNG")
    return path


def thumbnail(path: Path, source: str | Path, preview: Callable[[Path], list[Any] | None] | None = None) -> Path | None:
    """A small PNG (≤ ``THUMB_WIDTH`` px wide) of the case at ``source``; ``None`` if it is missing or unreadable.

    ``preview`` (the plugin manager's :meth:`~vkit.hooks.manager.PluginManager.preview`, the ``vkit_preview``
    hook) gives the frames of files a vertical reads (the medical plugin: a scan's middle axial slice); when it
    gives none, a ``.npy`` volume (D, H, W) gives its middle slice along D, and anything else is read as a clip
    (:mod:`vkit.core.video`) and gives a strip of 4 evenly spaced frames.
    """
    if not str(source):
        return None
    src = Path(source)
    try:
        frames = (preview(src) if preview is not None else None) or _frames(src)
        if not frames:
            return None
        return frame_strip(path, frames, height=THUMB_HEIGHT if len(frames) > 1 else 96)  # a lone slice a bit larger
    except Exception:  # noqa: BLE001 - a thumbnail is a nicety: an unreadable case gets the page's "file not available"
        return None


def _frames(src: Path) -> list[np.ndarray] | None:
    """Core's own preview of ``src``: a ``.npy`` volume's middle slice, or 4 frames of a clip; ``None`` if no file."""
    if not src.is_file():
        return None
    if src.name.lower().endswith(".npy"):
        array = np.load(src, allow_pickle=False).astype(float)
        while array.ndim > 3:
            array = array[0]
        return [array[array.shape[0] // 2]] if array.ndim == 3 else [array]
    from vkit.core.video import probe, read_clip

    count = probe(src).frames
    return list(read_clip(src, np.linspace(0, max(count - 1, 0), 4).astype(int), size=(64, 64), frames=count))
