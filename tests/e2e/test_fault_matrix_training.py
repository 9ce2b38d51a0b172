"""Fault matrix of issue 21, training side, through the installed ``vkit`` command.

- item 13: a compression stage slower than its input is skipped (not kept, not served by ``--compressed``)
  and the summary says why, unless size-only stages are allowed;
- item 15: ``vkit run TASK --resume RUN`` finishes an interrupted run's epochs with the metrics of an
  uninterrupted run;
- item 16: the checkpoint's fitted threshold is the one validation gives for the saved (best) epoch's weights,
  and ``checkpoint.save=best`` is the default.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
import vkit_cli  # tests/helpers/vkit_cli.py: the installed command in a subprocess

from vkit.core.store import open_store
from vkit.plugins.medical.task import MedicalDiagnosisTask

VKIT = vkit_cli.VKIT
SMOKE = [arg for item in MedicalDiagnosisTask.smoke_overrides for arg in ("--set", item)]
MORE_VAL = ["--set", "data.synthetic.n_val=8", "--set", "data.synthetic.n_test=8"]
pytestmark = pytest.mark.slow  # each case trains through the vkit CLI


def vkit(*args: str, cwd: Path, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    return vkit_cli.vkit(*args, cwd=cwd, check=check, env=dict(VKIT_DISABLE_PLUGINS="demo", **(env or {})))


# ---------------------------------------------------------------------- one run for items 15 and 16
#: Four epochs without random augmentation (a resumed run can match the uninterrupted one closely), more validation
#: cases, the default checkpoint policy but ``rule=less``: the saved epoch is (almost surely) not the last.
RESUMABLE = [*SMOKE, "--set", "train.epochs=4", "--set", "data.transforms.augment=False",
             "--set", "data.synthetic.n_train=16", *MORE_VAL, "--set", "checkpoint.rule=less"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The run trained in one go: item 16 checks its saved epoch's threshold, item 15's resumed runs must match it."""
    tmp = tmp_path_factory.mktemp("item15-16")
    url = f"sqlite:///{tmp / 'v.db'}"
    out = vkit("--db", url, "run", "medical-diagnosis", *RESUMABLE, "--data-root", str(tmp / "data"), "--work-dir",
               str(tmp / "full"), cwd=tmp).stdout
    store = open_store(url, read_only=True)
    run = store.list_runs(task="medical-diagnosis")[0]
    return dict(tmp=tmp, url=url, run=run, out=out, data=tmp / "data",
                meta=json.loads((tmp / "full" / "model.json").read_text()),
                metrics={split: _metrics(store, run["id"], split) for split in ("train", "val", "test")})


def _metrics(store, run_id: int, split: str) -> dict[tuple[int, str], float]:
    rows = store.run_metrics(run_id, split)
    return {(m["step"], m["key"]): m["value"] for m in rows if split != "train" or m["key"] == "epoch_loss"}


# ---------------------------------------------------------------------- item 16
def test_item16_default_checkpoint_is_the_best_validation_epoch() -> None:
    from vkit.core.lifecycle import checkpoint_policy
    from vkit.core.task import DEFAULT_CHECKPOINT

    medical = MedicalDiagnosisTask.default_config["checkpoint"]
    assert DEFAULT_CHECKPOINT["save"] == "best" and checkpoint_policy(medical)["save"] == "best"
    assert checkpoint_policy(medical)["metric"] == "auc" and checkpoint_policy(None)["save"] == "last"


def test_item16_sidecar_threshold_is_the_saved_epochs(uninterrupted: dict) -> None:
    from vkit.core.metrics import youden_threshold

    meta, data, tmp = uninterrupted["meta"], uninterrupted["data"] / "medical-diagnosis", uninterrupted["tmp"]
    assert "best auc" in uninterrupted["out"]  # the summary names the epoch kept and why
    assert meta["epoch"] in (1, 2, 3), f"precondition: the saved epoch must not be the last, got {meta['epoch']}"
    val = json.loads((data / "datalist.json").read_text())["validation"]
    out = vkit("--db", uninterrupted["url"], "predict", "medical-diagnosis", "--checkpoint",
               str(uninterrupted["run"]["id"]), "--json", *[str(data / c["image"]) for c in val], cwd=tmp).stdout
    rows = json.loads(out)["predictions"]
    assert len(rows) == len(val)
    labels = [c["label"] for c in val]
    scores = [r["values"]["probs"][1] for r in rows]  # the saved weights on the validation split, in order
    threshold = meta["fitted"]["threshold"]
    assert threshold == pytest.approx(youden_threshold(labels, scores), abs=1e-5)
    # vkit predict decides with that threshold; the test metrics were computed with it too
    assert [r["prediction"] for r in rows] == [int(s >= threshold) for s in scores]
    test_threshold = [m["value"] for m in open_store(uninterrupted["url"], read_only=True)
                      .run_metrics(uninterrupted["run"]["id"], "test") if m["key"] == "threshold"]
    assert test_threshold == [pytest.approx(threshold)]



# ---------------------------------------------------------------------- item 13
FIXTURE_PLUGINS = Path(__file__).resolve().parents[1] / "fixtures" / "plugins"
NO_CHAIN = "compression.stages=[]"


def test_item13_slower_compression_stage_is_skipped_and_the_summary_says_so(tmp_path: Path) -> None:
    """FxSlowStage (the same weights, 20 ms of sleep per call) is slower than its input: skipped, not saved, so
    ``--compressed`` cannot serve it; the same stage marked ``size_only`` is kept, and the table says why."""
    url = f"sqlite:///{tmp_path / 'v.db'}"
    chain = tmp_path / "chain.json"
    chain.write_text(json.dumps({"compression": {"max_metric_drop": 1.0, "stages": [
        {"type": "FxSlowStage", "seconds": 0.02}, {"type": "FxSlowStage", "seconds": 0.02, "size_only": True}]}}))
    smoke = [arg for item in MedicalDiagnosisTask.smoke_overrides if item != NO_CHAIN for arg in ("--set", item)]
    plugins = os.pathsep.join(filter(None, [str(FIXTURE_PLUGINS), os.environ.get("PYTHONPATH")]))
    out = vkit("--db", url, "--plugin", "vkit_fx_slow_stage", "run", "medical-diagnosis", *smoke, "--config", str(chain),
               "--data-root", str(tmp_path / "data"), "--work-dir", str(tmp_path / "work"), cwd=tmp_path,
               env=dict(PYTHONPATH=plugins)).stdout
    flat = " ".join(out.split())  # the summary table wraps long cells
    assert "chain finished: 1/2 stages applied (FxSlowStage" in flat
    assert "skipped: not 1.05x faster than its input)" in flat
    assert "< min_speedup 1.05; its model was discarded" in flat  # the table's reason line for the skipped stage
    assert "kept for its size (compression.stages[1].size_only)" in flat
    index = json.loads((tmp_path / "work" / "compression" / "index.json").read_text())
    statuses = [(e["stage"], e["status"], e["artifact"]) for e in index["stages"]]
    assert statuses[0] == ("FxSlowStage", "skipped", None) and statuses[1][1] == "ok" and statuses[1][2]
    store = open_store(url, read_only=True)
    run = store.list_runs(task="medical-diagnosis")[0]
    assert [a["kind"] for a in store.run_artifacts(run["id"])].count("compressed") == 1  # only the size-only stage


# ---------------------------------------------------------------------- item 15
def _signals_as_a_shell_leaves_them() -> None:
    """In the child before ``vkit`` starts: SIGINT and SIGTERM at their defaults. A child inherits an ignored
    signal, and Python installs no KeyboardInterrupt handler for an ignored SIGINT: where the test process (a
    pytest-xdist worker, after whatever ran before in it) ignores SIGINT, the run would never see the Ctrl-C."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _interrupt_after_an_epoch(args: list[str], state: Path, cwd: Path, sig: int) -> subprocess.CompletedProcess:
    """Start ``vkit *args``, send ``sig`` (Ctrl-C's SIGINT, or kill's SIGTERM) once its resume state holds a finished
    epoch, wait for it."""
    import time

    env = vkit_cli.vkit_env(dict(VKIT_DISABLE_PLUGINS="demo"))
    proc = subprocess.Popen([VKIT, *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_signals_as_a_shell_leaves_them)
    deadline = time.monotonic() + 300
    try:
        while not state.is_file() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_item15_resume_finishes_the_epochs_left_with_an_uninterrupted_runs_metrics(
        tmp_path: Path, store_url: str, uninterrupted: dict, capsys: pytest.CaptureFixture[str]) -> None:
    from vkit.core.resume import resume_path
    from vkit.workflows.cli import main

    url, data = store_url, str(uninterrupted["data"])
    cut = tmp_path / "cut"
    sig = signal.SIGTERM if url.startswith("postgresql") else signal.SIGINT  # `kill` stops a run as Ctrl-C does
    stopped = _interrupt_after_an_epoch(["--db", url, "run", "medical-diagnosis", *RESUMABLE, "--data-root", data,
                                         "--work-dir", str(cut)], resume_path(cut).with_suffix(".json"), tmp_path, sig)
    store = open_store(url)
    [run] = store.list_runs(task="medical-diagnosis")
    assert stopped.returncode == 130 and run["status"] == "interrupted", (
        f"{stopped.stderr}\n(SIGINT in the test process: {signal.getsignal(signal.SIGINT)!r})")
    assert f"`vkit run medical-diagnosis --resume {run['id']}` continues it" in run["error"]
    assert f"run {run['id']} interrupted: `vkit run medical-diagnosis --resume {run['id']}`" in stopped.stderr  # told too
    done = json.loads(resume_path(cut).with_suffix(".json").read_text())["layout"]["epoch"]
    assert 1 <= done < 4, f"precondition: interrupted after epoch {done} of 4"

    capsys.readouterr()  # --set refused: through the console entry point in-process (the resume below is installed)
    with pytest.raises(SystemExit) as refused:
        main(["--db", url, "run", "medical-diagnosis", "--resume", str(run["id"]), "--set", "train.epochs=9"])
    assert refused.value.code == 1 and "--set cannot change them" in capsys.readouterr().err
    out = vkit("--db", url, "run", "medical-diagnosis", "--resume", str(run["id"]), "--data-root", data,
               cwd=tmp_path).stdout
    assert f"after epoch {done} of 4" in " ".join(out.split())
    assert store.get_run(run["id"])["status"] == "finished" and not (cut / "resume").exists()

    metrics = {split: _metrics(store, run["id"], split) for split in ("train", "val", "test")}
    assert sorted(step for step, _ in metrics["train"]) == [1, 2, 3, 4]  # each epoch once: before the cut and after
    expected = uninterrupted["metrics"]
    assert metrics["train"] == pytest.approx(expected["train"], rel=1e-3, abs=1e-4)
    assert metrics["val"] == pytest.approx(expected["val"], abs=1e-3)
    assert metrics["test"] == pytest.approx(expected["test"], abs=1e-3)
    assert json.loads((cut / "model.json").read_text())["epoch"] == uninterrupted["meta"]["epoch"]
