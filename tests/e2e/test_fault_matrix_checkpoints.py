"""Fault matrix of issue 21, folders and checkpoints, through the installed ``vkit`` command.

- item 1: work dirs are absolute and the run's own; ``vkit runs delete --work-dir`` from another folder, or of a
  run that shares a folder with another, keeps every file that is not the run's own;
- item 2: store A's run 1 and store B's run 1 never share a folder or load each other's model; weights or a
  sidecar whose sha256 differs from the store's are refused, naming both sha256;
- item 14: ``--compressed`` is a flag (``--stage NAME`` picks a stage): it never swallows the next argument;
- item 19 (two cases): ``--checkpoint ""`` and run id 99999999999999999999 are one-line errors naming the option.

One tiny medical run per store (SQLite: store A, PostgreSQL: store B, a fresh schema), both started in the same
folder with the default work dir, as two users sharing a folder would; each keeps a ChannelPrune stage.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import vkit_cli  # tests/helpers/vkit_cli.py: the installed command in a subprocess
import sqlalchemy as sa

from vkit.core.store import open_store
from vkit.plugins.medical.task import MedicalDiagnosisTask

pytestmark = pytest.mark.slow  # two tiny trainings, then each case starts the vkit CLI

SMOKE = [arg for item in MedicalDiagnosisTask.smoke_overrides if not item.startswith("compression.")
         for arg in ("--set", item)]
CHAIN = {"compression": {"max_metric_drop": 1.0, "stages": [{"type": "ChannelPrune", "amount": 0.5, "size_only": True}]}}
BACKENDS = [pytest.param("sqlite", id="sqlite"), pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres)]
HUGE = "99999999999999999999"
PG_URL = os.environ.get("VKIT_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")  # as tests/conftest.py


def vkit(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    return vkit_cli.vkit(*args, cwd=cwd, check=check, env=dict(VKIT_DISABLE_PLUGINS="demo"))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    """The failed command's stderr, checked to be one ``Error: ...`` line without a traceback."""
    assert proc.returncode != 0, proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:") and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


@pytest.fixture(scope="module")
def pg_schema_url() -> Iterator[str | None]:
    """A fresh PostgreSQL schema for the module (``None`` when the server is not reachable)."""
    admin = sa.create_engine(PG_URL, poolclass=sa.NullPool, connect_args={"connect_timeout": 3})
    schema = f"vkit_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    except Exception:  # noqa: BLE001 - no server: the PostgreSQL cases skip
        admin.dispose()
        yield None
        return
    yield sa.make_url(PG_URL).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
        hide_password=False)
    with admin.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory, pg_schema_url: str | None) -> dict:
    """Run 1 of store A (SQLite) and of store B (PostgreSQL, another seed), started in one folder, default work dirs."""
    tmp = tmp_path_factory.mktemp("item1-2")
    folder = tmp / "shared"
    folder.mkdir()
    (tmp / "chain.json").write_text(json.dumps(CHAIN))
    urls = dict(sqlite=f"sqlite:///{tmp / 'a.db'}", postgresql=pg_schema_url)
    runs = {}
    for backend, seed in (("sqlite", "0"), ("postgresql", "1")):
        if urls[backend] is None:
            continue
        vkit("--db", urls[backend], "run", "medical-diagnosis", *SMOKE, "--config", str(tmp / "chain.json"),
             "--set", f"seed={seed}", "--data-root", str(tmp / "data"), cwd=folder)
        with open_store(urls[backend], read_only=True) as store:
            run = store.get_run(1)
            runs[backend] = dict(run=run, work=Path(run["work_dir"]), identity=store.identity,
                                 artifacts={a["kind"]: a for a in store.run_artifacts(1)})
    data = tmp / "data" / "medical-diagnosis"
    test_cases = json.loads((data / "datalist.json").read_text())["test"]
    return dict(tmp=tmp, folder=folder, urls=urls, runs=runs, scan=data / test_cases[0]["image"], data=data)


def _backend(shared: dict, backend: str) -> tuple[str, dict]:
    if shared["urls"][backend] is None:
        pytest.skip("PostgreSQL at 127.0.0.1:5432 not reachable")
    return shared["urls"][backend], shared["runs"][backend]


# ---------------------------------------------------------------------- item 1
def test_item1_work_dirs_are_absolute_and_unique_per_store(shared: dict) -> None:
    for backend, entry in shared["runs"].items():
        work, run = entry["work"], entry["run"]
        assert run["status"] == "finished" and work.is_absolute() and work.parent == shared["folder"] / "work_dirs"
        assert work.name == f"medical-diagnosis-run1-{entry['identity']}", backend
        marker = json.loads((work / "vkit-run.json").read_text())
        assert marker["run_id"] == 1 and marker["store"] == entry["identity"]
        assert entry["artifacts"]["checkpoint"]["path"] == str(work / "model.safetensors")
    if len(shared["runs"]) == 2:
        assert shared["runs"]["sqlite"]["work"] != shared["runs"]["postgresql"]["work"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_item1_a_folder_holding_a_run_is_never_reused(shared: dict, backend: str) -> None:
    url, entry = _backend(shared, backend)
    work, before = entry["work"], sha256(entry["work"] / "model.safetensors")
    with open_store(url, read_only=True) as store:
        runs_before = len(store.list_runs(limit=None))
    refused = vkit("--db", url, "run", "medical-diagnosis", *SMOKE, "--work-dir", str(work),
                   "--data-root", str(shared["tmp"] / "data"), cwd=shared["tmp"], check=False)
    line = one_line_error(refused)
    assert str(work) in line and f"already holds run 1 of store {entry['identity']}" in line
    assert sha256(work / "model.safetensors") == before == entry["artifacts"]["checkpoint"]["sha256"]
    with open_store(url, read_only=True) as store:
        assert len(store.list_runs(limit=None)) == runs_before  # refused before a run row was written


def _failed_run(url: str, shared: dict, cwd: Path) -> dict:
    """A run that fails inside the lifecycle (its datalist names a missing scan), default work dir under ``cwd``."""
    datalist = cwd / "bad.json"
    datalist.write_text(json.dumps({split: [dict(image=str(cwd / "missing.nii.gz"), label=i % 2) for i in range(4)]
                                    for split in ("training", "validation", "test")}))
    vkit("--db", url, "run", "medical-diagnosis", *SMOKE, "--data", str(datalist), cwd=cwd, check=False)
    with open_store(url, read_only=True) as store:
        run = store.list_runs(task="medical-diagnosis", limit=1)[0]
    assert run["status"] == "failed" and run["id"] != 1, run
    return run


@pytest.mark.parametrize("backend", BACKENDS)
def test_item1_delete_from_another_folder_removes_only_the_runs_own(shared: dict, backend: str, tmp_path: Path) -> None:
    url, entry = _backend(shared, backend)
    started, elsewhere = tmp_path / "started", tmp_path / "elsewhere"
    started.mkdir()
    failed = _failed_run(url, shared, started)
    own = Path(failed["work_dir"])
    assert own.is_absolute() and own.parent == started / "work_dirs" and (own / "vkit-run.json").is_file()
    decoy = elsewhere / "work_dirs" / own.name  # the same relative name, where the delete is typed
    decoy.mkdir(parents=True)
    (decoy / "notes.txt").write_text("mine")
    model = entry["work"] / "model.safetensors"
    before = sha256(model)
    out = vkit("--db", url, "runs", "delete", str(failed["id"]), "--work-dir", "--yes", cwd=elsewhere).stdout
    assert f"removed {own}" in out and not own.exists()
    assert (decoy / "notes.txt").read_text() == "mine" and sha256(model) == before


@pytest.mark.parametrize("backend", BACKENDS)
def test_item1_delete_keeps_a_folder_another_run_owns(shared: dict, backend: str) -> None:
    url, entry = _backend(shared, backend)
    work = entry["work"]
    with open_store(url) as store:  # a failed run that shared run 1's folder, as vkit allowed before
        stray = store.start_run("medical-diagnosis", "medical", {}, seed=0, work_dir=work)
        store.finish_run(stray, "failed", error="DataError: boom")
    files = {p.name: sha256(p) for p in work.iterdir() if p.is_file()}
    out = vkit("--db", url, "runs", "delete", str(stray), "--work-dir", "--yes", cwd=shared["tmp"]).stdout
    assert f"deleted runs [{stray}]" in out
    assert f"kept {work}: its vkit-run.json names run 1 of store {entry['identity']}, not run {stray}" in out
    assert {p.name: sha256(p) for p in work.iterdir() if p.is_file()} == files
    with open_store(url, read_only=True) as store:
        assert store.get_run(stray) is None and store.get_run(1)["status"] == "finished"


# ---------------------------------------------------------------------- item 2
def _predict(url: str, shared: dict, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return vkit("--db", url, "predict", "medical-diagnosis", "--checkpoint", "1", *args, "--json", str(shared["scan"]),
                cwd=shared["folder"], check=check)


def _predict_run(url: str, proc: subprocess.CompletedProcess) -> dict:
    with open_store(url, read_only=True) as store:
        return store.get_run(json.loads(proc.stdout)["run_id"])


def test_item2_two_stores_run1_load_their_own_model(shared: dict) -> None:
    if len(shared["runs"]) < 2:
        pytest.skip("PostgreSQL at 127.0.0.1:5432 not reachable")
    a, b = shared["runs"]["sqlite"], shared["runs"]["postgresql"]
    assert a["run"]["model_sha256"] != b["run"]["model_sha256"]  # another seed: another model
    urls = {backend: shared["urls"][backend] for backend in ("sqlite", "postgresql")}
    with ThreadPoolExecutor(2) as pool:  # two independent predicts at a time (each mostly waits on its imports)
        procs = dict(zip(urls, pool.map(lambda url: _predict(url, shared), urls.values())))
    for backend, url in urls.items():
        used = _predict_run(url, procs[backend])
        assert used["model_sha256"] == shared["runs"][backend]["run"]["model_sha256"], backend
        assert used["config"]["checkpoint"] == str(shared["runs"][backend]["work"] / "model.safetensors")
    # store B's model copied over store A's folder (what the shared default folder did): refused, both sha256 named
    saved = {n: (a["work"] / n).read_bytes() for n in ("model.safetensors", "model.json")}
    try:
        for name in saved:
            shutil.copyfile(b["work"] / name, a["work"] / name)
        line = one_line_error(_predict(shared["urls"]["sqlite"], shared, check=False))
        assert f"sha256 {b['run']['model_sha256']} differs from {a['run']['model_sha256']}" in line
        assert str(a["work"] / "model.safetensors") in line
    finally:
        for name, data in saved.items():
            (a["work"] / name).write_bytes(data)


@pytest.mark.parametrize("backend", BACKENDS)
def test_item2_checkpoint_sha_mismatch_refused(shared: dict, backend: str) -> None:
    url, entry = _backend(shared, backend)
    sidecar, weights = entry["work"] / "model.json", entry["work"] / "model.safetensors"
    original = sidecar.read_bytes()
    try:  # a threshold edited to flip diagnoses: the sidecar's sha256 no longer matches the store's
        meta = json.loads(original)
        meta.setdefault("fitted", {})["threshold"] = 0.99
        sidecar.write_text(json.dumps(meta))
        line = one_line_error(_predict(url, shared, check=False))
        assert str(sidecar) in line and entry["artifacts"]["checkpoint-meta"]["sha256"] in line and sha256(sidecar) in line
    finally:
        sidecar.write_bytes(original)
    original = weights.read_bytes()
    try:  # the weights edited (and their sidecar's own sha256 with them): the store's record still refuses them
        edited = bytearray(original)
        edited[-1] ^= 0xFF
        weights.write_bytes(bytes(edited))
        line = one_line_error(_predict(url, shared, check=False))
        assert str(weights) in line and entry["run"]["model_sha256"] in line and sha256(weights) in line
    finally:
        weights.write_bytes(original)
    stage = Path(entry["artifacts"]["compressed-meta"]["path"])
    original = stage.read_bytes()
    try:  # a compressed stage's sidecar edited: `--compressed` refuses it the same way
        stage.write_text(json.dumps(dict(json.loads(original), note="edited")))
        line = one_line_error(_predict(url, shared, "--compressed", check=False))
        assert str(stage) in line and entry["artifacts"]["compressed-meta"]["sha256"] in line and sha256(stage) in line
    finally:
        stage.write_bytes(original)


# ---------------------------------------------------------------------- item 14
def test_item14_compressed_flag_never_swallows_an_input(shared: dict) -> None:
    """How the command line is parsed (a flag, not an option taking a value): SQLite only, not a store matter."""
    url, entry = _backend(shared, "sqlite")
    compressed = entry["artifacts"]["compressed"]
    scan, folder = str(shared["scan"]), shared["folder"]
    predict = ("--db", url, "predict", "medical-diagnosis", "--checkpoint", "1")
    calls = [(*predict, "--compressed", scan, "--json"), (*predict, "--stage", "ChannelPrune", scan, "--json"),
             (*predict, "--stage", "CastBF16", scan)]
    with ThreadPoolExecutor(2) as pool:  # three read-only predicts, two at a time
        proc, staged, unsaved = pool.map(lambda args: vkit(*args, cwd=folder, check=False), calls)
    assert proc.returncode == 0 and staged.returncode == 0, proc.stderr + staged.stderr
    assert [p["item_id"] for p in json.loads(proc.stdout)["predictions"]] and "no saved stage" not in proc.stderr
    run = _predict_run(url, proc)
    assert run["model_sha256"] == compressed["sha256"] and run["config"]["compressed"] == "final"
    assert _predict_run(url, staged)["model_sha256"] == compressed["sha256"]
    line = one_line_error(unsaved)  # a stage the run did not save is named with the saved ones
    assert "no saved stage 'CastBF16'" in line and "ChannelPrune" in line


def test_item14_score_takes_compressed_as_a_flag_and_stage_by_name(capsys: pytest.CaptureFixture[str]) -> None:
    code, text, _ = vkit_cli.vkit_main(capsys, "score", "--help")  # click's help: in process
    assert code == 0 and "--compressed " in text and "--stage NAME" in text and "[STAGE]" not in text


# ---------------------------------------------------------------------- item 19
def test_item19_empty_checkpoint_is_a_one_line_error(shared: dict) -> None:
    url = shared["urls"]["sqlite"]
    line = one_line_error(vkit("--db", url, "predict", "medical-diagnosis", "--checkpoint", "", str(shared["scan"]),
                               cwd=shared["folder"], check=False))
    assert line == "Error: --checkpoint is empty: expected a run id (e.g. 3) or a .safetensors path"


@pytest.mark.parametrize("backend", BACKENDS)
def test_item19_huge_run_id_is_a_one_line_error(shared: dict, backend: str) -> None:
    url, _ = _backend(shared, backend)
    line = one_line_error(vkit("--db", url, "predict", "medical-diagnosis", "--checkpoint", HUGE, str(shared["scan"]),
                               cwd=shared["folder"], check=False))
    assert line.startswith(f"Error: --checkpoint {HUGE}: expected a run id from 1 to {2**63 - 1}")


def test_item19_huge_run_id_argument_is_refused_by_every_command(shared: dict, capsys: pytest.CaptureFixture[str],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """How each command parses a run id: through the console entry point in this process (exit code and stderr
    as the installed command gives them; item 19's predict cases above go through the installed command)."""
    monkeypatch.chdir(shared["tmp"])
    for args in (("runs", "show", HUGE), ("runs", "delete", HUGE), ("report", HUGE), ("export", HUGE),
                 ("recommend", "--run", HUGE, "--user", "u1")):
        code, _, err = vkit_cli.vkit_main(capsys, "--db", shared["urls"]["sqlite"], *args)
        assert code in (1, 2) and "OverflowError" not in err, (args, err)
        assert f"{HUGE} is not in the range 1<=x<={2**63 - 1}" in err or \
            f"--run {HUGE}: expected a run id from 1 to {2**63 - 1}" in err, (args, err)
