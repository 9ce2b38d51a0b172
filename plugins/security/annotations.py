"""UCF-Crime ``Temporal_Anomaly_Annotation`` files: read and write (pure Python, no torch).

One line per video, whitespace-separated::

    Running003.mp4  Running  17  31  -1  -1
    Normal_012.mp4  Normal   -1  -1  -1  -1

``name``, ``category`` and up to two ``start end`` frame pairs (``-1`` for
none). vkit reads frame numbers as 0-based and *inclusive* at both ends
(frames ``start..end`` are anomalous); more than two pairs are accepted.

Example::

    notes = read_annotations("Temporal_Anomaly_Annotation.txt")
    notes["Running003.mp4"].intervals   # [(17, 31)]
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from vkit.core.datalist import read_text
from vkit.registry.errors import DataError


@dataclass(frozen=True)
class Annotation:
    """One annotation line: the video's file name, its category and anomalous frame intervals (inclusive)."""

    name: str
    category: str
    intervals: tuple[tuple[int, int], ...] = field(default_factory=tuple)

    def line(self) -> str:
        """The line in UCF-Crime format (at least two ``start end`` pairs, ``-1`` padded)."""
        pairs = list(self.intervals) + [(-1, -1)] * max(0, 2 - len(self.intervals))
        return "  ".join([self.name, self.category] + [f"{s}  {e}" for s, e in pairs])


def parse_line(line: str, where: str = "<string>") -> Annotation:
    """Parse one annotation line; ``where`` (``file:line``) names the place in errors."""
    parts = line.split()
    if len(parts) < 2 or (len(parts) - 2) % 2:
        raise DataError(f"{where}: expected 'name.mp4 Category start1 end1 [start2 end2 ...]', got {line.strip()!r}")
    try:
        numbers = [int(p) for p in parts[2:]]
    except ValueError as err:
        raise DataError(f"{where}: frame numbers must be integers (-1 for none), got {line.strip()!r}") from err
    intervals = []
    for start, end in zip(numbers[::2], numbers[1::2]):
        if start < 0 and end < 0:
            continue
        if start < 0 or end < start:
            raise DataError(f"{where}: bad interval ({start}, {end}) in {line.strip()!r}; expected 0 <= start <= end")
        intervals.append((start, end))
    return Annotation(parts[0], parts[1], tuple(intervals))


def read_annotations(path: str | Path) -> dict[str, Annotation]:
    """All annotations of a file by video file name; blank lines and ``#`` comments are skipped."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"annotation file {str(path)!r} does not exist")
    notes: dict[str, Annotation] = {}
    for number, line in enumerate(read_text(path).splitlines(), 1):  # UTF-8, BOM or not (vkit.core.datalist)
        if line.strip() and not line.lstrip().startswith("#"):
            note = parse_line(line, f"{path}:{number}")
            notes[note.name] = note
    return notes


def write_annotations(path: str | Path, notes: Iterable[Annotation]) -> Path:
    """Write ``notes`` one line each in UCF-Crime format; returns ``path``."""
    path = Path(path)
    path.write_text("".join(note.line() + "\n" for note in notes))
    return path


def frame_labels(intervals: Iterable[tuple[int, int]], num_frames: int) -> list[int]:
    """Per-frame 0/1 labels of a video of ``num_frames`` frames from inclusive intervals (clipped to the video)."""
    labels = [0] * num_frames
    for start, end in intervals:
        for f in range(max(0, start), min(num_frames - 1, end) + 1):
            labels[f] = 1
    return labels
