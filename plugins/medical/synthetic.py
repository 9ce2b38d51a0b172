"""The medical vertical's embedded data set: synthetic CT-like volumes with or without a ring-enhancing lesion.

What it writes (``generate_dataset(root)``)::

    root/
      datalist.json          Decathlon-style: {"training": [...], "validation": [...], "test": [...]}
      imagesTr/case_00000.nii.gz ...   training + validation volumes
      imagesTs/case_00250.nii.gz ...   test volumes
      .vkit_synthetic.json   marker: generator version + parameters (the cache key)

Each entry is ``{"image": "imagesTr/case_00000.nii.gz", "label": 0|1, "case_id": "case_00000"}``
with paths relative to the datalist. Every volume is a real NIfTI-1 file (int16
Hounsfield-like units, 1.5 mm isotropic voxels, LPS-like affine so ``Orientationd('RAS')``
has work to do) built from:

* a soft-edged ellipsoidal "body" of soft tissue (~40 HU) in air (-1000 HU),
  random size and position;
* a smooth random bias field inside the body (±30 HU);
* 3–7 random blob "structures": soft ellipsoids, 80 % enhancing (+60..+200 HU),
  20 % hypodense (-40..-120 HU), radius 2–5 voxels;
* one "lesion slot" per case. A **positive** (label 1) case holds a
  *ring-enhancing lesion*: a bright spherical shell (outer radius 4–5.5 voxels,
  wall 1.8–2.4 voxels) around a tissue-density core. A **negative** (label 0)
  case holds a solid enhancing blob of the same peak contrast whose integrated
  intensity is made exactly equal to the ring it replaces;
* Gaussian noise (sigma 8–15 HU).

The label is therefore a property of *shape* (a hollow bright shell versus solid
blobs) that a small 3-D CNN learns, while the mean intensity of a volume has the
same distribution in both classes (the ring and its compensating blob carry the
same mass) and no single voxel gives it away (the lesion is placed uniformly in the body).
Classes are balanced in every split. Everything is deterministic from ``seed``:
case ``k`` is drawn from ``numpy.random.default_rng([seed, k])``.

``vkit run`` generates the files once and reuses them while the generator
version, seed and parameters match (:func:`vkit.core.lifecycle.prepare_data`).

Example::

    from vkit.plugins.medical.synthetic import generate_dataset
    datalist = generate_dataset(Path("~/.cache/vkit/medical").expanduser(), seed=0)
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vkit.core.progress import track
from vkit.registry.errors import ConfigError, DataError

#: Bump when the generated images change for the same parameters (the task's ``generator_version`` follows it).
GENERATOR_VERSION = 2
GENERATOR_NAME = "vkit.medical.ring-lesion"
DATALIST_NAME = "datalist.json"
LABEL_NAMES = {"0": "no ring-enhancing lesion", "1": "ring-enhancing lesion"}

_RING_OUTER = (4.0, 5.5)  # voxels
_RING_WALL = (1.8, 2.4)  # voxels
_AIR_HU = -1000.0
_TISSUE_HU = 40.0


@dataclass(frozen=True)
class LesionInfo:
    """Where the lesion slot of a synthetic case is (voxel coordinates) and what fills it.

    Attributes:
        label: 1 for a ring-enhancing lesion, 0 for the compensating solid blob.
        center: (i, j, k) voxel coordinates of the slot's centre.
        outer_radius: the ring's outer radius in voxels (the slot size for both classes).
        inner_radius: the ring's inner radius (the core) in voxels.
        contrast: peak enhancement in HU.
    """

    label: int
    center: tuple[float, float, float]
    outer_radius: float
    inner_radius: float
    contrast: float


def _soft_ball(dist: np.ndarray, radius: float, width: float = 0.6) -> np.ndarray:
    """A ball of ``radius`` with a tanh edge of ``width`` voxels: 1 inside, 0 outside."""
    return 0.5 * (1.0 - np.tanh((dist - radius) / width))


def _grid(size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ax = np.arange(size, dtype=np.float32)
    return np.meshgrid(ax, ax, ax, indexing="ij")


def synthesize_volume(label: int, size: int, rng: np.random.Generator) -> tuple[np.ndarray, LesionInfo]:
    """Draw one synthetic volume (float32 HU, shape ``(size,)*3``) of class ``label``.

    Args:
        label: 1 draws a ring-enhancing lesion, 0 a mass-matched solid blob instead.
        size: edge length in voxels (>= 24).
        rng: the case's random generator (all randomness comes from it).

    Example::

        vol, info = synthesize_volume(1, 32, np.random.default_rng([0, 7]))
    """
    if label not in (0, 1):
        raise ConfigError(f"synthesize_volume: label must be 0 or 1, got {label!r}")
    if size < 24:
        raise ConfigError(f"synthesize_volume: size must be >= 24 voxels, got {size}")
    gi, gj, gk = _grid(size)
    c = (size - 1) / 2.0
    # Body: a soft ellipsoid of tissue in air.
    axes = rng.uniform(0.40, 0.47, size=3) * size
    centre = c + rng.uniform(-1.5, 1.5, size=3)
    rn = np.sqrt(((gi - centre[0]) / axes[0]) ** 2 + ((gj - centre[1]) / axes[1]) ** 2 + ((gk - centre[2]) / axes[2]) ** 2)
    body = _soft_ball(rn * axes.mean(), axes.mean(), width=1.0)
    # Smooth bias field inside the body.
    bias = np.zeros_like(gi)
    for _ in range(3):
        freq = rng.uniform(0.5, 1.5, size=3) * np.pi / size
        phase = rng.uniform(0, 2 * np.pi)
        bias += np.cos(freq[0] * gi + freq[1] * gj + freq[2] * gk + phase).astype(np.float32)
    contrast_map = bias * (rng.uniform(10, 30) / 3.0)

    def inside_point(margin: float) -> np.ndarray:
        # a uniform point at least ``margin`` voxels inside the body ellipsoid and the grid
        for _ in range(100):
            u = rng.normal(size=3)
            u = u / np.linalg.norm(u) * rng.uniform(0, 1) ** (1 / 3)
            p = centre + u * np.maximum(axes - margin, 1.0)
            if np.all(p >= margin) and np.all(p <= size - 1 - margin):
                return p
        return np.full(3, c)

    # Background structures (independent of the label).
    for _ in range(int(rng.integers(3, 8))):
        p = inside_point(3.0)
        radii = rng.uniform(2.0, 5.0, size=3)
        d = np.sqrt(((gi - p[0]) / radii[0]) ** 2 + ((gj - p[1]) / radii[1]) ** 2 + ((gk - p[2]) / radii[2]) ** 2)
        amp = rng.uniform(60, 200) if rng.uniform() < 0.8 else -rng.uniform(40, 120)
        contrast_map += amp * _soft_ball(d * radii.mean(), radii.mean())
    # The lesion slot: a ring (label 1) or a mass-matched solid blob (label 0).
    r_out = rng.uniform(*_RING_OUTER)
    r_in = r_out - rng.uniform(*_RING_WALL)
    peak = rng.uniform(120, 220)
    p = inside_point(r_out + 0.5)
    dist = np.sqrt((gi - p[0]) ** 2 + (gj - p[1]) ** 2 + (gk - p[2]) ** 2)
    ring = _soft_ball(dist, r_out) - _soft_ball(dist, r_in)
    if label == 1:
        lesion = ring
    else:
        solid = _soft_ball(dist, float(np.cbrt(r_out**3 - r_in**3)))
        lesion = solid * (ring.sum() / solid.sum())
    contrast_map += peak * lesion
    hu = _AIR_HU + body * (_TISSUE_HU - _AIR_HU + contrast_map)
    hu += rng.normal(0.0, rng.uniform(8, 15), size=hu.shape)
    info = LesionInfo(label, (float(p[0]), float(p[1]), float(p[2])), float(r_out), float(r_in), float(peak))
    return hu.astype(np.float32), info


def _affine(size: int, spacing: float) -> np.ndarray:
    """LPS-like voxel-to-world affine (mm) with the volume centred on the origin."""
    aff = np.diag([-spacing, -spacing, spacing, 1.0])
    aff[:3, 3] = -aff[:3, :3] @ np.full(3, (size - 1) / 2.0)
    return aff


def _params(seed: int, n_train: int, n_val: int, n_test: int, size: int, spacing: float) -> dict[str, Any]:
    for key, val in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test)):
        if not isinstance(val, int) or isinstance(val, bool) or val < 2 or val % 2:
            raise ConfigError(f"generate_dataset: {key} must be an even int >= 2 (balanced classes), got {val!r}")
    if not isinstance(size, int) or size < 24:
        raise ConfigError(f"generate_dataset: size must be an int >= 24 voxels, got {size!r}")
    if not spacing > 0:
        raise ConfigError(f"generate_dataset: spacing must be > 0 mm, got {spacing!r}")
    return dict(seed=int(seed), n_train=n_train, n_val=n_val, n_test=n_test, size=size, spacing=float(spacing))


def generate_dataset(
    root: Path | str,
    *,
    seed: int = 0,
    n_train: int = 200,
    n_val: int = 50,
    n_test: int = 100,
    size: int = 32,
    spacing: float = 1.5,
) -> Path:
    """Write the synthetic ring-lesion data set under ``root``; return its ``datalist.json``.

    Caching is the lifecycle's (:func:`vkit.core.lifecycle.prepare_data`): this always writes.

    Args:
        root: folder to write into (created if missing); only ``imagesTr/``,
            ``imagesTs/`` and ``datalist.json`` are touched.
        seed: makes the data set deterministic.
        n_train, n_val, n_test: cases per split (even: classes are balanced).
        size: edge length of the cubic volumes in voxels.
        spacing: isotropic voxel size in mm written into the NIfTI affine.

    Example::

        datalist = generate_dataset(tmp_path, seed=0, n_train=20, n_val=10, n_test=10)
        entries = json.loads(datalist.read_text())["training"]
    """
    import nibabel as nib

    root = Path(root).expanduser()
    params = _params(seed, n_train, n_val, n_test, size, spacing)
    datalist_path = root / DATALIST_NAME
    try:
        root.mkdir(parents=True, exist_ok=True)
        for sub in ("imagesTr", "imagesTs"):
            shutil.rmtree(root / sub, ignore_errors=True)
            (root / sub).mkdir()
    except OSError as err:
        raise DataError(f"generate_dataset: cannot write the synthetic data set under {root}: {err}") from err
    affine = _affine(size, spacing)
    datalist: dict[str, Any] = {
        "name": "vkit synthetic ring-enhancing lesions",
        "description": "Synthetic CT-like volumes; label 1 = a ring-enhancing lesion is present.",
        "tensorImageSize": "3D",
        "modality": {"0": "CT"},
        "labels": LABEL_NAMES,
        "numTraining": n_train + n_val,
        "numTest": n_test,
        "generator": {"name": GENERATOR_NAME, "version": GENERATOR_VERSION, **params},
    }
    case = 0
    for split, count, folder in (("training", n_train, "imagesTr"), ("validation", n_val, "imagesTr"), ("test", n_test, "imagesTs")):
        split_rng = np.random.default_rng([seed, {"training": 0, "validation": 1, "test": 2}[split], 10**6])
        labels = split_rng.permutation(np.repeat([0, 1], count // 2))
        entries = []
        for label in track(labels.tolist(), f"generating {split} volumes", unit="cases"):
            case_id = f"case_{case:05d}"
            vol, _ = synthesize_volume(int(label), size, np.random.default_rng([seed, case]))
            img = nib.Nifti1Image(np.round(vol).astype(np.int16), affine)
            img.header.set_xyzt_units("mm", "sec")
            img.header["descrip"] = b"vkit synthetic CT-like volume"
            rel = f"{folder}/{case_id}.nii.gz"
            nib.save(img, str(root / rel))
            entries.append({"image": rel, "label": int(label), "case_id": case_id})
            case += 1
        datalist[split] = entries
    datalist_path.write_text(json.dumps(datalist, indent=1))
    return datalist_path
