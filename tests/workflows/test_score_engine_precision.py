"""`vkit score --precision`: the precision is recorded on the run row, and resuming never mixes precisions."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
import test_score_support as support  # noqa: E402

import vkit.core.precision as precision  # noqa: E402
from vkit.core.store import open_store  # noqa: E402
from vkit.workflows.scoring.score import ScoreOptions, score_archive  # noqa: E402

PLUGIN = ["test_score_support"]
BF16_CPU = precision.Capabilities("test CPU", ("avx512_bf16",), True, "", False, "no vnni (simulated)")


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    monkeypatch.setenv("VKIT_NO_AUTOLOAD", "1")
    monkeypatch.setenv("VKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(precision.cpu, "capabilities", lambda flags=None: BF16_CPU)  # same answer on every CPU
    support.make_archive(tmp_path / "archive", good=3, bad=False)
    ckpt = support.make_checkpoint(tmp_path / "ckpt" / "model.safetensors")
    return dict(root=tmp_path / "archive", ckpt=ckpt, url=f"sqlite:///{tmp_path / 'vkit.db'}")


def _score(s: dict, precision_: str) -> object:
    return score_archive("demo-score", [str(s["root"])], str(s["ckpt"]), db_url=s["url"], plugins=PLUGIN,
                         options=ScoreOptions(workers=0, batch_size=4, precision=precision_))


def test_resume_never_mixes_precisions(setup: dict) -> None:
    sha = support.ConvScorer(setup["ckpt"]).model_sha256
    fp32 = _score(setup, "fp32")
    assert (fp32.scored, fp32.skipped, fp32.precision) == (3, 0, "fp32")
    bf16 = _score(setup, "bf16")                     # fp32 results are not bf16 results: everything is scored again
    assert (bf16.scored, bf16.skipped, bf16.precision) == (3, 0, "bf16")
    assert (_score(setup, "bf16").skipped, _score(setup, "fp32").skipped) == (3, 3)
    store = open_store(setup["url"])
    run_fp32, run_bf16 = store.get_run(fp32.run_id), store.get_run(bf16.run_id)
    assert run_fp32["model_sha256"] == sha and run_fp32["config"]["precision_used"]["precision"] == "fp32"
    assert run_bf16["model_sha256"] == precision.precision_sha256(sha, "bf16")
    assert run_bf16["config"]["precision_used"]["precision"] == "bf16"
    a = sorted((s["video_id"], s["segment"], s["score"]) for s in store.video_scores(fp32.run_id))
    b = sorted((s["video_id"], s["segment"], s["score"]) for s in store.video_scores(bf16.run_id))
    assert len(a) == len(b) == 12 and max(abs(x[2] - y[2]) for x, y in zip(a, b)) < 0.02
    store.close()


def test_auto_records_the_gate_on_the_run_row(setup: dict, capsys: pytest.CaptureFixture) -> None:
    summary = _score(setup, "auto")
    err = capsys.readouterr().err
    assert "precision gate on 12 clips of 3 archive videos (unlabelled)" in err and f"precision {summary.precision}" in err
    store = open_store(setup["url"])
    used = store.get_run(summary.run_id)["config"]["precision_used"]
    store.close()
    assert used["requested"] == "auto" and used["precision"] == summary.precision
    gate = used["gates"][0]
    assert gate["precision"] == "bf16" and gate["clips"] == 12 and 0.0 <= gate["max_abs_diff"] < 0.02
    assert (summary.precision == "bf16") == gate["passed"]


def test_cli_precision_option(setup: dict) -> None:
    from click.testing import CliRunner

    from vkit.workflows.cli import cli

    base = ["--db", setup["url"], "--plugin", "test_score_support", "score", "demo-score", str(setup["root"]),
            "--checkpoint", str(setup["ckpt"]), "--workers", "0", "--json"]
    bad = CliRunner().invoke(cli, base + ["--precision", "fp16"])
    assert bad.exit_code == 2 and "'fp16' is not one of" in bad.output
    ok = CliRunner().invoke(cli, base + ["--precision", "bf16"])
    assert ok.exit_code == 0, ok.output
    data = json.loads(ok.stdout[ok.stdout.index("{"):])
    assert data["precision"] == "bf16" and data["scored"] == 3
