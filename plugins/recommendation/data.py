"""Interaction data: the readers of real files, the split, and the datasets the Runner iterates.

Two on-disk formats, read into one :class:`InteractionData`:

* **CSV** (:func:`read_csv`): ``interactions.csv`` with ``user_id,item_id,timestamp[,rating]``
  and optionally ``items.csv`` with ``item_id,video`` (video paths relative to
  that file; the items it lists are the catalogue, so items without any
  interaction are still ranked). The embedded data set uses this format.
* **RecBole / MMRec atomic files** (:func:`read_atomic`): a folder with
  ``<name>.inter`` (tab-separated; RecBole's typed header
  ``user_id:token  item_id:token  rating:float  timestamp:float`` or MMRec's
  plain ``userID  itemID  rating  timestamp  x_label``), optionally
  ``<name>.item`` (``item_id:token`` first: the catalogue and the row order of
  the feature arrays) and ``*.npy`` feature arrays (MMRec's ``image_feat.npy``,
  ``text_feat.npy``: row ``k`` is item ``k`` of the ``.item`` file, or item id
  ``k`` when there is none), concatenated in name order. MMRec's ``x_label``
  (0 train, 1 valid, 2 test) is used as the split.

Tables are read by :mod:`vkit.core.datalist` (UTF-8 with or without BOM).
Bad rows never crash a read: a row with a missing or non-numeric timestamp,
an empty or float id (``1.5``: neither a string nor an int id), an item the
items file does not list, or a repeat of a (user, item) pair is left out and
listed in ``problems`` (``item_id`` = ``file:row``, ``path``, ``reason``;
a :class:`~vkit.core.datalist.BadRows` that skips), which the task records as
skipped inputs. An ``items.csv`` video whose real path leaves the file's
folder (``..``, an absolute path, a symlink out) is refused unless
``VKIT_DATALIST_ALLOW_OUTSIDE=1``: the item stays in the catalogue without
a video, and the row is listed in ``problems``. Rows out of time order are
sorted (stable) and counted in ``notes``.

Example::

    data = read_csv("interactions.csv", "items.csv")
    split = split_interactions(data, mode="leave_last_out", val_per_user=1, test_per_user=3)
    split.cold_items           # items without training interactions
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vkit.core.datalist import BadRows, read_table, read_text, resolve_inside
from vkit.registry.errors import ConfigError, DataError

SPLIT_MODES = ("leave_last_out", "temporal", "predefined")


@dataclass
class InteractionData:
    """Interactions with dense indices, the item catalogue and what was wrong with the input.

    Attributes:
        user_ids, item_ids: external ids by index.
        users, items: ``(M,)`` int64 indices per interaction, sorted by user then time.
        timestamps: ``(M,)`` float64.
        item_videos: per item, the video path or ``None``.
        item_features: ``(N, D)`` precomputed features (atomic ``.npy``) or ``None``.
        item_metadata: per item, ``dict(title, tags, duration)`` or ``None`` (the optional
            ``items.csv`` columns, :mod:`~vkit.plugins.recommendation.metadata`); ``None`` when the data has none.
        labels: ``(M,)`` predefined split (0 train, 1 val, 2 test) or ``None``.
        problems: rows left out: ``dict(item_id="file:row", path, reason)``.
        notes: remarks on the input (e.g. rows sorted into time order).
    """

    user_ids: list[str]
    item_ids: list[str]
    users: np.ndarray
    items: np.ndarray
    timestamps: np.ndarray
    item_videos: list[str | None]
    item_features: np.ndarray | None = None
    labels: np.ndarray | None = None
    problems: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    item_metadata: list[dict[str, Any] | None] | None = None

    @property
    def num_users(self) -> int:
        return len(self.user_ids)

    @property
    def num_items(self) -> int:
        return len(self.item_ids)


def _check_id(value: str | None, what: str) -> str:
    """An id as a string; raises ValueError (the row's reason) for an empty or a float-looking id."""
    text = (value or "").strip()
    if not text:
        raise ValueError(f"empty {what}")
    try:
        number = float(text)
    except ValueError:
        return text
    if not math.isfinite(number) or not text.lstrip("+-").isdigit():
        raise ValueError(f"{what} {text!r} is neither a string nor an int id")
    return text


def _timestamp(value: str | None) -> float:
    try:
        stamp = float((value or "").strip())
    except ValueError:
        raise ValueError(f"timestamp {value!r} is not a number") from None
    if not math.isfinite(stamp):
        raise ValueError(f"timestamp {value!r} is not a finite number")
    return stamp


def _problem(bad: BadRows, file: Path, row: int, reason: str) -> None:
    """A row left out: ``item_id`` ``name:row``, ``reason`` naming it too (``bad`` always skips)."""
    bad.add(f"{file.name}:{row}", reason, path=str(file))


class _Builder:
    """Collects raw rows, then indexes, de-duplicates and sorts them."""

    def __init__(self, catalogue: list[str] | None) -> None:
        self.catalogue = catalogue
        self.known = {item: i for i, item in enumerate(catalogue)} if catalogue is not None else None
        self.rows: list[tuple[str, str, float, int, int]] = []  # user, item, time, label, row
        self.bad = BadRows(skip_bad=True)
        self.problems = self.bad.rows

    def add(self, file: Path, row: int, user: str | None, item: str | None, stamp: str | None, label: int = 0) -> None:
        try:
            user_id, item_id = _check_id(user, "user_id"), _check_id(item, "item_id")
            when = _timestamp(stamp)
        except ValueError as err:
            _problem(self.bad, file, row, str(err))
            return
        if self.known is not None and item_id not in self.known:
            _problem(self.bad, file, row, f"unknown item {item_id!r} (not in the items file)")
            return
        self.rows.append((user_id, item_id, when, label, row))

    def build(self, file: Path, item_videos: dict[str, str | None] | None = None,
              item_features: np.ndarray | None = None, with_labels: bool = False) -> InteractionData:
        if not self.rows:
            raise DataError(f"{file}: no usable interactions ({len(self.problems)} bad rows"
                            + (f", first: {self.problems[0]['reason']}" if self.problems else "") + ")")
        notes = []
        by_user: dict[str, float] = {}
        late = 0
        for user, _, when, _, _ in self.rows:
            late += when < by_user.get(user, -math.inf)
            by_user[user] = max(when, by_user.get(user, -math.inf))
        if late:
            notes.append(f"{file.name}: {late} row(s) out of time order within their user; sorted by timestamp")
        user_ids = sorted(by_user)
        item_ids = list(self.catalogue) if self.catalogue is not None else sorted({r[1] for r in self.rows})
        uix, iix = {u: i for i, u in enumerate(user_ids)}, {t: i for i, t in enumerate(item_ids)}
        order = sorted(range(len(self.rows)), key=lambda k: (uix[self.rows[k][0]], self.rows[k][2], k))
        seen: dict[tuple[int, int], int] = {}
        keep = []
        for k in order:
            user, item, _, _, row = self.rows[k]
            pair = (uix[user], iix[item])
            if pair in seen:
                _problem(self.bad, file, row, f"duplicate interaction of user {user!r} with item {item!r} "
                                              f"(kept the earliest, row {seen[pair]})")
                continue
            seen[pair] = row
            keep.append(k)
        rows = [self.rows[k] for k in keep]
        videos = item_videos or {}
        return InteractionData(
            user_ids=user_ids, item_ids=item_ids,
            users=np.array([uix[r[0]] for r in rows], np.int64), items=np.array([iix[r[1]] for r in rows], np.int64),
            timestamps=np.array([r[2] for r in rows], np.float64), item_videos=[videos.get(t) for t in item_ids],
            item_features=item_features, labels=np.array([r[3] for r in rows], np.int64) if with_labels else None,
            problems=self.problems, notes=notes)


def read_items_csv(path: str | Path) -> tuple[list[str], dict[str, str | None], list[dict[str, Any]]]:
    """The catalogue of an ``item_id,video`` CSV: ids in file order, ``{id: real video path}``, bad rows.

    A video whose real path leaves the file's folder is refused (``VKIT_DATALIST_ALLOW_OUTSIDE=1`` allows it):
    the item keeps its place in the catalogue without a video, and the row is a problem naming file, row and path.
    """
    bad = BadRows(skip_bad=True)
    table = read_table(path, ("item_id",), bad=bad)
    items: list[str] = []
    videos: dict[str, str | None] = {}
    for row in table.rows:
        try:
            item = _check_id(row.get("item_id"), "item_id")
        except ValueError as err:
            _problem(bad, table.file, row.number, str(err))
            continue
        if item in videos:
            _problem(bad, table.file, row.number, f"item {item!r} listed again (kept the first)")
            continue
        items.append(item)
        videos[item] = None
        if row.get("video"):
            with bad.guard(item_id=f"{table.file.name}:{row.number}", path=str(table.file)):
                videos[item] = str(resolve_inside(row["video"], table.folder, row.where, column="video"))
    if not items:
        raise DataError(f"{table.file}: no items")
    return items, videos, bad.rows


def read_csv(interactions: str | Path, items: str | Path | None = None) -> InteractionData:
    """Read ``user_id,item_id,timestamp[,rating]`` rows (and the ``item_id,video[,title,tags,duration]`` catalogue, if given)."""
    from vkit.plugins.recommendation.metadata import read_item_metadata

    catalogue, videos, item_problems = read_items_csv(items) if items is not None else (None, None, [])
    metadata, meta_problems = read_item_metadata(items) if items is not None else ({}, [])
    builder = _Builder(catalogue)
    builder.problems.extend(item_problems + meta_problems)
    table = read_table(interactions, ("user_id", "item_id", "timestamp"), bad=builder.bad)
    for row in table.rows:
        builder.add(table.file, row.number, row.get("user_id"), row.get("item_id"), row.get("timestamp"))
    data = builder.build(table.file, videos)
    if metadata:
        data.item_metadata = [metadata.get(item) for item in data.item_ids]
    return data


def _atomic_header(file: Path, line: str) -> dict[str, int]:
    """``{canonical name: column}`` of an atomic header; RecBole ``name:type`` and MMRec plain names."""
    aliases = {"userid": "user_id", "user_id": "user_id", "itemid": "item_id", "item_id": "item_id",
               "timestamp": "timestamp", "x_label": "x_label", "rating": "rating"}
    columns: dict[str, int] = {}
    for k, name in enumerate(line.rstrip("\n").split("\t")):
        base, _, kind = name.strip().partition(":")
        canonical = aliases.get(base.lower())
        if canonical in ("user_id", "item_id") and kind and kind not in ("token", "token_seq"):
            raise DataError(f"{file}: column {name!r}: ids must be tokens (e.g. '{base}:token'), not {kind!r}")
        if canonical:
            columns.setdefault(canonical, k)
    return columns


def read_atomic(folder: str | Path) -> InteractionData:
    """Read a RecBole/MMRec atomic data set folder (see the module docstring)."""
    root = Path(folder)
    inters = sorted(root.glob("*.inter")) if root.is_dir() else [root]
    if len(inters) != 1 or not inters[0].is_file():
        raise DataError(f"{root}: expected exactly one <name>.inter file, found {[p.name for p in inters]}")
    inter = inters[0]
    root = inter.parent
    catalogue = None
    item_file = inter.with_suffix(".item")
    bad = BadRows(skip_bad=True)
    if item_file.is_file():
        lines = read_text(item_file).splitlines()
        head = _atomic_header(item_file, lines[0]) if lines else {}
        if "item_id" not in head:
            raise DataError(f"{item_file}: header {lines[:1]} has no item_id column")
        catalogue = []
        for row, line in enumerate(lines[1:], start=2):
            try:
                catalogue.append(_check_id(line.split("\t")[head["item_id"]], "item_id"))
            except (ValueError, IndexError) as err:
                _problem(bad, item_file, row, str(err))
    lines = read_text(inter).splitlines()
    head = _atomic_header(inter, lines[0]) if lines else {}
    missing = [c for c in ("user_id", "item_id", "timestamp") if c not in head]
    if missing:
        raise DataError(f"{inter}: header {lines[:1]} lacks {missing}; expected e.g. "
                        "'user_id:token\\titem_id:token\\ttimestamp:float'")
    if catalogue is None and "x_label" in head:  # MMRec: integer item ids are the feature rows
        ids = {line.split("\t")[head["item_id"]].strip() for line in lines[1:] if line.strip()}
        numeric = sorted(int(i) for i in ids if i.isdigit())
        catalogue = [str(i) for i in range(numeric[-1] + 1)] if numeric else None
    builder = _Builder(catalogue)
    builder.problems.extend(bad.rows)
    labels = "x_label" in head
    for row, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        cells = line.split("\t")
        get = lambda key: cells[head[key]] if head[key] < len(cells) else None  # noqa: E731
        try:
            label = int(get("x_label")) if labels else 0
        except (TypeError, ValueError):
            _problem(builder.bad, inter, row, f"x_label {get('x_label')!r} is not 0, 1 or 2")
            continue
        builder.add(inter, row, get("user_id"), get("item_id"), get("timestamp"), label)
    features = _features(root, catalogue, builder)
    return builder.build(inter, None, features, with_labels=labels)


def _features(root: Path, catalogue: list[str] | None, builder: _Builder) -> np.ndarray | None:
    files = sorted(root.glob("*.npy"))
    if not files:
        return None
    arrays = []
    for file in files:
        array = np.load(file, allow_pickle=False)
        if array.ndim != 2:
            raise DataError(f"{file}: expected a 2-D (items, dim) feature array, got shape {array.shape}")
        arrays.append(array.astype(np.float32))
    rows = {a.shape[0] for a in arrays}
    if len(rows) != 1:
        raise DataError(f"{root}: feature arrays have different row counts {[(f.name, a.shape) for f, a in zip(files, arrays)]}")
    features = np.concatenate(arrays, 1)
    if catalogue is None:  # item id k is row k
        builder.catalogue = [str(i) for i in range(features.shape[0])]
        builder.known = {item: i for i, item in enumerate(builder.catalogue)}
    elif len(catalogue) != features.shape[0]:
        raise DataError(f"{root}: feature arrays have {features.shape[0]} rows but the catalogue has "
                        f"{len(catalogue)} items (row k must be item k)")
    return features


# ---------------------------------------------------------------------- split
@dataclass
class Split:
    """Indices of the interactions in each split, and the per-user views the models and metrics need.

    Attributes:
        train, val, test: interaction indices into :class:`InteractionData`.
        cold_items: items without a training interaction (sorted).
    """

    data: InteractionData
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    cold_items: np.ndarray

    def csr(self, part: str) -> tuple[np.ndarray, np.ndarray]:
        """``(indptr (U+1,), item indices)`` of one split, grouped by user in time order."""
        index = getattr(self, part)
        users, items = self.data.users[index], self.data.items[index]
        order = np.argsort(users, kind="stable")
        counts = np.bincount(users, minlength=self.data.num_users)
        return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64), items[order].astype(np.int64)


def split_interactions(data: InteractionData, mode: str = "leave_last_out", val_per_user: int = 1,
                       test_per_user: int = 3, val_fraction: float = 0.1, test_fraction: float = 0.1) -> Split:
    """Split interactions into train / val / test.

    Args:
        data: interactions sorted by user then time (as the readers return them).
        mode: ``'leave_last_out'`` (each user's last ``test_per_user`` interactions
            are test, the ``val_per_user`` before them val; users with too few
            interactions stay in train), ``'temporal'`` (global time cut-offs: the
            last ``test_fraction`` of time-ordered interactions are test, the
            ``val_fraction`` before val) or ``'predefined'`` (MMRec ``x_label``).
    """
    if mode not in SPLIT_MODES:
        raise ConfigError(f"data.split.mode={mode!r}; expected one of {SPLIT_MODES}")
    n = len(data.users)
    label = np.zeros(n, np.int64)
    if mode == "predefined":
        if data.labels is None:
            raise ConfigError("data.split.mode='predefined' needs an x_label column (MMRec atomic files)")
        label = data.labels
    elif mode == "leave_last_out":
        if val_per_user < 0 or test_per_user < 1:
            raise ConfigError(f"data.split: val_per_user={val_per_user}, test_per_user={test_per_user}; "
                              "expected >= 0 and >= 1")
        counts = np.bincount(data.users, minlength=data.num_users)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        from_end = counts[data.users] - 1 - (np.arange(n) - starts[data.users])  # 0 = a user's last interaction
        enough = counts[data.users] > val_per_user + test_per_user
        label[enough & (from_end < test_per_user)] = 2
        label[enough & (from_end >= test_per_user) & (from_end < test_per_user + val_per_user)] = 1
    else:
        if not (0 <= val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
            raise ConfigError(f"data.split: val_fraction={val_fraction}, test_fraction={test_fraction}; "
                              "expected fractions with val + test < 1")
        rank = np.argsort(np.argsort(data.timestamps, kind="stable"), kind="stable") / max(n, 1)
        label[rank >= 1 - test_fraction] = 2
        label[(rank >= 1 - test_fraction - val_fraction) & (rank < 1 - test_fraction)] = 1
    train = np.flatnonzero(label == 0)
    if train.size == 0:
        raise DataError(f"data.split ({mode}): no training interactions left")
    counts = np.bincount(data.items[train], minlength=data.num_items)
    return Split(data, train, np.flatnonzero(label == 1), np.flatnonzero(label == 2), np.flatnonzero(counts == 0))


# ---------------------------------------------------------------------- datasets
class PairDataset:
    """Training pairs ``dict(users=u, items=i)`` of a split (negatives are sampled by the model)."""

    def __init__(self, users: np.ndarray, items: np.ndarray) -> None:
        self.users, self.items = users.astype(np.int64), items.astype(np.int64)
        self.metainfo: dict[str, Any] = {}

    def __len__(self) -> int:
        return len(self.users)

    def __getitem__(self, index: int) -> dict[str, int]:
        return dict(users=int(self.users[index]), items=int(self.items[index]))


class UserDataset:
    """Users to rank for, ``dict(users=u, truth=held-out items padded with -1)``; ``truth``: CSR over all users."""

    def __init__(self, users: np.ndarray, truth: tuple[np.ndarray, np.ndarray]) -> None:
        self.users = users.astype(np.int64)
        self.truth = truth
        lengths = np.diff(truth[0])[self.users] if len(self.users) else np.zeros(0, np.int64)
        self.width = max(int(lengths.max()) if len(lengths) else 0, 1)
        self.metainfo: dict[str, Any] = {}

    def __len__(self) -> int:
        return len(self.users)

    def __getitem__(self, index: int) -> dict[str, Any]:
        import torch

        u = int(self.users[index])
        held = self.truth[1][self.truth[0][u]:self.truth[0][u + 1]]
        truth = torch.full((self.width,), -1, dtype=torch.long)
        truth[:len(held)] = torch.as_tensor(held, dtype=torch.long)
        return dict(users=u, truth=truth)


def user_dataset(split: Split, part: str) -> UserDataset:
    """Users with at least one interaction in ``part`` (``'val'``/``'test'``) and that split's CSR."""
    indptr, indices = split.csr(part)
    users = np.flatnonzero(np.diff(indptr) > 0)
    return UserDataset(users, (indptr, indices))
