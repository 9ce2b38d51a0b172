"""A plugin author's first hour, through the real CLI and a real entry point.

`vkit new-plugin acme` → `pip install -e` → the generated tests pass →
`vkit plugins check acme` passes (predict and score included) → `vkit run
acme-task` finishes and its rows are in the store → `vkit predict` and `vkit
score` work on its own clips with no edits. The package is installed into a
temporary virtual environment layered on the project's (a ``.pth`` adds its
site-packages), never into the environment the tests run in.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

NAME = "acme"
DIST = "vkit-acme"
#: The built-in verticals are switched off so each subprocess skips their imports (MONAI): the
#: generated plugin is what is under test, and it must work with only vkit core around it.
BUILTINS = "medical,education,security,recommendation"
TINY = ["train.epochs=1", "train.batch_size=4", "data.synthetic.n_train=8", "data.synthetic.n_val=4",
        "data.synthetic.n_test=4", "data.frames=4", "data.size=16"]


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("VKIT_DB_URL", "VKIT_PLUGINS", "VKIT_NO_AUTOLOAD", "VKIT_DISABLE_PLUGINS")}
    env.update(VKIT_DATA=str(tmp / "data"), VKIT_CONFIG_DIR=str(tmp / "config"), VKIT_DISABLE_PLUGINS=BUILTINS)
    return env


def _run(args: list[str], tmp: Path, timeout: int = 120, cwd: Path | None = None) -> str:
    proc = subprocess.run(args, cwd=cwd or tmp, env=_env(tmp), capture_output=True, text=True, timeout=timeout)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(args)} exited {proc.returncode}:\n{output[-4000:]}"
    return output


def _stdout(args: list[str], tmp: Path) -> str:
    proc = subprocess.run(args, cwd=tmp, env=_env(tmp), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
    return proc.stdout


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[Path]:
    """A folder to work in, with ``venv/``: a virtual environment that sees this one's packages (nothing installed)."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    parent = sysconfig.get_paths()["purelib"]
    (Path(purelib) / "_vkit_parent.pth").write_text(f"import site; site.addsitedir({parent!r})\n")
    yield tmp_path


def _python(tmp: Path) -> str:
    return str(tmp / "venv" / "bin" / "python")


def _vkit(tmp: Path) -> list[str]:
    """The ``vkit`` console script, run by the workspace's interpreter (which sees the plugin installed there)."""
    return [_python(tmp), "-c", "import sys; from vkit.workflows.cli import main; sys.argv[0] = 'vkit'; main()"]


def test_new_plugin_installs_tests_checks_and_runs(workspace: Path) -> None:
    VKIT = _vkit(workspace)
    out = _run([*VKIT, "new-plugin", NAME, "--dir", str(workspace)], workspace, timeout=60)
    package = workspace / DIST
    assert f"wrote {package}/" in out

    _run([sys.executable, "-m", "pip", "--python", _python(workspace), "install", "--quiet", "--no-deps",
          "--no-build-isolation", "--no-index", "-e", f"{package}[test]"], workspace, timeout=180)
    listed = subprocess.run([sys.executable, "-m", "pip", "list"], capture_output=True, text=True).stdout
    assert DIST not in listed  # the environment running the tests is untouched

    out = _run([_python(workspace), "-m", "pytest", str(package / "tests"), "-q", "-p", "no:cacheprovider"],
               workspace, cwd=package, timeout=300)
    assert "7 passed" in out, out[-2000:]

    out = _run([*VKIT, "plugins", "check", NAME], workspace, timeout=300)
    lines = out.strip().splitlines()
    assert lines[-1].endswith(" passed, 0 failed"), out
    assert any(line.startswith("PASS  loads: version 0.1.0, entry point vkit-acme") for line in lines), out
    assert "PASS  task acme-task smoke run: finished" in out
    assert "PASS  task acme-task predict: " in out and "PASS  task acme-task score: scored 2 videos" in out
    assert "PASS  component METRICS.AcmeAccuracy" in out and "PASS  metric AcmeAccuracy" in out

    db = workspace / "runs.db"
    sets = [arg for pair in TINY for arg in ("--set", pair)]
    out = _run([*VKIT, "--db", f"sqlite:///{db}", "run", f"{NAME}-task", *sets, "--work-dir", str(workspace / "w")],
               workspace, timeout=300)
    assert "test/balanced_accuracy" in out
    assert "has no metainfo" not in out  # the generated datasets carry metainfo

    from vkit.core.store import open_store

    store = open_store(f"sqlite:///{db}", read_only=True)
    [run] = store.list_runs(task=f"{NAME}-task")
    assert (run["status"], run["plugin"]) == ("finished", NAME)
    assert len(store.run_predictions(run["id"], "test")) == 4
    assert {a["kind"] for a in store.run_artifacts(run["id"])} >= {"checkpoint", "report"}

    # its own clips, with no edits: predict one test clip, score the test clips
    clips = workspace / "data" / f"{NAME}-task" / "clips"
    tested = {r["item_id"]: r for r in store.run_predictions(run["id"], "test")}
    out = _stdout([*VKIT, "--db", f"sqlite:///{db}", "predict", f"{NAME}-task", str(clips / "test_0001.mp4"),
                   "--checkpoint", str(run["id"]), "--json"], workspace)
    [row] = json.loads(out)["predictions"]
    assert row["item_id"] == "test_0001" and row["prediction"] == tested["test_0001"]["prediction"]
    assert row["values"]["probs"] == pytest.approx(tested["test_0001"]["values"]["probs"], abs=1e-4)
    archive = [str(p) for p in sorted(clips.glob("test_*.mp4"))]
    score = [*VKIT, "--db", f"sqlite:///{db}", "score", f"{NAME}-task", *archive, "--checkpoint", str(run["id"]),
             "--workers", "0", "--json"]
    first = json.loads(_stdout(score, workspace))
    assert (first["scored"], first["failed"], first["status"]) == (len(archive), 0, "finished"), first
    again = json.loads(_stdout(score, workspace))
    assert (again["scored"], again["skipped"]) == (0, len(archive)), again  # a re-run skips what this model scored
    rows = open_store(f"sqlite:///{db}", read_only=True).video_scores(first["run_id"])
    assert len(rows) == 4 * len(archive)  # scoring.segments: 4 per video by default


SMOKE = ["train.epochs=1", "train.batch_size=4", "data.synthetic.n_train=8", "data.synthetic.n_val=4",
         "data.synthetic.n_test=4", "data.synthetic.frames=8", "data.synthetic.size=16", "data.frames=4", "data.size=16",
         "scoring.segments=2"]


@pytest.mark.parametrize("kind, metrics", [("regression", "mae="), ("ordinal", "accuracy=")])
def test_other_kinds_pass_plugins_check_run_and_predict_unedited(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                kind: str, metrics: str) -> None:
    """`vkit new-plugin z --kind KIND --task z-count`, used in place (PYTHONPATH + --plugin, nothing installed):
    `vkit plugins check` passes (a smoke run, predict = the run's test row, score), and for regression the
    plugin's own test shows its float labels reach the loss unchanged and `vkit predict` prints the value."""
    VKIT = [str(Path(sys.executable).parent / "vkit")]  # the installed command
    _run([*VKIT, "new-plugin", "z", "--kind", kind, "--task", "z-count", "--dir", str(tmp_path)], tmp_path, timeout=60)
    package = tmp_path / "vkit-z"
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(package), os.environ.get("PYTHONPATH")])))
    out = _run([*VKIT, "--plugin", "vkit_z.plugin", "plugins", "check", "vkit_z.plugin"], tmp_path, timeout=300)
    assert out.strip().splitlines()[-1].endswith(" passed, 0 failed"), out
    assert f"PASS  task z-count smoke run: finished ({metrics}" in out.replace("test/", "")
    assert "PASS  task z-count predict: " in out and "PASS  task z-count score: scored 2 videos" in out
    if kind != "regression":
        return
    assert "same predicted value as the run's test row" in out
    out = _run([sys.executable, "-m", "pytest", str(package / "tests"), "-q", "-p", "no:cacheprovider",
                "-k", "float_labels_reach_the_loss_unchanged"], tmp_path, cwd=package, timeout=120)
    assert "1 passed" in out, out[-2000:]
    db = f"sqlite:///{tmp_path / 'runs.db'}"
    sets = [arg for pair in SMOKE for arg in ("--set", pair)]
    _run([*VKIT, "--db", db, "--plugin", "vkit_z.plugin", "run", "z-count", *sets, "--work-dir", str(tmp_path / "w")],
         tmp_path, timeout=300)
    clip = next((tmp_path / "data" / "z-count" / "clips").glob("test_*.mp4"))
    table = _stdout([*VKIT, "--db", db, "--plugin", "vkit_z.plugin", "predict", "z-count", str(clip),
                     "--checkpoint", "1"], tmp_path)
    assert "predicted value" in table and clip.stem in table and "probabilities" not in table
