"""Fault matrix, names shown as text and nothing leaked (issue 21 items 6-9), through the installed ``vkit`` command.

- item 6: a ``$\\evilcmd$`` file or session name is drawn as text (no mathtext): ``vkit report`` and
  ``vkit engagement-report --out`` exit 0 with their PNGs; a report that fails after training leaves the
  run ``finished``, with the error recorded on it (a ``report-error`` artifact) and a warning printed.
- item 7: rich markup in names (``Lecture [final]/bad.mp4``, ``--user '[/bold]'``, ``--user '[red]u0003'``)
  prints literally.
- item 8: ``vkit export`` CSV cells that would be spreadsheet formulas get a leading ``'``; ``--raw`` keeps them.
- item 9: a store password (``user:secret@`` or ``?password=secret``) appears in no output, failing or not.

Stores: SQLite and PostgreSQL (127.0.0.1:5432; its URL carries a password, which trust auth ignores) where the item
touches the store (6's failed report recorded on the run, 9); names drawn or printed (6, 7) and CSV cells (8) on SQLite.
"""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import vkit_cli  # tests/helpers/vkit_cli.py: the installed command in a subprocess

pytestmark = pytest.mark.slow  # each case starts the vkit CLI (several import torch)
SUPPORT = Path(__file__).resolve().parents[1] / "workflows"  # test_score_support: the demo-score plugin
#: The password every PostgreSQL URL here carries: it must never be shown.
SECRET = "s3cret-item9-pw"
EVIL = "$\\evilcmd$"
#: The recommendation task at smoke size (as ``RecommendationTask.smoke_overrides``).
SMOKE = ("train.epochs=1", "data.synthetic.n_users=30", "data.synthetic.n_items=18", "data.synthetic.n_new=6",
         "data.synthetic.history=(3,6)", "model.dim=8", "model.hidden=8", "model.num_negatives=4")
FORMULAS = ['=HYPERLINK("http://evil.example/?q=1","click")', "+1+2", "-3+4", "@SUM(A1:A2)"]


def vkit(*args: str, cwd: Path, db: str | None = None, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    """``vkit [--db DB] ARGS`` in ``cwd`` with a private data cache and config; the demo-score plugin importable."""
    return vkit_cli.vkit(*(["--db", db] if db else []), *args, cwd=cwd, check=False, timeout=timeout, drop=("VKIT_*",),
                         env=dict(PYTHONPATH=str(SUPPORT), VKIT_CONFIG_DIR=str(cwd / "config"),
                                  VKIT_DATA=os.environ.get("VKIT_DATA", str(cwd / "data")), **env))


def ok(proc: subprocess.CompletedProcess) -> str:
    """``proc``'s stdout after checking it exited 0 and that no password reached stdout or stderr."""
    assert SECRET not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def pg_url(schema: str, form: str = "query", port: int = 5432, database: str = "test") -> str:
    """A PostgreSQL URL on ``schema`` carrying :data:`SECRET` as ``?password=`` (``query``) or ``user:pw@`` (``netloc``)."""
    url = sa.make_url(f"postgresql+psycopg://postgres@127.0.0.1:{port}/{database}")
    url = url.set(password=SECRET) if form == "netloc" else url.update_query_dict({"password": SECRET})
    return url.update_query_dict({"options": f"-csearch_path={schema}", "connect_timeout": "3"}).render_as_string(
        hide_password=False)


def _train(db: str, cwd: Path) -> dict[str, Any]:
    """One smoke-size recommendation run in ``db`` whose report cannot be written (its work dir holds a *file*
    ``report``). Returns ``dict(db, cwd, run_id, work_dir, proc)``."""
    from vkit.core.store import open_store

    work = cwd / "my-run"
    work.mkdir()
    (work / "report").write_text("a file where the report folder should go\n")
    sets = [arg for override in SMOKE for arg in ("--set", override)]
    proc = vkit("run", "recommendation", "--work-dir", str(work), *sets, cwd=cwd, db=db)
    ok(proc)
    with open_store(db, read_only=True) as store:
        (run,) = store.list_runs(kind="train")
    return dict(db=db, cwd=cwd, run_id=run["id"], work_dir=work, proc=proc)


@pytest.fixture(scope="module")
def sqlite_trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """:func:`_train` in a fresh SQLite store (items 6-8 share it)."""
    cwd = tmp_path_factory.mktemp("trained")
    return _train(f"sqlite:///{cwd / 'vkit.db'}", cwd)


@pytest.fixture(scope="module")
def postgresql_trained(pg_admin: sa.Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """:func:`_train` in a fresh PostgreSQL schema (a password in its URL), dropped afterwards."""
    schema = f"vkit_text_{uuid.uuid4().hex[:10]}"
    with pg_admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    yield _train(pg_url(schema), tmp_path_factory.mktemp("trained"))
    with pg_admin.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def trained(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The trained run on each backend (item 6's failed report is recorded in the store)."""
    return request.getfixturevalue(f"{request.param}_trained")


def scored_archive(root: Path, names: list[str]) -> Path:
    """Videos under ``root`` at the relative ``names`` (``.mp4`` files the demo-score plugin scores)."""
    sys.path.insert(0, str(SUPPORT))
    import test_score_support as support

    for i, name in enumerate(names):
        support.write_good(root / name, seed=i)
    return root


def demo_checkpoint(path: Path) -> Path:
    sys.path.insert(0, str(SUPPORT))
    import test_score_support as support

    return support.make_checkpoint(path)


def engagement_scoring_run(db: str, root: Path) -> int:
    """A stored ``vkit score education-engagement`` run of two learners in session ``$\\evilcmd$``; its id."""
    from vkit.core.store import open_store

    with open_store(db) as store:
        run_id = store.start_run("education-engagement", "education", {}, seed=None, kind="score",
                                 model_sha256="ab" * 32)
        ids = store.upsert_videos([dict(path=str(root / EVIL / f"learner0{i}.mp4"), sha256=f"{i:064x}", size=10,
                                        duration=4.0, fps=8.0, frames=32, status="ok") for i in (1, 2)])
        store.add_video_results(run_id, [
            dict(video_id=video_id, status="scored", events=[dict(kind="low-engagement", start=0.0, end=2.0, score=0.2)],
                 scores=[dict(segment=s, start=float(s), end=s + 1.0, score=0.2 if s < 2 else 0.8, values={})
                         for s in range(4)])
            for video_id in ids.values()])
        store.finish_run(run_id, "finished")
    return run_id


# ----------------------------------------------------------------------------------------------- item 6
def test_item6_mathtext_names_drawn_as_text_report_exits_0(sqlite_url: str, tmp_path: Path) -> None:
    """Names drawn as text: the store only holds them (SQLite; the failed report below is on both backends)."""
    archive = scored_archive(tmp_path / "lessons", [f"{EVIL}/learner01.mp4", f"{EVIL}/learner02.mp4",
                                                    f"maths/{EVIL}.mp4"])
    ckpt = demo_checkpoint(tmp_path / "model.safetensors")
    db = sqlite_url
    scored = json.loads(ok(vkit("--plugin", "test_score_support", "score", "demo-score", str(archive), "--checkpoint",
                                str(ckpt), "--workers", "0", "--json", cwd=tmp_path, db=db)))
    assert scored["scored"] == 3, scored

    out = tmp_path / "report out"
    shown = ok(vkit("report", str(scored["run_id"]), "--out", str(out), cwd=tmp_path, db=db))
    assert f"report: {out / 'report.html'}" in shown
    page = (out / "report.html").read_text(encoding="utf-8")
    assert EVIL in page and (out / "scores_over_time.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    timelines = tmp_path / "timelines"
    session = engagement_scoring_run(db, tmp_path / "lessons")
    lines = ok(vkit("engagement-report", str(session), "--out", str(timelines), cwd=tmp_path, db=db,
                    VKIT_LEARNER_SALT="item6-salt"))
    assert f"{EVIL}:" in lines  # the session line names the session as it is
    pngs = sorted(timelines.glob("*.png"))
    assert pngs and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs), lines


def test_item6_report_failure_keeps_trained_run_finished(trained: dict[str, Any]) -> None:
    run_id, work, proc = trained["run_id"], trained["work_dir"], trained["proc"]
    assert (f"warning: the report of run {run_id} failed (DataError: report: cannot create the report folder "
            f"{work / 'report'}") in proc.stdout, proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr
    shown = json.loads(ok(vkit("runs", "show", str(run_id), "--json", cwd=trained["cwd"], db=trained["db"])))
    assert shown["run"]["status"] == "finished" and shown["run"]["error"] is None
    errors = [a for a in shown["artifacts"] if a["kind"] == "report-error"]
    assert len(errors) == 1 and "cannot create the report folder" in Path(errors[0]["path"]).read_text()
    assert any(a["kind"] == "checkpoint" for a in shown["artifacts"])  # the trained model is kept

    out = trained["cwd"] / "report-later"  # the report can be written afterwards, elsewhere
    assert f"report: {out / 'report.html'}" in ok(vkit("report", str(run_id), "--out", str(out), cwd=trained["cwd"],
                                                      db=trained["db"]))


# ----------------------------------------------------------------------------------------------- item 7
def test_item7_rich_markup_in_names_prints_literally(sqlite_trained: dict[str, Any], tmp_path: Path) -> None:
    """Printing names is not a store matter: SQLite only."""
    from vkit.core.store import open_store

    db, cwd, run_id = sqlite_trained["db"], sqlite_trained["cwd"], sqlite_trained["run_id"]
    shown = ok(vkit("recommend", "--run", str(run_id), "--user", "[/bold]", "--user", "[red]u0003", "-k", "3",
                    cwd=cwd, db=db))
    for user in ("[/bold]", "[red]u0003"):
        assert f"note: unknown user '{user}'" in shown and f"user {user}: top 3" in shown, shown

    archive = scored_archive(tmp_path / "lessons", ["Lecture [final]/good.mp4"])
    (archive / "Lecture [final]" / "bad.mp4").write_text("not a video\n")
    ckpt = demo_checkpoint(tmp_path / "model.safetensors")
    summary = ok(vkit("--plugin", "test_score_support", "score", "demo-score", str(archive), "--checkpoint", str(ckpt),
                      "--workers", "0", cwd=cwd, db=db))
    assert "Lecture [final]/bad.mp4" in summary, summary
    with open_store(db, read_only=True) as store:
        scoring = store.list_runs(kind="score", limit=1)[0]["id"]
    listing = ok(vkit("runs", "show", str(scoring), cwd=cwd, db=db))
    assert "Lecture [final]/bad.mp4" in listing, listing


# ----------------------------------------------------------------------------------------------- item 8
def test_item8_export_neutralises_formula_cells(sqlite_trained: dict[str, Any], tmp_path: Path) -> None:
    """CSV cells are written by export, whatever the store: SQLite only."""
    trained = sqlite_trained
    db, cwd = trained["db"], trained["cwd"]
    users = tmp_path / "users.txt"
    users.write_text("\n".join([*FORMULAS, "u0001"]) + "\n", encoding="utf-8")
    said = ok(vkit("recommend", "--run", str(trained["run_id"]), "--users", str(users), "-k", "2", cwd=cwd, db=db))
    saved = int(said.split("-> store run ")[1].split(",")[0])

    def exported(*extra: str) -> list[dict[str, str]]:
        folder = tmp_path / ("raw" if extra else "safe")
        ok(vkit("export", str(saved), "--table", "recommendations", "-o", str(folder), *extra, cwd=cwd, db=db))
        with open(folder / f"run{saved}_recommendations.csv", newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))

    safe = exported()
    assert {r["user_id"] for r in safe} == {*(f"'{f}" for f in FORMULAS), "u0001"}
    assert all(not cell.startswith(("=", "+", "-", "@", "\t", "\r")) for r in safe for cell in r.values())
    assert all(float(r["score"]) >= 0 for r in safe)  # numbers stay numbers
    raw = exported("--raw")
    assert {r["user_id"] for r in raw} == {*FORMULAS, "u0001"}


# ----------------------------------------------------------------------------------------------- item 9
@pytest.mark.postgres
@pytest.mark.parametrize("form", ["query", "netloc"])
def test_item9_store_password_never_shown(form: str, pg_admin: sa.Engine, tmp_path: Path) -> None:
    schema = f"vkit_pw_{uuid.uuid4().hex[:10]}"
    with pg_admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        db = pg_url(schema, form)
        archive = scored_archive(tmp_path / "clips", ["a.mp4", "b.mp4"])
        ckpt = demo_checkpoint(tmp_path / "model.safetensors")
        ok(vkit("db", "upgrade", cwd=tmp_path, db=db))
        assert "***" in ok(vkit("db", "current", cwd=tmp_path, db=db))
        score = ["--plugin", "test_score_support", "score", "demo-score", str(archive), "--checkpoint", str(ckpt),
                 "--workers", "0"]
        data = json.loads(ok(vkit(*score, "--json", cwd=tmp_path, db=db)))
        assert data["db_url"].startswith("postgresql+psycopg://postgres") and "***" in data["db_url"], data["db_url"]
        assert "***" in ok(vkit(*score, cwd=tmp_path, db=db))  # the summary table's database row
        run_id = str(data["run_id"])
        reads = [("runs", "list", "--json"), ("runs", "show", run_id, "--json"), ("runs", "show", run_id),
                 ("report", run_id, "--out", str(tmp_path / "report")),
                 ("export", run_id, "-o", str(tmp_path / "export"), "--json")]
        fails = [(db, ("runs", "show", "999")), (pg_url(schema, form, port=1), ("runs", "list")),
                 (pg_url(schema, form, database="no_such_db"), ("--debug", "runs", "list")),
                 (pg_url(schema, form, database="no_such_db"), (*score, "--json"))]
        with ThreadPoolExecutor(2) as pool:  # independent commands, two at a time (each mostly starts an interpreter)
            for proc in pool.map(lambda args: vkit(*args, cwd=tmp_path, db=db), reads):
                ok(proc)
            failing = list(pool.map(lambda case: vkit(*case[1], cwd=tmp_path, db=case[0]), fails))
        assert SECRET not in (tmp_path / "report" / "report.html").read_text(encoding="utf-8")

        for proc in failing:
            assert proc.returncode != 0 and "Error: " in proc.stderr, proc.stdout + proc.stderr
            assert SECRET not in proc.stdout + proc.stderr, proc.stderr
            assert "***" in proc.stderr, proc.stderr  # the URL is still named, masked
    finally:
        with pg_admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
