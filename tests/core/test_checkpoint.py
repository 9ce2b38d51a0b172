"""Tests of vkit.core.checkpoint: safetensors + JSON sidecar, no unpickling, the mmengine hook."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from vkit.core.checkpoint import SafetensorsCheckpointHook, load_checkpoint, load_meta, save_checkpoint
from vkit.core.store.provenance import sha256_file
from vkit.registry.errors import CheckpointError, ConfigError


class Tied(nn.Module):
    """Embedding and output layer share one weight; a buffer and a BatchNorm too."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(5, 3)
        self.out = nn.Linear(3, 5, bias=False)
        self.out.weight = self.emb.weight
        self.norm = nn.BatchNorm1d(3)
        self.register_buffer("scale", torch.arange(6.0).reshape(2, 3).t())  # non-contiguous


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert sorted(a) == sorted(b)
    for key in a:
        assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key


def test_round_trip_tied_and_non_contiguous(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = Tied()
    path = save_checkpoint(model, tmp_path / "sub" / "model.safetensors", meta=dict(classes=["a", "b"]))
    assert path == tmp_path / "sub" / "model.safetensors" and path.is_file()
    fresh = Tied()
    state, meta = load_checkpoint(path, fresh)
    _same(state, {k: v.contiguous() for k, v in model.state_dict().items()})
    _same(fresh.state_dict(), model.state_dict())
    assert fresh.out.weight is fresh.emb.weight  # tying survives load_state_dict
    assert meta["classes"] == ["a", "b"]


def test_sidecar_contents(tmp_path: Path) -> None:
    state = {"w": torch.ones(2, 2), "b": torch.zeros(2, dtype=torch.int64)}
    meta_in = dict(config=dict(size=(2, 3), root=tmp_path), classes=("x", "y"), metrics={"auc": 0.75, "nan": float("nan")},
                   sha256="stale")
    path = save_checkpoint(state, tmp_path / "m.safetensors", meta=meta_in)
    sidecar = json.loads((tmp_path / "m.json").read_text())
    assert sidecar == load_meta(path)
    digest, size = sha256_file(path)
    assert sidecar["sha256"] == digest and sidecar["bytes"] == size == path.stat().st_size
    assert sidecar["config"] == {"size": [2, 3], "root": str(tmp_path)}
    assert sidecar["classes"] == ["x", "y"]
    assert sidecar["metrics"] == {"auc": 0.75, "nan": None}
    assert sidecar["tensors"] == 2 and sidecar["weights"] == "m.safetensors"
    assert sidecar["format"] == "vkit-checkpoint/1" and sidecar["vkit_version"]
    assert not list(tmp_path.glob(".*tmp*"))  # atomic writes leave nothing behind


def test_save_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"must end with '\.safetensors', got '\.pth'"):
        save_checkpoint({"w": torch.ones(1)}, tmp_path / "m.pth")
    with pytest.raises(CheckpointError, match=r"key 'step' holds a int, expected a tensor"):
        save_checkpoint({"w": torch.ones(1), "step": 3}, tmp_path / "m.safetensors")


def test_mismatched_keys_listed(tmp_path: Path) -> None:
    path = save_checkpoint({"weight": torch.ones(2, 3), "extra": torch.ones(1)}, tmp_path / "m.safetensors")
    with pytest.raises(CheckpointError, match=r"missing keys \['bias'\], unexpected keys \['extra'\]") as info:
        load_checkpoint(path, nn.Linear(3, 2))
    assert str(path) in str(info.value) and "Linear" in str(info.value)
    model = nn.Linear(3, 2)
    load_checkpoint(path, model, strict=False)
    assert torch.equal(model.weight, torch.ones(2, 3))


def test_shape_mismatch(tmp_path: Path) -> None:
    path = save_checkpoint(nn.Linear(3, 2), tmp_path / "m.safetensors")
    with pytest.raises(CheckpointError, match=r"does not fit Linear.*size mismatch for weight"):
        load_checkpoint(path, nn.Linear(4, 2))


def test_tampered_weights_detected(tmp_path: Path) -> None:
    path = save_checkpoint({"w": torch.zeros(4)}, tmp_path / "m.safetensors")
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"sha256 .* does not match"):
        load_checkpoint(path)
    state, _ = load_checkpoint(path, verify=False)
    assert state["w"].shape == (4,)


def test_missing_and_garbage_files(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"checkpoint .*nope\.safetensors does not exist"):
        load_checkpoint(tmp_path / "nope.safetensors")
    with pytest.raises(CheckpointError, match=r"metadata file .*nope\.json is missing"):
        load_meta(tmp_path / "nope.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file at all")
    with pytest.raises(CheckpointError, match=r"junk\.safetensors: not a readable safetensors file"):
        load_checkpoint(junk)
    other = tmp_path / "m.onnx"
    other.write_bytes(b"x")
    with pytest.raises(CheckpointError, match=r"unknown checkpoint type '\.onnx'"):
        load_checkpoint(other)


def test_no_sidecar_gives_empty_meta(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    save_file({"w": torch.ones(3)}, str(tmp_path / "foreign.safetensors"))
    state, meta = load_checkpoint(tmp_path / "foreign.safetensors")
    assert meta == {} and torch.equal(state["w"], torch.ones(3))


class _Marker:
    """Unpickling this would write a file: the proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pwned"))


def test_pickle_with_object_refused_and_not_executed(tmp_path: Path) -> None:
    marker = tmp_path / "marker.txt"
    path = tmp_path / "evil.pth"
    torch.save({"weight": torch.ones(2), "payload": _Marker(marker)}, path)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match=r"evil\.pth: refused to load: torch\.load\(weights_only=True\) failed") as info:
        load_checkpoint(path)
    assert "save_file" in str(info.value)  # tells how to convert
    assert not marker.exists()


def test_plain_tensor_pth_loads(tmp_path: Path) -> None:
    model = nn.Linear(3, 2)
    torch.save(model.state_dict(), tmp_path / "plain.pth")
    fresh = nn.Linear(3, 2)
    state, meta = load_checkpoint(tmp_path / "plain.pth", fresh)
    _same(state, model.state_dict())
    _same(fresh.state_dict(), model.state_dict())
    assert meta == {}
    torch.save({"state_dict": model.state_dict(), "meta": {"epoch": 3}}, tmp_path / "wrapped.pt")
    state, meta = load_checkpoint(tmp_path / "wrapped.pt")
    _same(state, model.state_dict())
    assert meta == {"epoch": 3}


def test_pth_with_non_tensor_values_refused(tmp_path: Path) -> None:
    torch.save({"w": torch.ones(1), "step": 5}, tmp_path / "mixed.pth")
    with pytest.raises(CheckpointError, match=r"expected a state dict of tensors, found 'step' \(int\)"):
        load_checkpoint(tmp_path / "mixed.pth")


# --- the mmengine hook ---------------------------------------------------------------------------


def _runner(work_dir: Path, hook: dict | SafetensorsCheckpointHook, epochs: int = 2, mmengine_checkpoint: bool = False):
    from mmengine.evaluator import BaseMetric
    from mmengine.model import BaseModel
    from mmengine.runner import Runner
    from torch.utils.data import Dataset

    class Tiny(BaseModel):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(2, 1)
            self.dataset_meta = {"classes": ["neg", "pos"]}

        def forward(self, x, y, mode="tensor"):
            out = self.fc(x).squeeze(-1)
            if mode == "loss":
                return {"loss": ((out - y) ** 2).mean()}
            if mode == "predict":
                return [dict(pred=float(o), y=float(t)) for o, t in zip(out, y)]
            return out

    class Pairs(Dataset):
        def __len__(self) -> int:
            return 8

        def __getitem__(self, i: int) -> dict:
            return dict(x=torch.tensor([float(i) / 8, 1.0]), y=torch.tensor(float(i % 2)))

    class Err(BaseMetric):
        def process(self, data_batch, data_samples) -> None:
            self.results.extend(abs(s["pred"] - s["y"]) for s in data_samples)

        def compute_metrics(self, results) -> dict:
            return {"err": sum(results) / len(results)}

    loader = dict(dataset=Pairs(), batch_size=4, sampler=dict(type="DefaultSampler", shuffle=False),
                  collate_fn=dict(type="default_collate"))
    return Runner(
        model=Tiny(), work_dir=str(work_dir), train_dataloader=loader, val_dataloader=loader, val_cfg=dict(),
        val_evaluator=[Err()], train_cfg=dict(by_epoch=True, max_epochs=epochs),
        optim_wrapper=dict(optimizer=dict(type="SGD", lr=0.1)), default_hooks=dict(checkpoint=dict(type="CheckpointHook", interval=1) if mmengine_checkpoint else None),
        custom_hooks=[hook], log_level="WARNING", default_scope="mmengine",
    )


def test_hook_writes_epoch_last_best(tmp_path: Path) -> None:
    hook = dict(type="VkitSafetensorsCheckpointHook", save_best="err", rule="less", meta=dict(task="demo"))
    runner = _runner(tmp_path, hook)
    runner.train()
    names = sorted(p.name for p in tmp_path.glob("*.safetensors"))
    assert names == ["best.safetensors", "epoch_1.safetensors", "epoch_2.safetensors", "last.safetensors"]
    assert not list(tmp_path.glob("*.pth"))
    last_state, last = load_checkpoint(tmp_path / "last.safetensors")
    _same(last_state, {k: v.detach() for k, v in runner.model.state_dict().items()})
    assert last["epoch"] == 2 and last["iter"] == 4 and last["task"] == "demo" and last["classes"] == ["neg", "pos"]
    e1, e2 = load_meta(tmp_path / "epoch_1.safetensors"), load_meta(tmp_path / "epoch_2.safetensors")
    assert e1["epoch"] == 1 and e2["epoch"] == 2
    assert set(e1["metrics"]) == {"err"} and e1["metrics"] != e2["metrics"]  # each file has its own epoch's metrics
    assert last["metrics"] == e2["metrics"]
    best = load_meta(tmp_path / "best.safetensors")
    assert best["best_metric"] == "err"
    assert best["best_value"] == pytest.approx(min(e1["metrics"]["err"], e2["metrics"]["err"]))
    assert best["epoch"] == (1 if e1["metrics"]["err"] < e2["metrics"]["err"] else 2)


def test_hook_max_keep_and_bad_metric(tmp_path: Path) -> None:
    _runner(tmp_path / "a", SafetensorsCheckpointHook(max_keep=1)).train()
    assert sorted(p.name for p in (tmp_path / "a").glob("*.safetensors")) == ["epoch_2.safetensors", "last.safetensors"]
    assert sorted(p.name for p in (tmp_path / "a").glob("*.json")) == ["epoch_2.json", "last.json"]
    with pytest.raises(ConfigError, match=r"save_best: no metric 'er' among \['err'\] \(did you mean 'err'\?\)"):
        _runner(tmp_path / "b", SafetensorsCheckpointHook(save_best="er"), epochs=1).train()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(interval=-1), r"interval: expected an int >= 0, got -1"),
        (dict(rule="bigger"), r"rule: expected 'greater' or 'less', got 'bigger'"),
        (dict(max_keep=0), r"max_keep: expected None or an int >= 1, got 0"),
    ],
)
def test_hook_validates_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SafetensorsCheckpointHook(**kwargs)


def test_mmengine_pth_loads_weights_only(tmp_path: Path) -> None:
    runner = _runner(tmp_path, SafetensorsCheckpointHook(interval=0), epochs=1, mmengine_checkpoint=True)
    runner.train()
    state, meta = load_checkpoint(tmp_path / "epoch_1.pth")  # message_hub etc. allowed, weights_only kept
    _same(state, {k: v.detach() for k, v in runner.model.state_dict().items()})
    assert meta["epoch"] == 1 and meta["mmengine_version"]
    assert sorted(p.name for p in tmp_path.glob("*.safetensors")) == ["last.safetensors"]
