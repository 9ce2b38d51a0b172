"""Recovery after pruning (fine-tune, distillation) and saved compressed models that load without the run config."""
from __future__ import annotations

import torch
from torch.utils.data import Dataset

MODEL_CFG = dict(
    type="VideoModel",
    backbones=dict(video=dict(type="TinyC3D", in_channels=1, widths=(8, 16), num_frames=8, input_size=(16, 16),
                              pool="max", modality="volume")),
    head=dict(type="ClsHead", num_classes=2, dropout=0.0),
)


class Blobs(Dataset):
    """Noise clips ``(1, 8, 16, 16)``; label 1 = a bright 3x3x3 blob somewhere (position random), 0 = none.

    The blob adds 1.5 to 27 of 2048 voxels, so the clip mean barely moves: the
    model has to find the blob (max pooling), not read the intensity.
    """

    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 1, 8, 16, 16, generator=g) * 0.5
        self.y = torch.arange(n) % 2
        for i in range(n):
            if self.y[i]:
                t, h, w = (int(torch.randint(0, k - 3, (1,), generator=g)) for k in (8, 16, 16))
                self.x[i, :, t:t + 3, h:h + 3, w:w + 3] += 1.5

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> dict:
        return dict(inputs={"video": self.x[i]}, label=int(self.y[i]), case_id=f"c{i}")


def accuracy(model: torch.nn.Module, dataset: Blobs) -> float:
    from vkit.core.lifecycle import predict

    preds = predict(model, dataset)
    return sum(int(p["probs"].argmax()) == p["label"] for p in preds) / len(preds)


def trained_model(epochs: int = 6) -> tuple[torch.nn.Module, Blobs, Blobs, object]:
    """``(model, train, test, trainer)``: a TinyC3D VideoModel trained to ~100% test accuracy in a few seconds."""
    from vkit.core.compression import runner_trainer
    from vkit.registry.registries import MODELS

    torch.manual_seed(0)
    train, test = Blobs(64, 0), Blobs(64, 1)
    fit = runner_trainer(train, train=dict(lr=3e-3, batch_size=8, log_level="WARNING"))
    model = fit(MODELS.build(dict(MODEL_CFG)), epochs).eval()
    return model, train, test, fit


import json
import shutil

import pytest
from torch import nn

import vkit.core.compression.quantize as quantize_mod
from vkit.core.compression import (
    CastModel, ChannelPrune, CompressionChain, CompressionContext, OrtModule, compressed_meta, count_params, load_compressed,
)
from vkit.registry.errors import CheckpointError, ConfigError

#: These tests are about saving, loading and recovery, not speed: stages are kept whatever their speed on a loaded CPU.
SIZE_OK = dict(allow_size_only=True)


@pytest.fixture(scope="module")
def task():
    return trained_model()


def _ctx(task, tmp_path, **kw) -> CompressionContext:
    model, _, test, fit = task
    kw.setdefault("train", fit)
    kw.setdefault("model_config", MODEL_CFG)
    return CompressionContext(sample={"video": test.x[:2]}, evaluate=lambda m: accuracy(m, test), latency_runs=2,
                              warmup=1, work_dir=tmp_path, **kw)


# ---------------------------------------------------------------------- recovery
def test_recovery_lets_a_pruned_model_pass_the_gate_it_failed_without(task, tmp_path):
    model, _, test, _ = task
    assert accuracy(model, test) == 1.0
    prune = dict(type="ChannelPrune", amount=0.5)
    plain = CompressionChain([prune], max_metric_drop=0.05).run(model, _ctx(task, tmp_path / "plain"))
    assert plain.reports[0]["status"] == "stopped" and plain.reports[0]["metric_after"] < 0.9
    assert plain.reports[0]["metric_unrecovered"] is None and plain.artifact is None

    result = CompressionChain([dict(prune, recover=dict(epochs=2, mode="finetune"))], max_metric_drop=0.05, **SIZE_OK).run(
        model, _ctx(task, tmp_path / "recovered"))
    row = result.reports[0]
    assert row["status"] == "ok" and row["drop"] <= 0.05  # the gate judged the recovered model
    assert row["metric_unrecovered"] == plain.reports[0]["metric_after"] < row["metric_after"]
    assert row["recovery_s"] > 0 and row["size_ratio"] > 2.5
    assert accuracy(result.model, test) == row["metric_after"]
    assert accuracy(model, test) == 1.0  # the trained model is left as it was


def test_distillation_recovery_trains_the_pruned_student_against_the_unpruned_teacher(task, tmp_path):
    model, _, test, fit = task
    seen = []

    def spy(m: nn.Module, epochs: int) -> nn.Module:
        seen.append((type(m).__name__, m.teacher is model, count_params(m.student) < count_params(model), epochs))
        return fit(m, epochs)

    stages = [dict(type="ChannelPrune", amount=0.5, recover=dict(epochs=2, mode="distill", temperature=2.0, alpha=0.5))]
    row = CompressionChain(stages, **SIZE_OK).run(model, _ctx(task, tmp_path, train=spy)).reports[0]
    assert seen == [("KDModel", True, True, 2)]
    assert row["metric_after"] > row["metric_unrecovered"]


def test_recovery_without_training_data_is_a_clear_error(task, tmp_path):
    calls = []
    ctx = _ctx(task, tmp_path, train=None)
    ctx.evaluate = lambda m: calls.append(m) or 1.0
    chain = CompressionChain([dict(type="ChannelPrune", recover=dict(epochs=1))])
    with pytest.raises(ConfigError, match=r"compression.stages\[0\].recover: recovery needs the training data, .*no train\(model, epochs\)"):
        chain.run(task[0], ctx)
    assert calls == []  # nothing ran


@pytest.mark.parametrize(("recover", "message"), [
    (dict(epoch=2), r"compression.stages\[0\].recover.epoch: unknown key.*did you mean 'epochs'"),
    (dict(epochs=0), r"recover.epochs: expected an int >= 1, got 0"),
    (dict(mode="prune"), r"recover.mode: expected one of \['finetune', 'distill'\], got 'prune'"),
    (dict(alpha=1.5), r"recover.alpha: expected a number in \[0, 1\], got 1.5"),
    (2, r"compression.stages\[0\].recover: expected a dict"),
])
def test_recovery_config_errors(recover, message):
    with pytest.raises(ConfigError, match=message):
        CompressionChain([dict(type="ChannelPrune", recover=recover)])


# ---------------------------------------------------------------------- saved artifacts
def _outputs(model: nn.Module, test: Blobs) -> torch.Tensor:
    with torch.inference_mode():
        return torch.as_tensor(model({"video": test.x[:16]})).float()


def test_each_applied_stage_is_saved_and_loads_without_the_config(task, tmp_path):
    model, _, test, _ = task
    result = CompressionChain([dict(type="ChannelPrune", amount=0.5), dict(type="DynamicQuantize")], **SIZE_OK).run(model, _ctx(task, tmp_path))
    pruned_row, quant_row = result.reports
    assert (pruned_row["artifact"], quant_row["artifact"]) == ("01-ChannelPrune.json", "02-DynamicQuantize.json")
    index = json.loads((tmp_path / "index.json").read_text())
    assert index["final"] == "02-DynamicQuantize.json" and result.artifact == tmp_path / "02-DynamicQuantize.json"

    meta = json.loads((tmp_path / "01-ChannelPrune.json").read_text())
    from vkit.core.store.provenance import sha256_file

    assert meta["sha256"] == sha256_file(tmp_path / "01-ChannelPrune.safetensors")[0] == pruned_row["sha256"]
    assert meta["precision"] == "float32" and meta["architecture"]["type"] == "VideoModel"
    assert meta["shapes"]["backbones.video.features.0"] == dict(in_channels=1, out_channels=4, groups=1)
    assert meta["measured"]["bytes"] == pruned_row["bytes"] and meta["measured"]["metric_after"] == pruned_row["metric_after"]
    assert json.loads((tmp_path / "02-DynamicQuantize.json").read_text())["precision"] == "qint8"

    final = load_compressed(tmp_path)  # the chain's final model: int8 Linear, pruned convs
    assert type(final.head.fc).__module__.startswith("torch.ao.nn.quantized")
    assert final.backbones["video"].features[4].weight.shape == (8, 4, 3, 3, 3)
    assert torch.allclose(_outputs(final, test), _outputs(result.model, test), atol=1e-6)
    assert accuracy(final, test) == quant_row["metric_after"]
    pruned = load_compressed(tmp_path, stage="ChannelPrune")
    assert count_params(pruned) == pruned_row["params"]


def test_reduced_precision_and_onnx_artifacts_load(task, tmp_path, monkeypatch):
    model, _, test, _ = task
    monkeypatch.setattr(quantize_mod, "cpu_supports", lambda dtype: (True, ""))  # bf16 runs (emulated if need be)
    stages = [dict(type="ChannelPrune", amount=0.5), dict(type="OnnxExport")]
    result = CompressionChain(stages, **SIZE_OK).run(model, _ctx(task, tmp_path / "onnx"))
    ort = load_compressed(tmp_path / "onnx")
    assert isinstance(ort, OrtModule) and ort.onnx_path.name == "02-OnnxExport.onnx"
    assert torch.allclose(_outputs(ort, test), _outputs(result.model, test), atol=1e-4)
    assert accuracy(ort, test) == result.reports[1]["metric_after"]  # the ORT model scores with the original preprocessing

    result = CompressionChain([dict(type="CastBF16")], **SIZE_OK).run(model, _ctx(task, tmp_path / "bf16"))
    cast = load_compressed(tmp_path / "bf16")
    assert isinstance(cast, CastModel) and cast.dtype == torch.bfloat16
    assert cast.module.head.fc.weight.dtype == torch.bfloat16 and result.reports[0]["precision"] == "bfloat16"
    assert torch.equal(_outputs(cast, test), _outputs(result.model, test))


def test_x3d_really_shrinks_and_its_pruned_depthwise_shapes_rebuild(tmp_path):
    from vkit.registry.registries import BACKBONES, MODELS

    cfg = dict(type="VideoModel", backbones=dict(video=dict(type="X3D", **BACKBONES.get("X3D").smoke_config())),
               head=dict(type="ClsHead", num_classes=3, dropout=0.0))
    torch.manual_seed(0)
    model = MODELS.build(cfg).eval()
    x = {"video": torch.randn(1, 3, 4, 32, 32)}
    ctx = CompressionContext(sample=x, evaluate=lambda m: 0.0, latency_runs=1, warmup=0, work_dir=tmp_path, model_config=cfg)
    result = CompressionChain([dict(type="ChannelPrune", amount=0.5)], **SIZE_OK).run(model, ctx)
    assert result.reports[0]["params"] < 0.4 * result.baseline["params"]
    depthwise = [m for m in result.model.modules() if isinstance(m, nn.Conv3d) and m.groups > 1]
    assert depthwise and all(m.groups == m.in_channels == m.out_channels for m in depthwise)
    loaded = load_compressed(tmp_path)
    with torch.inference_mode():
        assert torch.allclose(loaded(x), result.model(x), atol=1e-5)


def test_loading_refuses_changed_files_and_names_what_is_missing(task, tmp_path):
    model = task[0]
    CompressionChain([dict(type="ChannelPrune", amount=0.5)], **SIZE_OK).run(model, _ctx(task, tmp_path / "a"))
    weights = tmp_path / "a" / "01-ChannelPrune.safetensors"
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256 .* does not match"):
        load_compressed(tmp_path / "a")
    sidecar = tmp_path / "b" / "01-ChannelPrune.json"
    meta = json.loads(sidecar.read_text())
    meta["check"]["output"] = [v + 1.0 for v in meta["check"]["output"]]
    sidecar.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="output on the seeded check input differs"):
        load_compressed(tmp_path / "b")
    with pytest.raises(CheckpointError, match="no saved stage 'CastBF16'; saved stages: \\['ChannelPrune'\\]"):
        load_compressed(tmp_path / "b", stage="CastBF16")
    with pytest.raises(CheckpointError, match="no index.json"):
        load_compressed(tmp_path)


def test_without_a_model_config_only_onnx_is_saved(task, tmp_path):
    result = CompressionChain([dict(type="ChannelPrune", amount=0.5), dict(type="OnnxExport")], **SIZE_OK).run(
        task[0], _ctx(task, tmp_path, model_config=None))
    assert [r["artifact"] for r in result.reports] == [None, "02-OnnxExport.json"]
    assert isinstance(load_compressed(tmp_path), OrtModule)


def test_result_lists_the_saved_files_to_record(task, tmp_path):
    result = CompressionChain([dict(type="ChannelPrune", amount=0.5), dict(type="OnnxExport")], **SIZE_OK).run(task[0], _ctx(task, tmp_path))
    assert [(s, a.name, w.name) for s, a, w in result.saved()] == [
        ("ChannelPrune", "01-ChannelPrune.json", "01-ChannelPrune.safetensors"),
        ("OnnxExport", "02-OnnxExport.json", "02-OnnxExport.onnx"),
    ]
    assert all(w.is_file() for _, _, w in result.saved())
    meta = compressed_meta(tmp_path)  # the final model's identity without loading it (a scorer's resume key)
    assert (meta["stage"], meta["kind"], meta["sidecar"]) == ("OnnxExport", "onnx", str(tmp_path / "02-OnnxExport.json"))
    assert meta["sha256"] == result.reports[1]["sha256"] != compressed_meta(tmp_path, stage="ChannelPrune")["sha256"]


def test_the_model_config_may_come_from_the_model_itself(task, tmp_path):
    import copy

    model = copy.deepcopy(task[0])
    model.model_config = dict(MODEL_CFG)  # what a builder may record on the model it built
    result = CompressionChain([dict(type="ChannelPrune", amount=0.5)], **SIZE_OK).run(model, _ctx(task, tmp_path, model_config=None))
    assert result.reports[0]["artifact"] == "01-ChannelPrune.json"
    assert count_params(load_compressed(tmp_path)) == result.reports[0]["params"]
