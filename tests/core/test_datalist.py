"""core/datalist: the one table reader every vertical uses (issue 21 items 4, 11; issue 22 item 4)."""
from __future__ import annotations

import codecs
import os
from pathlib import Path

import pytest

from vkit.core.datalist import (
    ALLOW_OUTSIDE_ENV,
    BadRows,
    read_json,
    read_table,
    read_text,
    resolve_inside,
    stable_split,
)
from vkit.registry.errors import DataError


@pytest.fixture(autouse=True)
def _refuse_outside(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ALLOW_OUTSIDE_ENV, raising=False)


# ---------------------------------------------------------------------- text
def test_utf8_with_and_without_bom_read_the_same(tmp_path: Path) -> None:
    plain, bom = tmp_path / "plain.csv", tmp_path / "bom.csv"
    plain.write_bytes("user_id\nu0001\nzoë\n".encode())
    bom.write_bytes(codecs.BOM_UTF8 + "user_id\nu0001\nzoë\n".encode())
    assert read_text(bom) == read_text(plain) == "user_id\nu0001\nzoë\n"
    assert read_table(bom, ("user_id",)).header == ["user_id"]  # not '\ufeffuser_id'


def test_another_encoding_names_the_file_byte_and_line(tmp_path: Path) -> None:
    latin = tmp_path / "latin.csv"
    latin.write_bytes("path,level\nok.mp4,1\nzo\xeb.mp4,2\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin.csv: not UTF-8: byte 22 \(line 3\) is b'\\xeb'; save it as UTF-8"):
        read_text(latin)
    utf16 = tmp_path / "excel16.csv"
    utf16.write_bytes("path,level\n".encode("utf-16"))
    with pytest.raises(DataError, match=r"excel16.csv: UTF-16 LE text .*save it as UTF-8"):
        read_table(utf16)


def test_only_regular_files_are_read(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)  # reading it would block forever
    with pytest.raises(DataError, match=r"pipe.csv: not a regular file"):
        read_text(fifo)
    with pytest.raises(DataError, match=r"gone.csv: no such file"):
        read_text(tmp_path / "gone.csv")


def test_json_errors_name_file_line_and_column(tmp_path: Path) -> None:
    (tmp_path / "dl.json").write_bytes(codecs.BOM_UTF8 + b'{"training": [1]}')
    assert read_json(tmp_path / "dl.json") == {"training": [1]}
    (tmp_path / "bad.json").write_text('{\n  "training": [,]\n}')
    with pytest.raises(DataError, match=r"bad.json: invalid JSON at line 2 column 16"):
        read_json(tmp_path / "bad.json")


# ---------------------------------------------------------------------- tables
def test_header_checks_name_the_file_and_the_missing_column(tmp_path: Path) -> None:
    table = tmp_path / "clips.csv"
    table.write_text(" path , level \na.mp4,1\n")
    assert read_table(table, ("path", "level")).header == ["path", "level"]  # cells stripped
    with pytest.raises(DataError, match=r"clips.csv: missing column\(s\) \['learner'\]; expected a header with"):
        read_table(table, ("path", "learner"))
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match=r"empty.csv: empty; expected a CSV header"):
        read_table(tmp_path / "empty.csv", ("path",))


def test_rows_carry_their_line_blank_rows_skipped_short_rows_padded(tmp_path: Path) -> None:
    table = tmp_path / "t.csv"
    table.write_text('path,level,learner\na.mp4,1,ann\n\n"multi\nline.mp4",2,bob\nc.mp4,3\n')
    rows = read_table(table, ("path",)).rows
    assert [(r.number, r["path"], r.get("learner")) for r in rows] == [
        (2, "a.mp4", "ann"), (4, "multi\nline.mp4", "bob"), (6, "c.mp4", "")]
    assert rows[2].where == f"{table}:6"


def test_a_row_with_too_many_cells_raises_or_is_collected(tmp_path: Path) -> None:
    table = tmp_path / "t.csv"
    table.write_text("image,label\na.nii.gz,0\nb.nii.gz,1,extra\nc.nii.gz,1\n")
    with pytest.raises(DataError, match=r"t.csv:3: expected 2 columns \(image,label\), got 3"):
        read_table(table)
    bad = BadRows(skip_bad=True)
    assert [r["image"] for r in read_table(table, bad=bad).rows] == ["a.nii.gz", "c.nii.gz"]
    assert bad.rows == [dict(item_id=f"{table}:3", path=str(table), reason=f"{table}:3: expected 2 columns (image,label), got 3")]


# ---------------------------------------------------------------------- bad rows
def test_bad_rows_raise_the_first_without_skip_bad_and_collect_all_with_it() -> None:
    strict = BadRows()
    with pytest.raises(DataError, match=r"^clips.csv:4: level 'high' is not a number$"):
        strict.add("clips.csv:4", "level 'high' is not a number")
    with pytest.raises(DataError, match="too short"), strict.guard(item_id="a.mp4"):
        raise DataError("clips.csv:5: a.mp4: too short")
    kept = BadRows(skip_bad=True)
    kept.add("clips.csv:4", "level 'high' is not a number", item_id="b.mp4", path="/d/b.mp4")
    with kept.guard(item_id="a.mp4", path="/d/a.mp4"):
        raise DataError("clips.csv:5: a.mp4: too short")
    assert len(kept) == 2 and kept.rows == [
        dict(item_id="b.mp4", path="/d/b.mp4", reason="clips.csv:4: level 'high' is not a number"),
        dict(item_id="a.mp4", path="/d/a.mp4", reason="clips.csv:5: a.mp4: too short")]


# ---------------------------------------------------------------------- paths
@pytest.fixture
def data(tmp_path: Path) -> Path:
    """``data/clips/a.mp4``, ``outside/secret.mp4``, a link inside pointing out and one pointing inside."""
    (tmp_path / "data" / "clips").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (tmp_path / "data" / "clips" / "a.mp4").write_bytes(b"a")
    (tmp_path / "outside" / "secret.mp4").write_bytes(b"s")
    (tmp_path / "data" / "out.mp4").symlink_to(tmp_path / "outside" / "secret.mp4")
    (tmp_path / "data" / "in.mp4").symlink_to(tmp_path / "data" / "clips" / "a.mp4")
    return tmp_path / "data"


def test_paths_inside_the_data_folder_resolve_to_their_real_path(data: Path) -> None:
    real = data / "clips" / "a.mp4"
    assert resolve_inside("clips/a.mp4", data, "t.csv:2") == real
    assert resolve_inside(str(real), data, "t.csv:2") == real  # absolute, inside
    assert resolve_inside("clips/../clips/a.mp4", data, "t.csv:2") == real
    assert resolve_inside("in.mp4", data, "t.csv:2") == real  # a link that stays inside


@pytest.mark.parametrize("value", ["../outside/secret.mp4", "clips/../../outside/secret.mp4", "out.mp4", "ABSOLUTE"])
def test_paths_leaving_the_data_folder_are_refused_naming_row_and_path(data: Path, value: str,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    value = str(data.parent / "outside" / "secret.mp4") if value == "ABSOLUTE" else value
    with pytest.raises(DataError) as err:
        resolve_inside(value, data, "list.csv:7", column="video")
    message = str(err.value)
    assert message.startswith(f"list.csv:7: video {value!r} is outside the datalist's folder {data}; refused")
    assert f"resolves to {data.parent / 'outside' / 'secret.mp4'}" in message and ALLOW_OUTSIDE_ENV in message
    monkeypatch.setenv(ALLOW_OUTSIDE_ENV, "1")
    assert resolve_inside(value, data, "list.csv:7") == data.parent / "outside" / "secret.mp4"
    with pytest.raises(DataError, match="outside the datalist's folder"):
        resolve_inside(value, data, "list.csv:7", allowed=False)  # an explicit refusal wins over the variable
    monkeypatch.setenv(ALLOW_OUTSIDE_ENV, "0")
    with pytest.raises(DataError, match="outside the datalist's folder"):
        resolve_inside(value, data, "list.csv:7")


# ---------------------------------------------------------------------- splits
def test_stable_split_is_deterministic_and_70_15_15() -> None:
    keys = [f"learner{i:04d}" for i in range(3000)]
    splits = [stable_split(k) for k in keys]
    assert splits == [stable_split(k) for k in keys]
    shares = {s: splits.count(s) / len(keys) for s in ("train", "val", "test")}
    assert abs(shares["train"] - 0.70) < 0.03 and abs(shares["val"] - 0.15) < 0.02 and abs(shares["test"] - 0.15) < 0.02
    # the values education's CSV split always had (moved here from plugins/education/data.py, not changed)
    assert [stable_split(k) for k in ("ann", "bob", "img/a.nii.gz")] == ["train", "test", "train"]
