"""``vkit export RUN --format csv|parquet [--table T]``: any run's rows as files, streamed; and the scoring summary of ``vkit runs show``.

Tables (one file ``run{N}_{table}.{fmt}`` each; without ``--table`` every one
the run has rows in):

- ``metrics``: split, key, step, value, logged_at (training curves, test and compression metrics; of a scoring
  run, the per-group aggregates: ``split`` = the group kind such as ``session``, ``key`` = ``<group>/<name>``);
- ``predictions``: split, item_id, label, prediction, values (JSON);
- ``videos``: one row per video of a scoring run (status, error, segments, max/mean score, size, duration, fps, frames, sha256,
  ``values``: the scorer's per-video aggregates and event count as JSON);
- ``scores``: one row per segment (path, segment, start, end, score, values as JSON);
- ``events``: one row per event (path, kind, start, end, score);
- a plugin's tables (``vkit_store_schema``) that belong to runs, every column but ``id``, e.g. the recommendation
  plugin's ``recommendations``: user_id, rank, item_id, score (``vkit recommend --users``).

Rows are read with a server-side cursor (PostgreSQL; SQLite steps its cursor)
in batches of :data:`BATCH_ROWS` and written batch by batch, so memory stays
flat however many rows a run holds.

CSV cells are safe to open in a spreadsheet: a text cell that begins with
``=``, ``+``, ``-``, ``@``, a tab or a carriage return (a formula, by the OWASP
CSV-injection rule) is written with a leading ``'`` (numbers stay numbers);
``raw=True`` (``--raw``) writes every cell as stored.

Example::

    paths = export_run(store, 7, "out/", fmt="parquet")   # {'scores': Path('out/run7_scores.parquet'), ...}
"""
from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from vkit.core.run_checkpoint import MAX_RUN_ID
from vkit.registry.errors import ConfigError, StoreError

FORMATS = ("csv", "parquet")
#: First characters that make a spreadsheet read a cell as a formula (OWASP CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
#: Rows fetched and written per batch.
BATCH_ROWS = 10_000

#: Columns of each exported table, in order, with their Arrow types.
COLUMNS: dict[str, list[tuple[str, str]]] = {
    "metrics": [("run_id", "int64"), ("split", "string"), ("key", "string"), ("step", "int64"), ("value", "float64"),
                ("logged_at", "string")],
    "predictions": [("run_id", "int64"), ("split", "string"), ("item_id", "string"), ("label", "float64"),
                    ("prediction", "float64"), ("values", "string")],
    "videos": [("run_id", "int64"), ("video_id", "int64"), ("path", "string"), ("status", "string"),
               ("error", "string"), ("segments", "int64"), ("max_score", "float64"), ("mean_score", "float64"),
               ("size", "int64"), ("duration", "float64"), ("fps", "float64"), ("frames", "int64"),
               ("sha256", "string"), ("scored_at", "string"), ("values", "string")],
    "scores": [("run_id", "int64"), ("video_id", "int64"), ("path", "string"), ("segment", "int64"),
               ("start", "float64"), ("end", "float64"), ("score", "float64"), ("values", "string")],
    "events": [("run_id", "int64"), ("video_id", "int64"), ("path", "string"), ("kind", "string"),
               ("start", "float64"), ("end", "float64"), ("score", "float64")],
}
#: Core's tables; plugins add theirs (:func:`plugin_tables`).
TABLES = tuple(COLUMNS)


def plugin_tables(plugins: Sequence[str] = ()) -> dict[str, Any]:
    """``{name: sqlalchemy.Table}`` of the loaded plugins' tables that belong to runs (``vkit_store_schema``)."""
    from vkit.hooks.manager import get_plugin_manager

    found: dict[str, Any] = {}
    for schema in get_plugin_manager(extra=plugins).store_schemas():
        found.update({name: t for name, t in schema.run_tables.items() if name not in COLUMNS})
    return found


def columns(table: str, extra: Mapping[str, Any] | None = None) -> list[tuple[str, str]]:
    """``[(column, Arrow type)]`` exported for ``table``: core's :data:`COLUMNS`, or a plugin table's (all but ``id``)."""
    if table in COLUMNS:
        return COLUMNS[table]
    import sqlalchemy as sa

    def arrow(kind: Any) -> str:
        if isinstance(kind, sa.Boolean):
            return "bool_"
        if isinstance(kind, sa.Integer):
            return "int64"
        return "float64" if isinstance(kind, sa.Float | sa.Numeric) else "string"

    return [(c.name, arrow(c.type)) for c in (extra or {})[table].columns if c.name != "id"]


def _query(table: str, run_id: int, extra: Mapping[str, Any] | None = None) -> Any:
    """The SELECT of ``table``'s export columns for ``run_id``, in a stable order (a plugin table: by its first
    unique key, else by ``id``)."""
    import sqlalchemy as sa

    from vkit.core.store.models import Event, Metric, Prediction, Score, Video, VideoSummary

    if extra and table in extra and table not in COLUMNS:
        t = extra[table]
        unique = [c for c in t.constraints if isinstance(c, sa.UniqueConstraint)]
        order = list(unique[0].columns) if unique else [t.c.id]
        return sa.select(*[t.c[name] for name, _ in columns(table, extra)]).where(t.c.run_id == run_id).order_by(*order)

    if table == "metrics":
        cols = [Metric.run_id, Metric.split, Metric.key, Metric.step, Metric.value, Metric.logged_at]
        return sa.select(*cols).where(Metric.run_id == run_id).order_by(Metric.split, Metric.key, Metric.step)
    if table == "predictions":
        cols = [Prediction.run_id, Prediction.split, Prediction.item_id, Prediction.label, Prediction.prediction,
                Prediction.values]
        return sa.select(*cols).where(Prediction.run_id == run_id).order_by(Prediction.split, Prediction.item_id)
    if table == "videos":
        s, v = VideoSummary, Video
        cols = [s.run_id, s.video_id, v.path, s.status, s.error, s.segments, s.max_score, s.mean_score, v.size,
                v.duration, v.fps, v.frames, s.video_sha256.label("sha256"), s.scored_at, s.values]
        return sa.select(*cols).join(v, v.id == s.video_id).where(s.run_id == run_id).order_by(v.path)
    if table == "scores":
        cols = [Score.run_id, Score.video_id, Video.path, Score.segment, Score.start, Score.end, Score.score,
                Score.values]
        query = sa.select(*cols).join(Video, Video.id == Score.video_id).where(Score.run_id == run_id)
        return query.order_by(Score.video_id, Score.segment)
    if table == "events":
        cols = [Event.run_id, Event.video_id, Video.path, Event.kind, Event.start, Event.end, Event.score]
        query = sa.select(*cols).join(Video, Video.id == Event.video_id).where(Event.run_id == run_id)
        return query.order_by(Event.video_id, Event.start, Event.kind)
    raise ConfigError(f"export: table={table!r}; expected one of {list(TABLES)}")


def _cell(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return value


def csv_safe(value: Any) -> Any:
    """``value`` as a CSV cell no spreadsheet runs as a formula: text starting with :data:`FORMULA_STARTS` gets a ``'``.

    Example::

        >>> csv_safe("=HYPERLINK(1)"), csv_safe("@SUM(A1)"), csv_safe(-0.5), csv_safe("case-01")
        ("'=HYPERLINK(1)", "'@SUM(A1)", -0.5, 'case-01')
    """
    return f"'{value}" if isinstance(value, str) and value.startswith(FORMULA_STARTS) else value


def iter_batches(store: Any, run_id: int, table: str, batch_rows: int = BATCH_ROWS,
                 extra: Mapping[str, Any] | None = None) -> Iterator[list[dict[str, Any]]]:
    """``table``'s rows of run ``run_id`` as lists of at most ``batch_rows`` dicts, streamed from the database.

    JSON columns come as JSON text, timestamps as ISO 8601 text. ``extra``: plugin tables (:func:`plugin_tables`).
    """
    import sqlalchemy as sa

    query = _query(table, run_id, extra)
    names = [c for c, _ in columns(table, extra)]
    try:
        with store.engine.connect() as conn:
            result = conn.execution_options(stream_results=True, yield_per=batch_rows).execute(query)
            for part in result.partitions():
                yield [dict(zip(names, map(_cell, row))) for row in part]
    except sa.exc.SQLAlchemyError as err:
        from vkit.core.store.migrate import describe_db_error

        raise StoreError(f"export run {run_id} {table}: store {store.url}: {describe_db_error(err)}") from None


class _CsvSink:
    def __init__(self, path: Path, cols: list[tuple[str, str]], raw: bool = False) -> None:
        self.handle = open(path, "w", newline="", encoding="utf-8")
        self.writer = csv.DictWriter(self.handle, fieldnames=[c for c, _ in cols])
        self.writer.writeheader()
        self.raw = raw

    def write(self, rows: list[dict[str, Any]]) -> None:
        if not self.raw:
            rows = [{k: csv_safe(v) for k, v in row.items()} for row in rows]
        self.writer.writerows(rows)

    def close(self) -> None:
        self.handle.close()


class _ParquetSink:
    def __init__(self, path: Path, cols: list[tuple[str, str]]) -> None:
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError as err:
            raise ConfigError(f"--format parquet needs pyarrow (pip install 'vkit[parquet]'); import failed: {err}") from err
        self.pa = pa
        self.schema = pa.schema([(c, getattr(pa, t)()) for c, t in cols])
        self.writer = pq.ParquetWriter(path, self.schema)

    def write(self, rows: list[dict[str, Any]]) -> None:
        self.writer.write_table(self.pa.Table.from_pylist(rows, schema=self.schema))

    def close(self) -> None:
        self.writer.close()


def export_table(store: Any, run_id: int, table: str, path: Path, fmt: str = "csv", *, raw: bool = False,
                 extra: Mapping[str, Any] | None = None) -> int:
    """Stream ``table``'s rows of run ``run_id`` into ``path`` (``csv`` or ``parquet``); returns the row count.

    CSV text cells pass through :func:`csv_safe` unless ``raw``. ``extra``: plugin tables (:func:`plugin_tables`).
    """
    cols = columns(table, extra)
    sink = _CsvSink(path, cols, raw) if fmt == "csv" else _ParquetSink(path, cols)
    count = 0
    try:
        for rows in iter_batches(store, run_id, table, extra=extra):
            sink.write(rows)
            count += len(rows)
    finally:
        sink.close()
    return count


def export_run(store: Any, run_id: int, output: str | Path = ".", fmt: str = "csv",
               tables: Sequence[str] | None = None, *, raw: bool = False,
               extra: Mapping[str, Any] | None = None) -> dict[str, Path]:
    """Write run ``run_id``'s ``tables`` as ``run{N}_{table}.{fmt}`` under ``output``; returns ``{table: path}``.

    Args:
        store: an open :class:`~vkit.core.store.Store`.
        run_id: any stored run (``vkit run``, ``vkit score``, ``vkit predict``).
        output: the folder (created if needed).
        fmt: ``csv`` or ``parquet`` (needs pyarrow).
        tables: some of :data:`TABLES` or ``extra`` (written even when empty); ``None``: every table the run has rows in.
        raw: CSV cells exactly as stored, formulas included (default: :func:`csv_safe`).
        extra: plugins' tables (default: :func:`plugin_tables` of the loaded plugins).

    Raises:
        StoreError: no such run, or (``tables=None``) a run with no rows to export.
        ConfigError: unknown format or table.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"export: format={fmt!r}; expected one of {list(FORMATS)}")
    if fmt == "parquet":  # before any file is written
        from vkit.core.extras import require_extra

        require_extra("parquet", purpose="--format parquet")
    extra = plugin_tables() if extra is None else extra
    known = [*TABLES, *extra]
    unknown = [t for t in tables or () if t not in known]
    if unknown:
        raise ConfigError(f"export: tables {unknown} unknown; expected some of {known}")
    run = store.get_run(run_id)
    if run is None:
        raise StoreError(f"run {run_id} is not in the store at {store.url} (see `vkit runs list`)")
    if tables is None:
        counts = store.run_counts([run_id])
        counts["videos"] = counts.get("video_summaries", 0)
        tables = [t for t in known if counts.get(t)]
        if not tables:
            raise StoreError(f"run {run_id} (task {run['task']!r}, {run.get('kind', 'train')}) has no scoring results, "
                             f"metrics or predictions to export")
    from vkit.core.files import make_folder

    folder = make_folder(output, "--output")
    written = {}
    for table in tables:
        path = folder / f"run{run_id}_{table}.{fmt}"
        export_table(store, run_id, table, path, fmt, raw=raw, extra=extra)
        written[table] = path
    return written


def videos_by_id(store: Any, ids: set[int]) -> dict[int, dict[str, Any]]:
    """``{id: video row}`` of the videos ``ids`` (read 500 ids at a time, never the whole table)."""
    import sqlalchemy as sa

    from vkit.core.store.models import Video

    wanted, found = sorted(ids), {}
    with store.session(write=False) as session:
        for start in range(0, len(wanted), 500):
            query = sa.select(Video.__table__).where(Video.id.in_(wanted[start:start + 500]))
            found.update({row["id"]: dict(row) for row in session.execute(query).mappings()})
    return found


def describe_scoring_run(store: Any, run_id: int, top: int = 10) -> dict[str, Any] | None:
    """What ``vkit runs show`` prints for a scoring run, or ``None`` if ``run_id`` has no scoring results.

    Returns:
        ``counts`` (``videos``, ``scored``, ``failed``, ``segments``, ``events``; plus ``ground_truth`` spans
        when the run stored some), ``top_videos`` (``top`` highest ``max_score``: path, max, mean, events),
        ``top_events`` (``top`` highest-scoring events: path, kind, start, end, score),
        ``failures`` (path, error; every failed video). Events are the detected ones: ground-truth rows
        (:data:`vkit.core.ground_truth.GROUND_TRUTH`) are only counted. With ``duplicate`` videos (content
        this model scored at another path, not rescored): ``counts['duplicates']`` and ``duplicates``
        (path, error = ``duplicate of <path> ...``). Videos that ``changed`` while being scored (no rows) are
        listed in ``failures`` with that reason and counted in ``counts['changed']``.
    """
    from vkit.core.ground_truth import detected_events

    summaries = store.video_summaries(run_id)
    if not summaries:
        return None
    stored = store.run_events(run_id)
    events = detected_events(stored)
    scored = [s for s in summaries if s["status"] == "scored"]
    ranked = sorted(scored, key=lambda s: -(s["max_score"] if s["max_score"] is not None else float("-inf")))
    top_events = sorted(events, key=lambda e: -(e["score"] if e["score"] is not None else float("-inf")))[:top]
    failed = [s for s in summaries if s["status"] == "failed"]
    changed = [s for s in summaries if s["status"] == "changed"]
    duplicates = [s for s in summaries if s["status"] == "duplicate"]
    videos = videos_by_id(store, {s["video_id"] for s in ranked[:top] + failed + changed + duplicates}
                          | {e["video_id"] for e in top_events})
    per_video: dict[int, int] = {}
    for e in events:
        per_video[e["video_id"]] = per_video.get(e["video_id"], 0) + 1
    path = lambda vid: videos.get(vid, {}).get("path")  # noqa: E731
    counts = dict(videos=len(summaries), scored=len(scored), failed=len(failed),
                  segments=sum(s["segments"] for s in scored), events=len(events))
    if len(stored) > len(events):
        counts["ground_truth"] = len(stored) - len(events)
    extra = {}
    if changed:
        counts["changed"] = len(changed)
    if duplicates:
        counts["duplicates"] = len(duplicates)
        extra["duplicates"] = [dict(path=path(s["video_id"]), error=s["error"]) for s in duplicates]
    return dict(
        counts=counts,
        top_videos=[dict(path=path(s["video_id"]), max_score=s["max_score"], mean_score=s["mean_score"],
                         events=per_video.get(s["video_id"], 0)) for s in ranked[:top]],
        top_events=[dict(path=path(e["video_id"]), kind=e["kind"], start=e["start"], end=e["end"], score=e["score"])
                    for e in top_events],
        failures=[dict(path=path(s["video_id"]), error=s["error"]) for s in failed + changed],
        **extra,
    )


@click.command("export")
@click.argument("run_id", type=click.IntRange(1, MAX_RUN_ID))
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="csv", show_default=True)
@click.option("--table", "tables", multiple=True, metavar="TABLE",
              help=f"Only this table (repeatable; {', '.join(TABLES)} or a plugin's table such as recommendations; "
                   "default: every table the run has rows in).")
@click.option("--output", "-o", default=".", show_default=True, type=click.Path(file_okay=False),
              help="Folder for the run{N}_{table} files.")
@click.option("--raw", is_flag=True, help="CSV: write cells that start with = + - @ (spreadsheet formulas) as stored, "
              "without the leading ' that keeps a spreadsheet from running them.")
@click.option("--json", "as_json", is_flag=True, help="Print the written paths as JSON.")
@click.pass_context
def export_cmd(ctx: click.Context, run_id: int, fmt: str, tables: tuple[str, ...], output: str, raw: bool,
               as_json: bool) -> None:
    """Export any run's metrics, predictions, videos, scores and events as CSV or Parquet (streamed)."""
    from vkit.core.store import open_store

    obj = ctx.find_root().obj or {}
    with open_store(obj.get("db_url"), read_only=True, create=False) as store:  # a mistyped --db: named, not made
        written = export_run(store, run_id, output, fmt, tables=list(tables) or None, raw=raw,
                             extra=plugin_tables(obj.get("plugins", ())))
    if as_json:
        click.echo(json.dumps({k: str(v) for k, v in written.items()}, indent=2))
        return
    for name, path in written.items():
        click.echo(f"{name}: {path}")


__all__ = ["BATCH_ROWS", "COLUMNS", "FORMATS", "FORMULA_STARTS", "TABLES", "columns", "csv_safe", "describe_scoring_run",
           "export_cmd", "export_run", "export_table", "iter_batches", "plugin_tables", "videos_by_id"]
