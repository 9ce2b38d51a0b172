"""`vkit export`: every table of every kind of run round-trips its row count and values (CSV and Parquet), streamed."""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from vkit.registry.errors import ConfigError, StoreError
from vkit.workflows import export
from vkit.workflows.cli import cli
from vkit.workflows.export import TABLES, export_run

pq = pytest.importorskip("pyarrow.parquet")

#: Rows fill_store gives each kind of run, per table.
EXPECTED = {
    "train": dict(metrics=14, predictions=24),
    "score": dict(videos=3, scores=24, events=2),
    "predict": dict(predictions=1),
}


def _read(path: Path) -> list[dict]:
    if path.suffix == ".csv":
        with open(path, newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))
    return pq.read_table(path).to_pylist()


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_every_table_of_every_kind_round_trips(store, filled, tmp_path, fmt):
    for kind, expected in EXPECTED.items():
        run_id = filled[kind]
        written = export_run(store, run_id, tmp_path / kind, fmt)
        assert set(written) == set(expected), kind   # default: the tables the run has rows in
        for table, path in written.items():
            assert path == tmp_path / kind / f"run{run_id}_{table}.{fmt}"
            rows = _read(path)
            assert len(rows) == expected[table], (kind, table)
            assert list(rows[0]) == [c for c, _ in export.COLUMNS[table]]
            assert {str(r["run_id"]) for r in rows} == {str(run_id)}
        forced = export_run(store, run_id, tmp_path / f"{kind}-all", fmt, tables=list(TABLES))
        assert {t: len(_read(p)) for t, p in forced.items()} == {t: expected.get(t, 0) for t in TABLES}


def test_values_survive_the_trip(store, filled, tmp_path):
    train = filled["train"]
    written = export_run(store, train, tmp_path, "parquet", tables=["predictions", "metrics"])
    stored = {r["item_id"]: r for r in store.run_predictions(train)}
    for row in pq.read_table(written["predictions"]).to_pylist():
        assert json.loads(row["values"]) == stored[row["item_id"]]["values"]
        assert row["label"] == stored[row["item_id"]]["label"] and row["prediction"] == stored[row["item_id"]]["prediction"]
    metrics = {(r["split"], r["key"], r["step"]): r["value"] for r in pq.read_table(written["metrics"]).to_pylist()}
    assert metrics[("val", "auc", 3)] == pytest.approx(0.8) and metrics[("compression", "size_mb", 0)] == 4.0
    assert metrics[("test", "sensitivity", 0)] is None  # NaN is stored (and exported) as missing
    score = export_run(store, filled["score"], tmp_path, "csv", tables=["scores", "videos"])
    rows = _read(score["scores"])
    db = {(s["video_id"], s["segment"]): s["score"] for s in store.video_scores(filled["score"])}
    for row in rows:
        assert float(row["score"]) == pytest.approx(db[(int(row["video_id"]), int(row["segment"]))], abs=1e-12)
        assert row["path"].endswith(".mp4") and json.loads(row["values"]) == {"raw": [int(row["segment"])]}
    assert {r["status"] for r in _read(score["videos"])} == {"scored"}


def test_streams_in_batches(store, filled, tmp_path, monkeypatch):
    batches = []
    original = export.iter_batches

    def spy(*args, **kwargs):
        for rows in original(*args, **{**kwargs, "batch_rows": 5}):
            batches.append(len(rows))
            yield rows

    monkeypatch.setattr(export, "iter_batches", spy)
    written = export_run(store, filled["score"], tmp_path, "parquet", tables=["scores"])
    assert batches == [5, 5, 5, 5, 4] and pq.read_table(written["scores"]).num_rows == 24
    assert pq.ParquetFile(written["scores"]).metadata.num_row_groups == 5  # written batch by batch


def test_bad_requests(store, filled, tmp_path):
    with pytest.raises(ConfigError, match=r"format='xlsx'; expected one of \['csv', 'parquet'\]"):
        export_run(store, filled["train"], tmp_path, "xlsx")
    with pytest.raises(ConfigError, match=r"tables \['frames'\] unknown"):
        export_run(store, filled["train"], tmp_path, "csv", tables=["frames"])
    with pytest.raises(StoreError, match="run 9999 is not in the store"):
        export_run(store, 9999, tmp_path)
    empty = store.start_run("t", "p", {}, seed=0)
    with pytest.raises(StoreError, match=f"run {empty} .* has no scoring results, metrics or predictions"):
        export_run(store, empty, tmp_path)
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(ConfigError, match=r"--output '.*pipe/sub': not a folder \(.*pipe is a FIFO\)"):
        export_run(store, filled["train"], tmp_path / "pipe" / "sub")


def test_cli_export_table_option_and_no_password(store_url, filled, tmp_path, db_password):
    out = tmp_path / "x"
    result = CliRunner().invoke(cli, ["--db", store_url, "export", str(filled["train"]), "--format", "parquet",
                                      "--table", "metrics", "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"metrics": str(out / f"run{filled['train']}_metrics.parquet")}
    assert pq.read_table(out / f"run{filled['train']}_metrics.parquet").num_rows == 14
    result = CliRunner().invoke(cli, ["--db", store_url, "export", str(filled["score"]), "-o", str(out)])
    assert result.exit_code == 0 and {line.split(":")[0] for line in result.output.splitlines()} == {"videos", "scores", "events"}
    missing = CliRunner().invoke(cli, ["--db", store_url, "export", "9999"])
    assert missing.exit_code != 0
    everything = result.output + missing.output + str(missing.exception)
    everything += "".join(p.read_text(errors="replace") for p in out.glob("*.csv"))
    assert db_password not in everything and "cfg-s3cret" not in everything
