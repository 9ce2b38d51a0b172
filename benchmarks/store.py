"""Store write speed: score rows/s through vkit's store next to a raw DBAPI ``executemany`` of the same rows.

Both write the same rows (dicts with ``video_id``, ``segment``, ``start``,
``end``, ``score``, ``values``) into the same ``scores`` table of the same
database, in transactions of ``--batch`` rows, alternating which goes first,
best of ``--repeats``. The raw side builds one tuple per row (``values`` as
JSON text) and calls the driver's ``executemany`` with a plain ``INSERT``; the
store side is ``Store.add_scores`` (validation, idempotent upsert). The ratio
store/raw is what the store costs over the ceiling of the database itself.

Also: peak Python memory of ``vkit export`` (``tracemalloc``) for N and 4N
rows — flat means the export streams.

Targets (issue 14): >= 50,000 rows/s on SQLite; store/raw >= 0.5 on SQLite and PostgreSQL.

    python benchmarks/store.py [--rows 200000] [--batch 10000] [--repeats 3] [--pg URL | --no-pg]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
import tracemalloc
import uuid
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from vkit.core.store import open_store

PG_URL = os.environ.get("VKIT_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
COLUMNS = ("run_id", "video_id", "segment", "start", "end", "score", "values")


def cpu_line() -> str:
    """The CPU model, core count and the SIMD flags that matter."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name") and model in ("", platform.machine(), platform.processor()):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    simd = [f for f in ("sse4_2", "avx2", "avx512f", "amx_tile") if f in flags]
    return f"{model}, {os.cpu_count()} logical CPUs, flags: {' '.join(simd) or 'n/a'}"


def make_rows(n: int, video_ids: list[int]) -> list[dict[str, Any]]:
    """``n`` score rows spread over ``video_ids`` (one 0.5 s segment each, a small JSON payload)."""
    per_video = -(-n // len(video_ids))
    rows = []
    for i in range(n):
        video, segment = video_ids[i // per_video], i % per_video
        score = (i * 7919 % 1000) / 1000.0
        rows.append(dict(video_id=video, segment=segment, start=segment * 0.5, end=segment * 0.5 + 0.5, score=score,
                         values=dict(p=[round(1 - score, 3), score])))
    return rows


def store_write(store: Any, run_id: int, rows: list[dict[str, Any]], batch: int) -> tuple[float, float]:
    """``(wall, CPU)`` seconds of writing ``rows`` through ``Store.add_scores``."""
    began, cpu = time.perf_counter(), time.process_time()
    for start in range(0, len(rows), batch):
        store.add_scores(run_id, rows[start:start + batch])
    return time.perf_counter() - began, time.process_time() - cpu


def raw_write(store: Any, run_id: int, rows: list[dict[str, Any]], batch: int) -> tuple[float, float]:
    """``(wall, CPU)`` seconds of the same rows through the driver's ``executemany``."""
    sqlite = store.engine.dialect.name == "sqlite"
    mark = "?" if sqlite else "%s"
    sql = (f"INSERT INTO scores ({', '.join(f'{chr(34)}{c}{chr(34)}' for c in COLUMNS)}) "
           f"VALUES ({', '.join([mark] * len(COLUMNS))})")
    conn = store.engine.raw_connection()
    try:
        began, cpu = time.perf_counter(), time.process_time()
        for start in range(0, len(rows), batch):
            params = [(run_id, r["video_id"], r["segment"], r["start"], r["end"], r["score"], json.dumps(r["values"]))
                      for r in rows[start:start + batch]]
            cursor = conn.cursor()
            if sqlite:
                cursor.execute("BEGIN IMMEDIATE")
            cursor.executemany(sql, params)
            if sqlite:
                cursor.execute("COMMIT")
            else:
                conn.commit()
            cursor.close()
        return time.perf_counter() - began, time.process_time() - cpu
    finally:
        conn.close()


def clear(store: Any, run_ids: list[int]) -> None:
    with store.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM scores WHERE run_id IN (%s)" % ",".join(map(str, run_ids))))


def bench_backend(url: str, n: int, batch: int, repeats: int) -> dict[str, Any]:
    with open_store(url) as store:
        mine = store.start_run("bench-store", "bench", {}, seed=0, kind="score")
        raw = store.start_run("bench-store-raw", "bench", {}, seed=0, kind="score")
        videos = store.upsert_videos([dict(path=f"/bench/v{i:05d}.mp4", status="ok") for i in range(max(1, n // 1000))])
        rows = make_rows(n, sorted(videos.values()))
        best = {side: [float("inf"), float("inf")] for side in ("store", "raw")}
        for repeat in range(repeats):
            order = ("store", "raw") if repeat % 2 == 0 else ("raw", "store")
            for side in order:
                clear(store, [mine if side == "store" else raw])
                wall, cpu = store_write(store, mine, rows, batch) if side == "store" else raw_write(store, raw, rows, batch)
                best[side] = [min(best[side][0], wall), min(best[side][1], cpu)]
        counts = store.run_counts([mine])["scores"], store.run_counts([raw])["scores"]
        assert counts == (n, n), f"row counts {counts}, expected {n} each"
        export = export_memory(store, mine, n) if store.engine.dialect.name == "sqlite" else None
    return dict(store=n / best["store"][0], raw=n / best["raw"][0], store_cpu=n / best["store"][1],
                raw_cpu=n / best["raw"][1], export=export)


def export_memory(store: Any, run_id: int, n: int) -> list[tuple[int, float, float]]:
    """``(rows, seconds, peak MiB)`` of exporting ``n/4`` and ``n`` score rows to CSV."""
    from vkit.workflows.export import export_table

    quarter = store.start_run("bench-export", "bench", {}, seed=0, kind="score")
    with store.engine.begin() as conn:
        conn.execute(sa.text(f"INSERT INTO scores (run_id, video_id, segment, start, \"end\", score, \"values\") "
                             f"SELECT {quarter}, video_id, segment, start, \"end\", score, \"values\" FROM scores "
                             f"WHERE run_id = {run_id} LIMIT {n // 4}"))
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for rid, rows in ((quarter, n // 4), (run_id, n)):
            began = time.perf_counter()
            written = export_table(store, rid, "scores", Path(tmp) / f"{rid}.csv", "csv")
            seconds = time.perf_counter() - began  # timed without tracemalloc, which slows Python down
            tracemalloc.start()
            export_table(store, rid, "scores", Path(tmp) / f"{rid}.csv", "csv")
            peak = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.stop()
            assert written == rows, (written, rows)
            out.append((rows, seconds, peak))
    return out


def pg_schema_url(base: str) -> tuple[str, sa.Engine, str] | None:
    admin = sa.create_engine(base, poolclass=sa.NullPool, connect_args={"connect_timeout": 3})
    try:
        schema = f"vkit_bench_{uuid.uuid4().hex[:10]}"
        with admin.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    except Exception as err:  # noqa: BLE001 - no server: the PostgreSQL row says so
        print(f"PostgreSQL at {sa.make_url(base).render_as_string(hide_password=True)} not reachable: "
              f"{str(getattr(err, 'orig', err)).strip().splitlines()[0]}")
        return None
    url = sa.make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False), admin, schema


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=10_000, help="rows per transaction")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pg", default=PG_URL, help="PostgreSQL URL (a fresh schema is made and dropped)")
    parser.add_argument("--no-pg", action="store_true")
    args = parser.parse_args()
    print(f"CPU: {cpu_line()}")
    print(f"python {platform.python_version()}, SQLAlchemy {sa.__version__}; {args.rows:,} score rows, "
          f"{args.batch:,} per transaction, best of {args.repeats}; load average at start {os.getloadavg()[0]:.1f}\n")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        results["SQLite (WAL)"] = bench_backend(f"sqlite:///{tmp}/bench.db", args.rows, args.batch, args.repeats)
    if not args.no_pg:
        made = pg_schema_url(args.pg)
        if made:
            url, admin, schema = made
            try:
                results["PostgreSQL"] = bench_backend(url, args.rows, args.batch, args.repeats)
            finally:
                with admin.begin() as conn:
                    conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
                admin.dispose()
    print(f"{'database':<14} {'vkit store rows/s':>18} {'raw executemany rows/s':>23} {'store/raw':>10} "
          f"{'target':>26} {'ok':>4}")
    for name, r in results.items():
        ratio = r["store"] / r["raw"]
        sqlite = name.startswith("SQLite")
        ok = ratio >= 0.5 and (r["store"] >= 50_000 or not sqlite)
        goal = ">= 50,000/s and >= 0.5" if sqlite else ">= 0.5"
        print(f"{name:<14} {r['store']:>18,.0f} {r['raw']:>23,.0f} {ratio:>10.2f} {goal:>26} {'yes' if ok else 'NO':>4}")
    lite = results["SQLite (WAL)"]
    print(f"SQLite per CPU-second of this process (SQLite runs in-process; robust to other jobs on the machine): "
          f"store {lite['store_cpu']:,.0f} rows/s, raw {lite['raw_cpu']:,.0f} rows/s, "
          f"ratio {lite['store_cpu'] / lite['raw_cpu']:.2f}")
    export = results["SQLite (WAL)"]["export"]
    print(f"\n{'export (CSV, SQLite)':<22} {'rows':>9} {'seconds':>8} {'rows/s':>10} {'peak MiB':>9}")
    for rows, seconds, peak in export:
        print(f"{'':<22} {rows:>9,} {seconds:>8.2f} {rows / seconds:>10,.0f} {peak:>9.1f}")
    growth = export[1][2] / export[0][2]
    print(f"peak memory for 4x the rows: x{growth:.2f} ({'flat: streamed' if growth < 1.5 else 'grows with rows'})")


if __name__ == "__main__":
    main()
