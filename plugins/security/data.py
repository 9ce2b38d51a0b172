"""UCF-Crime-style folders as one data set class (real archives and the embedded generator alike).

Layout read by :func:`discover` (names as in UCF-Crime)::

    root/Anomaly-Videos*/<Category>/*.mp4          # anomalous videos (video label 1)
    root/Normal_Videos*/**/*.mp4                   # normal videos (label 0); also Training*Normal*/, Testing*Normal*/
    root/Temporal_Anomaly_Annotation*.txt          # frame intervals of (test) videos
    root/Anomaly_Train.txt, root/Anomaly_Test.txt  # optional split lists (one relative path per line)

Videos are matched to annotations and split lists by file name. Without split
lists, annotated videos are the test split and the others the train split
(UCF-Crime annotates only its test videos).

Example::

        test = DATASETS.build(dict(type="AnomalyVideoDataset", root="/data/UCF_Crimes", split="test"))
    test[0]   # {'path': ..., 'name': 'Arrest001_x264.mp4', 'label': 1, 'category': 'Arrest', 'intervals': [...]}
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from vkit.core.datalist import read_text
from vkit.plugins.security.annotations import Annotation, read_annotations
from vkit.registry.errors import ConfigError, DataError
from vkit.registry.registries import DATASETS

ANOMALY_GLOBS = ("Anomaly-Videos*/*/*.mp4",)
NORMAL_GLOBS = ("Normal_Videos*/**/*.mp4", "Training*Normal*/**/*.mp4", "Testing*Normal*/**/*.mp4")
SPLITS = ("train", "test")


@dataclass(frozen=True)
class VideoRecord:
    """One video: where it is, its video-level label and category, its annotated intervals and split."""

    path: str
    name: str
    label: int
    category: str
    intervals: tuple[tuple[int, int], ...]
    split: str


def _find(root: Path, patterns: tuple[str, ...]) -> list[Path]:
    found: dict[str, Path] = {}
    for pattern in patterns:
        for path in root.glob(pattern):
            found.setdefault(str(path), path)
    return sorted(found.values())


def _read_list(path: Path) -> set[str]:
    if not path.is_file():
        raise DataError(f"split list {str(path)!r} does not exist")
    return {Path(line.strip()).name for line in read_text(path).splitlines() if line.strip()}  # BOM or not


def _resolve(root: Path, value: str | Path | None, default_glob: str) -> Path | None:
    if value is not None:
        path = Path(value) if Path(value).is_absolute() else root / value
        if not path.is_file():
            raise DataError(f"{str(path)!r} does not exist (under data root {str(root)!r})")
        return path
    matches = sorted(root.glob(default_glob))
    return matches[0] if matches else None


def discover(root: str | Path, annotation: str | Path | None = None, train_list: str | Path | None = None,
             test_list: str | Path | None = None) -> list[VideoRecord]:
    """Every video under ``root`` as a :class:`VideoRecord`, sorted by path.

    Args:
        root: the UCF-Crime-style folder.
        annotation: the temporal annotation file (default: ``root/Temporal_Anomaly_Annotation*.txt``).
        train_list, test_list: split lists (default: ``root/Anomaly_Train.txt`` / ``Anomaly_Test.txt`` if present).
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data.root: {str(root)!r} is not a folder")
    anomalous, normal = _find(root, ANOMALY_GLOBS), _find(root, NORMAL_GLOBS)
    if not anomalous or not normal:
        raise DataError(f"data.root {str(root)!r}: found {len(anomalous)} anomalous ({ANOMALY_GLOBS}) and "
                        f"{len(normal)} normal ({NORMAL_GLOBS}) .mp4 videos; need at least one of each")
    note_path = _resolve(root, annotation, "Temporal_Anomaly_Annotation*.txt")
    notes: dict[str, Annotation] = read_annotations(note_path) if note_path else {}
    train_path = _resolve(root, train_list, "Anomaly_Train.txt")
    test_path = _resolve(root, test_list, "Anomaly_Test.txt")
    train_names = _read_list(train_path) if train_path else None
    test_names = _read_list(test_path) if test_path else None
    records = []
    for label, paths in ((1, anomalous), (0, normal)):
        for path in paths:
            split = _split(path.name, notes, train_names, test_names)
            if split is None:
                continue
            note = notes.get(path.name)
            category = path.parent.name if label else "Normal"
            intervals = note.intervals if note else ()
            records.append(VideoRecord(str(path), path.name, label, category, intervals, split))
    return sorted(records, key=lambda r: r.path)


def _split(name: str, notes: dict[str, Annotation], train: set[str] | None, test: set[str] | None) -> str | None:
    if train is None and test is None:
        return "test" if name in notes else "train"
    if test is not None and name in test:
        return "test"
    if train is not None and name in train:
        return "train"
    if train is None:  # only a test list: the rest is train
        return "train"
    return None


class AnomalyVideoDataset:
    """The videos of one split of a UCF-Crime-style folder; items are :class:`VideoRecord` dicts.

    Args:
        root: the folder (see the module docstring for its layout).
        split: ``'train'``, ``'test'`` or ``None`` for all videos.
        annotation, train_list, test_list: see :func:`discover`.

    A test split must have frame intervals for its anomalous videos (a
    :class:`DataError` names the first one without).
    """

    @classmethod
    def smoke_config(cls) -> dict[str, Any]:
        """Build arguments over a 4-video synthetic data set in a temporary folder (``vkit plugins check``)."""
        import tempfile

        from vkit.plugins.security.synthetic import generate

        root = Path(tempfile.mkdtemp(prefix="vkit-security-smoke-"))
        generate(root, seed=0, num_normal=2, num_anomalous=2, test_fraction=0.5)
        return dict(root=str(root), split="train")

    def __init__(self, root: str | Path, split: str | None = "train", annotation: str | Path | None = None,
                 train_list: str | Path | None = None, test_list: str | Path | None = None) -> None:
        if split is not None and split not in SPLITS:
            raise ConfigError(f"AnomalyVideoDataset: split={split!r}; expected one of {SPLITS} or None")
        self.root, self.split = Path(root), split
        self.records = [r for r in discover(root, annotation, train_list, test_list) if split in (None, r.split)]
        if not self.records:
            raise DataError(f"AnomalyVideoDataset: no {split} videos under {str(root)!r}")
        if split == "test":
            missing = [r.name for r in self.records if r.label == 1 and not r.intervals]
            if missing:
                raise DataError(f"AnomalyVideoDataset: anomalous test video {missing[0]!r} has no frame intervals in "
                                f"the annotation file ({len(missing)} such); frame-level metrics need them")

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return asdict(self.records[index])

    def labels(self) -> list[int]:
        """Video-level labels in order."""
        return [r.label for r in self.records]
