"""Cine loops (``.mp4``/``.avi``) as volumes: grayscale frames stacked as depth, without MONAI.

Example::

    from vkit.plugins.medical.cine import is_cine, read_cine
    if is_cine("echo.mp4"):
        volume = read_cine("echo.mp4")   # float32 (T, H, W)
"""
from __future__ import annotations

from typing import Any

import numpy as np

from vkit.registry.errors import DataError

CINE_SUFFIXES = (".mp4", ".avi")
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def is_cine(path: Any) -> bool:
    """Whether ``path`` names a cine loop (by its suffix)."""
    return str(path).lower().endswith(CINE_SUFFIXES)


def read_cine(path: str) -> np.ndarray:
    """Decode every frame of a cine loop (via :mod:`vkit.core.video`) to grayscale: float32 (T, H, W)."""
    from vkit.core.video import iter_frames

    frames = [f.astype(np.float32) @ _LUMA for f in iter_frames(path)]  # RGB -> luma (ITU-R BT.601)
    if not frames:
        raise DataError(f"{path}: the cine loop has no decodable frames")
    return np.stack(frames).astype(np.float32)
