"""`vkit run medical-diagnosis` and `vkit predict` as a user runs them, on a tiny generated data set."""
from __future__ import annotations

import gzip
import json
import re
import subprocess
from pathlib import Path

import pytest
import vkit_cli  # tests/helpers/vkit_cli.py: the installed command in a subprocess

from vkit.core.store import open_store
from vkit.plugins.medical.task import MedicalDiagnosisTask

SMOKE = [arg for item in MedicalDiagnosisTask.smoke_overrides for arg in ("--set", item)]


def vkit(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    return vkit_cli.vkit(*args, cwd=cwd, check=check, env=dict(VKIT_DISABLE_PLUGINS="demo"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    """One tiny run of the task through the CLI; its store, data and run id."""
    tmp = tmp_path_factory.mktemp("medical")
    url = f"sqlite:///{tmp / 'v.db'}"
    vkit("--db", url, "run", "medical-diagnosis", *SMOKE, "--data-root", str(tmp / "data"),
         "--work-dir", str(tmp / "work"), cwd=tmp)
    store = open_store(url, read_only=True)
    run = store.list_runs(task="medical-diagnosis")[0]
    return dict(tmp=tmp, url=url, store=store, run=run, data=tmp / "data" / "medical-diagnosis")


def test_run_is_stored_with_metrics_predictions_and_checkpoint(trained):
    store, run = trained["store"], trained["run"]
    assert run["status"] == "finished"
    splits = {m["split"] for m in store.run_metrics(run["id"])}
    assert {"train", "val", "test"} <= splits
    test_cases = json.loads((trained["data"] / "datalist.json").read_text())["test"]
    predictions = store.run_predictions(run["id"], "test")
    assert sorted(p["item_id"] for p in predictions) == sorted(c["case_id"] for c in test_cases)
    assert all(abs(sum(p["values"]["probs"]) - 1) < 1e-5 for p in predictions)
    kinds = {a["kind"] for a in store.run_artifacts(run["id"])}
    assert {"checkpoint", "checkpoint-meta", "report"} <= kinds
    assert (trained["tmp"] / "work" / "report" / "report.html").is_file()


def test_checkpoint_reloads_and_reproduces_the_test_predictions(trained):
    store, run, data = trained["store"], trained["run"], trained["data"]
    cases = json.loads((data / "datalist.json").read_text())["test"]
    out = vkit("--db", trained["url"], "predict", "medical-diagnosis", "--checkpoint", str(run["id"]), "--json",
               *[str(data / c["image"]) for c in cases], cwd=trained["tmp"]).stdout
    predicted = {p["item_id"]: p["values"]["probs"] for p in json.loads(out)["predictions"]}
    stored = {p["item_id"]: p["values"]["probs"] for p in store.run_predictions(run["id"], "test")}
    assert set(predicted) == set(stored)
    for case, probs in stored.items():
        assert predicted[case] == pytest.approx(probs, abs=1e-5), case


def test_bad_cases_error_or_are_skipped_and_counted(trained):
    tmp, data = trained["tmp"], trained["data"]
    datalist = json.loads((data / "datalist.json").read_text())
    truncated = tmp / "truncated.nii.gz"
    raw = gzip.decompress((data / datalist["training"][0]["image"]).read_bytes())
    truncated.write_bytes(gzip.compress(raw[: len(raw) // 3]))
    for split in ("training", "validation", "test"):
        datalist[split] = [dict(c, image=str(data / c["image"])) for c in datalist[split]]
    datalist["training"] += [dict(image=str(truncated), label=1), dict(image=str(tmp / "missing.nii.gz"), label=0)]
    bad = tmp / "bad.json"
    bad.write_text(json.dumps(datalist))
    common = ("--db", trained["url"], "run", "medical-diagnosis", *SMOKE, "--data", str(bad), "--work-dir")
    failed = vkit(*common, str(tmp / "w1"), cwd=tmp, check=False)
    assert failed.returncode == 1
    assert "missing.nii.gz" in failed.stderr or "truncated.nii.gz" in failed.stderr, failed.stderr
    skipped_run = vkit(*common, str(tmp / "w2"), "--skip-bad", cwd=tmp)
    assert re.search(r"│ skipped\s+│ 2 ", skipped_run.stdout), skipped_run.stdout  # the summary counts them
    store = open_store(trained["url"], read_only=True)
    run = store.list_runs(task="medical-diagnosis")[0]
    assert run["status"] == "finished"
    skipped = {p["values"]["path"]: p["values"]["reason"] for p in store.run_predictions(run["id"], "skipped")}
    assert set(skipped) == {str(truncated), str(tmp / "missing.nii.gz")}
    assert all(reason for reason in skipped.values())
