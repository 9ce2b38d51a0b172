"""``vkit run`` checks ``pretrained=`` before the run row exists, and the weights file is read once per run."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

from vkit.registry.errors import CheckpointError

VOLUME = dict(in_channels=1, modality="volume", widths=(4, 8), num_frames=16, input_size=(16, 16), pool="avgmax")


def _smoke() -> list[str]:
    from vkit.plugins.medical.task import MedicalDiagnosisTask

    return list(MedicalDiagnosisTask.smoke_overrides)


def _weights(path: Path, seed: int = 3, **kwargs: Any) -> dict[str, torch.Tensor]:
    from vkit.core.backbones import TinyC3D

    torch.manual_seed(seed)
    state = {k: v.contiguous() for k, v in TinyC3D(**{**VOLUME, **kwargs}).state_dict().items()}
    save_file(state, str(path))
    return state


def _run(tmp_path: Path, *extra: str) -> Any:
    from vkit.workflows.run import run_task

    return run_task("medical-diagnosis", overrides=[*_smoke(), *extra], db_url=f"sqlite:///{tmp_path / 'vkit.db'}",
                    work_dir=tmp_path / "work", data_root=tmp_path / "data", echo=lambda *_: None)


@pytest.mark.parametrize("case", ["missing", "partial"])
def test_a_bad_pretrained_leaves_no_run_row_and_reads_no_data(tmp_path: Path, case: str) -> None:
    from vkit.core.store import open_store

    path = tmp_path / "w.safetensors"
    if case == "partial":
        _weights(path, widths=(4, 6))  # another width: shapes that fit nothing
    match = (r"^model.backbones.volume.pretrained: .*w.safetensors' does not exist" if case == "missing"
             else r"^model.backbones.volume.pretrained: .*(shape|matches the model only partly)")
    with pytest.raises(CheckpointError, match=match):
        _run(tmp_path, f"model.backbones.volume.pretrained={path}")
    assert open_store(f"sqlite:///{tmp_path / 'vkit.db'}").list_runs() == []  # was one 'failed' row
    assert not (tmp_path / "data").exists() and not (tmp_path / "work").exists()


def test_a_run_reads_its_pretrained_file_once_and_records_its_sha256(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                    one_torch_thread: None) -> None:
    import vkit.core.files as files
    from vkit.core.store import open_store
    from vkit.core.store.provenance import sha256_file

    path = tmp_path / "w.safetensors"
    _weights(path)
    opened: list[Path] = []
    real = files.open_regular

    def counting(target: Any, *args: Any, **kwargs: Any) -> Any:
        if Path(target).resolve() == path.resolve():
            opened.append(Path(target))
        return real(target, *args, **kwargs)

    monkeypatch.setattr(files, "open_regular", counting)
    result = _run(tmp_path, f"model.backbones.volume.pretrained={path}")
    assert result.status == "finished" and len(opened) == 1  # was 2: the check's read, then the model build's
    store = open_store(result.db_url)
    [artifact] = [a for a in store.run_artifacts(result.run_id) if a["kind"] == "pretrained"]
    assert artifact["sha256"] == sha256_file(path)[0]
    counts = {m["key"]: m["value"] for m in store.run_metrics(result.run_id, split="pretrained")}
    assert counts["model.backbones.volume/matched"] > 0 and counts["model.backbones.volume/missing"] == 0


def test_the_build_takes_the_checked_bytes_and_run_digests_are_still_compared(tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import vkit.core.weights.load as load
    from vkit.core.backbones import TinyC3D
    from vkit.core.weights.check import check_weights

    path = tmp_path / "w.safetensors"
    checked_state = _weights(path, seed=3)
    cfg = dict(model=dict(backbones=dict(volume=dict(type="TinyC3D", **VOLUME, pretrained=str(path)))))
    checked = check_weights(cfg, store=None)
    digest = checked.reports["model.backbones.volume"].sha256
    assert list(checked.files) == [str(path.absolute())] and checked.files[str(path.absolute())].sha256 == digest
    _weights(path, seed=4)  # the file replaced between the check and the build
    with load.reuse_weights(checked.files):
        net = TinyC3D(**VOLUME, pretrained=str(path))
        assert not checked.files  # taken once: a later load reads the file again
    assert net.pretrained_report.sha256 == digest  # the bytes that were checked, never a mix
    assert all(torch.equal(net.state_dict()[k], v) for k, v in checked_state.items() if k in net.state_dict())

    # run:ID: the digest the run recorded is compared with the reused read as with a fresh one
    checked = check_weights(cfg, store=None)
    monkeypatch.setattr(load, "resolve", lambda pretrained, store=None, owner="": (path, "0" * 64))
    with load.reuse_weights(checked.files), pytest.raises(CheckpointError, match="the file changed since"):
        TinyC3D(**VOLUME, pretrained="run:7")
