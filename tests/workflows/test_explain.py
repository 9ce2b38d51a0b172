"""`vkit explain` on a trained checkpoint, and the report's "Explanations: worst cases" section.

One tiny medical run (the task's smoke settings) gives the checkpoint: `vkit explain` (in-process, CliRunner)
writes a PNG and a JSON per file and prints a table; bad inputs are named; the report of the run shows the worst
cases' overlays; an explanation that raises is recorded on the run and the report is still written.
"""
from __future__ import annotations

import json
import os
import re

import pytest
from click.testing import CliRunner
from PIL import Image

from vkit.hooks.manager import PluginManager
from vkit.registry.errors import ConfigError, DataError
from vkit.workflows.cli import cli
from vkit.workflows.report import write_run_report


def medical_manager() -> PluginManager:
    manager = PluginManager(autoload=False, extra=["vkit.plugins.medical.plugin"])
    assert not manager.errors
    return manager


@pytest.fixture(scope="module")
def medical_run(tmp_path_factory):
    from vkit.hooks.manager import get_plugin_manager
    from vkit.plugins.medical.task import MedicalDiagnosisTask
    from vkit.workflows.run import run_task

    get_plugin_manager().register_components()
    tmp = tmp_path_factory.mktemp("explainrun")
    db = f"sqlite:///{tmp / 'vkit.db'}"
    result = run_task("medical-diagnosis", overrides=list(MedicalDiagnosisTask.smoke_overrides), db_url=db,
                      work_dir=tmp / "work", data_root=tmp / "data", echo=lambda *_: None)
    assert result.status == "finished"
    scans = sorted((tmp / "data" / "medical-diagnosis" / "imagesTs").glob("*.nii.gz"))
    return dict(run=result.run_id, db=db, scans=scans[:2])


def _explain(medical_run, *args):
    return CliRunner().invoke(cli, ["--db", medical_run["db"], "explain", "medical-diagnosis", "--checkpoint",
                                    str(medical_run["run"]), *args], catch_exceptions=True)


def _png(path) -> None:
    with Image.open(path) as img:
        assert img.format == "PNG" and img.width > 200 and img.height > 100


def test_explain_writes_an_overlay_and_a_summary_per_file(medical_run, tmp_path):
    scans = [str(s) for s in medical_run["scans"]]
    result = _explain(medical_run, *scans, "--out", str(tmp_path / "ex"), "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["file"] for r in rows] == scans
    for row in rows:
        assert row["method"] == "gradcam" and row["layer"].startswith("backbones.volume.features")
        assert row["target"] in ("negative", "positive") and 0 <= row["score"] <= 1
        assert set(row["peak"]) == {"frame", "y", "x", "value"} and len(row["per_frame"]) == 16
        _png(row["png"])
        saved = json.loads(open(row["json"], encoding="utf-8").read())
        assert saved["peak"] == row["peak"] and saved["model_sha256"] and saved["png"] == os.path.basename(row["png"])
    table = _explain(medical_run, scans[0], "--method", "temporal", "--segments", "4", "--out", str(tmp_path / "t"))
    assert table.exit_code == 0, table.output
    assert "temporal" in table.output and "segment" in table.output and "case_" in table.output
    [summary] = [json.loads(p.read_text()) for p in (tmp_path / "t").glob("*.json")]
    assert [s["segment"] for s in summary["segments"]] == [0, 1, 2, 3] and summary["segment_unit"] == "frame"


def test_bad_inputs_and_settings_are_named(medical_run, tmp_path):
    fifo = tmp_path / "scan.nii.gz"
    os.mkfifo(fifo)
    result = _explain(medical_run, str(fifo), "--out", str(tmp_path / "ex"))
    assert isinstance(result.exception, DataError) and "not a regular file (FIFO)" in str(result.exception)
    result = _explain(medical_run, str(tmp_path / "gone.nii.gz"))
    assert isinstance(result.exception, DataError) and "gone.nii.gz: no such file" in str(result.exception)
    result = _explain(medical_run, str(medical_run["scans"][0]), "--target-layer", "backbones.volume.featurs")
    assert isinstance(result.exception, ConfigError) and "did you mean 'backbones.volume.features'" in str(result.exception)
    config = tmp_path / "explain.yaml"
    config.write_text("explain:\n  methd: occlusion\n", encoding="utf-8")
    result = _explain(medical_run, str(medical_run["scans"][0]), "--config", str(config))
    assert isinstance(result.exception, ConfigError) and "explain.methd: unknown key (did you mean 'method'?)" in str(result.exception)


def _section(text: str) -> str:
    return text.split("Explanations: worst cases</h2>")[1].split("<h2")[0]


def test_the_report_shows_the_worst_cases_explained(medical_run, tmp_path):
    from vkit.core.store import open_store

    store = open_store(medical_run["db"])
    page = write_run_report(store, medical_run["run"], tmp_path / "rep", manager=medical_manager())
    section = _section(page.read_text(encoding="utf-8"))
    assert re.search(r"<img src='explanations_worst\.png'", section) and section.count("<td>gradcam</td>") == 3
    _png(tmp_path / "rep" / "explanations_worst.png")
    assert not [a for a in store.run_artifacts(medical_run["run"]) if a["kind"] == "report-error"]


def test_a_broken_explanation_does_not_fail_the_report(medical_run, tmp_path, monkeypatch):
    import vkit.core.explain
    from vkit.core.store import open_store

    def broken(*_args, **_kwargs):
        raise RuntimeError("no gradient today")

    monkeypatch.setattr(vkit.core.explain, "grad_cam", broken)
    store = open_store(medical_run["db"])
    warnings: list[str] = []
    page = write_run_report(store, medical_run["run"], tmp_path / "rep", manager=medical_manager(), warn=warnings.append)
    text = page.read_text(encoding="utf-8")
    assert "Worst-classified cases (test)" in text and "Artifacts" in text  # the rest of the report is there
    assert "failed: RuntimeError: no gradient today" in _section(text)
    assert any("Explanations: worst cases: could not be drawn (RuntimeError: no gradient today)" in w for w in warnings)
    errors = [a for a in store.run_artifacts(medical_run["run"]) if a["kind"] == "report-error"]
    assert errors and "no gradient today" in open(errors[-1]["path"], encoding="utf-8").read()
    assert store.get_run(medical_run["run"])["status"] == "finished"


def test_the_overlay_is_visible_in_chromium(medical_run, tmp_path):
    """The worst cases' overlay image loads and is drawn at 1280 px, the page fetching only its own files."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    import test_report_support as support
    from test_report_browser import CHROMIUM

    from vkit.core.store import open_store

    if CHROMIUM is None:
        pytest.skip("headless Chromium not installed: run `make chromium`")
    page = write_run_report(open_store(medical_run["db"]), medical_run["run"], tmp_path / "rep", manager=medical_manager())
    prefixes = ("Explanations: worst cases",)
    seen = support.browse({"medical": page}, {"medical": prefixes}, tmp_path / "profile")["medical"]
    assert support.failures(seen, prefixes) == []
    image = seen["found"]["Explanations: worst cases"]["image"]
    assert image and image[0] and image[2] > 0, image


def test_the_explained_class_is_the_one_the_runs_decision_picks(monkeypatch):
    """A binary model with probabilities (0.88, 0.12) and a validation threshold of 0.1 predicts class 1:
    `vkit explain` explains class 1 (what `vkit predict` prints), not the more probable class 0."""
    from types import SimpleNamespace

    import torch

    import vkit.core.explain as explain_core
    from vkit.core.decision import Decision
    from vkit.workflows.explain import Explainer

    class Fixed(torch.nn.Module):
        def forward(self, batch):
            return torch.tensor([[2.0, 0.0]]).expand(batch["video"].shape[0], 2)

    seen = {}
    monkeypatch.setattr(explain_core, "grad_cam", lambda model, inputs, **kw: seen.update(kw) or SimpleNamespace(layer="l"))
    task = SimpleNamespace(name="t", capabilities=frozenset({"predict"}))
    trained = SimpleNamespace(model=Fixed(), decision=Decision("threshold", threshold=0.1), classes=["neg", "pos"])
    explainer = Explainer(task, trained, {"method": "gradcam"})
    assert explainer._compute({"video": torch.zeros(1, 3, 4, 8, 8)}).layer == "l"
    assert seen["target"] == 1
    Explainer(task, trained, {"method": "gradcam", "target": "neg"})._compute({"video": torch.zeros(1, 3, 4, 8, 8)})
    assert seen["target"] == "neg"  # --class still wins


def test_out_that_is_a_fifo_is_a_one_line_error(tmp_path):
    from types import SimpleNamespace

    from vkit.workflows.explain import Explainer

    os.mkfifo(tmp_path / "out")
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"x")
    explainer = Explainer(SimpleNamespace(name="t", capabilities=frozenset({"predict"})), SimpleNamespace(),
                          {"method": "gradcam"})
    with pytest.raises(ConfigError, match=r"--out '.*out': not a folder"):
        explainer.explain(clip, tmp_path / "out", "00-clip")
