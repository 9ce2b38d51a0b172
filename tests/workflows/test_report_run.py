"""write_run_report / `vkit report RUN`: the page built from the store for train, score and predict runs.

Every ``src`` of the page is a file beside it and a non-empty PNG; the page
holds the values of the store; no password reaches it; task sections come
back on a later report; plugins add sections through ``vkit_report_sections``
and a failing plugin is named on the page without stopping it.
"""
from __future__ import annotations

import re
import types
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from vkit.core.evaluation import ReportSection
from vkit.hooks.hookspecs import hookimpl
from vkit.hooks.manager import PluginManager
from vkit.workflows.cli import cli
from vkit.workflows.report import REPORT_NAME, write_run_report


def _manager(*modules: types.ModuleType) -> PluginManager:
    mgr = PluginManager(autoload=False)
    for module in modules:
        assert mgr.register(module, module.__name__), mgr.errors
    return mgr


def check_page(page: Path) -> str:
    """The page's text after checking: every referenced file exists beside it and is a non-empty, drawn PNG."""
    text = page.read_text(encoding="utf-8")
    assert "<script" not in text and "http://" not in text and "https://" not in text  # self-contained
    sources = re.findall(r"src='([^']+)'", text)
    for src in sources:
        png = page.parent / src
        assert png.is_file() and png.stat().st_size > 0, src
        with Image.open(png) as img:
            assert img.format == "PNG" and min(img.size) > 30, src
            assert len(np.unique(np.asarray(img.convert("L")))) > 5, f"{src} is blank"
    return text


def test_training_run_report(store, filled, tmp_path, db_password):
    page = write_run_report(store, filled["train"], tmp_path / "rep", manager=_manager())
    assert page == tmp_path / "rep" / REPORT_NAME
    text = check_page(page)
    sources = set(re.findall(r"src='([^']+)'", text))
    assert {"curves_loss.png", "curves_val.png", "roc.png", "pr.png", "calibration.png", "confusion.png"} <= sources
    assert "Training curves" in text and "val/auc" in text and "0.8000" in text   # val auc at epoch 3
    assert "test/auc" in text and "0.8100" in text
    assert "Worst-classified cases (test)" in text and "p(true class)" in text
    worst = min(store.run_predictions(filled["train"], split="test"), key=lambda r: r["values"]["probs"][int(r["label"])])
    worst_table = text.split("Worst-classified cases (test)</h2>")[1].split("<h2")[0]
    assert f"<td>{worst['item_id']}</td>" in worst_table and worst_table.count("<tr>") == 1 + 10  # 10 worst cases
    assert "Compression" in text and "size_mb" in text
    assert "Config" in text and "&quot;epochs&quot;: 3" in text and "Versions" in text and "&quot;vkit&quot;: &quot;" in text
    assert "cfg-s3cret" not in text and db_password not in text
    assert any(a["kind"] == "report" and a["path"] == str(page.resolve()) for a in store.run_artifacts(filled["train"]))


def test_scoring_and_predict_run_reports(lite, tmp_path):
    store, filled = lite
    text = check_page(write_run_report(store, filled["score"], tmp_path / "score", manager=_manager()))
    assert "scores_over_time.png" in text and "Top-scoring videos" in text and "cam2.mp4" in text
    assert "vkit score run" in text and "Top events" in text
    assert "roc.png" not in text and "Training curves" not in text
    text = check_page(write_run_report(store, filled["predict"], tmp_path / "predict", manager=_manager()))
    assert "Predictions (1 cases)" in text and "a.mp4" in text and "0.7" in text


def test_default_folder_is_the_work_dir(lite):
    store, filled = lite
    page = write_run_report(store, filled["train"], manager=_manager())
    assert page == Path(store.get_run(filled["train"])["work_dir"]) / "report" / REPORT_NAME


def test_task_sections_are_shown_and_kept_for_later_reports(lite, tmp_path):
    store, filled = lite
    from vkit.workflows.report_plots import plot_curves

    png = plot_curves(tmp_path / "extra.png", {"x": [(0, 1.0), (1, 2.0)]}, "extra")
    sections = [ReportSection("per-class table", table=[dict(cls="a", f1=0.5)]),
                ReportSection("an extra plot", image=png, text="drawn by the task")]
    first = check_page(write_run_report(store, filled["train"], tmp_path / "r1", sections, manager=_manager()))
    assert "per-class table" in first and "an extra plot" in first and "drawn by the task" in first
    assert (tmp_path / "r1" / "extra.png").is_file()
    png.unlink()  # the original is gone: the later report uses the copy saved with the first
    later = check_page(write_run_report(store, filled["train"], tmp_path / "r2", manager=_manager()))
    assert "per-class table" in later and "an extra plot" in later and "src='extra.png'" in later


def test_plugins_add_sections_through_vkit_report_sections(lite, tmp_path):
    store, filled = lite
    good = types.ModuleType("report_good")

    @hookimpl
    def vkit_report_sections(run, store):
        if run["kind"] != "train":
            return None
        n = len(store.run_predictions(run["id"], split="test"))
        assert Path(run["report_dir"]).is_dir() and run["db"] == store.url
        return [ReportSection("from a plugin", text=f"{n} test cases in run {run['id']}")]

    good.vkit_report_sections = vkit_report_sections
    bad = types.ModuleType("report_bad")

    @hookimpl
    def vkit_report_sections(run, store):  # noqa: F811
        raise RuntimeError("boom")

    bad.vkit_report_sections = vkit_report_sections
    weird = types.ModuleType("report_weird")
    weird.vkit_report_sections = hookimpl(lambda run, store: ["not a section"])
    mgr = _manager(good, bad, weird)
    text = check_page(write_run_report(store, filled["train"], tmp_path / "p", manager=mgr))
    assert "from a plugin" in text and f"24 test cases in run {filled['train']}" in text
    assert "Plugin errors" in text and 'plugin &quot;report_bad&quot; raised in vkit_report_sections' in text and "boom" in text
    assert "report_weird" in text and "is not a ReportSection" in text
    score = check_page(write_run_report(store, filled["score"], tmp_path / "s", manager=_manager(good)))
    assert "from a plugin" not in score


def test_a_part_that_cannot_be_drawn_is_named_and_the_rest_written(lite, tmp_path, monkeypatch):
    store, filled = lite

    class Broken:
        title = "broken section"

        @property
        def table(self):
            raise KeyError("no such column")

    def no_curves(*args, **kwargs):
        raise RuntimeError("curves postgresql://bob:hunter2@db/x")

    monkeypatch.setattr("vkit.workflows.report_plots.plot_curves", no_curves)
    warned: list[str] = []
    page = write_run_report(store, filled["train"], tmp_path / "p", [Broken()], manager=_manager(), warn=warned.append)
    text = check_page(page)
    assert "Metrics" in text and "roc.png" in text and "Artifacts" in text  # the rest is there
    assert "Training curves: could not be drawn (RuntimeError: curves postgresql://bob:***@db/x)" in text
    assert "broken section: could not be drawn (KeyError: &#x27;no such column&#x27;)" in text
    assert [w.split(": ", 1)[1] for w in warned] == [
        "Training curves: could not be drawn (RuntimeError: curves postgresql://bob:***@db/x) (the rest of the report "
        "is written)", "broken section: could not be drawn (KeyError: 'no such column') (the rest of the report is written)"]
    assert "hunter2" not in text + "".join(warned)


def test_cli_report_for_any_run(lite, tmp_path):
    store, filled = lite
    url = store.engine.url.render_as_string(hide_password=False)
    for kind in ("train", "score", "predict"):
        out = tmp_path / kind
        result = CliRunner().invoke(cli, ["--db", url, "report", str(filled[kind]), "--out", str(out)])
        assert result.exit_code == 0, result.output
        assert result.output.strip() == f"report: {out / REPORT_NAME}"
        check_page(out / REPORT_NAME)


def test_cli_report_never_shows_the_database_password(store_url, filled, tmp_path, db_password):
    out = tmp_path / "score"
    result = CliRunner().invoke(cli, ["--db", store_url, "report", str(filled["score"]), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert db_password not in result.output + check_page(out / REPORT_NAME)
    missing = CliRunner().invoke(cli, ["--db", store_url, "report", "9999"])
    assert missing.exit_code != 0 and "run 9999 is not in the store" in str(missing.exception)
    assert db_password not in str(missing.exception)


def test_classifier_plots_need_labels_and_probabilities(lite, tmp_path):
    store, _ = lite
    run_id = store.start_run("t", "p", {}, seed=0)
    store.add_predictions(run_id, "test", [dict(item_id=f"c{i}", label=None, prediction=1.5, values={"score": i})
                                           for i in range(5)])
    store.finish_run(run_id)
    text = check_page(write_run_report(store, run_id, tmp_path / "x", manager=_manager()))
    assert "roc.png" not in text and "Worst-classified" not in text and "Run" in text


def test_multiclass_calibration_and_curves(tmp_path):
    from vkit.workflows.report_plots import calibration, plot_classifier

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 90)
    probs = rng.dirichlet([1, 1, 1], 90)
    probs[np.arange(90), labels] += 1.0
    probs /= probs.sum(axis=1, keepdims=True)
    plots = plot_classifier(tmp_path, labels, probs)
    assert set(plots) == {"roc", "pr", "calibration", "confusion"} and all(p.stat().st_size > 0 for p in plots.values())
    conf, acc, count, ece = calibration(labels, probs)
    assert count.sum() == 90 and 0 <= ece <= 1 and np.all((conf >= 0) & (conf <= 1))
    perfect = np.eye(2)[[0, 1, 1, 0]]
    assert calibration(np.array([0, 1, 1, 0]), perfect)[3] == pytest.approx(0.0)


def test_worst_cases_get_thumbnails_and_scoring_plots_ground_truth(lite, tmp_path):
    from vkit.workflows.report import _ground_truth

    store, _ = lite
    run_id = store.start_run("t", "p", {}, seed=0)
    volume = np.zeros((8, 16, 16))
    volume[4, 4:12, 4:12] = np.linspace(0, 1, 64).reshape(8, 8)
    np.save(tmp_path / "scan.npy", volume)
    rows = [dict(item_id=f"c{i}", label=i % 2, prediction=0, values=dict(probs=[0.6, 0.4], path=str(tmp_path / "scan.npy")))
            for i in range(4)]
    store.add_predictions(run_id, "test", rows)
    store.finish_run(run_id)
    text = check_page(write_run_report(store, run_id, tmp_path / "r", manager=_manager()))
    worst = text.split("Worst-classified cases (test)</h2>")[1].split("<h2")[0]
    assert worst.count("<img src='case_") == 4   # every worst case shows the middle slice of its scan
    truth = _ground_truth([dict(item_id="a.mp4", values=dict(path="/x/a.mp4", ground_truth=[[1.0, 2.5], [4, 5]])),
                           dict(item_id="b.mp4", values=dict(probs=[0.1, 0.9]))])
    assert truth == {"/x/a.mp4": [(1.0, 2.5), (4.0, 5.0)], "a.mp4": [(1.0, 2.5), (4.0, 5.0)]}
