"""The run report: one self-contained HTML page with its PNG plots next to it.

``write_report`` writes ``report.html`` (inline CSS, no scripts, no network)
plus ``roc.png`` and ``confusion.png`` (matplotlib's Agg canvas, imported only
here) into ``out_dir``: run info, the metrics table, the ROC curve, the
confusion matrix and any extra tables.

Example::

    from vkit.workflows.report import write_report
    page = write_report("runs/12", run={"id": 12, "task": "medical-ct", "db": "vkit.db", "config": cfg},
                        metrics={"test/auc": 0.94}, roc=metric.last_roc, confusion=metric.last_confusion)
"""
from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from vkit.registry.errors import DataError

REPORT_NAME = "report.html"
ROC_NAME = "roc.png"
CONFUSION_NAME = "confusion.png"

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2em auto;max-width:60em;color:#222}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}
pre{background:#f7f7f7;padding:.8em;overflow:auto;font-size:.85em}figure{display:inline-block;margin:0 1em 1em 0}
figcaption{font-size:.85em;color:#555}.muted{color:#777}
"""
_CREDENTIALS = re.compile(r"(://[^/:@\s]+:)[^@\s/]+@")


def _mask(text: str) -> str:
    """Hide the password of any ``scheme://user:password@host`` URL."""
    return _CREDENTIALS.sub(r"\1***@", text)


def _fmt(value: Any) -> str:
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return "n/a" if math.isnan(value) else f"{float(value):.4f}"
    return _mask(str(value))


def _cell(value: Any) -> str:
    css = ' class="num"' if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) else ""
    return f"<td{css}>{html.escape(_fmt(value))}</td>"


def _table(rows: Sequence[Mapping[str, Any]] | Mapping[str, Any]) -> str:
    """A key/value table from a dict, or a column table from a list of row dicts."""
    if isinstance(rows, Mapping):
        body = "".join(f"<tr><th>{html.escape(str(k))}</th>{_cell(v)}</tr>" for k, v in rows.items())
        return f"<table>{body}</table>"
    columns: list[str] = []
    for row in rows:
        columns += [str(k) for k in row if str(k) not in columns]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(_cell(row.get(c, "")) for c in columns) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _figure(width: float = 4.2, height: float = 4.0) -> Any:
    from matplotlib.figure import Figure  # Agg canvas; never touches pyplot's global backend

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def plot_roc(path: Path, fpr: Sequence[float], tpr: Sequence[float], auc: float) -> Path:
    """Save a ROC curve (with the chance diagonal) as a PNG.

    Args:
        path: the PNG to write.
        fpr, tpr: the curve's points (same length, from 0 to 1).
        auc: the area shown in the legend.

    Example::

        plot_roc(Path("roc.png"), *metric.last_roc)
    """
    fpr_a, tpr_a = np.asarray(fpr, dtype=float).ravel(), np.asarray(tpr, dtype=float).ravel()
    if fpr_a.shape != tpr_a.shape or fpr_a.size < 2:
        raise DataError(f"write_report: roc needs fpr and tpr of the same length >= 2, got {fpr_a.size} and {tpr_a.size}")
    fig = _figure()
    ax = fig.add_subplot()
    ax.plot(fpr_a, tpr_a, lw=2, label=f"ROC (AUC = {_fmt(float(auc))})")
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="chance")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="false positive rate (1 - specificity)", ylabel="true positive rate (sensitivity)")
    ax.legend(loc="lower right")
    fig.savefig(path)
    return path


def plot_confusion(path: Path, confusion: Any, class_names: Sequence[str] | None = None) -> Path:
    """Save a confusion matrix (rows = truth, columns = prediction) with its counts as a PNG.

    Example::

        plot_confusion(Path("confusion.png"), [[40, 10], [5, 45]], ["negative", "positive"])
    """
    cm = np.asarray(confusion)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] < 2:
        raise DataError(f"write_report: confusion must be a square matrix of >= 2 classes, got shape {cm.shape}")
    names = [str(c) for c in class_names] if class_names else [str(i) for i in range(cm.shape[0])]
    if len(names) != cm.shape[0]:
        raise DataError(f"write_report: {len(names)} class names for a {cm.shape[0]}-class confusion matrix")
    fig = _figure(1.6 + 0.7 * cm.shape[0], 1.4 + 0.7 * cm.shape[0])
    ax = fig.add_subplot()
    ax.imshow(cm, cmap="Blues")
    ticks = range(cm.shape[0])
    ax.set(xticks=ticks, yticks=ticks, xticklabels=names, yticklabels=names, xlabel="predicted", ylabel="true")
    top = cm.max() if cm.size else 0
    for (i, j), count in np.ndenumerate(cm):
        ax.text(j, i, _fmt(count), ha="center", va="center", color="white" if count > top / 2 else "black")
    fig.savefig(path)
    return path


def write_report(
    out_dir: Path | str,
    *,
    run: Mapping[str, Any],
    metrics: Mapping[str, Any],
    roc: tuple[Sequence[float], Sequence[float], float] | None = None,
    confusion: Any | None = None,
    extra_tables: Mapping[str, Sequence[Mapping[str, Any]] | Mapping[str, Any]] | None = None,
    class_names: Sequence[str] | None = None,
) -> Path:
    """Write ``report.html`` (+ ``roc.png``, ``confusion.png``) into ``out_dir``; return the HTML path.

    Args:
        out_dir: folder for the page and its images (created).
        run: run info shown at the top; ``id``, ``task``, ``db`` and ``config`` (a dict,
            shown as JSON) are expected, other keys are listed too. URLs have their
            password masked.
        metrics: ``{name: value}`` for the metrics table.
        roc: ``(fpr, tpr, auc)`` (e.g. ``ClassificationMetric.last_roc``) or ``None``.
        confusion: a square count matrix (rows = truth) or ``None``.
        extra_tables: ``{title: rows}`` where rows is a list of dicts or one dict.
        class_names: labels for the confusion matrix axes.

    Example::

        write_report(tmp_path, run={"id": 1, "task": "demo", "db": "vkit.db", "config": {}},
                     metrics={"auc": 0.9}, roc=([0, 0.2, 1], [0, 0.8, 1], 0.9), confusion=[[4, 1], [1, 4]])
    """
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DataError(f"write_report: cannot create the report folder {out}: {err}") from err
    title = f"vkit run {run.get('id', '?')}: {run.get('task', 'unknown task')}"
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"]
    parts.append(f"<h1>{html.escape(title)}</h1>")
    info = {k: v for k, v in run.items() if k != "config"}
    info.setdefault("report written", datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"))
    parts.append("<h2>Run</h2>" + _table(info))
    parts.append("<h2>Metrics</h2>" + (_table(dict(sorted(metrics.items()))) if metrics else "<p class='muted'>no metrics</p>"))
    figures = []
    if roc is not None:
        fpr, tpr, auc = roc
        plot_roc(out / ROC_NAME, fpr, tpr, auc)
        figures.append(f"<figure><img src='{ROC_NAME}' alt='ROC curve' width='420'><figcaption>ROC curve, AUC {html.escape(_fmt(float(auc)))}</figcaption></figure>")
    if confusion is not None:
        plot_confusion(out / CONFUSION_NAME, confusion, class_names)
        figures.append(f"<figure><img src='{CONFUSION_NAME}' alt='confusion matrix' width='360'><figcaption>Confusion matrix (rows: truth)</figcaption></figure>")
    if figures:
        parts.append("<h2>Plots</h2>" + "".join(figures))
    for name, rows in (extra_tables or {}).items():
        parts.append(f"<h2>{html.escape(str(name))}</h2>" + _table(rows))
    if "config" in run:
        config = run["config"]
        text = config if isinstance(config, str) else json.dumps(config, indent=2, sort_keys=True, default=str)
        parts.append(f"<h2>Config</h2><pre>{html.escape(_mask(text))}</pre>")
    parts.append("</body></html>")
    page = out / REPORT_NAME
    page.write_text("\n".join(parts), encoding="utf-8")
    return page
