"""A datalist may not point outside its own folder unless that is allowed explicitly (issue 16, item 10)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from vkit.plugins.medical.data import ALLOW_OUTSIDE_ENV, MedicalVolumeDataset, load_datalist
from vkit.registry.errors import DataError


def _datalist(folder: Path, images: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "list.json"
    path.write_text(json.dumps({"test": [dict(image=i, label=0) for i in images]}))
    return path


def test_paths_leaving_the_datalist_folder_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ALLOW_OUTSIDE_ENV, raising=False)
    (tmp_path / "shared" / "img").mkdir(parents=True)
    (tmp_path / "shared" / "img" / "a.nii.gz").write_bytes(b"x")
    inside = _datalist(tmp_path / "shared", ["img/a.nii.gz", str(tmp_path / "shared" / "img" / "a.nii.gz")])
    assert len(load_datalist(inside, "test")) == 2
    for image in ("../../../etc/passwd", "img/../../secret.nii.gz", "/etc/passwd"):
        hostile = _datalist(tmp_path / "shared", [image])
        with pytest.raises(DataError, match=r"test\[0\]: image .* is outside the datalist's folder .*shared; refused"):
            load_datalist(hostile, "test")
        with pytest.raises(DataError, match="outside the datalist's folder"):
            MedicalVolumeDataset(str(hostile), "test")
        skipping = MedicalVolumeDataset(str(hostile), "test", skip_bad=True)  # --skip-bad: a bad row, never read
        assert len(skipping) == 0 and "outside the datalist's folder" in skipping.skipped[0]["reason"]


def test_outside_paths_are_allowed_explicitly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "elsewhere.nii.gz").write_bytes(b"x")
    datalist = _datalist(tmp_path / "lists", ["../elsewhere.nii.gz"])
    assert load_datalist(datalist, "test", allow_outside=True)[0]["image"].endswith("elsewhere.nii.gz")
    monkeypatch.setenv(ALLOW_OUTSIDE_ENV, "1")
    assert len(load_datalist(datalist, "test")) == 1
