"""Store identity, run work folders and ``--checkpoint`` resolution verified against the store's sha256."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from sqlalchemy import make_url

from vkit.core.checkpoint import save_checkpoint
from vkit.core.run_checkpoint import MAX_RUN_ID, parse_run_id, resolve_checkpoint
from vkit.core.store.identity import store_identity
from vkit.core.workdir import check_work_dir_free, mark_work_dir, new_work_dir, ownership
from vkit.registry.errors import CheckpointError, ConfigError


# ---------------------------------------------------------------------- store identity
def test_identity_names_the_database_not_the_spelling(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    absolute = store_identity(make_url(f"sqlite:///{tmp_path / 'a.db'}"))
    assert store_identity(make_url("sqlite:///a.db")) == absolute == store_identity(
        make_url(f"sqlite:///file:{tmp_path / 'a.db'}?mode=ro&uri=true"))
    assert store_identity(make_url("sqlite:///b.db")) != absolute and len(absolute) == 8
    pg = "postgresql+psycopg://bob:{pw}@db:5432/vkit?options=-csearch_path%3D{schema}"
    assert store_identity(make_url(pg.format(pw="one", schema="s1"))) == store_identity(make_url(pg.format(pw="two", schema="s1")))
    assert store_identity(make_url(pg.format(pw="one", schema="s1"))) != store_identity(make_url(pg.format(pw="one", schema="s2")))


# ---------------------------------------------------------------------- work folders
def test_new_work_dir_is_absolute_and_never_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    first = new_work_dir("work_dirs", "t", 1, "abcd0123")
    assert first == tmp_path / "work_dirs" / "t-run1-abcd0123" and first.is_dir()
    assert new_work_dir("work_dirs", "t", 1, "abcd0123") == tmp_path / "work_dirs" / "t-run1-abcd0123-2"
    assert new_work_dir("work_dirs", "t", 1, "ffff0000").name == "t-run1-ffff0000"


def test_a_folder_holding_a_run_is_refused_and_marked_once(tmp_path: Path) -> None:
    folder = tmp_path / "w"
    assert check_work_dir_free(folder) == folder  # missing or without a run's files: free
    mark_work_dir(folder, "abcd0123", 4, "t")
    with pytest.raises(ConfigError, match=r"--work-dir .*/w: already holds run 4 of store abcd0123 \(vkit-run.json\)"):
        check_work_dir_free(folder)
    with pytest.raises(ConfigError, match="another run marked it first"):
        mark_work_dir(folder, "abcd0123", 5, "t")
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "model.json").write_text(json.dumps({"run_id": 2}))
    with pytest.raises(ConfigError, match=r"already holds run 2 of store \? \(model.json\)"):
        check_work_dir_free(legacy)


def test_ownership_needs_the_marker_or_the_recorded_sidecar(tmp_path: Path) -> None:
    folder = tmp_path / "w"
    mark_work_dir(folder, "abcd0123", 4, "t")
    assert ownership(folder, "abcd0123", 4) is None
    assert ownership(folder, "abcd0123", 5) == "its vkit-run.json names run 4 of store abcd0123, not run 5 of store abcd0123"
    assert ownership(folder, "ffff0000", 4).startswith("its vkit-run.json names run 4 of store abcd0123")
    assert ownership(tmp_path / "gone", "abcd0123", 4) == "missing"
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "model.json").write_text("{}")
    import hashlib

    digest = hashlib.sha256(b"{}").hexdigest()
    assert ownership(legacy, "abcd0123", 4, digest) is None
    assert ownership(legacy, "abcd0123", 4, "0" * 64) == "its model.json is not the one the store recorded for run 4"
    assert ownership(legacy, "abcd0123", 4) == "no vkit-run.json or recorded model.json names run 4"


# ---------------------------------------------------------------------- --checkpoint resolution
def test_parse_run_id_range() -> None:
    assert parse_run_id("12") == 12 and parse_run_id("w/model.safetensors") is None
    assert parse_run_id(str(MAX_RUN_ID)) == MAX_RUN_ID
    for bad in ("0", str(MAX_RUN_ID + 1), "99999999999999999999"):
        with pytest.raises(CheckpointError, match=f"--checkpoint {bad}: expected a run id from 1 to {MAX_RUN_ID}"):
            parse_run_id(bad)


def _trained(store, folder: Path) -> tuple[int, Path]:
    run_id = store.start_run("t", "p", {}, seed=0, work_dir=folder)
    path = save_checkpoint(torch.nn.Linear(2, 2), folder / "model.safetensors", meta=dict(run_id=run_id,
                                                                                          fitted=dict(threshold=0.5)))
    store.add_artifact(run_id, "checkpoint", path)
    store.add_artifact(run_id, "checkpoint-meta", path.with_suffix(".json"))
    store.finish_run(run_id, "finished")
    return run_id, path


def test_run_id_resolves_to_its_verified_files(store, tmp_path: Path) -> None:
    run_id, path = _trained(store, tmp_path / "w")
    files = resolve_checkpoint(str(run_id), store)
    assert files.weights == path.resolve() and files.sidecar == path.with_suffix(".json").resolve()
    assert files.run_id == run_id
    by_path = resolve_checkpoint(str(path), store)  # the store recorded this file: checked the same way
    assert by_path.run_id == run_id
    with pytest.raises(CheckpointError, match=r"--checkpoint is empty: expected a run id"):
        resolve_checkpoint("  ", store)
    with pytest.raises(CheckpointError, match=f"--checkpoint {run_id + 1}: no run {run_id + 1} in the store"):
        resolve_checkpoint(str(run_id + 1), store)


def test_a_pretrain_or_watch_run_as_checkpoint_is_named_by_kind(store, tmp_path: Path) -> None:
    pretrain = store.start_run("pretrain", "vkit", {}, seed=0, kind="pretrain")
    with pytest.raises(CheckpointError, match=rf"run {pretrain} is a `vkit pretrain` run.*pretrained=run:{pretrain}"):
        resolve_checkpoint(str(pretrain), store)
    watch = store.start_run("t", "p", {}, seed=0, kind="watch")
    with pytest.raises(CheckpointError, match=rf"run {watch} \(a watch run\) has no 'checkpoint' artifact"):
        resolve_checkpoint(str(watch), store)

def test_an_edited_sidecar_or_weights_file_is_refused_naming_both_sha256(store, tmp_path: Path) -> None:
    run_id, path = _trained(store, tmp_path / "w")
    recorded = {a["kind"]: a["sha256"] for a in store.run_artifacts(run_id)}
    sidecar = path.with_suffix(".json")
    meta = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps(dict(meta, fitted=dict(threshold=0.99))))
    from vkit.core.store.provenance import sha256_file

    found = sha256_file(sidecar)[0]
    with pytest.raises(CheckpointError, match=f"sha256 {found} differs from {recorded['checkpoint-meta']}"):
        resolve_checkpoint(str(run_id), store)
    with pytest.raises(CheckpointError, match="checkpoint sidecar"):
        resolve_checkpoint(str(path), store)
    other = tmp_path / "other"
    save_checkpoint(torch.nn.Linear(2, 2), other / "model.safetensors")  # another model, its own valid sidecar
    path.write_bytes((other / "model.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match=f"differs from {recorded['checkpoint']} .*checkpoint weights"):
        resolve_checkpoint(str(run_id), store)


def test_a_path_no_run_recorded_loads_as_before(store, tmp_path: Path) -> None:
    path = save_checkpoint(torch.nn.Linear(2, 2), tmp_path / "loose" / "model.safetensors")
    files = resolve_checkpoint(str(path), store)
    assert files.run_id is None and files.weights == path.resolve() and not files.recorded
    with pytest.raises(CheckpointError, match=r"file '.*missing.safetensors' does not exist"):
        resolve_checkpoint(str(tmp_path / "missing.safetensors"), store)
