"""VideoModel + the mmengine Runner built by vkit.core.engine, logging to a real SQLite store."""
from __future__ import annotations

import pytest
import torch

from vkit.core.engine import build_runner, train_settings
from vkit.core.evaluation import predict
from vkit.core.model import build_model
from vkit.registry.errors import ConfigError


class Blobs(torch.utils.data.Dataset):
    """Tiny learnable 3-D data: label 1 has a bright cube in the first half of depth, label 0 in the second."""

    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 1, 8, 16, 16, generator=g) * 0.3
        self.y = torch.arange(n) % 2
        for i in range(n):
            d0 = 0 if self.y[i] == 1 else 4
            self.x[i, 0, d0:d0 + 3, 4:12, 4:12] += 2.0

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> dict:
        return dict(inputs=dict(volume=self.x[i]), label=int(self.y[i]), case_id=f"case{i}")


MODEL = dict(backbones=dict(volume=dict(type="TinyC3D", widths=(8, 16), in_channels=1, modality="volume")),
             head=dict(type="ClsHead", num_classes=2))


def test_video_model_modes():
    model = build_model(MODEL)
    batch = torch.utils.data.default_collate([Blobs(4, 0)[i] for i in range(4)])
    data = model.data_preprocessor(batch, True)
    assert model(**data, mode="tensor").shape == (4, 2)
    loss = model(**data, mode="loss")["loss"]
    assert loss.ndim == 0 and torch.isfinite(loss)
    preds = model(**data, mode="predict")
    assert [p["case_id"] for p in preds] == ["case0", "case1", "case2", "case3"]
    assert all(abs(float(p["probs"].sum()) - 1) < 1e-5 for p in preds)


def test_two_modalities_need_fusion():
    cfg = dict(MODEL, backbones=dict(a=MODEL["backbones"]["volume"], b=MODEL["backbones"]["volume"]))
    with pytest.raises(ConfigError, match="need a fusion config"):
        build_model(cfg)


def test_train_settings_reject_unknown_keys():
    with pytest.raises(ConfigError, match=r"train.epoch: unknown key.*did you mean 'epochs'"):
        train_settings(dict(epoch=3))


def test_runner_trains_logs_to_store_and_checkpoints(tmp_path, sqlite_url):
    from vkit.core.store import open_store

    store = open_store(sqlite_url)
    run_id = store.start_run(task="unit", plugin="tests", config={}, seed=0)
    model = build_model(MODEL)
    runner = build_runner(model, work_dir=tmp_path, train_set=Blobs(32, 0), val_set=Blobs(16, 1),
                          val_metrics=[dict(type="ClassificationMetric")],
                          train=dict(epochs=3, batch_size=8, lr=1e-2, log_interval=2), store=store, run_id=run_id, seed=0)
    runner.train()
    rows = store.run_metrics(run_id)
    epochs = sorted(r["step"] for r in rows if r["key"] == "epoch_loss" and r["split"] == "train")
    assert epochs == [1, 2, 3]
    val = [r for r in rows if r["split"] == "val"]
    assert {r["step"] for r in val} == {1, 2, 3}
    assert any(r["key"].endswith("auc") for r in val)
    assert (tmp_path / "last.safetensors").is_file()
    probs = torch.stack([p["probs"] for p in predict(model, Blobs(16, 2))])
    labels = Blobs(16, 2).y
    accuracy = float((probs.argmax(1) == labels).float().mean())
    assert accuracy >= 0.9, accuracy  # the task is easy: three epochs must learn it


def test_late_fusion_model_needs_no_head_and_trains():
    backbone = MODEL["backbones"]["volume"]
    model = build_model(dict(backbones=dict(a=backbone, b=backbone),
                             fusion=dict(type="LateFusion", dim=16, num_classes=2)))
    assert model.head is None
    batch = torch.utils.data.default_collate(
        [dict(inputs=dict(a=s["inputs"]["volume"], b=s["inputs"]["volume"]), label=s["label"], case_id=s["case_id"])
         for s in (Blobs(4, 0)[i] for i in range(4))])
    data = model.data_preprocessor(batch, True)
    assert model(**data, mode="tensor").shape == (4, 2)
    loss = model(**data, mode="loss")["loss"]
    loss.backward()
    assert torch.isfinite(loss)
    with pytest.raises(ConfigError, match="already produces logits"):
        build_model(dict(backbones=dict(a=backbone, b=backbone), fusion=dict(type="LateFusion", dim=16, num_classes=2),
                         head=dict(type="ClsHead", num_classes=2)))
