"""`vkit score` and `vkit export` through the real entry point (``vkit.workflows.cli.main``)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SUPPORT = Path(__file__).parents[1] / "workflows"
sys.path.insert(0, str(SUPPORT))
import test_score_support as support  # noqa: E402

from vkit.workflows.cli import cli  # noqa: E402
from vkit_cli import vkit_main as _vkit  # noqa: E402  (tests/helpers: vkit ARGS in this process)
from vkit.workflows.export import export_cmd  # noqa: E402
from vkit.workflows.scoring.score import score_cmd  # noqa: E402


@pytest.fixture(autouse=True)
def _commands(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VKIT_NO_AUTOLOAD", "1")
    for command in (score_cmd, export_cmd):       # until the CLI module registers them itself
        if command.name not in cli.commands:
            cli.add_command(command)


def test_score_then_rescore_then_export(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = tmp_path / "archive"
    support.make_archive(root, good=2)
    ckpt = support.make_checkpoint(tmp_path / "model.safetensors")
    base = ["--db", f"sqlite:///{tmp_path / 'vkit.db'}", "--plugin", "test_score_support"]
    code, out, err = _vkit(capsys, *base, "score", "demo-score", str(root), "--checkpoint", str(ckpt), "--json",
                           "--workers", "1", "--batch-size", "3")
    assert code == 0, err
    data = json.loads(out)
    assert (data["videos"], data["scored"], data["failed"], data["skipped"]) == (6, 2, 4, 0)
    assert data["db_url"].endswith("vkit.db") and data["status"] == "finished" and data["clips_per_s"] > 0
    assert {Path(f["path"]).name for f in data["failures"]} == {"empty.mp4", "notes.mp4", "short.mp4", "truncated.mp4"}

    code, out, err = _vkit(capsys, *base, "score", "demo-score", str(root / "**" / "*.mp4"), "--checkpoint",
                           str(ckpt), "--workers", "0")
    assert code == 0, err
    assert "left failed (earlier runs)" in out and "4 video(s) failed in earlier runs" in out
    assert "(--retry-failed" in out and "failed videos" not in out
    code, out, err = _vkit(capsys, *base, "score", "demo-score", str(root / "**" / "*.mp4"), "--checkpoint",
                           str(ckpt), "--workers", "0", "--retry-failed")
    assert code == 0, err
    assert "skipped (already scored)" in out and "│ 2 " in out.split("skipped")[1].splitlines()[0]
    assert "failed videos" in out and "too short" in out and "vkit.db" in out

    code, out, err = _vkit(capsys, *base, "export", str(data["run_id"]), "--format", "csv", "-o", str(tmp_path / "x"))
    assert code == 0, err
    assert (tmp_path / "x" / f"run{data['run_id']}_scores.csv").read_text().count("\n") == 1 + 2 * 4
    code, out, err = _vkit(capsys, *base, "export", str(data["run_id"]), "--format", "parquet", "-o",
                           str(tmp_path / "x"), "--json")
    assert code == 0, err
    assert Path(json.loads(out)["videos"]).suffix == ".parquet"


def test_score_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = tmp_path / "archive"
    support.write_good(root / "a.mp4", seed=0)
    base = ["--db", f"sqlite:///{tmp_path / 'vkit.db'}", "--plugin", "test_score_support"]
    code, _, err = _vkit(capsys, *base, "score", "demo-score", str(root), "--checkpoint", str(tmp_path / "nope.safetensors"))
    assert code == 1 and "Error: --checkpoint" in err and "does not exist" in err
    code, _, err = _vkit(capsys, *base, "score", "demo-scor", str(root), "--checkpoint", "1")
    assert code == 1 and "unknown task 'demo-scor'" in err and "did you mean 'demo-score'" in err
    code, _, err = _vkit(capsys, *base, "score", "demo-score", str(tmp_path / "missing"), "--checkpoint", "1")
    assert code == 1 and "no such file or folder" in err
    code, _, err = _vkit(capsys, *base, "export", "99")
    assert code == 1 and "run 99 is not in the store" in err


def test_score_and_export_modules_stay_light() -> None:
    code = ("import sys\nimport vkit.workflows.scoring.score, vkit.workflows.export\n"
            "print([m for m in ('torch', 'sqlalchemy', 'ray', 'pyarrow') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    assert out.strip() == "[]", out
