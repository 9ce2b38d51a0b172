"""The report's per-case and per-video views.

Worst-classified cases: a tiny medical run stores each case's scan path, the report shows its middle slice
(the medical plugin's ``vkit_preview``) as a small PNG, and a case whose file is gone shows "file not available" instead of an image. Scores over
time: ground-truth stretches (events of kind ``ground_truth``) are shaded only when the run stored some.
"""
from __future__ import annotations

import os
import re
import shutil

import numpy as np
import pytest
from PIL import Image

from vkit.hooks.manager import PluginManager
from vkit.workflows.report import write_run_report



def medical_manager() -> PluginManager:
    """Only the medical plugin: its ``vkit_preview`` reads the scans (core reads no scan format)."""
    manager = PluginManager(autoload=False, extra=["vkit.plugins.medical.plugin"])
    assert not manager.errors
    return manager


def check_page(page):
    """The page's text; every ``src`` is a non-empty PNG beside it (as in test_report_run)."""
    text = page.read_text(encoding="utf-8")
    for src in re.findall(r"src='([^']+)'", text):
        with Image.open(page.parent / src) as img:
            assert img.format == "PNG" and min(img.size) > 30, src
    return text


@pytest.fixture(scope="module")
def medical_run(tmp_path_factory):
    from vkit.hooks.manager import get_plugin_manager
    from vkit.plugins.medical.task import MedicalDiagnosisTask
    from vkit.workflows.run import run_task

    get_plugin_manager().register_components()
    tmp = tmp_path_factory.mktemp("medrun")
    db = f"sqlite:///{tmp / 'vkit.db'}"
    result = run_task("medical-diagnosis", overrides=list(MedicalDiagnosisTask.smoke_overrides), db_url=db,
                      work_dir=tmp / "work", data_root=tmp / "data", echo=lambda *_: None)
    assert result.status == "finished"
    return result, db


def _worst_table(text: str) -> str:
    return text.split("Worst-classified cases (test)</h2>")[1].split("<h2")[0]


def test_medical_run_stores_scan_paths_and_the_report_shows_their_middle_slices(medical_run, tmp_path):
    from vkit.core.store import open_store

    result, db = medical_run
    store = open_store(db)
    rows = store.run_predictions(result.run_id, "test")
    assert len(rows) == 4 and all(r["values"]["path"].endswith(".nii.gz") for r in rows)
    text = check_page(write_run_report(store, result.run_id, tmp_path / "rep", manager=medical_manager()))
    worst = _worst_table(text)
    thumbs = re.findall(r"<img src='(case_\d+\.png)'", worst)
    assert len(thumbs) == 4 and "file not available" not in worst
    for name in thumbs:
        with Image.open(tmp_path / "rep" / name) as img:
            assert img.format == "PNG" and img.width <= 256 and img.height >= 30
            assert np.asarray(img.convert("L")).std() > 5  # a drawn slice, not a flat tile


def test_a_deleted_scan_gives_text_not_a_broken_image(medical_run, tmp_path):
    from vkit.core.store import open_store

    result, db = medical_run
    store = open_store(db)
    rows = store.run_predictions(result.run_id, "test")
    gone = rows[0]
    (tmp_path / "moved").mkdir()
    source = gone["values"]["path"]
    kept = tmp_path / "moved" / "scan.nii.gz"
    shutil.copyfile(source, kept)
    try:
        os.unlink(source)
        text = check_page(write_run_report(store, result.run_id, tmp_path / "rep", manager=medical_manager()))
    finally:
        os.replace(kept, source)  # the module's other test keeps its data
    worst = _worst_table(text)
    row = next(r for r in worst.split("<tr>") if f"<td>{gone['item_id']}</td>" in r)
    assert "file not available" in row and "<img" not in row
    assert worst.count("<img src='case_") == 3 and worst.count("file not available") == 1


def test_unreadable_files_have_no_thumbnail(tmp_path):
    from vkit.workflows.report_plots import thumbnail

    (tmp_path / "broken.nii.gz").write_bytes(b"not a scan")
    (tmp_path / "broken.mp4").write_bytes(b"not a clip")
    for name in ("broken.nii.gz", "broken.mp4", "missing.nii.gz", ""):
        assert thumbnail(tmp_path / "t.png", tmp_path / name if name else "") is None
    assert not (tmp_path / "t.png").exists()


def _greenish(png) -> int:
    """Pixels of the light ground-truth green (TRUTH_COLOUR at alpha 0.22 over white)."""
    rgb = np.asarray(Image.open(png).convert("RGB")).astype(int)
    return int(((rgb[..., 1] - rgb[..., 0] > 20) & (rgb[..., 1] - rgb[..., 2] > 20)).sum())


def test_score_over_time_shades_ground_truth_only_when_there_is_some(tmp_path):
    from vkit.workflows.report_plots import plot_scores_over_time

    scores = [(i * 0.25, (i + 1) * 0.25, 0.9 if 8 <= i < 14 else 0.1) for i in range(24)]
    plain = plot_scores_over_time(tmp_path / "plain.png", [dict(name="a.mp4", scores=scores, events=[(2.0, 3.5)])])
    shaded = plot_scores_over_time(tmp_path / "gt.png", [dict(name="a.mp4", scores=scores, events=[(2.0, 3.5)],
                                                              truth=[(1.5, 3.0)])])
    assert _greenish(plain) == 0 and _greenish(shaded) > 2000   # a 1.5 s stretch of a 6 s panel, plus the legend patch


def test_frame_spans_and_the_report_of_a_scoring_run_with_ground_truth(tmp_path):
    from vkit.core.ground_truth import GROUND_TRUTH, frame_spans, record_ground_truth
    from vkit.core.store import open_store
    from vkit.registry.errors import DataError
    from vkit.workflows.export import describe_scoring_run

    assert frame_spans([(17, 31), (55, 70)], fps=10.0, duration=6.0) == [(1.7, 3.2), (5.5, 6.0)]
    with pytest.raises(DataError, match="fps=0"):
        frame_spans([(1, 2)], fps=0)
    store = open_store(f"sqlite:///{tmp_path / 'vkit.db'}")
    run = store.start_run("t", "p", {}, seed=None, kind="score")
    path = str(tmp_path / "cam.mp4")
    ids = store.upsert_videos([dict(path=path, sha256="0" * 64, size=10, duration=6.0, fps=10.0, frames=60, status="ok")])
    scores = [dict(segment=s, start=s * 0.5, end=s * 0.5 + 0.5, score=0.8 if 3 <= s < 7 else 0.1) for s in range(12)]
    store.add_video_results(run, [dict(video_id=ids[path], status="scored", scores=scores,
                                       events=[dict(kind="anomaly", start=1.5, end=3.5, score=0.8)])])
    without = check_page(write_run_report(store, run, tmp_path / "before", manager=PluginManager(autoload=False)))
    assert "scores_over_time.png" in without and "ground truth" not in without
    assert record_ground_truth(store, run, {path: frame_spans([(17, 31)], fps=10.0)}) == 1
    assert record_ground_truth(store, run, {path: frame_spans([(17, 31)], fps=10.0)}) == 1  # the same row again
    events = store.run_events(run)
    assert sorted((e["kind"], e["start"], e["end"], e["score"]) for e in events) == [
        ("anomaly", 1.5, 3.5, 0.8), (GROUND_TRUTH, 1.7, pytest.approx(3.2), None)]
    assert store.get_videos()[0]["status"] == "ok" and store.get_videos()[0]["frames"] == 60  # the video row kept
    info = describe_scoring_run(store, run)
    assert info["counts"]["events"] == 1 and info["counts"]["ground_truth"] == 1
    assert [e["kind"] for e in info["top_events"]] == ["anomaly"]
    with_truth = check_page(write_run_report(store, run, tmp_path / "after", manager=PluginManager(autoload=False)))
    assert "red: detected events; green: ground truth" in with_truth
    assert _greenish(tmp_path / "before" / "scores_over_time.png") == 0
    assert _greenish(tmp_path / "after" / "scores_over_time.png") > 1000
