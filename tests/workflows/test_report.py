"""write_report: HTML page + PNG plots that open, reference each other and carry the values."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vkit.registry.errors import DataError
from vkit.workflows.report import CONFUSION_NAME, ROC_NAME, write_report

RUN = {
    "id": 42,
    "task": "medical-ring-lesion",
    "db": "postgresql://vkit:s3cret@db.local/vkit",
    "status": "finished",
    "config": {"seed": 0, "train": {"epochs": 3}, "data": {"root": "<b>cache</b>"}},
}


def test_report_files_images_and_values(tmp_path: Path) -> None:
    page = write_report(
        tmp_path / "out",
        run=RUN,
        metrics={"test/auc": 0.93751, "test/sensitivity": 0.875, "test/specificity": float("nan")},
        roc=(np.array([0.0, 0.1, 0.4, 1.0]), np.array([0.0, 0.7, 0.95, 1.0]), 0.93751),
        confusion=np.array([[45, 5], [7, 43]]),
        extra_tables={"Skipped cases": [{"case": "c7", "reason": "truncated"}], "Compression": {"size_mb": 1.5}},
        class_names=["no lesion", "lesion"],
    )
    assert page == tmp_path / "out" / "report.html"
    text = page.read_text()
    for name in (ROC_NAME, CONFUSION_NAME):
        png = tmp_path / "out" / name
        assert png.stat().st_size > 0
        with Image.open(png) as img:
            img.verify()
        with Image.open(png) as img:
            assert img.format == "PNG" and img.size[0] > 100 and img.size[1] > 100
            assert len(np.unique(np.asarray(img.convert("L")))) > 10  # something was drawn
        assert f"src='{name}'" in text
    assert "0.9375" in text and "0.8750" in text and "n/a" in text and "test/auc" in text
    assert "medical-ring-lesion" in text and ">42<" in text
    assert "s3cret" not in text and "vkit:***@db.local" in text  # credentials masked
    assert "&lt;b&gt;cache&lt;/b&gt;" in text and "<b>cache</b>" not in text  # escaped config
    assert "&quot;epochs&quot;: 3" in text or '"epochs": 3' in text
    assert "Skipped cases" in text and "truncated" in text and "size_mb" in text


def test_report_without_plots(tmp_path: Path) -> None:
    page = write_report(tmp_path, run={"id": 1, "task": "t", "db": "vkit.db", "config": "seed = 0"}, metrics={}, roc=None, confusion=None)
    text = page.read_text()
    assert not (tmp_path / ROC_NAME).exists() and not (tmp_path / CONFUSION_NAME).exists()
    assert "<img" not in text and "no metrics" in text and "seed = 0" in text


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(roc=([0, 1], [0, 0.5, 1], 0.5)), "same length >= 2, got 2 and 3"),
        (dict(confusion=np.ones((2, 3))), r"square matrix of >= 2 classes, got shape \(2, 3\)"),
        (dict(confusion=np.eye(3), class_names=["a", "b"]), "2 class names for a 3-class"),
    ],
)
def test_report_rejects_malformed_plot_data(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(DataError, match=message):
        write_report(tmp_path, run={"id": 1}, metrics={}, **kwargs)
