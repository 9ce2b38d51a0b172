"""``vkit export RUN --format csv|parquet``: a scoring run's results as files, and its summary for ``vkit runs show``.

Three tables per run, joined with the videos' paths:

- ``run{N}_videos``: one row per video (status, error, segments, max/mean score, size, duration, fps, frames, sha256);
- ``run{N}_scores``: one row per segment (path, segment, start, end, score);
- ``run{N}_events``: one row per event (path, kind, start, end, score).

Example::

    paths = export_run(store, 7, "out/", fmt="parquet")   # {'videos': Path('out/run7_videos.parquet'), ...}
"""
from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from vkit.registry.errors import ConfigError, StoreError

FORMATS = ("csv", "parquet")

#: Columns of each exported table, in order, with their Arrow types.
COLUMNS: dict[str, list[tuple[str, str]]] = {
    "videos": [("run_id", "int64"), ("video_id", "int64"), ("path", "string"), ("status", "string"),
               ("error", "string"), ("segments", "int64"), ("max_score", "float64"), ("mean_score", "float64"),
               ("size", "int64"), ("duration", "float64"), ("fps", "float64"), ("frames", "int64"),
               ("sha256", "string"), ("scored_at", "string")],
    "scores": [("run_id", "int64"), ("video_id", "int64"), ("path", "string"), ("segment", "int64"),
               ("start", "float64"), ("end", "float64"), ("score", "float64")],
    "events": [("run_id", "int64"), ("video_id", "int64"), ("path", "string"), ("kind", "string"),
               ("start", "float64"), ("end", "float64"), ("score", "float64")],
}


def _videos_by_id(store: Any, ids: set[int]) -> dict[int, dict[str, Any]]:
    return {v["id"]: v for v in store.get_videos() if v["id"] in ids}


def scoring_tables(store: Any, run_id: int) -> dict[str, list[dict[str, Any]]]:
    """The ``videos``, ``scores`` and ``events`` rows of scoring run ``run_id`` (see the module docstring).

    Raises:
        StoreError: no such run, or a run with no scoring results.
    """
    run = store.get_run(run_id)
    if run is None:
        raise StoreError(f"run {run_id} is not in the store at {store.url}")
    summaries = store.video_summaries(run_id)
    if not summaries:
        raise StoreError(f"run {run_id} (task {run['task']!r}) has no scoring results; "
                         f"export works on runs made by `vkit score`")
    videos = _videos_by_id(store, {s["video_id"] for s in summaries})
    tables: dict[str, list[dict[str, Any]]] = {"videos": [], "scores": [], "events": []}
    for s in summaries:
        v = videos.get(s["video_id"], {})
        tables["videos"].append(dict(
            run_id=run_id, video_id=s["video_id"], path=v.get("path"), status=s["status"], error=s["error"],
            segments=s["segments"], max_score=s["max_score"], mean_score=s["mean_score"], size=v.get("size"),
            duration=v.get("duration"), fps=v.get("fps"), frames=v.get("frames"), sha256=s["video_sha256"],
            scored_at=s["scored_at"].isoformat() if s.get("scored_at") else None))
    for name, rows in (("scores", store.video_scores(run_id)), ("events", store.run_events(run_id))):
        keep = [c for c, _ in COLUMNS[name] if c not in ("run_id", "path")]
        tables[name] = [dict(run_id=run_id, path=videos.get(r["video_id"], {}).get("path"), **{k: r[k] for k in keep})
                        for r in rows]
    for name, rows in tables.items():
        order = [c for c, _ in COLUMNS[name]]
        tables[name] = [{c: row.get(c) for c in order} for row in rows]
    return tables


def _write_csv(path: Path, columns: Sequence[str], rows: list[dict[str, Any]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows(rows)


def _write_parquet(path: Path, name: str, rows: list[dict[str, Any]]) -> None:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as err:
        raise ConfigError(f"--format parquet needs pyarrow (pip install pyarrow); import failed: {err}") from err
    schema = pa.schema([(c, getattr(pa, t)()) for c, t in COLUMNS[name]])
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)


def export_run(store: Any, run_id: int, output: str | Path = ".", fmt: str = "csv") -> dict[str, Path]:
    """Write scoring run ``run_id`` as ``run{N}_videos|scores|events.{fmt}`` under ``output``; returns ``{table: path}``.

    Args:
        store: an open :class:`~vkit.core.store.Store`.
        run_id: a run made by ``vkit score``.
        output: the folder (created if needed).
        fmt: ``csv`` or ``parquet`` (needs pyarrow).
    """
    if fmt not in FORMATS:
        raise ConfigError(f"export: format={fmt!r}; expected one of {list(FORMATS)}")
    tables = scoring_tables(store, run_id)
    folder = Path(output).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, rows in tables.items():
        path = folder / f"run{run_id}_{name}.{fmt}"
        if fmt == "csv":
            _write_csv(path, [c for c, _ in COLUMNS[name]], rows)
        else:
            _write_parquet(path, name, rows)
        written[name] = path
    return written


def describe_scoring_run(store: Any, run_id: int, top: int = 10) -> dict[str, Any] | None:
    """What ``vkit runs show`` prints for a scoring run, or ``None`` if ``run_id`` has no scoring results.

    Returns:
        ``counts`` (``videos``, ``scored``, ``failed``, ``segments``, ``events``),
        ``top_videos`` (``top`` highest ``max_score``: path, max, mean, events),
        ``top_events`` (``top`` highest-scoring events: path, kind, start, end, score),
        ``failures`` (path, error; every failed video).
    """
    summaries = store.video_summaries(run_id)
    if not summaries:
        return None
    videos = _videos_by_id(store, {s["video_id"] for s in summaries})
    events = store.run_events(run_id)
    per_video: dict[int, int] = {}
    for e in events:
        per_video[e["video_id"]] = per_video.get(e["video_id"], 0) + 1
    scored = [s for s in summaries if s["status"] == "scored"]
    path = lambda vid: videos.get(vid, {}).get("path")  # noqa: E731
    ranked = sorted(scored, key=lambda s: -(s["max_score"] if s["max_score"] is not None else float("-inf")))
    return dict(
        counts=dict(videos=len(summaries), scored=len(scored), failed=len(summaries) - len(scored),
                    segments=sum(s["segments"] for s in scored), events=len(events)),
        top_videos=[dict(path=path(s["video_id"]), max_score=s["max_score"], mean_score=s["mean_score"],
                         events=per_video.get(s["video_id"], 0)) for s in ranked[:top]],
        top_events=[dict(path=path(e["video_id"]), kind=e["kind"], start=e["start"], end=e["end"], score=e["score"])
                    for e in sorted(events, key=lambda e: -(e["score"] if e["score"] is not None else float("-inf")))[:top]],
        failures=[dict(path=path(s["video_id"]), error=s["error"]) for s in summaries if s["status"] == "failed"],
    )


@click.command("export")
@click.argument("run_id", type=int)
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="csv", show_default=True)
@click.option("--output", "-o", default=".", show_default=True, type=click.Path(file_okay=False),
              help="Folder for run{N}_videos/scores/events files.")
@click.option("--json", "as_json", is_flag=True, help="Print the written paths as JSON.")
@click.pass_context
def export_cmd(ctx: click.Context, run_id: int, fmt: str, output: str, as_json: bool) -> None:
    """Export the scores, per-video summaries and events of scoring run RUN_ID as CSV or Parquet."""
    from vkit.core.store import open_store

    obj = ctx.find_root().obj or {}
    with open_store(obj.get("db_url"), read_only=True) as store:
        written = export_run(store, run_id, output, fmt)
    if as_json:
        click.echo(json.dumps({k: str(v) for k, v in written.items()}, indent=2))
        return
    for name, path in written.items():
        click.echo(f"{name}: {path}")


__all__ = ["COLUMNS", "FORMATS", "describe_scoring_run", "export_cmd", "export_run", "scoring_tables"]
