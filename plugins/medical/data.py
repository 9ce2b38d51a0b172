"""Medical scans through MONAI: datalists, transform pipelines and the ``MedicalVolumeDataset``.

Reading is MONAI's (``LoadImaged`` with ``NibabelReader`` for NIfTI, ``PydicomReader`` for a
DICOM series folder, plus :class:`CineReader` — a MONAI ``ImageReader`` over PyAV — for
``.mp4``/``.avi`` cine loops whose frames become the depth axis). A sample is::

    {"inputs": {"volume": float32 tensor (C, D, H, W)}, "label": int, "case_id": str, "path": str (the scan's file)}

Example::

    from vkit.plugins.medical.data import MedicalVolumeDataset
    ds = MedicalVolumeDataset("data/datalist.json", "training", transforms=dict(size=32), cache="memory")
    sample = ds[0]
"""
from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from vkit.core.datalist import ALLOW_OUTSIDE_ENV, SPLIT_SHARES, BadRows, read_json, read_table, resolve_inside, stable_split
from vkit.plugins.medical.cine import CINE_SUFFIXES
from vkit.registry.errors import ConfigError, DataError, did_you_mean

if TYPE_CHECKING:
    from monai.transforms import Compose, LoadImaged

#: What moved to :mod:`vkit.plugins.medical.monai_io` (MONAI subclasses), still importable from here.
_MONAI_IO = ("CineReader", "DicomSeriesReader", "CheckVolumed")


def __getattr__(name: str) -> Any:
    """MONAI is imported when a scan is read or a pipeline built, not with this module (registration stays light)."""
    if name in _MONAI_IO:
        from vkit.plugins.medical import monai_io

        return getattr(monai_io, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


#: Splits whose cases need no label (inference on unlabelled scans).
PREDICTION_SPLITS = ("predict", "prediction")
_KEY = "image"

#: Default transform config; ``build_transforms`` accepts any subset of these keys.
DEFAULT_TRANSFORMS: dict[str, Any] = dict(
    size=(32, 32, 32),  # output (D, H, W) in voxels; an int means a cube
    spacing=None,  # resample to this voxel size in mm first, e.g. (1.5, 1.5, 1.5); None keeps the file's
    orientation="RAS",  # reorient axes (None keeps the file's)
    fit="resize",  # "resize" (interpolate to size) or "crop_pad" (centre crop / pad to size)
    channels=1,  # channels every volume must have after loading
    intensity=dict(mode="auto"),  # from the data: see choose_intensity (or "range", "percentiles", "normalize")
    augment=dict(enabled=True, flip_prob=0.5, rot90_prob=0.25, scale_prob=0.5, scale=0.1, shift_prob=0.5, shift=0.1),
)
#: The soft-tissue CT window (Hounsfield units) ``mode="auto"`` picks for CT data.
CT_WINDOW: dict[str, Any] = dict(mode="range", a_min=-200.0, a_max=300.0, b_min=0.0, b_max=1.0, clip=True)
#: Per-scan percentiles (MONAI ``ScaleIntensityRangePercentilesd``): ``mode="auto"`` for data that is not CT.
PERCENTILE_WINDOW: dict[str, Any] = dict(mode="percentiles", lower=0.5, upper=99.5, b_min=0.0, b_max=1.0, clip=True,
                                         channel_wise=False)
_INTENSITY_KEYS = {
    "auto": {"mode"},
    "range": set(CT_WINDOW),
    "percentiles": set(PERCENTILE_WINDOW),
    "normalize": {"mode", "nonzero", "channel_wise"},
}
_AIR_HU = -500.0  # a scan whose 1st percentile is at or below this reaches air: Hounsfield units


# ---------------------------------------------------------------------------- datalists
def _case_id(entry: Mapping[str, Any], image: str) -> str:
    for key in ("case_id", "id"):
        if entry.get(key) not in (None, ""):
            return str(entry[key])
    name = Path(image.rstrip("/\\")).name
    for suffix in (".nii.gz", ".nii", ".dcm", *CINE_SUFFIXES):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _parse_label(value: Any, where: str) -> int | None:
    """An int class label from JSON/CSV (``1``, ``"1"``, ``1.0``); ``None`` when absent."""
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return None
    if isinstance(value, bool):
        raise DataError(f"{where}: label must be a non-negative int class index, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise DataError(
            f"{where}: label must be a non-negative int class index, got {value!r}"
            " (a path here means a segmentation datalist; vkit expects classification labels)"
        ) from None
    if not number.is_integer() or number < 0:
        raise DataError(f"{where}: label must be a non-negative int class index, got {value!r}")
    return int(number)


def _read_json(path: Path, split: str) -> list[dict[str, Any]]:
    doc = read_json(path)
    if not isinstance(doc, dict):
        raise DataError(f"datalist {path}: expected a JSON object with split keys, got {type(doc).__name__}")
    if split not in doc:
        splits = [k for k, v in doc.items() if isinstance(v, list)]
        raise DataError(f"datalist {path}: no split {split!r}{did_you_mean(split, splits)}; splits in the file: {splits}")
    items = doc[split]
    if not isinstance(items, list):
        raise DataError(f"datalist {path}: split {split!r} must be a list of cases, got {type(items).__name__}")
    rows = []
    for i, item in enumerate(items):
        if isinstance(item, str):  # Decathlon "test" lists may be plain paths
            item = {"image": item}
        if not isinstance(item, dict) or not isinstance(item.get("image"), str) or not item["image"]:
            raise DataError(f"datalist {path}: {split}[{i}] must be an object with an 'image' path, got {item!r}")
        rows.append(dict(item, _where=f"datalist {path}: {split}[{i}]"))
    return rows


def _split_name(split: str) -> str:
    """``training``/``validation`` (the Decathlon keys) as :func:`~vkit.core.datalist.stable_split` names them."""
    return {"training": "train", "validation": "val"}.get(split, split)


def _read_csv(path: Path, split: str, bad: BadRows, hash_split: bool = True) -> tuple[list[dict[str, Any]], str | None]:
    """Rows of ``split`` and, when the CSV has no ``split`` column, a note saying how rows were split."""
    malformed = BadRows(bad.skip_bad)  # rows without a split of their own: reported once, with the training split
    table = read_table(path, ("image",), bad=malformed)
    if _split_name(split) == "train" or not hash_split:
        bad.rows.extend(malformed.rows)
    rows = [dict(row.values, _where=f"datalist {row.where}") for row in table.rows]
    if "split" in table.header:
        splits = sorted({row["split"] for row in rows})
        rows = [row for row in rows if row["split"] == split]
        if not rows:
            raise DataError(f"datalist {path}: no rows with split {split!r}{did_you_mean(split, splits)}; splits in the file: {splits}")
        return rows, None
    if not hash_split:
        return rows, None
    if _split_name(split) not in SPLIT_SHARES:
        raise DataError(f"datalist {path}: no 'split' column, so rows are split 70/15/15 into training/validation/test "
                        f"by a stable hash; split {split!r} is none of them")
    mine = [row for row in rows if stable_split(row.get("patient") or _case_id(row, row["image"])) == _split_name(split)]
    note = (f"{path.name} has no 'split' column: its {len(rows)} cases are split 70/15/15 into training/validation/test "
            f"by a stable hash of the {'patient' if 'patient' in table.header else 'case id'}")
    return mine, note


def _read_entries(path: Path | str, split: str, allow_outside: bool | None = None, bad: BadRows | None = None,
                  hash_split: bool = True) -> tuple[list[dict[str, Any]], str | None]:
    """Cases of ``split`` as ``{image (real path), label (int|None), case_id, _where}``, and the split note.

    Structural errors raise; a bad row (an image outside the datalist's folder, a bad label) raises unless
    ``bad`` skips bad rows. An image whose real path (symlinks followed) leaves the datalist's folder
    (``../../etc/passwd``, ``/elsewhere/x.nii``, a link out) is refused unless ``allow_outside`` (default:
    ``$VKIT_DATALIST_ALLOW_OUTSIDE == "1"``): a shared datalist must not make vkit read arbitrary files.
    """
    bad = bad if bad is not None else BadRows()
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"datalist {path}: file not found (expected a Decathlon-style .json or an image,label .csv)")
    suffix = path.suffix.lower()
    note = None
    if suffix == ".json":
        rows = _read_json(path, split)
    elif suffix == ".csv":
        rows, note = _read_csv(path, split, bad, hash_split)
    else:
        raise DataError(f"datalist {path}: unsupported suffix {suffix!r}; expected .json (Decathlon) or .csv (image,label)")
    entries = []
    for row in rows:
        image = str(row["image"]).strip()
        with bad.guard(item_id=_case_id(row, image), path=image):
            if not image:
                raise DataError(f"{row['_where']}: empty 'image' path")
            entries.append({
                "image": str(resolve_inside(image, path.parent, row["_where"], column="image", allowed=allow_outside)),
                "label": _parse_label(row.get("label"), row["_where"]),
                "case_id": _case_id(row, image),
                "_where": row["_where"],
            })
    return entries, note


def _entry_problem(entry: Mapping[str, Any], require_label: bool, num_classes: int | None) -> str | None:
    """Why a case cannot be used (missing file, missing/out-of-range label), or ``None``."""
    if require_label and entry["label"] is None:
        return "case has no label"
    if num_classes is not None and entry["label"] is not None and entry["label"] >= num_classes:
        return f"label {entry['label']} is out of range for num_classes={num_classes}"
    if not Path(entry["image"]).exists():
        return "image file not found"
    return None


def load_datalist(
    path: Path | str, split: str, *, require_label: bool | None = None, num_classes: int | None = None,
    allow_outside: bool | None = None, hash_split: bool = True,
) -> list[dict[str, Any]]:
    """Read one split of a datalist: ``[{"image": real path, "label": int | None, "case_id": str}]``.

    Tables are read by :mod:`vkit.core.datalist` (UTF-8 with or without BOM, one path rule).

    Args:
        path: a Decathlon-style JSON (``{"training": [{"image": ..., "label": 0}], ...}``;
            plain path strings allowed) or a CSV with an ``image,label[,split,case_id,patient]``
            header. A ``split`` column selects rows; without it rows are split 70/15/15 into
            ``training``/``validation``/``test`` by a stable hash of the ``patient`` (or the case id),
            so no case is in two splits. Relative image paths are relative to the datalist's folder.
        split: the JSON key / CSV split value, e.g. ``"training"``, ``"validation"``, ``"test"``.
        require_label: demand a label on every case; default: yes unless ``split`` is
            ``"predict"``/``"prediction"``.
        num_classes: when given, labels must be below it.
        allow_outside: accept images outside the datalist's folder (default: refused
            unless ``$VKIT_DATALIST_ALLOW_OUTSIDE`` is ``1``).
        hash_split: ``False`` reads every row of a CSV without a ``split`` column (prediction).

    Raises:
        DataError: naming the datalist, the case and the problem (missing file, no label,
            bad JSON/CSV, unknown split, an image outside the datalist's folder).

    Example::

        cases = load_datalist("data/datalist.json", "validation")
    """
    if require_label is None:
        require_label = split not in PREDICTION_SPLITS
    cases = []
    for entry in _read_entries(path, split, allow_outside, hash_split=hash_split)[0]:
        problem = _entry_problem(entry, require_label, num_classes)
        if problem:
            raise DataError(f"{entry['_where']}: {problem}: {entry['image']}")
        cases.append({k: v for k, v in entry.items() if k != "_where"})
    return cases


# ---------------------------------------------------------------------------- transforms
def _merge_config(cfg: Mapping[str, Any] | None) -> dict[str, Any]:
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in DEFAULT_TRANSFORMS.items()}
    for key, value in (cfg or {}).items():
        if key not in DEFAULT_TRANSFORMS:
            raise ConfigError(f"transforms.{key}: unknown key{did_you_mean(key, DEFAULT_TRANSFORMS)}; known: {sorted(DEFAULT_TRANSFORMS)}")
        if key == "augment" and isinstance(value, bool):
            value = dict(out["augment"], enabled=value)
        elif key == "augment" and isinstance(value, Mapping):
            unknown = set(value) - set(DEFAULT_TRANSFORMS["augment"])
            if unknown:
                bad = sorted(unknown)[0]
                raise ConfigError(f"transforms.augment.{bad}: unknown key{did_you_mean(bad, DEFAULT_TRANSFORMS['augment'])}")
            value = dict(out["augment"], **value)
        elif key == "intensity" and isinstance(value, Mapping):
            mode = value.get("mode", "range")
            if mode not in _INTENSITY_KEYS:
                raise ConfigError(f"transforms.intensity.mode: expected one of {sorted(_INTENSITY_KEYS)}, got {mode!r}"
                                  f"{did_you_mean(str(mode), _INTENSITY_KEYS)}")
            unknown = set(value) - _INTENSITY_KEYS[mode]
            if unknown:
                raise ConfigError(f"transforms.intensity: keys {sorted(unknown)} do not apply to mode {mode!r}; allowed: {sorted(_INTENSITY_KEYS[mode])}")
            defaults = {"range": CT_WINDOW, "percentiles": PERCENTILE_WINDOW}.get(mode, {})
            value = {**defaults, **value, "mode": mode}
        out[key] = value
    size = out["size"]
    size = (size,) * 3 if isinstance(size, int) else tuple(size)
    if len(size) != 3 or not all(isinstance(s, int) and s > 0 for s in size):
        raise ConfigError(f"transforms.size: expected a positive int or 3 positive ints (D, H, W), got {out['size']!r}")
    out["size"] = size
    if out["fit"] not in ("resize", "crop_pad"):
        raise ConfigError(f"transforms.fit: expected 'resize' or 'crop_pad', got {out['fit']!r}")
    spacing = out["spacing"]
    if spacing is not None:
        spacing = (float(spacing),) * 3 if isinstance(spacing, (int, float)) else tuple(float(s) for s in spacing)
        if len(spacing) != 3 or min(spacing) <= 0:
            raise ConfigError(f"transforms.spacing: expected None, a positive number or 3 positive numbers (mm), got {out['spacing']!r}")
        out["spacing"] = spacing
    if not isinstance(out["intensity"], Mapping):
        raise ConfigError(f"transforms.intensity: expected a dict with 'mode', got {out['intensity']!r}")
    return out


def _loader() -> LoadImaged:
    from monai.transforms import LoadImaged

    from vkit.plugins.medical.monai_io import CineReader, DicomSeriesReader

    # MONAI builds its optional GPU DICOM reader too and warns (log + warning) that nvImageCodec is absent.
    probe_log = logging.getLogger("monai.data.nvimgcodec_pydicom_plugin")
    level = probe_log.level
    probe_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            load = LoadImaged(keys=_KEY, image_only=True)
    finally:
        probe_log.setLevel(level)
    load.register(DicomSeriesReader())
    load.register(CineReader())
    return load


def read_scan(path: str | Path) -> np.ndarray:
    """One scan as the dataset reads it (NIfTI, DICOM series folder or ``.dcm``, cine loop), untransformed, float32.

    NIfTI and DICOM come back in their file's axis order (x, y, z[, t]); a cine loop as (frames, height, width).
    Used by the run report for a case's thumbnail. Raises :class:`DataError` naming the file.
    """
    try:
        data = _loader()({_KEY: str(path)})[_KEY]
    except Exception as err:  # MONAI and its readers raise many types
        raise DataError(f"{path}: cannot read the scan: {_reason(err)}") from err
    return np.asarray(data, dtype=np.float32)


def _intensity_step(inten: Mapping[str, Any]) -> Callable:
    """The MONAI intensity transform of a merged ``intensity`` config (``auto`` unresolved: per-scan percentiles)."""
    from monai.transforms import NormalizeIntensityd, ScaleIntensityRanged, ScaleIntensityRangePercentilesd

    if inten["mode"] == "range":
        return ScaleIntensityRanged(_KEY, a_min=inten["a_min"], a_max=inten["a_max"], b_min=inten["b_min"],
                                    b_max=inten["b_max"], clip=inten["clip"])
    if inten["mode"] == "normalize":
        return NormalizeIntensityd(_KEY, nonzero=inten.get("nonzero", False), channel_wise=inten.get("channel_wise", True))
    p = PERCENTILE_WINDOW if inten["mode"] == "auto" else inten
    return ScaleIntensityRangePercentilesd(_KEY, lower=p["lower"], upper=p["upper"], b_min=p["b_min"], b_max=p["b_max"],
                                           clip=p["clip"], channel_wise=p["channel_wise"])


def _dicom_modality(path: str) -> str | None:
    """The ``Modality`` of a DICOM file or of the first ``.dcm`` of a series folder (header only), or ``None``."""
    folder = Path(path)
    files = sorted(folder.glob("*.dcm")) if folder.is_dir() else [folder] if path.lower().endswith(".dcm") else []
    if not files:
        return None
    import pydicom

    try:
        return str(pydicom.dcmread(str(files[0]), stop_before_pixels=True).get("Modality", "") or "") or None
    except Exception:  # an unreadable header: the data decides
        return None


def choose_intensity(images: Sequence[str], tries: int = 3) -> tuple[dict[str, Any], str]:
    """The intensity window ``mode="auto"`` resolves to, from the data, and a sentence saying why.

    The first readable of the first ``tries`` scans decides: CT (a DICOM header with ``Modality`` CT, or
    values reaching air, 1st percentile <= -500, i.e. Hounsfield units) gets :data:`CT_WINDOW`;
    anything else (MR, cine loops, 0..1000 or 0..255 data) gets per-scan percentiles
    (:data:`PERCENTILE_WINDOW`, MONAI ``ScaleIntensityRangePercentilesd``), which saturate no more
    than 0.5 % of a scan's voxels at either end.

    Example::

        window, why = choose_intensity(["scan1.nii.gz"])   # (CT_WINDOW, "CT window -200..300 HU: ...")
    """
    percentiles = ("per-scan percentiles {lower}..{upper} to 0..1 (MONAI ScaleIntensityRangePercentilesd)"
                   .format(**PERCENTILE_WINDOW))
    for image in list(images)[:tries]:
        modality = _dicom_modality(str(image))
        ct = f"CT window {CT_WINDOW['a_min']:g}..{CT_WINDOW['a_max']:g} HU to 0..1"
        if modality == "CT":
            return dict(CT_WINDOW), f"{ct}: the DICOM header says Modality CT"
        if modality:
            return dict(PERCENTILE_WINDOW), f"{percentiles}: the DICOM header says Modality {modality}"
        try:
            low = float(np.percentile(read_scan(image), 1))
        except DataError:
            continue
        if low <= _AIR_HU:
            return dict(CT_WINDOW), f"{ct}: values reach air ({low:g}), so they are Hounsfield units"
        return dict(PERCENTILE_WINDOW), f"{percentiles}: the values (1st percentile {low:g}) are not Hounsfield units"
    return dict(PERCENTILE_WINDOW), f"{percentiles}: no scan could be read to look at"


def build_transforms(cfg: Mapping[str, Any] | None = None, *, train: bool = False) -> Compose:
    """MONAI dictionary pipeline over key ``"image"`` from a config (see :data:`DEFAULT_TRANSFORMS`).

    Load (NIfTI / DICOM series folder / cine loop) → channel first → 3-D check →
    orientation → optional spacing → intensity (``range``: ScaleIntensityRanged,
    ``percentiles``: ScaleIntensityRangePercentilesd, ``normalize``: NormalizeIntensityd; ``auto``, the
    default, is resolved from the data by :class:`MedicalVolumeDataset` with :func:`choose_intensity`,
    and means per-scan percentiles here) → resize or centre crop + pad to ``size`` →
    (train and ``augment.enabled``) random flips, 90° rotations, intensity scale/shift →
    float32 tensor.

    Args:
        cfg: overrides of :data:`DEFAULT_TRANSFORMS`; unknown keys are a ConfigError.
            ``augment`` may be a bool. For cine loops (0..255) use
            ``intensity=dict(mode="range", a_min=0, a_max=255)`` or ``dict(mode="normalize")``.
        train: add the random augmentations.

    Example::

        tf = build_transforms(dict(size=48, spacing=1.5, augment=False), train=True)
        sample = tf({"image": "scan.nii.gz"})["image"]  # (1, 48, 48, 48)
    """
    from monai.transforms import (CenterSpatialCropd, Compose, EnsureChannelFirstd, EnsureTyped, Orientationd,
                                  RandFlipd, RandRotate90d, RandScaleIntensityd, RandShiftIntensityd, Resized, Spacingd,
                                  SpatialPadd)

    from vkit.plugins.medical.monai_io import CheckVolumed

    c = _merge_config(cfg)
    steps: list[Callable] = [_loader(), EnsureChannelFirstd(_KEY), CheckVolumed(_KEY, c["channels"])]
    if c["orientation"]:
        steps.append(Orientationd(_KEY, axcodes=c["orientation"], labels=(("L", "R"), ("P", "A"), ("I", "S"))))
    if c["spacing"]:
        steps.append(Spacingd(_KEY, pixdim=c["spacing"], mode="bilinear"))
    steps.append(_intensity_step(c["intensity"]))
    if c["fit"] == "resize":
        steps.append(Resized(_KEY, spatial_size=c["size"], mode="trilinear"))
    else:
        steps += [CenterSpatialCropd(_KEY, roi_size=c["size"]), SpatialPadd(_KEY, spatial_size=c["size"])]
    aug = c["augment"]
    if train and aug["enabled"]:
        steps += [RandFlipd(_KEY, prob=aug["flip_prob"], spatial_axis=axis) for axis in (0, 1, 2)]
        steps += [
            RandRotate90d(_KEY, prob=aug["rot90_prob"], max_k=3, spatial_axes=(0, 1)),
            RandScaleIntensityd(_KEY, factors=aug["scale"], prob=aug["scale_prob"]),
            RandShiftIntensityd(_KEY, offsets=aug["shift"], prob=aug["shift_prob"]),
        ]
    steps.append(EnsureTyped(_KEY, dtype=torch.float32, track_meta=False))
    return Compose(steps)


# ---------------------------------------------------------------------------- dataset
def _reason(err: BaseException) -> str:
    """The innermost meaningful message of an exception chain (MONAI wraps errors in RuntimeError)."""
    seen: list[BaseException] = []
    node: BaseException | None = err
    while node is not None and node not in seen:
        seen.append(node)
        if isinstance(node, DataError):
            return str(node)
        node = node.__cause__ or node.__context__
    inner = seen[-1]
    text = str(inner).strip().splitlines()[0] if str(inner).strip() else ""
    return f"{type(inner).__name__}: {text}" if text else type(inner).__name__


def _header_problem(path: str) -> str | None:
    """A cheap check that reads only the NIfTI header; ``None`` for other formats or a plausible file."""
    if not path.lower().endswith((".nii", ".nii.gz")):
        return None
    import nibabel as nib

    try:
        shape = nib.load(path).shape
    except Exception as err:  # nibabel raises many types for a bad header
        return f"unreadable NIfTI header: {_reason(err)}"
    spatial = shape[:3] if len(shape) == 4 else shape
    if len(spatial) != 3 or min(spatial) < 2:
        return f"expected a 3-D volume, got shape {tuple(shape)}"
    return None


class MedicalVolumeDataset(torch.utils.data.Dataset):
    """Labelled 3-D scans (NIfTI, DICOM series folders, cine loops) from a datalist, through MONAI.

    Args:
        datalist: path of a JSON/CSV datalist (see :func:`load_datalist`) or cases already
            read (``[{"image", "label", "case_id"}]``).
        split: which split to read (``"training"`` also turns augmentation on by default).
        transforms: a MONAI ``Compose``/callable, a config dict for :func:`build_transforms`,
            or ``None`` for the defaults.
        train: add random augmentations (default: ``split == "training"``); ignored when
            ``transforms`` is a callable.
        cache: ``"none"``; ``"memory"`` (MONAI ``CacheDataset``: the deterministic
            transforms run once); ``"persistent"`` (MONAI ``PersistentDataset`` in
            ``cache_dir``, read back with ``torch.load(weights_only=True)``).
        cache_dir: folder for ``cache="persistent"``.
        skip_bad: check every case once up front (a bad datalist row, missing label or file,
            NIfTI header, then a full read through the loading transforms) and drop bad ones;
            they are listed in :attr:`skipped` as ``{"case", "path", "reason"}``. Without it, a bad
            case raises a :class:`DataError` naming the file when it is first read.
        require_label: default: yes unless ``split`` is ``"predict"``/``"prediction"``;
            unlabelled cases then get ``label = -1``.
        num_classes: when given, labels must be below it.
        cache_workers: threads MONAI's ``CacheDataset`` uses to fill the cache.
        seed: seeds the random augmentations (default: ``torch.initial_seed()``, so a
            seeded run is reproducible); each DataLoader worker reseeds them from its
            own ``worker_info.seed`` so workers do not repeat each other.
        allow_outside: accept datalist images outside the datalist's folder (see :func:`load_datalist`).
        hash_split: ``False`` reads every row of a CSV without a ``split`` column (prediction);
            by default such a CSV is split 70/15/15 by a stable hash and :attr:`split_note` says so.

    Attributes set here: ``intensity`` (the intensity config used: ``mode="auto"`` resolved by
    :func:`choose_intensity` from this split's scans) and ``intensity_source`` (a sentence saying where it
    came from), ``split_note`` (``None`` unless the CSV had no ``split`` column), ``skipped``.

    Example::

        ds = DATASETS.build(dict(type="MedicalVolumeDataset", datalist="data/datalist.json",
                                 split="validation", transforms=dict(size=32), cache="memory"))
        ds[0]["inputs"]["volume"].shape  # torch.Size([1, 32, 32, 32])
    """

    CACHE_MODES = ("none", "memory", "persistent")

    @classmethod
    def smoke_config(cls) -> dict[str, Any]:
        """Build arguments over a 6-case synthetic data set in a temporary folder (``vkit plugins check``)."""
        import tempfile

        from vkit.plugins.medical.synthetic import generate_dataset

        root = Path(tempfile.mkdtemp(prefix="vkit-medical-smoke-"))
        datalist = generate_dataset(root, n_train=2, n_val=2, n_test=2, size=24)
        return dict(datalist=str(datalist), split="training", transforms=dict(size=16))

    def __init__(
        self,
        datalist: str | Path | Sequence[Mapping[str, Any]],
        split: str = "training",
        transforms: Callable | Mapping[str, Any] | None = None,
        *,
        train: bool | None = None,
        cache: str = "none",
        cache_dir: str | Path | None = None,
        skip_bad: bool = False,
        require_label: bool | None = None,
        num_classes: int | None = None,
        cache_workers: int = 0,
        seed: int | None = None,
        allow_outside: bool | None = None,
        hash_split: bool = True,
    ) -> None:
        from monai.data import CacheDataset, PersistentDataset
        from monai.data import Dataset as MonaiDataset
        from monai.transforms import Compose

        if cache not in self.CACHE_MODES:
            raise ConfigError(f"MedicalVolumeDataset.cache: expected one of {self.CACHE_MODES}, got {cache!r}{did_you_mean(str(cache), self.CACHE_MODES)}")
        if cache == "persistent" and not cache_dir:
            raise ConfigError("MedicalVolumeDataset.cache_dir: required when cache='persistent' (a folder for MONAI's PersistentDataset)")
        if num_classes is not None and (not isinstance(num_classes, int) or num_classes < 2):
            raise ConfigError(f"MedicalVolumeDataset.num_classes: expected an int >= 2, got {num_classes!r}")
        self.split = split
        self.require_label = split not in PREDICTION_SPLITS if require_label is None else require_label
        self.train = split == "training" if train is None else train
        self.source = str(datalist) if isinstance(datalist, (str, Path)) else "<cases>"
        bad = BadRows(skip_bad)
        entries, self.split_note = self._entries(datalist, split, allow_outside, bad, hash_split)
        self.skipped: list[dict[str, str]] = [dict(case=r["item_id"], path=r["path"], reason=r["reason"]) for r in bad.rows]
        self.intensity: dict[str, Any] | None = None
        self.intensity_source = "the given transforms"
        self.transforms = transforms if callable(transforms) else self._build_transforms(transforms, entries)
        self.seed = torch.initial_seed() % 2**32 if seed is None else int(seed)
        self._seeded_worker: int | None = None
        if isinstance(self.transforms, Compose):
            self.transforms.set_random_state(seed=self.seed)
        self.cases = self._check_all(entries, num_classes) if skip_bad else self._check_strict(entries, num_classes)
        data = [{_KEY: c["image"], "label": c["label"], "case_id": c["case_id"]} for c in self.cases]
        try:
            if cache == "memory":
                self._data = CacheDataset(data, self.transforms, num_workers=cache_workers or None, progress=False)
            elif cache == "persistent":
                Path(cache_dir).mkdir(parents=True, exist_ok=True)  # type: ignore[arg-type]
                self._data = PersistentDataset(data, self.transforms, cache_dir=cache_dir)
            else:
                self._data = MonaiDataset(data, self.transforms)
        except Exception as err:  # CacheDataset reads every case here
            raise DataError(f"{self.source} ({split}): cannot cache the cases: {_reason(err)}") from err

    def _build_transforms(self, cfg: Mapping[str, Any] | None, entries: list[dict[str, Any]]) -> Compose:
        """:func:`build_transforms`, with ``intensity.mode="auto"`` resolved from these cases' scans."""
        merged = _merge_config(cfg)
        if merged["intensity"]["mode"] == "auto":
            merged["intensity"], self.intensity_source = choose_intensity([e["image"] for e in entries])
        else:
            self.intensity_source = f"configured: transforms.intensity mode {merged['intensity']['mode']!r}"
        self.intensity = merged["intensity"]
        return build_transforms(dict(cfg or {}, intensity=merged["intensity"]), train=self.train)

    @staticmethod
    def _entries(datalist: Any, split: str, allow_outside: bool | None, bad: BadRows,
                 hash_split: bool) -> tuple[list[dict[str, Any]], str | None]:
        if isinstance(datalist, (str, Path)):
            return _read_entries(datalist, split, allow_outside, bad, hash_split)
        entries = []
        for i, case in enumerate(datalist):
            if not isinstance(case, Mapping) or "image" not in case:
                raise DataError(f"cases[{i}]: expected a dict with 'image', got {case!r}")
            where = f"cases[{i}]"
            entries.append({"image": str(case["image"]), "label": _parse_label(case.get("label"), where),
                            "case_id": _case_id(case, str(case["image"])), "_where": where})
        return entries, None

    def _check_strict(self, entries: list[dict[str, Any]], num_classes: int | None) -> list[dict[str, Any]]:
        for entry in entries:
            problem = _entry_problem(entry, self.require_label, num_classes)
            if problem:
                raise DataError(f"{entry['_where']}: {problem}: {entry['image']}")
        return [self._public(e) for e in entries]

    def _check_all(self, entries: list[dict[str, Any]], num_classes: int | None) -> list[dict[str, Any]]:
        from monai.transforms import Compose

        load = Compose(self._load_steps())
        kept = []
        for entry in entries:
            problem = _entry_problem(entry, self.require_label, num_classes) or _header_problem(entry["image"])
            if problem is None:
                try:
                    load({_KEY: entry["image"]})
                except Exception as err:
                    problem = _reason(err)
            if problem:
                self.skipped.append({"case": entry["case_id"], "path": entry["image"], "reason": problem})
            else:
                kept.append(self._public(entry))
        return kept

    def _load_steps(self) -> list[Callable]:
        """The loading prefix of the pipeline (up to the 3-D check), for the up-front full read."""
        from monai.transforms import EnsureChannelFirstd

        from vkit.plugins.medical.monai_io import CheckVolumed

        steps = list(getattr(self.transforms, "transforms", []))
        for i, step in enumerate(steps):
            if isinstance(step, CheckVolumed):
                return steps[: i + 1]
        return [_loader(), EnsureChannelFirstd(_KEY), CheckVolumed(_KEY)]

    @staticmethod
    def _public(entry: Mapping[str, Any]) -> dict[str, Any]:
        label = entry["label"]
        return {"image": entry["image"], "label": -1 if label is None else label, "case_id": entry["case_id"]}

    @property
    def metainfo(self) -> dict[str, Any]:
        """What mmengine's Runner may log about the data set."""
        return {"split": self.split, "num_cases": len(self.cases), "num_skipped": len(self.skipped), "source": self.source}

    def __len__(self) -> int:
        return len(self.cases)

    def __getitem__(self, index: int) -> dict[str, Any]:
        case = self.cases[index]
        worker = torch.utils.data.get_worker_info()
        if worker is not None and self._seeded_worker != worker.id and hasattr(self.transforms, "set_random_state"):
            self.transforms.set_random_state(seed=worker.seed % 2**32)
            self._seeded_worker = worker.id
        try:
            item = self._data[index]
        except Exception as err:
            raise DataError(f"{case['image']} (case {case['case_id']!r}, {self.source} {self.split}): {_reason(err)}") from err
        volume = item[_KEY]
        volume = volume.as_tensor() if hasattr(volume, "as_tensor") else torch.as_tensor(volume)
        return {"inputs": {"volume": volume.to(torch.float32).contiguous()}, "label": int(case["label"]),
                "case_id": case["case_id"], "path": str(case["image"])}
