"""Engagement data: the DAiSEE layout, a plain CSV, per-clip side signals, and the dataset the model trains on.

Readers return :class:`ClipItem` lists; :class:`EngagementClips` decodes them
(``num_frames`` frames evenly over each clip, resized to ``size``) into the
contract's samples ``dict(inputs={"video": (C, T, H, W)[, "signals": (D, 1, 1, 1)]}, label, case_id, path)``
(``C`` = 3 by default: the frame-to-frame RGB difference; 6 with RGB too, see :func:`to_model_input`).

* **DAiSEE** (``read_daisee``): ``DataSet/{Train,Validation,Test}/<subject>/<clip>/<clip>.avi``
  and ``Labels/{Train,Validation,Test}Labels.csv`` with ``ClipID,Boredom,Engagement,Confusion,Frustration``
  (the engagement column is the level; header cells are stripped: DAiSEE writes ``"Frustration "``).
* **CSV** (``read_csv``): ``path,level[,learner,session,start,split]``; paths relative to the CSV, and their
  real paths must stay inside its folder (:func:`vkit.core.datalist.resolve_inside`);
  ``split`` is ``train``/``val``/``test``; without that column rows are split by learner (by path when there
  is no learner column), 70/15/15 by a stable hash (:func:`vkit.core.datalist.stable_split`), so a learner is
  never in two splits.

Tables are read by :mod:`vkit.core.datalist` (UTF-8 with or without BOM; bad rows through ``BadRows``).
* **Side signals** (``read_side_signals``): ``ClipID`` (or ``clip``/``path``) then numeric columns, one row per clip.

Example::

    items = read_daisee("/data/DAiSEE", "train")
    ds = EngagementClips(items, num_frames=16, size=32)
    ds[0]["inputs"]["video"].shape        # (3, 16, 32, 32): frame-to-frame RGB differences
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from vkit.core.datalist import BadRows, read_table, resolve_inside, stable_split
from vkit.registry.errors import DataError

NUM_LEVELS = 4
LEVEL_NAMES = ("very low", "low", "high", "very high")
DAISEE_SPLITS = {"train": "Train", "val": "Validation", "test": "Test"}
VIDEO_SUFFIXES = (".avi", ".mp4", ".mkv", ".mov", ".webm")


@dataclass
class ClipItem:
    """One labelled clip: where it is, its level and who/when it shows (all but ``path`` optional)."""

    clip_id: str
    path: Path
    level: int | None
    learner: str = ""
    session: str = ""
    start: float = 0.0
    source: str = ""  # "<csv file>:<row>" for error messages
    extra: dict[str, Any] = field(default_factory=dict)


def clip_key(value: str) -> str:
    """A clip's id: its path without the extension, ``/``-separated (``a/b.mp4`` → ``a/b``)."""
    return PurePosixPath(str(value).replace("\\", "/")).with_suffix("").as_posix()


def _level(value: Any, where: str) -> int:
    try:
        number = float(str(value).strip())
    except ValueError:
        raise DataError(f"{where}: level {value!r} is not a number; expected an integer 0-3") from None
    if number != int(number) or not 0 <= number < NUM_LEVELS:
        raise DataError(f"{where}: level {value!r} is outside 0-3 (DAiSEE's very low, low, high, very high)")
    return int(number)


def _daisee_clip(folder: Path, clip_file: str) -> Path | None:
    """``<folder>/<clip>/<clip>.<ext>`` for DAiSEE's ClipID (which carries an extension, sometimes the wrong one)."""
    stem = Path(clip_file).stem
    exact = folder / stem / clip_file
    if exact.is_file():
        return exact
    for suffix in VIDEO_SUFFIXES:
        candidate = folder / stem / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def read_daisee(root: str | Path, split: str, *, skip_bad: bool = False,
                skipped: list[dict[str, Any]] | None = None) -> list[ClipItem]:
    """Clips of one DAiSEE split (``train``, ``val``, ``test``) with their engagement level.

    Args:
        root: the folder holding ``DataSet/`` and ``Labels/``; a clip whose real path leaves it is a bad row.
        split: ``train``, ``val`` or ``test``.
        skip_bad: record a row whose clip is missing or whose level is bad in ``skipped`` instead of raising.
        skipped: where skipped rows go (``dict(item_id, path, reason)``).
    """
    if split not in DAISEE_SPLITS:
        raise DataError(f"DAiSEE split {split!r}: expected one of {list(DAISEE_SPLITS)}")
    root = Path(root)
    name = DAISEE_SPLITS[split]
    bad = BadRows(skip_bad)
    table = read_table(root / "Labels" / f"{name}Labels.csv", ("ClipID", "Engagement"), bad=bad)
    folder = root / "DataSet" / name
    if not folder.is_dir():
        raise DataError(f"{folder}: missing; a DAiSEE root holds DataSet/{name}/<subject>/<clip>/<clip>.avi")
    subjects = {p.name for p in folder.iterdir() if p.is_dir()}
    items = []
    for row in table.rows:
        clip_file = row["ClipID"]
        stem = Path(clip_file).stem
        with bad.guard(item_id=f"{split}/{stem}", path=str(folder)):
            level = _level(row["Engagement"], f"{row.where} (ClipID {clip_file})")
            subject = next((s for s in (stem[:6], stem[:7]) if s in subjects), None)
            path = _daisee_clip(folder / subject, clip_file) if subject else None
            if path is None:
                raise DataError(f"{row.where}: clip {clip_file!r} not found under {folder}/<subject>/{stem}/")
            resolve_inside(path, root, row.where, column="ClipID")
            items.append(ClipItem(clip_id=stem, path=path, level=level, learner=subject or "", session=split,
                                  source=row.where,
                                  extra={k: row.get(k) for k in ("Boredom", "Confusion", "Frustration")}))
    if skipped is not None:
        skipped.extend(bad.rows)
    return items


def read_csv(path: str | Path, split: str | None = None, *, require_level: bool = True, skip_bad: bool = False,
             skipped: list[dict[str, Any]] | None = None) -> list[ClipItem]:
    """Clips listed in a plain CSV ``path,level[,learner,session,start,split]`` (paths relative to the CSV).

    A clip whose real path (symlinks followed) leaves the CSV's folder is a bad row unless
    ``VKIT_DATALIST_ALLOW_OUTSIDE=1`` (:func:`vkit.core.datalist.resolve_inside`).

    Args:
        path: the CSV file (UTF-8 with or without BOM).
        split: keep rows of this split (the ``split`` column, else :func:`~vkit.core.datalist.stable_split`
            of the learner, or the path); ``None``: every row.
        require_level: a row without a level is an error (``False`` for prediction).
        skip_bad, skipped: as :func:`read_daisee`.
    """
    path = Path(path)
    bad = BadRows(skip_bad)
    malformed = BadRows(skip_bad)  # rows too broken to have a split: reported once, with the train split
    table = read_table(path, ("path", "level") if require_level else ("path",), bad=malformed)
    if split in (None, "train"):
        bad.rows.extend(malformed.rows)
    items = []
    for row in table.rows:
        own = row.get("split") if "split" in table.header else stable_split(row.get("learner") or row["path"])
        if split is not None and own != split:
            continue
        where = row.where
        with bad.guard(item_id=row["path"], path=row["path"]):
            clip = resolve_inside(row["path"], path.parent, where)
            level = _level(row["level"], where) if row.get("level") != "" else None
            if level is None and require_level:
                raise DataError(f"{where}: empty level; expected an integer 0-3")
            try:
                start = float(row.get("start") or 0.0)
            except ValueError:
                raise DataError(f"{where}: start {row.get('start')!r} is not a number of seconds") from None
            items.append(ClipItem(clip_id=clip_key(row["path"]), path=clip, level=level,
                                  learner=row.get("learner"), session=row.get("session"), start=start, source=where))
    if skipped is not None:
        skipped.extend(bad.rows)
    return items


def read_side_signals(path: str | Path) -> tuple[list[str], dict[str, np.ndarray]]:
    """``(column names, {clip id: float32 values})`` of a side-signal CSV keyed by ``ClipID``, ``clip`` or ``path``.

    Clip ids are matched by :func:`clip_key` (``1100011002.avi`` → ``1100011002``).
    """
    table = read_table(path)
    key = next((k for k in ("ClipID", "clip", "path") if k in table.header), None)
    if key is None:
        raise DataError(f"{path}: missing the clip column; expected 'ClipID', 'clip' or 'path' first (got {table.header})")
    columns = [h for h in table.header if h != key]
    if not columns:
        raise DataError(f"{path}: no signal columns besides {key!r}")
    values = {}
    for row in table.rows:
        try:
            values[clip_key(row[key])] = np.array([float(row[c]) for c in columns], np.float32)
        except ValueError:
            raise DataError(f"{row.where}: expected numbers in {columns}, got {[row.get(c) for c in columns]}") from None
    return columns, values


INPUTS = ("rgb", "rgb+diff", "diff")


def to_model_input(frames: np.ndarray, channels: str = "diff") -> Any:
    """``(T, H, W, 3)`` uint8 frames → a float ``(C, T, H, W)`` tensor: temporal differences, RGB, or both.

    ``"diff"`` gives the frame-to-frame RGB differences (TSN's *RGB difference* modality; the first frame's
    difference is 0), so a small 3-D CNN sees motion directly; ``"rgb"`` the frames (0..255); ``"rgb+diff"``
    both, as 6 channels.
    """
    import torch

    if channels not in INPUTS:
        raise DataError(f"data.channels: expected one of {INPUTS}, got {channels!r}")
    video = torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2).float()
    if channels == "rgb":
        return video
    diff = torch.cat([torch.zeros_like(video[:, :1]), video[:, 1:] - video[:, :-1]], dim=1)
    return diff if channels == "diff" else torch.cat([video, diff])


def input_norm(channels: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``(mean, std)`` per channel for :func:`to_model_input`'s output (the data preprocessor's ``video`` entry)."""
    rgb, diff = ((127.5,) * 3, (64.0,) * 3), ((0.0,) * 3, (16.0,) * 3)
    parts = {"rgb": [rgb], "diff": [diff], "rgb+diff": [rgb, diff]}[channels]
    return tuple(v for p in parts for v in p[0]), tuple(v for p in parts for v in p[1])


def load_clip(path: Path, num_frames: int, size: int) -> np.ndarray:
    """``(num_frames, size, size, 3)`` uint8 RGB sampled evenly over the clip (``FrameSampler("uniform")``, mmaction2's
    TSN test sampling); ``DataError`` when unreadable or too short."""
    from vkit.core.sampling import FrameSampler
    from vkit.core.video import probe

    info = probe(path)
    if info.frames < num_frames:
        raise DataError(f"{path}: too short: {info.frames} frames, the sampler needs {num_frames} (data.num_frames)")
    return FrameSampler("uniform", 1, num_frames).read(path, (size, size), info=info)[0]


class EngagementClips:
    """Decoded clips with levels (and optional side signals), held in memory as ``uint8``.

    Args:
        items: the clips (from :func:`read_daisee` or :func:`read_csv`).
        num_frames: frames sampled per clip (``T``).
        size: frame height and width.
        signals: ``(columns, {clip id: values})`` from :func:`read_side_signals`, or ``None``.
        signal_stats: ``(mean, std)`` to standardise the signals (defaults to these items' own).
        channels: ``"diff"`` (default), ``"rgb+diff"`` or ``"rgb"``: see :func:`to_model_input`.
        augment: random horizontal flips (training).
        oversample: repeat clips of rare levels so each level gets about ``n / num_levels ** 0.5`` draws
            per epoch (square-root balancing).
        skip_bad: record unreadable/short clips and clips without signals in :attr:`skipped` instead of raising.
        loader: ``(path, num_frames, size) -> frames``, :func:`load_clip` by default.
    """

    def __init__(self, items: Sequence[ClipItem], num_frames: int = 16, size: int = 32,
                 signals: tuple[list[str], dict[str, np.ndarray]] | None = None,
                 signal_stats: tuple[np.ndarray, np.ndarray] | None = None, channels: str = "diff", augment: bool = False,
                 oversample: bool = False, skip_bad: bool = False,
                 loader: Callable[[Path, int, int], np.ndarray] = load_clip) -> None:
        if channels not in INPUTS:
            raise DataError(f"data.channels: expected one of {INPUTS}, got {channels!r}")
        self.channels = channels
        self.skipped: list[dict[str, Any]] = []
        self.items: list[ClipItem] = []
        clips, values = [], []
        for item in items:
            try:
                if signals is not None and item.clip_id not in signals[1]:
                    raise DataError(f"{item.path}: no row for clip {item.clip_id!r} in the side-signal CSV")
                clips.append(loader(item.path, num_frames, size))
            except DataError as err:
                if not skip_bad:
                    raise DataError(f"{err}" + (f" (listed at {item.source})" if item.source else "")) from err
                self.skipped.append(dict(item_id=item.clip_id, path=str(item.path), reason=str(err)))
                continue
            self.items.append(item)
            if signals is not None:
                values.append(signals[1][item.clip_id])
        self.frames = np.stack(clips) if clips else np.zeros((0, num_frames, size, size, 3), np.uint8)
        self.signal_columns = list(signals[0]) if signals is not None else []
        self.signals = np.stack(values).astype(np.float32) if values else None
        if self.signals is not None:
            mean, std = signal_stats if signal_stats is not None else (self.signals.mean(0), self.signals.std(0))
            self.signal_stats = (np.asarray(mean, np.float32), np.maximum(np.asarray(std, np.float32), 1e-6))
        else:
            self.signal_stats = None
        self.augment = augment
        self.labels = [it.level for it in self.items]
        self.index = self._oversampled() if oversample else list(range(len(self.items)))

    def _oversampled(self) -> list[int]:
        labels = np.asarray([-1 if v is None else v for v in self.labels])
        counts = np.bincount(labels[labels >= 0], minlength=NUM_LEVELS)
        present = counts > 0
        target = np.sqrt(counts * counts[present].max())  # halfway (geometrically) between each count and the largest
        index: list[int] = []
        for level in np.flatnonzero(present):
            members = np.flatnonzero(labels == level)
            reps = int(round(target[level]))
            index += [int(members[i % len(members)]) for i in range(reps)]
        return sorted(index)

    @property
    def metainfo(self) -> dict[str, Any]:
        """mmengine's dataset meta: the level names."""
        return dict(classes=LEVEL_NAMES)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, Any]:
        import torch

        k = self.index[i]
        item = self.items[k]
        frames = self.frames[k]
        if self.augment and torch.rand(()) < 0.5:
            frames = frames[:, :, ::-1]
        video = to_model_input(frames, self.channels)
        inputs = {"video": video}
        if self.signals is not None:
            mean, std = self.signal_stats
            inputs["signals"] = torch.from_numpy((self.signals[k] - mean) / std).view(-1, 1, 1, 1)
        return dict(inputs=inputs, label=-1 if item.level is None else int(item.level), case_id=item.clip_id,
                    path=str(item.path))


def side_signal_refusal(owner: str, signals: str, command: str, reason: str) -> str:
    """The error for a side-signal model given to ``vkit predict``/``vkit score``: what to run instead."""
    return (f"{owner}: this model fuses per-clip side signals ({signals}), which `{command}` cannot supply ({reason}). "
            "Train a video-only model on the same data - the same `vkit run education-engagement ...` without "
            "`--set side_signals.csv=...` - and pass that run to --checkpoint; this run's test metrics stay in the "
            "store (`vkit runs show RUN`).")
