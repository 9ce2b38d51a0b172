"""The report's worst-classified cases: a tiny medical run stores each case's scan path, the report shows its
middle slice as a small PNG, and a case whose file is gone shows "file not available" instead of an image."""
from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image

from vkit.hooks.manager import PluginManager
from vkit.workflows.report import write_run_report



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
    text = check_page(write_run_report(store, result.run_id, tmp_path / "rep", manager=PluginManager(autoload=False)))
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
    kept.write_bytes(open(source, "rb").read())
    try:
        import os

        os.unlink(source)
        text = check_page(write_run_report(store, result.run_id, tmp_path / "rep", manager=PluginManager(autoload=False)))
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
