"""The run report: one self-contained HTML page, built from the store, with its PNG plots beside it.

``write_run_report(store, run_id)`` works for any stored run — ``vkit run``
(train), ``vkit score`` and ``vkit predict`` — and is what ``vkit report RUN``
and the end of ``vkit run`` call. The page (inline CSS, no script, nothing
fetched from the network) shows, as far as the run has the rows:

- the run (task, kind, status, times, work dir, model sha256, masked database URL) and its final metrics;
- training and validation curves per epoch (and the training loss per iteration) from the metrics table;
- for classifiers (prediction rows with ``values.probs`` and ``label``): ROC, precision-recall and calibration
  curves, the confusion matrix and the worst-classified cases with a thumbnail of ``values.path`` (or the item id):
  the middle slice of a scan, a frame strip of a clip, or the text "file not available" when it cannot be read;
- for scoring runs (and training runs that scored their test videos): the top-scoring videos and their score over
  time with the detected events shaded red and the ground truth green (events of kind ``ground_truth``, see
  :mod:`vkit.core.ground_truth`, or ``values.ground_truth`` ``[[start, end], ...]`` of the video's prediction row);
- predictions of a ``predict`` run; the compression table (metrics of split ``compression``);
- sections the task hands in (``sections``), sections plugins add through the ``vkit_report_sections`` hook;
- the artifacts, the config and the versions.

Example::

    from vkit.core.store import open_store
    from vkit.workflows.report import write_run_report
    page = write_run_report(open_store(), 12)          # work_dirs/<task>-run12/report/report.html
"""
from __future__ import annotations

import html
import json
import math
import numbers
import os
import shutil
import socket
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import click

from vkit.core.run_checkpoint import MAX_RUN_ID
from vkit.registry.errors import DataError, StoreError

REPORT_NAME = "report.html"
#: File (next to the page) holding the task's sections, so ``vkit report RUN`` can show them again later.
SECTIONS_NAME = "sections.json"
#: Rows shown in the worst-cases, top-videos and predictions tables.
TOP = 10

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2em auto;max-width:62em;color:#222;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}
pre{background:#f7f7f7;padding:.8em;overflow:auto;font-size:.85em}figure{display:inline-block;margin:0 1em 1em 0}
figcaption{font-size:.85em;color:#555}.muted{color:#777}nav a{margin-right:.8em}.error{color:#a00}
.scroll{overflow-x:auto;max-width:100%}img{max-width:100%;height:auto}p.lead{font-size:1.05em}
"""
#: Widest a section's own image is shown (pixels; narrower PNGs at their own size).
SECTION_IMAGE_WIDTH = 960


def _mask(text: str) -> str:
    """Hide every credential in ``text`` (a URL's ``user:password@``, ``?password=``...; see ``mask_secrets``)."""
    from vkit.core.store.engine import mask_secrets

    return mask_secrets(text)


def _fmt(value: Any, decimals: bool = False) -> str:
    """``value`` as text: an integral float of 2 or more as an integer (``227184``, not ``227184.0000``) unless
    ``decimals`` (its column has fractions); ``0.0`` and ``1.0`` keep their decimals (a rate, an AUC)."""
    if isinstance(value, bool) or type(value).__name__ == "bool_":  # numpy's bool
        return str(bool(value))
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        value = float(value)
        if math.isnan(value):
            return "n/a"
        if value.is_integer() and 2 <= abs(value) < 1e15 and not decimals:  # a count stored as a float: 227184
            return str(int(value))
        return f"{value:.4f}"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S %Z").strip()
    return _mask("" if value is None else str(value))


class _Markup(str):
    """HTML made by this module (an ``<img>``), put into a table cell as is."""


def _number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and type(value).__name__ != "bool_"


def _fractional(value: Any) -> bool:
    return _number(value) and not isinstance(value, numbers.Integral) and math.isfinite(value) and not float(value).is_integer()


def _cell(value: Any, decimals: bool = False) -> str:
    if isinstance(value, _Markup):
        return f"<td>{value}</td>"
    css = ' class="num"' if _number(value) else ""
    return f"<td{css}>{html.escape(_fmt(value, decimals))}</td>"


def _table(rows: Sequence[Mapping[str, Any]] | Mapping[str, Any]) -> str:
    """A key/value table from a dict, or a column table from a list of row dicts."""
    if isinstance(rows, Mapping):
        body = "".join(f"<tr><th>{html.escape(str(k))}</th>{_cell(v)}</tr>" for k, v in rows.items())
        return f"<div class='scroll'><table>{body}</table></div>"
    columns: list[str] = []
    for row in rows:
        columns += [str(k) for k in row if str(k) not in columns]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    decimals = {c for c in columns if any(_fractional(row.get(c)) for row in rows)  # one format per column:
                or not any(_number(row.get(c)) and abs(float(row[c])) >= 2 for row in rows)}  # 0/1: a rate
    body = "".join("<tr>" + "".join(_cell(row.get(c, ""), c in decimals) for c in columns) + "</tr>" for row in rows)
    return f"<div class='scroll'><table><tr>{head}</tr>{body}</table></div>"


# ---------------------------------------------------------------------------------------------- page
class _Page:
    """The sections of one report page, and the PNG files it references (all inside ``out``)."""

    def __init__(self, out: Path, title: str) -> None:
        self.out, self.title = out, title
        self.parts: list[tuple[str, str]] = []
        #: One line per part that failed (shown on the page and warned about).
        self.failures: list[str] = []

    def add(self, title: str, body: str) -> None:
        self.parts.append((title, body))

    def guarded(self, title: str, build: Callable[..., Any], *args: Any) -> None:
        """``build(*args)``; if it fails, the page says so under ``title`` and the rest of the report is still written."""
        try:
            build(*args)
        except Exception as err:  # noqa: BLE001 - one part that cannot be drawn must not cost the whole report
            text = _mask(f"{title}: could not be drawn ({type(err).__name__}: {err})")
            self.failures.append(text)
            self.add(title, f"<p class='error'>{html.escape(text)}</p>")

    def figure(self, png: Path | None, caption: str, width: int | None = 420) -> str:
        """An ``<img>`` of ``png`` (copied into the report folder if elsewhere); ``""`` if it is not a PNG file.

        ``width``: shown width in pixels; ``None``: the PNG's own width, at most ``SECTION_IMAGE_WIDTH``.
        """
        if png is None:
            return ""
        png = Path(png)
        if not png.is_file() or png.stat().st_size == 0 or png.read_bytes()[:8] != b"\x89PNG\r\n\x1a\n":
            return f"<p class='error'>{html.escape(caption)}: image {html.escape(png.name)} is missing or not a PNG</p>"
        if png.resolve().parent != self.out.resolve():
            target = self.out / png.name
            if target.exists() and target.resolve() != png.resolve():
                target = self.out / f"{png.stem}-{len(self.parts)}{png.suffix}"
            shutil.copyfile(png, target)
            png = target
        if width is None:
            from PIL import Image

            with Image.open(png) as img:
                width = min(img.size[0], SECTION_IMAGE_WIDTH)
        return (f"<figure><img src='{html.escape(png.name)}' alt='{html.escape(caption)}' width='{width}'>"
                f"<figcaption>{html.escape(caption)}</figcaption></figure>")

    def section(self, section: Any) -> None:
        """A task's or plugin's ``ReportSection`` (title + any of table, image, text)."""
        body = ""
        if getattr(section, "text", None):
            body += f"<p>{html.escape(str(section.text))}</p>"
        if getattr(section, "table", None):
            body += _table(section.table)
        if getattr(section, "image", None):
            body += self.figure(Path(section.image), str(section.title), width=None)
        self.add(str(section.title), body or "<p class='muted'>(empty)</p>")

    def html(self) -> str:
        anchors = [f"s{i}" for i in range(len(self.parts))]
        nav = "".join(f"<a href='#{a}'>{html.escape(t)}</a>" for a, (t, _) in zip(anchors, self.parts))
        body = "".join(f"<h2 id='{a}'>{html.escape(t)}</h2>{b}" for a, (t, b) in zip(anchors, self.parts))
        return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(self.title)}</title>"
                f"<style>{_CSS}</style></head><body><h1>{html.escape(self.title)}</h1><nav>{nav}</nav>{body}</body></html>")


# ---------------------------------------------------------------------------------------------- content
def _curves(page: _Page, metrics: list[dict[str, Any]]) -> None:
    """Training/validation curves per epoch, training loss per iteration, the per-epoch table."""
    from vkit.workflows.report_plots import plot_curves

    per_epoch: dict[str, list[tuple[int, float]]] = {}
    per_iter: dict[str, list[tuple[int, float]]] = {}
    for m in metrics:
        if m["split"] == "val" or (m["split"] == "train" and m["key"] != "loss"):
            per_epoch.setdefault(f"{m['split']}/{m['key']}", []).append((m["step"], m["value"]))
        elif m["split"] == "train":
            per_iter.setdefault("train/loss", []).append((m["step"], m["value"]))
    losses = {k: v for k, v in per_epoch.items() if "loss" in k}
    others = {k: v for k, v in per_epoch.items() if "loss" not in k}
    figures = [
        page.figure(plot_curves(page.out / "curves_loss.png", losses, "loss per epoch"), "training loss per epoch"),
        page.figure(plot_curves(page.out / "curves_val.png", others, "validation metrics per epoch"),
                    "validation metrics per epoch"),
        page.figure(plot_curves(page.out / "curves_iter.png", per_iter, "training loss per iteration", "iteration"),
                    "training loss per iteration"),
    ]
    if not per_epoch and not per_iter:
        return
    epochs = sorted({s for pts in per_epoch.values() for s, _ in pts})
    table = [dict(epoch=e, **{k: dict(v).get(e) for k, v in sorted(per_epoch.items())}) for e in epochs]
    page.add("Training curves", "".join(figures) + (_table(table) if table else ""))


def _compression(page: _Page, metrics: list[dict[str, Any]]) -> None:
    """The compression chain, one row per stage (metrics of split ``compression``: ``stage/key`` at the stage's step)."""
    rows: dict[int, dict[str, Any]] = {}
    for m in metrics:
        if m["split"] == "compression":
            stage, _, key = m["key"].rpartition("/")
            row = rows.setdefault(m["step"], {"step": m["step"]})
            if stage:
                row["stage"] = stage
            row[key or m["key"]] = m["value"]
    if rows:
        page.add("Compression", _table([rows[s] for s in sorted(rows)]))


def _probabilities(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], Any, Any] | None:
    """The labelled rows carrying ``values.probs`` of one width ≥ 2, with labels and probabilities; ``None`` if none."""
    usable = []
    for row in rows:
        probs = (row.get("values") or {}).get("probs") if isinstance(row.get("values"), dict) else None
        if row.get("label") is not None and isinstance(probs, list) and len(probs) >= 2:
            usable.append((row, probs))
    if not usable:
        return None
    width = len(usable[0][1])
    usable = [(r, p) for r, p in usable if len(p) == width and float(r["label"]).is_integer() and 0 <= r["label"] < width]
    if len(usable) < 2:
        return None
    import numpy as np

    return [r for r, _ in usable], np.array([int(r["label"]) for r, _ in usable]), np.array([p for _, p in usable], dtype=float)


def _classifier(page: _Page, predictions: list[dict[str, Any]], preview: Callable[[Path], Any] | None = None) -> None:
    """ROC, PR, calibration, confusion and the worst-classified cases of the labelled split's prediction rows.

    ``preview`` (the plugin manager's, the ``vkit_preview`` hook) gives a case's thumbnail frames where a plugin reads its file.
    """
    import numpy as np

    from vkit.workflows.report_plots import plot_classifier, thumbnail

    by_split: dict[str, list[dict[str, Any]]] = {}
    for row in predictions:
        by_split.setdefault(row["split"], []).append(row)
    for split, rows in sorted(by_split.items(), key=lambda kv: kv[0] != "test"):
        found = _probabilities(rows)
        if found is None:
            continue
        rows, labels, probs = found
        predicted = [int(r["prediction"]) if r.get("prediction") is not None and float(r["prediction"]).is_integer()
                     and 0 <= r["prediction"] < probs.shape[1] else int(np.argmax(p)) for r, p in zip(rows, probs)]
        plots = plot_classifier(page.out, labels, probs, predicted)
        captions = dict(roc="ROC curve", pr="precision-recall curve", calibration="calibration (reliability diagram)",
                        confusion="confusion matrix (rows: truth)")
        page.add(f"Classifier ({split} split, {len(rows)} cases)",
                 "".join(page.figure(plots[k], f"{captions[k]} — {split}") for k in captions if k in plots))
        p_true = probs[np.arange(len(labels)), labels]
        worst = np.argsort(p_true, kind="stable")[:TOP]
        table, with_files = [], False
        for rank, i in enumerate(worst):
            values = rows[i].get("values") if isinstance(rows[i].get("values"), dict) else {}
            with_files = with_files or bool(values.get("path"))
            thumb = thumbnail(page.out / f"case_{rank}.png", values.get("path") or rows[i]["item_id"], preview)
            table.append(dict(case=rows[i]["item_id"], label=int(labels[i]), predicted=predicted[i],
                              **{"p(true class)": float(p_true[i])},
                              thumbnail=_thumbnail_cell(thumb, rows[i]["item_id"]) if thumb else "file not available"))
            with_files = with_files or thumb is not None
        if not with_files:  # rows that name no file: no thumbnail column at all
            table = [{k: v for k, v in row.items() if k != "thumbnail"} for row in table]
        body = _table(table)
        page.add(f"Worst-classified cases ({split})", "<p class='muted'>lowest probability given to the true class</p>" + body)
        return


def _thumbnail_cell(png: Path, case: str) -> _Markup:
    """The ``<img>`` of a worst case's thumbnail (a PNG already in the report folder), at its own size."""
    from PIL import Image

    with Image.open(png) as img:
        width, height = img.size
    return _Markup(f"<img src='{html.escape(png.name)}' alt='{html.escape(f'thumbnail of {case}')}' "
                   f"width='{width}' height='{height}'>")


def _scoring(page: _Page, store: Any, run_id: int, replaced: frozenset[str] = frozenset()) -> None:
    """Top-scoring videos and their scores over time with events (a ``vkit score`` run).

    ``replaced``: the parts (of :data:`~vkit.core.reporting.REPLACEABLE`) a vertical's section draws instead.
    """
    from vkit.workflows.export import describe_scoring_run

    info = describe_scoring_run(store, run_id, top=TOP)
    if info is None:
        return
    page.add("Scoring", _table(info["counts"]))
    if "top videos" not in replaced:
        page.add("Top-scoring videos",
                 _table(info["top_videos"]) if info["top_videos"] else "<p class='muted'>none scored</p>")
    if "scores over time" not in replaced:
        _scores_over_time(page, store, run_id)
    if info["top_events"] and "top events" not in replaced:
        page.add("Top events", _table(info["top_events"]))
    if info["failures"]:
        page.add("Failed videos", _table(info["failures"]))


def _scores_over_time(page: _Page, store: Any, run_id: int) -> None:
    """The six top-scoring videos' scores over time, events (named by kind) and ground truth shaded."""
    from vkit.core.ground_truth import GROUND_TRUTH, detected_events
    from vkit.workflows.export import videos_by_id
    from vkit.workflows.report_plots import plot_scores_over_time

    top = sorted((s for s in store.video_summaries(run_id) if s["status"] == "scored"),
                 key=lambda s: -(s["max_score"] if s["max_score"] is not None else -math.inf))[:6]
    videos = videos_by_id(store, {s["video_id"] for s in top})
    truths = _ground_truth(store.run_predictions(run_id))
    panels = []
    for s in top:
        events = store.run_events(run_id, s["video_id"])
        path = videos[s["video_id"]]["path"]
        truth = [(e["start"], e["end"]) for e in events if e["kind"] == GROUND_TRUTH]
        truth += truths.get(path, truths.get(Path(path).name, []))
        detected = [(e["start"], e["end"]) for e in detected_events(events)]
        scores = [(r["start"], r["end"], r["score"]) for r in store.video_scores(run_id, s["video_id"]) if r["score"] is not None]
        kinds = sorted({str(e["kind"]) for e in events if e["kind"] != GROUND_TRUTH})
        panels.append(dict(name=_video_title(path), scores=scores, events=detected, truth=truth, kinds=kinds))
    shaded = "red: detected events; green: ground truth" if any(p["truth"] for p in panels) else "red: detected events"
    figure = page.figure(plot_scores_over_time(page.out / "scores_over_time.png", panels),
                         f"score over time ({shaded})", width=720)
    if figure:
        page.add("Scores over time", figure)


def _video_title(path: str) -> str:
    """``folder / file``: a video's file name with its folder (``learner03.mp4`` may be in two sessions)."""
    parent = Path(path).parent.name
    return f"{parent} / {Path(path).name}" if parent else Path(path).name


def _ground_truth(predictions: list[dict[str, Any]]) -> dict[str, list[tuple[float, float]]]:
    """``{video path or item id: [(start, end), ...]}`` from prediction rows whose ``values`` hold ``ground_truth``."""
    found: dict[str, list[tuple[float, float]]] = {}
    for row in predictions:
        values = row.get("values") if isinstance(row.get("values"), dict) else {}
        spans = values.get("ground_truth")
        if isinstance(spans, list):
            pairs = [(float(a), float(b)) for a, b in (s for s in spans if isinstance(s, list | tuple) and len(s) == 2)]
            for key in {values.get("path"), row["item_id"]} - {None}:
                found[str(key)] = pairs
    return found


def _predict_rows(page: _Page, predictions: list[dict[str, Any]]) -> None:
    rows = [p for p in predictions if p["split"] == "predict"]
    if rows:
        table = [dict(case=r["item_id"], prediction=r["prediction"], values=json.dumps(r["values"], default=str)[:200])
                 for r in rows[:200]]
        page.add(f"Predictions ({len(rows)} cases)", _table(table))


# ---------------------------------------------------------------------------------------------- sections
def _title(section: Any) -> str:
    """A section's title as text (``"section"`` if even that fails)."""
    try:
        return str(section.title)
    except Exception:  # noqa: BLE001 - a plugin's section object may be anything
        return "section"


def _save_sections(out: Path, sections: Sequence[Any]) -> Path | None:
    """The task's sections as JSON beside the page (images copied there), so a later ``vkit report`` shows them."""
    if not sections:
        return None
    saved = []
    for section in sections:
        try:
            saved.append(_saved_section(out, section))
        except Exception:  # noqa: BLE001 - the page shows this section's error (_Page.guarded); the others are kept
            continue
    path = out / SECTIONS_NAME
    path.write_text(json.dumps(saved, indent=1, default=str), encoding="utf-8")
    return path


def _saved_section(out: Path, section: Any) -> dict[str, Any]:
    """One section as a JSON-ready dict, its image copied into ``out``."""
    image = getattr(section, "image", None)
    if image is not None and Path(image).is_file() and Path(image).resolve().parent != out.resolve():
        shutil.copyfile(image, out / Path(image).name)
        image = out / Path(image).name
    return dict(title=str(section.title), table=getattr(section, "table", None),
                image=str(Path(image).resolve()) if image else None, text=getattr(section, "text", None),
                top=bool(getattr(section, "top", False)), replaces=list(getattr(section, "replaces", ()) or ()))


class _Section:
    """A section read back from ``sections.json`` (same attributes as ``ReportSection``)."""

    def __init__(self, title: str, table: list[dict[str, Any]] | None = None, image: str | None = None,
                 text: str | None = None, top: bool = False, replaces: Sequence[str] = ()) -> None:
        self.title, self.table, self.image, self.text = title, table, Path(image) if image else None, text
        self.top, self.replaces = bool(top), tuple(replaces)


def _stored_sections(store: Any, run_id: int) -> list[Any]:
    """Sections saved by an earlier report of this run (its ``report-sections`` artifact), if the file is still there."""
    paths = [a["path"] for a in store.run_artifacts(run_id) if a["kind"] == "report-sections"]
    if not paths or not Path(paths[-1]).is_file():
        return []
    try:
        return [_Section(**s) for s in json.loads(Path(paths[-1]).read_text(encoding="utf-8"))]
    except (ValueError, TypeError):
        return []


def _plugin_sections(run: dict[str, Any], store: Any, manager: Any) -> tuple[list[Any], list[str]]:
    """Sections from every plugin's ``vkit_report_sections``; a failing plugin is named, the others kept."""
    before = len(manager.errors)
    sections = manager.report_sections(run, store)
    failures = [f.message for f in manager.errors[before:]]
    return sections, failures


# ---------------------------------------------------------------------------------------------- entry points
def default_report_dir(run: Mapping[str, Any]) -> Path:
    """``<work_dir>/report`` of the run, or ``./report-run<N>`` when it has no work dir."""
    return Path(run["work_dir"]) / "report" if run.get("work_dir") else Path(f"report-run{run['id']}")


def write_run_report(
    store: Any,
    run_id: int,
    out_dir: str | Path | None = None,
    sections: Iterable[Any] = (),
    *,
    manager: Any = None,
    plugins: Sequence[str] = (),
    warn: Callable[[str], Any] | None = None,
) -> Path:
    """Write the report of stored run ``run_id`` (``report.html`` + PNGs) into ``out_dir``; return the page's path.

    Args:
        store: an open :class:`~vkit.core.store.Store`.
        run_id: any stored run (train, score or predict).
        out_dir: the folder (created); default :func:`default_report_dir`.
        sections: the task's own ``ReportSection``s (title + table/image/text); saved beside the page so
            ``vkit report RUN`` shows them again.
        manager: the plugin manager whose ``vkit_report_sections`` hooks add sections (default: a fresh one
            with ``plugins`` as extra modules).
        plugins: extra plugin modules (``--plugin``) when ``manager`` is ``None``.
        warn: told one line per part of the page that could not be drawn (default: ``warning: ...`` on stderr);
            such a part shows its error on the page and the rest is written.

    Raises:
        StoreError: no such run. DataError: the folder cannot be written.
    """
    run = store.get_run(run_id)
    if run is None:
        raise StoreError(f"run {run_id} is not in the store at {store.url} (see `vkit runs list`)")
    warn = warn or (lambda line: click.echo(f"warning: {line}", err=True))
    out = Path(out_dir) if out_dir is not None else default_report_dir(run)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DataError(f"report: cannot create the report folder {out}: {err}") from err
    sections = list(sections)
    saved = _save_sections(out, sections)
    if not sections:
        sections = _stored_sections(store, run_id)
    if manager is None:
        from vkit.hooks.manager import get_plugin_manager

        manager = get_plugin_manager(extra=plugins)
    extra, failures = _plugin_sections(dict(run, report_dir=str(out.resolve()), db=store.url), store, manager)
    extra += __import__("vkit.workflows.report_explain", fromlist=["_"]).explanation_sections(store, run, out, manager, warn)

    page = _Page(out, f"vkit {run.get('kind', 'train')} run {run_id}: {run['task']}")
    info = {k: run.get(k) for k in ("id", "task", "kind", "plugin", "status", "started_at", "finished_at", "seed",
                                    "work_dir", "model_sha256", "host")}
    if run["status"] == "running" and run.get("pid") == os.getpid() and run.get("host") == socket.gethostname():
        info["status"] = "running (this report is written by the run itself, before it closes)"
        checkpoints = [a["sha256"] for a in store.run_artifacts(run_id) if a["kind"] == "checkpoint"]
        info["model_sha256"] = info["model_sha256"] or (checkpoints[-1] if checkpoints else None)
    info["database"] = store.url
    if run.get("error"):
        info["error"] = run["error"].splitlines()[0]
    info["report written"] = datetime.now(timezone.utc)
    page.add("Run", _table(info))
    every = [*sections, *extra]
    top = [s for s in every if getattr(s, "top", False) is True]  # a vertical's answer first (teacher-first, ...)
    replaced = frozenset(str(r) for s in every for r in (getattr(s, "replaces", ()) or ()))
    for section in top:
        page.guarded(_title(section), page.section, section)
    final = {k: v for k, v in store.final_metrics(run_id).items() if not k.startswith("compression/")}
    main = {k: v for k, v in final.items() if k.split("/")[0] in ("test", "val")}
    page.add("Metrics", _table(dict(sorted(main.items()))) if main else "<p class='muted'>no test or validation metrics</p>")
    metrics = store.run_metrics(run_id)
    predictions = store.run_predictions(run_id)
    page.guarded("Training curves", _curves, page, metrics)
    page.guarded("Classifier", _classifier, page, predictions, manager.preview)
    page.guarded("Predictions", _predict_rows, page, predictions)
    page.guarded("Scoring", _scoring, page, store, run_id, replaced)
    page.guarded("Compression", _compression, page, metrics)
    for section in every:
        if not any(section is t for t in top):
            page.guarded(_title(section), page.section, section)
    for failure in page.failures:
        warn(f"report of run {run_id}: {failure} (the rest of the report is written)")
    if failures:
        page.add("Plugin errors", "".join(f"<p class='error'>{html.escape(_mask(f))}</p>" for f in failures))
    artifacts = [dict(kind=a["kind"], path=a["path"], bytes=a["bytes"], sha256=a["sha256"][:16])
                 for a in store.run_artifacts(run_id)]
    page.add("Artifacts", _table(artifacts) if artifacts else "<p class='muted'>none</p>")
    page.add("Config", f"<pre>{html.escape(_mask(json.dumps(run.get('config') or {}, indent=2, sort_keys=True, default=str)))}</pre>")
    page.add("Versions", f"<pre>{html.escape(json.dumps(run.get('versions') or {}, indent=2, sort_keys=True, default=str))}</pre>")
    path = out / REPORT_NAME
    path.write_text(page.html(), encoding="utf-8")
    if not getattr(store, "read_only", False):
        store.add_artifact(run_id, "report", path)
        if saved is not None:
            store.add_artifact(run_id, "report-sections", saved)
    return path


@click.command("report")
@click.argument("run_id", type=click.IntRange(1, MAX_RUN_ID))
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="Folder for report.html and its PNGs "
              "(default: the run's work dir /report, or ./report-run<N>).")
@click.pass_context
def report_cmd(ctx: click.Context, run_id: int, out_dir: str | None) -> None:
    """Write the HTML report of stored run RUN_ID (a training, scoring or predict run) from the store."""
    from vkit.core.store import Store, open_store

    obj = ctx.find_root().obj or {}
    # a newer vkit's store: report it, record nothing; a mistyped --db: named, not made
    store = open_store(obj.get("db_url"), read_only=True, create=False)
    if not store.schema.newer:
        store = Store(store.engine, store.schema)  # this vkit's schema: the page is recorded as an artifact
    with store:
        page = write_run_report(store, run_id, out_dir, plugins=obj.get("plugins", ()))
    click.echo(f"report: {page}")


__all__ = ["REPORT_NAME", "SECTIONS_NAME", "default_report_dir", "report_cmd", "write_run_report"]
