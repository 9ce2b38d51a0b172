"""One reader for data tables (CSV/JSON datalists): encoding, header, paths, splits and bad rows.

Every vertical reads its tables through this module, so they all behave alike:

* **Encoding**: UTF-8 with or without a byte-order mark (Excel writes one); any other encoding is a
  :class:`DataError` naming the file, the byte offset and the line (:func:`read_text`).
* **Header**: cells are stripped; a missing required column is an error naming the file and the column
  (:func:`read_table`). A row with more cells than the header is a bad row; blank rows are skipped.
* **Paths**: a path in a table is relative to the table's folder, and its *resolved real path* (symlinks
  followed, ``..`` folded, absolute paths too) must lie inside that folder, unless
  ``VKIT_DATALIST_ALLOW_OUTSIDE=1`` (:func:`resolve_inside`): a shared table must not make vkit read arbitrary files.
* **Splits**: a table without a ``split`` column is split 70/15/15 into ``train``/``val``/``test`` by a
  stable hash of a key (a learner, a patient, a case: :func:`stable_split`), the same on every machine.
* **Bad rows**: one collector (:class:`BadRows`): without ``skip_bad`` the first bad row raises a
  :class:`DataError` naming the file, the row and the reason; with it (``--skip-bad``) every bad row is kept
  with its reason, ready for :meth:`vkit.core.task.RunContext.record_skipped`.

Example::

    from vkit.core.datalist import BadRows, read_table, resolve_inside

    table = read_table("clips.csv", required=("path", "level"))
    bad = BadRows(skip_bad=True)
    clips = []
    for row in table.rows:
        with bad.guard(item_id=row["path"]):
            clips.append(resolve_inside(row["path"], table.folder, row.where))
    bad.rows   # [{"item_id": "../x.mp4", "path": "", "reason": "clips.csv:3: path '../x.mp4' is outside ..."}]
"""
from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vkit.registry.errors import DataError

#: Set to ``1`` to let table entries point outside the table's folder.
ALLOW_OUTSIDE_ENV = "VKIT_DATALIST_ALLOW_OUTSIDE"
#: The splits :func:`stable_split` returns, with their shares in percent.
SPLIT_SHARES = {"train": 70, "val": 15, "test": 15}
_UTF16 = {codecs.BOM_UTF16_LE: "UTF-16 LE", codecs.BOM_UTF16_BE: "UTF-16 BE"}


# ---------------------------------------------------------------------- text
def read_text(path: str | Path) -> str:
    """The text of a regular file in UTF-8, with or without a byte-order mark (which is dropped).

    Raises:
        DataError: naming the file when it is missing, not a regular file (a FIFO, a device, a folder)
            or not UTF-8 (with the byte offset and line of the first bad byte).

    Example::

        read_text("users.txt").splitlines()[0]   # "u0001", also when Excel saved the file with a BOM
    """
    file = Path(path)
    if not file.exists():
        raise DataError(f"{file}: no such file")
    if not file.is_file():
        raise DataError(f"{file}: not a regular file (a folder, FIFO or device); expected a UTF-8 table")
    try:
        data = file.read_bytes()
    except OSError as err:
        raise DataError(f"{file}: cannot read ({err.strerror or err})") from err
    for bom, name in _UTF16.items():
        if data.startswith(bom):
            raise DataError(f"{file}: {name} text (byte-order mark at byte 0); save it as UTF-8 (with or without BOM)")
    start = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        return data[start:].decode("utf-8")
    except UnicodeDecodeError as err:
        offset = start + err.start
        line = data[:offset].count(b"\n") + 1
        raise DataError(f"{file}: not UTF-8: byte {offset} (line {line}) is {data[offset:offset + 1]!r}; "
                        "save it as UTF-8 (with or without BOM)") from None


def read_json(path: str | Path) -> Any:
    """A JSON document read with :func:`read_text`; a syntax error names the file, line and column.

    Example::

        read_json("datalist.json")["training"][0]["image"]
    """
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: invalid JSON at line {err.lineno} column {err.colno}: {err.msg}") from err


# ---------------------------------------------------------------------- tables
@dataclass(frozen=True)
class Row:
    """One data row: its file, the line it starts on (the header is line 1) and its stripped cells by column."""

    file: Path
    number: int
    values: dict[str, str]

    @property
    def where(self) -> str:
        """``file:line``, the prefix of every message about this row."""
        return f"{self.file}:{self.number}"

    def __getitem__(self, column: str) -> str:
        return self.values[column]

    def get(self, column: str, default: str = "") -> str:
        """The cell of ``column``, ``default`` when the table has no such column or the row is short."""
        return self.values.get(column, default)


@dataclass
class Table:
    """A CSV table: its file, its stripped header and its rows (blank rows and bad rows left out)."""

    file: Path
    header: list[str]
    rows: list[Row] = field(default_factory=list)

    @property
    def folder(self) -> Path:
        """The folder paths in the table are relative to (and must stay inside)."""
        return self.file.parent


def read_table(path: str | Path, required: Sequence[str] = (), *, bad: BadRows | None = None) -> Table:
    """Read a CSV (UTF-8, BOM or not) with a header; check the ``required`` columns.

    A short row gets ``""`` for its missing cells; a row with more (non-empty) cells than the header is a bad
    row (raised, or recorded in ``bad`` when it skips bad rows).

    Raises:
        DataError: naming the file (encoding, empty file, missing column, invalid CSV) or the row.

    Example::

        table = read_table("interactions.csv", ("user_id", "item_id", "timestamp"))
        [row["user_id"] for row in table.rows]
    """
    file = Path(path)
    reader = csv.reader(io.StringIO(read_text(file), newline=""))
    bad = bad if bad is not None else BadRows()
    try:
        header = [cell.strip() for cell in next(reader, [])]
        if not any(header):
            raise DataError(f"{file}: empty; expected a CSV header with {list(required)}")
        missing = [column for column in required if column not in header]
        if missing:
            raise DataError(f"{file}: missing column(s) {missing}; expected a header with {list(required)}, got {header}")
        table = Table(file, header)
        line = reader.line_num + 1
        for cells in reader:
            number, line = line, reader.line_num + 1
            cells = [cell.strip() for cell in cells]
            if not any(cells):
                continue
            if any(cells[len(header):]):
                bad.add(f"{file}:{number}", f"expected {len(header)} columns ({','.join(header)}), got {len(cells)}",
                        path=str(file))
                continue
            table.rows.append(Row(file, number, dict(zip(header, cells + [""] * (len(header) - len(cells))))))
    except csv.Error as err:
        raise DataError(f"{file}:{reader.line_num}: not valid CSV: {err}") from err
    return table


# ---------------------------------------------------------------------- paths
def allow_outside(flag: bool | None = None) -> bool:
    """``flag`` when given, else whether ``$VKIT_DATALIST_ALLOW_OUTSIDE`` is ``1``."""
    return os.environ.get(ALLOW_OUTSIDE_ENV, "") == "1" if flag is None else bool(flag)


def resolve_inside(value: str | Path, folder: str | Path, where: str, *, column: str = "path",
                   allowed: bool | None = None) -> Path:
    """The real path of a table's ``value`` (relative to ``folder``), refused when it lies outside ``folder``.

    Symlinks are followed and ``..`` folded before the check, so a link inside the folder pointing
    elsewhere is refused like ``../x`` or ``/elsewhere/x``.

    Args:
        value: the path as written in the table.
        folder: the data folder (the table's folder).
        where: ``file:row`` for the message.
        column: the column's name for the message.
        allowed: accept paths outside (default: ``$VKIT_DATALIST_ALLOW_OUTSIDE == "1"``).

    Raises:
        DataError: ``"<where>: <column> '<value>' is outside the datalist's folder <folder>; refused ..."``.

    Example::

        resolve_inside("img/a.nii.gz", "/data", "/data/list.csv:2", column="image")   # Path("/data/img/a.nii.gz")
    """
    text = str(value).strip()
    written = Path(text).expanduser()
    real = Path(os.path.realpath(written if written.is_absolute() else Path(folder) / written))
    root = Path(os.path.realpath(folder))
    if allow_outside(allowed) or real == root or root in real.parents:
        return real
    raise DataError(
        f"{where}: {column} {text!r} is outside the datalist's folder {root}; refused: it resolves to {real} "
        f"(a shared datalist must not make vkit read arbitrary files). Move the data under that folder, "
        f"or allow it explicitly: {ALLOW_OUTSIDE_ENV}=1")


# ---------------------------------------------------------------------- splits
def stable_split(key: str) -> str:
    """``train`` (70 %), ``val`` (15 %) or ``test`` (15 %) from a sha256 of ``key``: the same everywhere.

    Example::

        stable_split("learner07")   # always the same split for this learner
    """
    bucket = int(hashlib.sha256(str(key).encode()).hexdigest()[:8], 16) % 100
    return "test" if bucket < SPLIT_SHARES["test"] else "val" if bucket < 100 - SPLIT_SHARES["train"] else "train"


# ---------------------------------------------------------------------- bad rows
class BadRows:
    """The bad rows of a read: without ``skip_bad`` the first raises; with it each is kept with its reason.

    Each kept row is ``dict(item_id, path, reason)`` (what ``RunContext.record_skipped`` stores).

    Args:
        skip_bad: keep going past bad rows (``--skip-bad``).

    Example::

        bad = BadRows(skip_bad=True)
        bad.add("clips.csv:4", "level 'high' is not a number")
        with bad.guard(item_id="a.mp4"):
            raise DataError("clips.csv:5: a.mp4: too short")
        [r["reason"] for r in bad.rows]   # ["clips.csv:4: level 'high' is not a number", "clips.csv:5: a.mp4: too short"]
    """

    def __init__(self, skip_bad: bool = False) -> None:
        self.skip_bad = bool(skip_bad)
        self.rows: list[dict[str, Any]] = []

    def add(self, where: str, reason: str, *, item_id: str | None = None, path: str = "") -> None:
        """A bad row at ``where`` (``file:row``): raise ``DataError("<where>: <reason>")``, or keep it when skipping."""
        message = f"{where}: {reason}"
        if not self.skip_bad:
            raise DataError(message)
        self.rows.append(dict(item_id=item_id or where, path=path, reason=message))

    @contextmanager
    def guard(self, item_id: str, path: str = "") -> Iterator[None]:
        """Run one row's checks: a :class:`DataError` inside is re-raised, or kept (its message as the reason)."""
        try:
            yield
        except DataError as err:
            if not self.skip_bad:
                raise
            self.rows.append(dict(item_id=item_id, path=path, reason=str(err)))

    def __len__(self) -> int:
        return len(self.rows)


__all__ = ["ALLOW_OUTSIDE_ENV", "SPLIT_SHARES", "BadRows", "Row", "Table", "allow_outside", "read_json",
           "read_table", "read_text", "resolve_inside", "stable_split"]
