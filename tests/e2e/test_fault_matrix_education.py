"""Fault matrix of issue 21, education items, through the installed ``vkit`` command on SQLite and PostgreSQL
where the store is involved (items 10 and 19's mistyped store; 12 and 19's run of another task on SQLite).

- item 10: scoring pseudonymous links after the named recordings links no hash to a name in any store row;
  a farm refuses another salt without ``--replace``; a learner id of 12 hex digits is hashed, not shown.
- item 12: ``engagement-report`` names the longest period with the most learners low, not the first.
- item 19: ``engagement-report`` refuses a run of another task, naming it; ``engagement-report``,
  ``recommend``, ``runs show``, ``export`` and ``report`` of a store that is not there create nothing.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
import vkit_cli  # tests/helpers/vkit_cli.py: the installed command in a subprocess

TINY = [
    "train.epochs=1", "train.batch_size=4", "data.synthetic.n_train=16", "data.synthetic.n_val=8",
    "data.synthetic.n_test=8", "data.synthetic.clips_per_subject=4", "data.synthetic.sessions=1",
    "data.synthetic.learners=2", "data.synthetic.lesson_seconds=8", "data.num_frames=8", "data.size=16",
    "data.synthetic.size=16", "model.backbones.video.widths=(4,8)", "model.backbones.video.num_frames=8",
    "model.backbones.video.input_size=(16,16)", "timeline.segments=4", "timeline.min_seconds=2.0",
    "timeline.low_level=4.0",  # every segment is "low": each recording has one stretch over its whole length
]
NAMES = ("learner01", "learner02", "0123456789ab")  # the last: a student number that looks like a hash


def vkit(*args: str, salt: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """The installed command, one torch thread, ``$VKIT_LEARNER_SALT`` = ``salt`` (unset when ``None``)."""
    return vkit_cli.vkit(*args, check=False, timeout=timeout, drop=("VKIT_LEARNER_SALT", "VKIT_DB_URL"),
                         env=dict(OMP_NUM_THREADS="1", **({"VKIT_LEARNER_SALT": salt} if salt is not None else {})))


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """A one-epoch education-engagement model (its own store) and the embedded lessons it was generated with."""
    from vkit.core.store import open_store

    root = tmp_path_factory.mktemp("edu-model")
    db = f"sqlite:///{root / 'train.db'}"
    sets = [arg for item in TINY for arg in ("--set", item)]
    proc = vkit("--db", db, "run", "education-engagement", "--data-root", str(root / "data"),
                "--work-dir", str(root / "work"), *sets, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (run,) = open_store(db).list_runs()
    (checkpoint,) = [a["path"] for a in open_store(db).run_artifacts(run["id"]) if a["kind"] == "checkpoint"]
    return checkpoint, root / "data" / "education-engagement" / "Lessons"


def _lessons(source: Path, to: Path) -> Path:
    """``to/session01/{learner01,learner02,0123456789ab}.mp4``: two generated lessons and a third of other content."""
    from vkit.core.video import write_video

    session = to / "session01"
    session.mkdir(parents=True)
    for name in NAMES[:2]:
        shutil.copyfile(source / "session01" / f"{name}.mp4", session / f"{name}.mp4")
    noise = np.random.default_rng(0).integers(0, 255, (64, 16, 16, 3), dtype=np.uint8)
    write_video(session / f"{NAMES[2]}.mp4", noise, fps=8)
    return to


def _score(url: str, folder: Path, checkpoint: str, salt: str) -> dict:
    proc = vkit("--db", url, "score", "education-engagement", str(folder), "--checkpoint", checkpoint,
                "--workers", "0", "--batch-size", "4", "--json", salt=salt)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout[proc.stdout.index("{"):])


def _rows(url: str) -> list[str]:
    """Every row of every vkit table, as text."""
    from vkit.core.store.models import Base

    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            return [f"{table.name}: {tuple(row)}" for table in Base.metadata.sorted_tables
                    for row in conn.execute(sa.select(table))]
    finally:
        engine.dispose()


def _links(farm: Path) -> list[str]:
    return sorted(p.name for p in (farm / "session01").iterdir())


def _report(url: str, run_id: int, salt: str) -> list[str]:
    proc = vkit("--db", url, "engagement-report", str(run_id), salt=salt)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.splitlines()


def test_item10_pseudonymised_links_never_linked_to_names_and_farm_keeps_one_salt(
        tiny_model, store_url: str, tmp_path: Path) -> None:
    from vkit.plugins.education.privacy import learner_hash

    checkpoint, source = tiny_model
    lessons, farm = _lessons(source, tmp_path / "lessons"), tmp_path / "farm"
    clear = _score(store_url, lessons, checkpoint, salt="pepper")
    assert (clear["scored"], clear["duplicates"]) == (3, 0)
    proc = vkit("engagement-pseudonymise", str(lessons), "--farm", str(farm), salt="pepper")
    assert proc.returncode == 0, proc.stderr
    hashes = {name: learner_hash(name, "pepper") for name in NAMES}
    assert _links(farm) == sorted(f"pseudo-{h}.mp4" for h in hashes.values())

    linked = _score(store_url, farm, checkpoint, salt="pepper")  # the same content as the named recordings
    assert (linked["scored"], linked["duplicates"]) == (3, 0)  # scored again, never 'duplicate of .../learner01.mp4'
    rows = _rows(store_url)
    assert any("pseudo-" in row for row in rows) and any("learner01" in row for row in rows)
    tied = [row for row in rows if any(h in row for h in hashes.values()) and any(n in row for n in NAMES)]
    assert tied == [] and not any("duplicate of" in row for row in rows)

    # the student number 0123456789ab is a name: hashed like any other, in the report and the aggregates
    shown = _report(store_url, clear["run_id"], "pepper")
    assert shown[0] == "session01: attention fell from 00:00 to 00:08 for 3 of 3 learners"
    assert sorted(line.split()[0] for line in shown[1:]) == sorted(hashes.values())
    assert "0123456789ab" not in "\n".join(shown)
    assert sorted(_report(store_url, linked["run_id"], "pepper")) == sorted(shown)  # links show the same hashes
    metrics = [row for row in rows if row.startswith("metrics:") and "/mean_level" in row and "'learner'" in row]
    assert len(metrics) == 6 and not any("0123456789ab/" in row for row in metrics)

    # another salt: refused, the farm untouched; --replace relinks it, and the next report holds only the new set
    before = _links(farm)
    refused = vkit("engagement-pseudonymise", str(lessons), "--farm", str(farm), salt="other")
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert f"--farm {farm} was linked with another salt" in refused.stderr and "--replace" in refused.stderr
    assert _links(farm) == before
    proc = vkit("engagement-pseudonymise", str(lessons), "--farm", str(farm), "--replace", salt="other")
    assert proc.returncode == 0, proc.stderr
    renamed = {name: learner_hash(name, "other") for name in NAMES}
    assert _links(farm) == sorted(f"pseudo-{h}.mp4" for h in renamed.values())
    again = _score(store_url, farm, checkpoint, salt="other")
    assert (again["scored"], again["duplicates"]) == (3, 0)  # not linked to the first salt's links either
    learners = sorted(line.split()[0] for line in _report(store_url, again["run_id"], "other")[1:])
    assert learners == sorted(renamed.values())
    assert not any("duplicate of" in row for row in _rows(store_url))


def _scoring_run(url: str, task: str, stretches: dict[str, list[tuple[float, float]]]) -> int:
    """A finished ``vkit score`` run of ``task`` in the store at ``url``: one 30 s recording per learner of
    session01 (pseudonymous links), 2 s segments, a low-engagement event per stretch."""
    from vkit.core.store import open_store

    with open_store(url) as store:
        run_id = store.start_run(task, task.split("-")[0], {}, seed=None, kind="score", model_sha256="0" * 64)
        paths = {f"/farm/session01/pseudo-{learner}.mp4": learner for learner in stretches}
        ids = store.upsert_videos(dict(path=p, sha256=f"{i:064x}", duration=30.0, status="ok")
                                  for i, p in enumerate(paths))
        store.add_video_results(run_id, [dict(
            video_id=ids[p], status="scored",
            scores=[dict(segment=s, start=2.0 * s, end=2.0 * s + 2, score=0.5) for s in range(15)],
            events=[dict(kind="low-engagement", start=a, end=b, score=0.8) for a, b in stretches[learner]],
        ) for p, learner in paths.items()])
        store.finish_run(run_id)
    return run_id


def test_item12_teacher_sentence_names_the_longest_stretch(sqlite_url: str) -> None:
    """Which stretch the sentence names is the report's arithmetic, not a store matter: SQLite only."""
    a, b, c = "a" * 12, "b" * 12, "c" * 12
    # 00:02-00:06 comes first; 00:10-00:22, three times longer, has as many learners low
    run_id = _scoring_run(sqlite_url, "education-engagement", {a: [(2.0, 6.0), (10.0, 22.0)],
                                                              b: [(2.0, 6.0), (10.0, 22.0)], c: []})
    lines = _report(sqlite_url, run_id, salt="unused")
    assert lines[0] == "session01: attention fell from 00:10 to 00:22 for 2 of 3 learners"
    assert sorted(line.split()[0] for line in lines[1:]) == [a, b, c]


def test_item19_engagement_report_refuses_a_run_of_another_task(sqlite_url: str) -> None:
    """The run's task decides, whatever the store: SQLite only (a mistyped store below is on both backends)."""
    run_id = _scoring_run(sqlite_url, "security-anomaly", {"d" * 12: [(0.0, 10.0)]})
    proc = vkit("--db", sqlite_url, "engagement-report", str(run_id), salt="pepper")
    assert proc.returncode == 1 and proc.stdout == "" and "Traceback" not in proc.stderr
    assert f"run {run_id} is a 'score' run of task 'security-anomaly'" in proc.stderr
    assert "`vkit score education-engagement`" in proc.stderr


def test_item19_reading_commands_never_create_a_store_at_a_mistyped_path(store_url: str, tmp_path: Path) -> None:
    """SQLite: a path in a folder that does not exist; PostgreSQL: a schema without vkit's tables."""
    commands = [["engagement-report", "1"], ["recommend", "--run", "1", "--user", "u1"], ["runs", "show", "1"],
                ["export", "1", "-o", str(tmp_path / "exported")], ["report", "1", "--out", str(tmp_path / "reported")]]
    with ThreadPoolExecutor(2) as pool:  # independent commands: two at a time (each waits on its interpreter start)
        procs = list(pool.map(lambda command: vkit("--db", store_url, *command, salt="pepper"), commands))
    for command, proc in zip(commands, procs):
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, (command, proc.stderr)
        assert "no vkit store at " in proc.stderr, (command, proc.stderr)
        if store_url.startswith("sqlite"):
            assert f"no vkit store at {store_url.removeprefix('sqlite:///')} " in proc.stderr
    if store_url.startswith("sqlite"):
        assert not Path(store_url.removeprefix("sqlite:///")).parent.exists()
    else:
        engine = sa.create_engine(store_url, poolclass=sa.NullPool)
        try:
            assert sa.inspect(engine).get_table_names() == []
        finally:
            engine.dispose()
