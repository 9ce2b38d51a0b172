"""Opening a store: reading never creates one (a typo stays visible), a read-only folder still lists, messages say where."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from vkit.core.store import Store, current, open_store
from vkit.core.store.migrate import describe_revision, head_revision
from vkit.registry.errors import StoreError


def test_reading_a_mistyped_path_creates_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'typo' / 'vkit.db'}"
    store = open_store(url, read_only=True)
    assert store.exists is False and store.list_runs() == [] and store.url == url
    with pytest.raises(StoreError, match="read-only"):
        store.start_run("t", "p", {}, seed=0)
    assert current(url) is None
    with pytest.raises(StoreError, match=r"no vkit store at .*typo/vkit.db \(the file does not exist; nothing was created"):
        open_store(url, create=False)
    assert not (tmp_path / "typo").exists()
    from vkit.workflows.cli import cli

    result = CliRunner().invoke(cli, ["--db", url, "runs", "list", "--json"])
    assert result.exit_code == 0 and result.output.strip() == "[]"
    result = CliRunner().invoke(cli, ["--db", url, "db", "current"])
    assert "no store yet" in result.output
    assert not (tmp_path / "typo").exists()


def test_a_store_in_a_read_only_folder_is_listed_and_writes_name_the_folder(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'vkit.db'}"
    with open_store(url) as store:
        run_id = store.start_run("t", "p", {}, seed=0)
        store.finish_run(run_id)
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if str(p) == str(tmp_path) else real(p, mode, **kw))
    reader = open_store(url, read_only=True)         # tests run as root: the folder is "read-only" by os.access
    assert [r["id"] for r in reader.list_runs()] == [run_id] and reader.url == url
    writer = Store(reader.engine, reader.schema)     # what a writing command would meet
    with pytest.raises(StoreError, match=rf"readonly database .*is the folder {tmp_path} writable by this user"):
        writer.start_run("t", "p", {}, seed=0)


def test_db_current_on_a_newer_schema_does_not_advise_upgrade() -> None:
    assert "upgrade vkit" in describe_revision("0999") and "vkit db upgrade" not in describe_revision("0999")
    assert describe_revision(head_revision()) == "up to date"
    assert "run `vkit db upgrade`" in describe_revision("0001")
