"""The medical plugin's ``vkit_preview``: a scan's middle axial slice for the run report, through the plugin manager.

Core reads no scan format: without the plugin a NIfTI case has no thumbnail; with it, the report draws the
slice. A broken scan is recorded against the plugin and the case has no thumbnail.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vkit.hooks.manager import PluginManager
from vkit.plugins.medical.preview import scan_preview
from vkit.registry.errors import DataError
from vkit.workflows.report_plots import thumbnail


@pytest.fixture(scope="module")
def scan(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """A (x=12, y=10, z=5) NIfTI whose slices differ: slice z holds the value 10 * z plus a ramp along x."""
    import nibabel as nib

    volume = np.zeros((12, 10, 5), dtype=np.float32)
    for z in range(5):
        volume[:, :, z] = 10 * z + np.arange(12, dtype=np.float32)[:, None]
    path = tmp_path_factory.mktemp("scans") / "case 1.nii.gz"
    nib.save(nib.Nifti1Image(volume, np.eye(4)), str(path))
    return path, volume


@pytest.fixture
def manager() -> PluginManager:
    manager = PluginManager(autoload=False, extra=["vkit.plugins.medical.plugin"])
    assert not manager.errors
    return manager


def test_a_scan_previews_as_its_middle_axial_slice(scan, manager):
    path, volume = scan
    [image] = scan_preview(path)
    np.testing.assert_array_equal(image, np.rot90(volume[:, :, 2]))   # rows = y, anterior at the top
    [through_hook] = manager.preview(path)
    np.testing.assert_array_equal(through_hook, image)
    assert manager.errors == []


def test_files_that_are_not_scans_are_left_to_core(tmp_path, manager):
    np.save(tmp_path / "vol.npy", np.zeros((3, 4, 4)))
    (tmp_path / "clip.mp4").write_bytes(b"x")
    for name in ("vol.npy", "clip.mp4", "missing.nii.gz"):
        assert scan_preview(tmp_path / name) is None
        assert manager.preview(tmp_path / name) is None
    assert manager.errors == []


def test_a_broken_scan_is_a_recorded_plugin_error_and_no_thumbnail(tmp_path, manager):
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"not a scan")
    with pytest.raises(DataError, match="broken.nii.gz: cannot read the scan"):
        scan_preview(broken)
    assert manager.preview(broken) is None
    [failure] = manager.errors
    assert failure.stage == "vkit_preview" and "raised in vkit_preview" in failure.message
    assert "broken.nii.gz: cannot read the scan" in failure.message
    assert thumbnail(tmp_path / "t.png", broken, manager.preview) is None and not (tmp_path / "t.png").exists()


def test_the_report_thumbnail_needs_the_plugin_for_a_scan(scan, tmp_path, manager):
    path, _ = scan
    assert thumbnail(tmp_path / "core.png", path) is None                  # core alone reads no NIfTI
    assert thumbnail(tmp_path / "none.png", path, PluginManager(autoload=False).preview) is None
    png = thumbnail(tmp_path / "t.png", path, manager.preview)
    with Image.open(png) as img:
        assert img.format == "PNG" and img.height == 96 and img.width <= 256
        grey = np.asarray(img.convert("L"), dtype=float)
    assert grey[:, 0].mean() < grey[:, -1].mean()   # the ramp along x: dark on the left, bright on the right


def test_a_bad_preview_value_is_recorded_and_the_next_plugin_asked(scan, manager):
    import types

    from vkit import hookimpl

    bad = types.ModuleType("vkit_fx_bad_preview")
    bad.vkit_preview = hookimpl(tryfirst=True)(lambda path: ["not a frame"])
    assert manager.register(bad, "bad-preview")
    [image] = manager.preview(scan[0])
    assert image.shape == (10, 12)
    [failure] = manager.errors
    assert failure.plugin == "bad-preview" and "'not a frame' is not a frame" in failure.message
