"""Test helpers for plugin authors (``vkit.testing`` re-exports them): a throw-away store, tiny videos and volumes.

Import the fixture into your ``conftest.py`` (no ``pytest11`` entry point, so
nothing loads into test suites that do not ask for it)::

    # tests/conftest.py
    from vkit.testing import vkit_store  # noqa: F401

    # tests/test_data.py
    from vkit.testing import make_video

    def test_reads_a_clip(tmp_path, vkit_store):
        clip = make_video(tmp_path / "a.mp4", frames=8, size=(32, 32))
        run_id = vkit_store.start_run(task="t", plugin="p", config={}, seed=0)
        ...

:func:`vkit.testing.run_task_smoke` (in :mod:`vkit.workflows.plugin_check`,
since it runs the ``vkit run`` workflow) runs a whole task on tiny settings.
"""
from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np

from vkit.registry.errors import DataError

__all__ = ["make_video", "make_volume", "temp_store", "vkit_store"]


@contextmanager
def temp_store(folder: str | Path | None = None) -> Iterator[Any]:
    """An open :class:`vkit.core.store.Store` on a fresh SQLite file, closed (and deleted) on exit.

    Args:
        folder: where the ``vkit.db`` file goes; ``None`` makes a temporary folder removed on exit.

    Example::

        with temp_store() as store:
            run_id = store.start_run(task="t", plugin="p", config={}, seed=0)
            store.log_metrics(run_id, {"acc": 1.0}, step=0, split="val")
    """
    from vkit.core.store import open_store

    with tempfile.TemporaryDirectory(prefix="vkit-store-") if folder is None else nullcontext(str(folder)) as tmp:
        root = Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        store = open_store(f"sqlite:///{root / 'vkit.db'}")
        try:
            yield store
        finally:
            store.close()


def _fixture(func: Any) -> Any:
    """``pytest.fixture(func)`` when pytest is importable, else ``func`` unchanged (pytest is a test-only dependency)."""
    try:
        import pytest
    except ImportError:  # pragma: no cover - vkit.testing imported outside a test run
        return func
    return pytest.fixture(func)


@_fixture
def vkit_store(tmp_path: Path) -> Iterator[Any]:
    """Pytest fixture: an open store on ``tmp_path / 'vkit.db'`` (import it into your ``conftest.py``)."""
    with temp_store(tmp_path) as store:
        yield store


def _pair(value: int | Sequence[int], what: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and v > 0 for v in pair):
        raise DataError(f"{what}: expected a positive int or (height, width), got {value!r}")
    return int(pair[0]), int(pair[1])


def make_video(
    path: str | Path,
    frames: int = 8,
    size: int | Sequence[int] = (32, 32),
    fps: float = 8.0,
    *,
    moving: bool = True,
    seed: int = 0,
) -> Path:
    """Write a tiny MP4 of a bright square on a noisy background and return its path.

    Args:
        path: the ``.mp4`` to write (parent folders are created).
        frames: number of frames (>= 1).
        size: ``(height, width)`` or one int; both even (``yuv420p``).
        fps: frames per second.
        moving: the square moves left to right (``True``) or stays put.
        seed: the background noise and the square's row come from it.

    Example::

        make_video(tmp_path / "clip.mp4", frames=16, size=(48, 64), fps=8)
    """
    from vkit.core.video import write_video

    height, width = _pair(size, "make_video size")
    if not isinstance(frames, int) or frames < 1:
        raise DataError(f"make_video frames: expected a positive int, got {frames!r}")
    rng = np.random.default_rng(seed)
    side = max(2, min(height, width) // 4)
    row = int(rng.integers(0, height - side + 1))
    clip = rng.integers(0, 40, size=(frames, height, width, 3), dtype=np.uint8)
    for t in range(frames):
        col = (t * (width - side)) // max(1, frames - 1) if moving else (width - side) // 2
        clip[t, row:row + side, col:col + side] = 230
    return write_video(path, clip, fps=fps)


def make_volume(
    path: str | Path,
    shape: Sequence[int] = (16, 16, 16),
    *,
    lesion: bool = True,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    seed: int = 0,
) -> Path:
    """Write a tiny NIfTI volume (``float32``, noise plus an optional bright sphere) and return its path.

    Args:
        path: a ``.nii`` or ``.nii.gz`` file (parent folders are created).
        shape: ``(X, Y, Z)`` voxels, each >= 2.
        lesion: add a bright sphere at the centre.
        spacing: voxel size in mm (the affine's diagonal).
        seed: the noise comes from it.

    Example::

        make_volume(tmp_path / "case0.nii.gz", shape=(24, 24, 12))
    """
    import nibabel as nib

    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 2:
        raise DataError(f"make_volume shape: expected three sizes >= 2, got {shape!r}")
    if not str(path).endswith((".nii", ".nii.gz")):
        raise DataError(f"make_volume path: expected a .nii or .nii.gz file, got {str(path)!r}")
    rng = np.random.default_rng(seed)
    volume = rng.normal(0.0, 10.0, size=shape).astype(np.float32)
    if lesion:
        grid = np.indices(shape).astype(np.float32)
        centre = np.array([(s - 1) / 2 for s in shape], dtype=np.float32).reshape(3, 1, 1, 1)
        radius = max(1.0, min(shape) / 4)
        volume[((grid - centre) ** 2).sum(0) <= radius**2] += 200.0
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(volume, np.diag([*map(float, spacing), 1.0])), str(path))
    return path
