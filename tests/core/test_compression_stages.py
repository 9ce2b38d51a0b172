"""Compression stages on tiny models: pruning, quantization, casts, ONNX export, distillation."""
from __future__ import annotations

import copy
import time

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import vkit.core.compression.quantize as quantize_mod
from vkit.core.compression import (
    CastBF16,
    CastFP16,
    ChannelPrune,
    CompressionContext,
    CompressionError,
    Distill,
    DynamicQuantize,
    MagnitudePrune,
    OnnxExport,
    OrtModule,
    StageSkipped,
    bytes_on_disk,
    count_params,
    cpu_supports,
    sparsity,
)
from vkit.registry.errors import ConfigError


def tiny_c3d(width: int = 8, num_classes: int = 3, pool: bool = True) -> nn.Module:
    """A stand-in for TinyC3D: conv3d+BN+ReLU+pool blocks, then a Linear head."""
    tail = [nn.AdaptiveAvgPool3d(1), nn.Flatten()] if pool else [nn.Flatten()]
    head_in = 2 * width * (1 if pool else 2 * 4 * 4)
    return nn.Sequential(
        nn.Conv3d(3, width, 3, padding=1), nn.BatchNorm3d(width), nn.ReLU(), nn.MaxPool3d(2),
        nn.Conv3d(width, 2 * width, 3, padding=1), nn.BatchNorm3d(2 * width), nn.ReLU(), nn.MaxPool3d(2),
        *tail, nn.Linear(head_in, num_classes),
    ).eval()


class Residual(nn.Module):
    """conv1 -> conv2 is a clean chain; conv2's output meets the input in an add, so it must stay."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.conv1 = nn.Conv2d(8, 16, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 8, 3, padding=1)
        self.fc = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = x + self.conv2(torch.relu(self.bn1(self.conv1(x))))
        return self.fc(x.mean(dim=(2, 3)))


def _ctx(sample, **kw) -> CompressionContext:
    return CompressionContext(sample=sample, evaluate=lambda m: 0.0, latency_runs=3, warmup=1, **kw)


CLIP = torch.randn(2, 3, 8, 16, 16, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("amount", [0.3, 0.5, 0.9])
def test_magnitude_prune_reaches_requested_sparsity(amount):
    torch.manual_seed(0)
    model = tiny_c3d()
    pruned = MagnitudePrune(amount=amount).apply(model, _ctx(CLIP))
    assert abs(sparsity(pruned) - amount) < 0.01
    assert not any("weight_orig" in k or "weight_mask" in k for k in pruned.state_dict())  # made permanent
    assert pruned(CLIP).shape == (2, 3)


def test_channel_prune_shrinks_layers_and_keeps_outputs_of_kept_channels():
    torch.manual_seed(0)
    model = tiny_c3d(width=8, pool=False)  # Flatten of a 2x4x4 map: 32 Linear inputs per channel
    with torch.no_grad():  # make half the channels of each conv exactly dead (their whole group), so pruning them changes nothing
        for conv, bn, dead in ((model[0], model[1], slice(0, None, 2)), (model[4], model[5], slice(1, None, 2))):
            conv.weight[dead] = 0
            conv.bias[dead] = 0
            bn.weight[dead] = 0
        model[4].weight[:, ::2] = 0
        model[9].weight.view(3, 16, 32)[:, 1::2] = 0
    before = model(CLIP)
    params = count_params(model)
    stage = ChannelPrune(amount=0.5)
    pruned = stage.apply(model, _ctx(CLIP))
    assert (pruned[0].out_channels, pruned[1].num_features, pruned[4].in_channels) == (4, 4, 4)
    assert (pruned[4].out_channels, pruned[5].num_features, pruned[9].in_features) == (8, 8, 8 * 32)
    assert pruned[9].out_features == 3  # the output layer keeps its classes
    assert count_params(pruned) < 0.45 * params
    assert torch.allclose(pruned(CLIP), before, atol=1e-5)  # the dead channels and their input blocks were removed
    assert stage.notes == "pruned 2 channel groups, params 5,715 -> 1,995; kept the outputs of '9'"


def test_channel_prune_is_faster_on_a_conv_heavy_model():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv3d(3, 64, 3, padding=1), nn.BatchNorm3d(64), nn.ReLU(),
        nn.Conv3d(64, 64, 3, padding=1), nn.BatchNorm3d(64), nn.ReLU(),
        nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(64, 4),
    ).eval()
    x = torch.randn(1, 3, 8, 16, 16)
    pruned = ChannelPrune(amount=0.5).apply(copy.deepcopy(model), _ctx(x))
    assert pruned[3].weight.shape == (32, 32, 3, 3, 3)  # the middle conv: 1/4 of its FLOPs left
    times: dict[str, list[float]] = {"full": [], "pruned": []}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.inference_mode():
            for m in (model, pruned):
                m(x)
            for _ in range(7):  # interleaved, so load from other processes hits both alike
                for key, m in (("full", model), ("pruned", pruned)):
                    start = time.perf_counter()
                    m(x)
                    times[key].append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
    # ~3.8x fewer FLOPs in all; the fastest run of each is the least disturbed by other processes
    assert min(times["pruned"]) * 1.5 < min(times["full"])


def test_channel_prune_prunes_residual_groups_together():
    torch.manual_seed(0)
    model = Residual().eval()
    x = torch.randn(2, 3, 8, 8)
    pruned = ChannelPrune(amount=0.5).apply(model, _ctx(x))
    assert (pruned.conv1.out_channels, pruned.bn1.num_features, pruned.conv2.in_channels) == (8, 8, 8)
    # stem and conv2 meet in the add: one group, pruned alike, and the head's inputs follow
    assert pruned.stem.out_channels == pruned.conv2.out_channels == pruned.fc.in_features == 4
    assert pruned(x).shape == (2, 2)


class DepthwiseBlock(nn.Module):
    """An X3D-style inverted bottleneck: 1x1 expand -> depthwise 3x3 -> 1x1 project, added to its input."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.expand = nn.Conv2d(8, 32, 1)
        self.dw = nn.Conv2d(32, 32, 3, padding=1, groups=32)
        self.bn = nn.BatchNorm2d(32)
        self.project = nn.Conv2d(32, 8, 1)
        self.fc = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = x + self.project(torch.relu(self.bn(self.dw(self.expand(x)))))
        return self.fc(x.mean(dim=(2, 3)))


def test_channel_prune_shrinks_depthwise_convolutions_with_their_producer():
    torch.manual_seed(0)
    model = DepthwiseBlock().eval()
    x = torch.randn(2, 3, 8, 8)
    before = count_params(model)
    pruned = ChannelPrune(amount=0.5).apply(model, _ctx(x))
    assert (pruned.expand.out_channels, pruned.dw.in_channels, pruned.dw.out_channels, pruned.dw.groups) == (16, 16, 16, 16)
    assert pruned.bn.num_features == pruned.project.in_channels == 16
    assert count_params(pruned) < 0.4 * before and pruned(x).shape == (2, 2)


def test_channel_prune_errors_name_the_module():
    with pytest.raises(CompressionError, match=r"nothing to prune in Sequential: every Conv/Linear layer is an output layer or ignored \(0\)"):
        ChannelPrune(amount=0.5).apply(nn.Sequential(nn.Linear(4, 2)), _ctx(torch.randn(1, 4)))
    with pytest.raises(ConfigError, match=r"ChannelPrune.ignore: Residual has no modules \['conv9'\]"):
        ChannelPrune(amount=0.5, ignore=["conv9"]).apply(Residual().eval(), _ctx(torch.randn(2, 3, 8, 8)))
    with pytest.raises(ConfigError, match=r"ChannelPrune.amount: expected a fraction in \[0, 1\), got 1.5"):
        ChannelPrune(amount=1.5)
    with pytest.raises(ConfigError, match=r"ChannelPrune.round_to: expected None or an int >= 1, got 0"):
        ChannelPrune(round_to=0)


def test_channel_prune_ignore_keeps_a_layer():
    pruned = ChannelPrune(amount=0.5, ignore=["conv1"]).apply(Residual().eval(), _ctx(torch.randn(2, 3, 8, 8)))
    assert pruned.conv1.out_channels == 16 and pruned.stem.out_channels == 4


def test_dynamic_quantize_is_smaller_and_close():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(128, 512), nn.ReLU(), nn.Linear(512, 128)).eval()
    x = torch.randn(16, 128)
    q = DynamicQuantize(dtype="qint8").apply(model, _ctx(x))
    assert type(q[0]).__name__ == "Linear" and type(q[0]).__module__.startswith("torch.ao.nn.quantized")
    assert bytes_on_disk(model) / bytes_on_disk(q) > 3.5
    assert count_params(q) == count_params(model)
    ref, got = model(x), q(x)
    assert (got - ref).norm() / ref.norm() < 0.02  # stated tolerance: 2% relative L2 error
    with pytest.raises(StageSkipped, match="has no Linear/LSTM layer"):
        DynamicQuantize().apply(nn.Sequential(nn.Conv2d(3, 4, 3)), _ctx(torch.randn(1, 3, 8, 8)))
    with pytest.raises(ConfigError, match="DynamicQuantize.dtype: expected one of .*got 'int4'"):
        DynamicQuantize(dtype="int4")


def test_cpu_support_check_reads_flags():
    ok, reason = cpu_supports(torch.float16, flags={"avx2"})
    assert not ok and "avx512_fp16" in reason
    ok, reason = cpu_supports(torch.bfloat16, flags={"avx512_bf16"})
    assert ok and reason == ""


@pytest.mark.parametrize("stage_cls,dtype", [(CastBF16, torch.bfloat16), (CastFP16, torch.float16)])
def test_casts_skip_without_support_and_halve_bytes_with_it(monkeypatch, stage_cls, dtype):
    torch.manual_seed(0)
    model = tiny_c3d(width=32)
    full_bytes = bytes_on_disk(model)
    monkeypatch.setattr(quantize_mod, "cpu_supports", lambda d: (False, f"CPU lacks native {d}"))
    with pytest.raises(StageSkipped, match="CPU lacks native"):
        stage_cls().apply(model, _ctx(CLIP))
    monkeypatch.setattr(quantize_mod, "cpu_supports", lambda d: (True, ""))
    ref = model(CLIP)
    cast = stage_cls().apply(model, _ctx(CLIP))
    out = cast(CLIP)
    assert out.dtype == torch.float32 and next(cast.parameters()).dtype == dtype
    assert torch.allclose(out, ref, atol=0.05)
    assert 1.95 < full_bytes / bytes_on_disk(cast) <= 2.0


def test_onnx_export_matches_torch_and_runs_other_batch_sizes(tmp_path):
    torch.manual_seed(0)
    model = tiny_c3d()
    stage = OnnxExport(opset=17)
    ort_model = stage.apply(model, _ctx(CLIP, work_dir=tmp_path))
    assert isinstance(ort_model, OrtModule) and stage.max_abs_diff <= 1e-4
    assert (tmp_path / "model.onnx").stat().st_size == bytes_on_disk(ort_model)
    other = torch.randn(5, 3, 8, 16, 16)
    assert torch.allclose(ort_model(other), model(other), atol=1e-4)
    assert count_params(ort_model) > 0.9 * count_params(model)


def test_onnx_export_of_a_dict_input_model(tmp_path):
    class TwoInputs(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(4, 3), nn.Linear(6, 3)

        def forward(self, inputs):
            return self.a(inputs["video"]) + self.b(inputs["audio"])

    model = TwoInputs().eval()
    sample = {"video": torch.randn(2, 4), "audio": torch.randn(2, 6)}
    ort_model = OnnxExport().apply(model, _ctx(sample, work_dir=tmp_path))
    assert torch.allclose(ort_model(sample), model(sample), atol=1e-5)


def test_onnx_export_mismatch_is_a_clear_error(tmp_path):
    class Drifting(nn.Module):
        """Adds how often it was called: the traced graph freezes a different constant than the check saw."""

        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 2)
            self.calls = 0

        def forward(self, x):
            self.calls += 1
            return self.fc(x) + self.calls

    with pytest.raises(CompressionError, match=r"differs from torch by max abs 1 > atol 0.0001"):
        OnnxExport().apply(Drifting().eval(), _ctx(torch.randn(2, 4), work_dir=tmp_path))


class Student(nn.Module):
    def __init__(self, hidden: int = 4) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, hidden), nn.ReLU(), nn.Linear(hidden, 2))

    def forward(self, x):
        return self.net(x)


def test_distill_trains_a_smaller_student_with_mmengine(tmp_path):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 2, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long()
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Linear(2, 64), nn.ReLU(), nn.Linear(64, 2))
    opt = torch.optim.Adam(teacher.parameters(), lr=0.05)
    for _ in range(100):
        opt.zero_grad()
        nn.functional.cross_entropy(teacher(x), y).backward()
        opt.step()
    teacher.eval()
    accuracy = lambda m: float((m(x).argmax(1) == y).float().mean())  # noqa: E731
    assert accuracy(teacher) > 0.97
    loader = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True)
    ctx = CompressionContext(sample=x[:4], evaluate=accuracy, train_dataloader=loader, work_dir=tmp_path)
    student = Distill(student=dict(type=Student, hidden=4), temperature=2.0, alpha=0.5, epochs=8, lr=0.05).apply(teacher, ctx)
    assert isinstance(student, Student) and not student.training
    assert count_params(student) < count_params(teacher) / 10
    assert accuracy(student) > 0.9
    assert not any((tmp_path / "distill").rglob("*.pth"))  # no pickled checkpoints
    assert all(not p.requires_grad or p.grad is None for p in teacher.parameters())


def test_distill_needs_training_data_and_matching_outputs():
    teacher = nn.Linear(2, 2)
    with pytest.raises(ConfigError, match="no train_dataloader"):
        Distill(student=dict(type=Student)).apply(teacher, _ctx(torch.randn(2, 2)))
    loader = DataLoader(TensorDataset(torch.randn(4, 2), torch.zeros(4).long()), batch_size=2)
    with pytest.raises(ConfigError, match=r"output shape \(2, 3\) differs from the teacher's \(2, 2\)"):
        Distill(student=nn.Linear(2, 3)).apply(teacher, _ctx(torch.randn(2, 2), train_dataloader=loader))
    with pytest.raises(ConfigError, match="Distill.alpha: expected a number in \\[0, 1\\], got 2"):
        Distill(student=dict(type=Student), alpha=2)


def test_channel_prune_works_on_a_vkit_model_with_dict_inputs():
    from vkit.registry.registries import MODELS

    torch.manual_seed(0)
    model = MODELS.build(dict(
        type="VideoModel", backbones=dict(video=dict(type="TinyC3D", widths=(8, 16, 16), num_frames=4, input_size=(16, 16),
                                                     pool="avgmax")),
        head=dict(type="ClsHead", num_classes=3, dropout=0.0),
    )).eval()
    x = {"video": torch.randn(2, 3, 4, 16, 16)}
    before = count_params(model)
    stage = ChannelPrune(amount=0.5)
    pruned = stage.apply(model, _ctx(x))
    convs = [m for m in pruned.backbones["video"].features if isinstance(m, nn.Conv3d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(3, 4), (4, 8), (8, 8)]
    assert (pruned.head.fc.in_features, pruned.head.fc.out_features) == (16, 3)  # avg + max of 8 channels; 3 classes
    assert count_params(pruned) < 0.4 * before and pruned(x).shape == (2, 3)
    assert "kept the outputs of 'head.fc'" in stage.notes


@pytest.mark.parametrize("batch_first", [False, True])
def test_unfused_attention_matches_torch_and_gets_quantized(batch_first):
    from vkit.core.compression.quantize import LinearMultiheadAttention, unfuse_attention

    torch.manual_seed(0)

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attn = nn.MultiheadAttention(32, 4, batch_first=batch_first)
            self.fc = nn.Linear(32, 32)

        def forward(self, x):
            return self.fc(self.attn(x, x, x)[0])

    model = Block().eval()
    x = torch.randn(3, 5, 32) if batch_first else torch.randn(5, 3, 32)  # sequence length 5, batch 3
    mask = torch.rand(5, 5) > 0.7
    mask.fill_diagonal_(False)
    ref_out, ref_w = model.attn(x, x, x, attn_mask=mask)
    unfused = LinearMultiheadAttention.from_mha(model.attn).eval()
    out, w = unfused(x, x, x, attn_mask=mask)
    assert torch.allclose(out, ref_out, atol=1e-5) and torch.allclose(w, ref_w, atol=1e-5)
    ref = model(x)
    stage = DynamicQuantize()
    q = stage.apply(model, _ctx(x))
    assert stage.notes == "1 attention modules unfused into Linear layers"
    assert type(q.attn.q_proj).__module__.startswith("torch.ao.nn.quantized")
    assert (q(x) - ref).norm() / ref.norm() < 0.03
    assert unfuse_attention(nn.Sequential(nn.Linear(2, 2))) == 0
