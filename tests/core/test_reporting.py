"""core/reporting: plots whose names are plain text, and report failures recorded on the run without failing it."""
from __future__ import annotations

from pathlib import Path

import matplotlib
import pytest
from matplotlib.figure import Figure

from vkit.core.reporting import REPORT_ERROR_KIND, plain_text, record_report_error

EVIL = "$\\evilcmd$"


def _draw(path: Path, name: str) -> Path:
    fig = Figure(figsize=(2, 1))
    ax = fig.add_subplot()
    ax.set_title(name)
    ax.plot([0, 1], [0, 1], label=name)
    ax.legend()
    fig.savefig(path)
    return path


def test_mathtext_names_fail_outside_and_draw_inside_plain_text(tmp_path):
    with pytest.raises(ValueError):  # what matplotlib does with such a name by default
        _draw(tmp_path / "raw.png", EVIL)
    with plain_text():
        assert _draw(tmp_path / "plain.png", EVIL).read_bytes()[:4] == b"\x89PNG"
    assert matplotlib.rcParams["text.parse_math"] is True  # restored afterwards
    assert plain_text()(_draw)(tmp_path / "decorated.png", f"a {EVIL} b").is_file()


def test_record_report_error_keeps_the_run_status(store, tmp_path):
    run_id = store.start_run("demo-task", "demo", {}, seed=0)
    store.finish_run(run_id, "finished")
    lines: list[str] = []
    try:
        raise RuntimeError("cannot draw postgresql://bob:hunter2@db/x")
    except RuntimeError as err:
        line = record_report_error(store, run_id, tmp_path / "work", err, lines.append)
    assert line == "RuntimeError: cannot draw postgresql://bob:***@db/x"
    assert lines == [f"warning: the report of run {run_id} failed ({line}); details in "
                     f"{tmp_path / 'work' / 'report-error.txt'}; the run keeps its status "
                     f"(`vkit report {run_id}` writes it again)"]
    [artifact] = [a for a in store.run_artifacts(run_id) if a["kind"] == REPORT_ERROR_KIND]
    text = Path(artifact["path"]).read_text()
    assert "Traceback" in text and "hunter2" not in text
    assert store.get_run(run_id)["status"] == "finished" and store.get_run(run_id)["error"] is None


def test_record_report_error_still_warns_when_it_cannot_record(store, tmp_path):
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    lines: list[str] = []
    record_report_error(store, 1, blocked, OSError("disk full"), lines.append)  # no folder, no run 1: still a warning
    assert lines[0].startswith("warning: the report of run 1 failed (OSError: disk full); not recorded (")
