"""write_run_report shows what the store holds safely: HTML in a config is escaped, passwords are masked, bad folders named."""
from __future__ import annotations

import pytest

from vkit.hooks.manager import PluginManager
from vkit.registry.errors import DataError, StoreError
from vkit.workflows.report import write_run_report


def test_config_is_escaped_and_passwords_masked(lite, tmp_path):
    store, _ = lite
    cfg = {"data": {"root": "<b>cache</b>"}, "url": "postgresql://vkit:s3cret@db.local/vkit", "password": "hunter2"}
    run_id = store.start_run("medical-ring-lesion", "medical", cfg, seed=0)
    store.finish_run(run_id, "failed", "OperationalError: cannot reach postgresql://vkit:s3cret@db.local/vkit")
    text = write_run_report(store, run_id, tmp_path / "r", manager=PluginManager(autoload=False)).read_text()
    assert "s3cret" not in text and "vkit:***@db.local" in text
    assert "&lt;b&gt;cache&lt;/b&gt;" in text and "<b>cache</b>" not in text
    assert "OperationalError: cannot reach" in text and ">failed<" in text and "medical-ring-lesion" in text


def test_unknown_run_and_unwritable_folder(lite, tmp_path):
    store, runs = lite
    with pytest.raises(StoreError, match="run 9999 is not in the store"):
        write_run_report(store, 9999, tmp_path, manager=PluginManager(autoload=False))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(DataError, match=f"cannot create the report folder {blocker / 'sub'}"):
        write_run_report(store, runs["train"], blocker / "sub", manager=PluginManager(autoload=False))


def test_report_written_by_the_running_run_names_its_model(lite, tmp_path):
    store, _ = lite
    run_id = store.start_run("t", "p", {}, seed=0, work_dir=tmp_path)
    ckpt = tmp_path / "model.safetensors"
    ckpt.write_bytes(b"w" * 64)
    sha = store.add_artifact(run_id, "checkpoint", ckpt)["sha256"]
    text = write_run_report(store, run_id, tmp_path / "r", manager=PluginManager(autoload=False)).read_text()
    assert "written by the run itself" in text and sha in text


def test_cli_reports_a_newer_vkits_store_without_writing_to_it(lite, tmp_path):
    import sqlalchemy as sa
    from click.testing import CliRunner

    from vkit.workflows.cli import cli

    store, runs = lite
    with store.session() as session:
        session.execute(sa.text("UPDATE alembic_version SET version_num = '0999'"))
    url = store.engine.url.render_as_string(hide_password=False)
    before = store.counts()
    result = CliRunner().invoke(cli, ["--db", url, "report", str(runs["predict"]), "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "r" / "report.html").is_file() and store.counts() == before
