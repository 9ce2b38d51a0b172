"""The medical vertical's report preview: a scan's middle axial slice (the ``vkit_preview`` hook).

A NIfTI file, a ``.dcm`` file or a DICOM series folder is read as the
dataset reads it (:func:`vkit.plugins.medical.data.read_scan`); anything
else is left to other plugins and to core (``None``).

Example::

    [image] = scan_preview(Path("data/case_003.nii.gz"))   # (y, x) floats, anterior at the top
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

#: Files (besides DICOM series folders) read as scans.
SCAN_SUFFIXES = (".nii", ".nii.gz", ".dcm")


def middle_slice(volume: np.ndarray) -> np.ndarray:
    """The middle axial slice of a scan in (x, y, z[, t]) order, as an image (rows = y, anterior at the top)."""
    v = np.squeeze(np.asarray(volume, dtype=float))
    while v.ndim > 3:
        v = v[..., 0]
    if v.ndim == 3:
        v = v[..., v.shape[-1] // 2]
    return np.rot90(v) if v.ndim == 2 else v.reshape(1, -1)


def scan_preview(path: Path) -> list[np.ndarray] | None:
    """``[middle slice]`` of the scan at ``path``; ``None`` when ``path`` is not a scan (or does not exist).

    Raises:
        DataError: a scan file or folder that cannot be read, naming it.
    """
    from vkit.plugins.medical.data import read_scan

    path = Path(path)
    if not (path.is_dir() or (path.is_file() and path.name.lower().endswith(SCAN_SUFFIXES))):
        return None
    return [middle_slice(read_scan(path))]


__all__ = ["SCAN_SUFFIXES", "middle_slice", "scan_preview"]
