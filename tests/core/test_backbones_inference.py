"""Inference preparation, input checks and config errors of the backbones."""
from __future__ import annotations

import copy
import io

import pytest
import torch

from vkit.core.backbones import TinyC3D, fold_batchnorm, prepare_for_inference
from vkit.registry.errors import ConfigError, DataError
from vkit.registry.registries import BACKBONES

BACKBONES.import_from_location()
NAMES = sorted(BACKBONES.module_dict)
_TINY: dict[str, torch.nn.Module] = {}


def tiny(name: str):
    if name not in _TINY:
        torch.manual_seed(0)
        _TINY[name] = BACKBONES.build(dict(type=name, **BACKBONES.get(name).smoke_config())).eval()
    return copy.deepcopy(_TINY[name])


@pytest.mark.parametrize("name", NAMES)
def test_channels_last_3d_equals_contiguous(name):
    net = tiny(name)
    x = net.example_input(batch=2)
    expected = prepare_for_inference(copy.deepcopy(net), "contiguous").infer(x)
    fast = prepare_for_inference(net, "channels_last_3d")
    weights5d = [p for p in fast.parameters() if p.dim() == 5]
    assert all(p.is_contiguous(memory_format=torch.channels_last_3d) for p in weights5d)
    got = fast.infer(x)
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, atol=1e-4, rtol=1e-4)


def test_prepare_auto_follows_the_capability():
    conv = prepare_for_inference(tiny("X3D"))
    assert conv.prefers_channels_last_3d and conv.memory_format is torch.channels_last_3d
    assert not conv.training and not any(p.requires_grad for p in conv.parameters())
    out = conv.infer(conv.example_input())
    assert out.is_inference() and not out.requires_grad
    transformer = prepare_for_inference(tiny("TimeSformer"))
    assert transformer.memory_format is torch.contiguous_format
    with pytest.raises(ConfigError, match="memory_format='nhwc'"):
        prepare_for_inference(tiny("TinyC3D"), "nhwc")


def _randomise_batchnorm(net: torch.nn.Module) -> torch.nn.Module:
    """Non-trivial running statistics and affine terms, so folding has something to get wrong."""
    gen = torch.Generator().manual_seed(1)
    for m in net.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=gen) * 0.5)
            m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            if m.affine:
                m.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.data.copy_(torch.randn(n, generator=gen) * 0.2)
    return net


def _batchnorms(net: torch.nn.Module) -> int:
    return sum(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in net.modules())


@pytest.mark.parametrize("name", NAMES)
def test_folding_batchnorm_keeps_the_outputs(name):
    net = _randomise_batchnorm(tiny(name))
    x = net.example_input(batch=2)
    expected = prepare_for_inference(copy.deepcopy(net), fold_bn=False).infer(x)
    before = _batchnorms(net)
    folded = prepare_for_inference(net)
    assert folded.folded_batchnorms == before - _batchnorms(folded)
    assert torch.allclose(folded.infer(x), expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name, left", [("X3D", 0), ("TinyC3D", 0), ("SlowOnly", 0), ("MonaiDenseNet121", None)])
def test_folding_reaches_the_conv_nets_batchnorms(name, left):
    net = tiny(name)
    before = _batchnorms(net)
    count = fold_batchnorm(net)
    assert count > 0 and _batchnorms(net) == before - count
    if left is not None:
        assert _batchnorms(net) == left
    assert fold_batchnorm(net) == 0  # idempotent


def test_folding_leaves_custom_forward_order_alone_and_needs_eval_mode():
    class BnFirst(torch.nn.Module):  # children registered conv, bn, but bn runs first
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv3d(4, 4, 1)
            self.bn = torch.nn.BatchNorm3d(4)

        def forward(self, x):
            return self.conv(self.bn(x))

    net = _randomise_batchnorm(BnFirst()).eval()
    assert fold_batchnorm(net) == 0 and isinstance(net.bn, torch.nn.BatchNorm3d)
    with pytest.raises(ConfigError, match="BnFirst is in training mode; call .eval"):
        fold_batchnorm(net.train())


def test_onnx_export_matches_eager():
    ort = pytest.importorskip("onnxruntime")
    net = prepare_for_inference(tiny("TinyC3D"), "contiguous")
    x = net.example_input(batch=2)
    buf = io.BytesIO()
    torch.onnx.export(net, (x,), buf, dynamo=False, input_names=["x"], output_names=["y"])
    session = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {"x": x.numpy()})
    assert torch.allclose(torch.from_numpy(y), net.infer(x), atol=1e-5)


def test_input_checks_name_backbone_and_shapes():
    net = tiny("TinyC3D")
    with pytest.raises(DataError, match=r"'TinyC3D': expected a 5-D input .* got \(2, 3, 16, 16\)"):
        net(torch.zeros(2, 3, 16, 16))
    with pytest.raises(DataError, match=r"expected 3 channels .* got \(1, 1, 4, 16, 16\)"):
        net(torch.zeros(1, 1, 4, 16, 16))
    tsm = tiny("TSM")
    with pytest.raises(DataError, match=r"'TSM': needs exactly T=4 frames .* build it with num_frames=6"):
        tsm(torch.zeros(1, 3, 6, 32, 32))
    vit = tiny("TimeSformer")
    with pytest.raises(DataError, match=r"needs exactly \(32, 32\) pixels"):
        vit(torch.zeros(1, 3, 4, 48, 48))


def test_conv_backbones_take_any_clip_size():
    net = tiny("X3D")
    with torch.no_grad():
        assert net(torch.randn(1, 3, 6, 48, 40)).shape == (1, net.feature_dim)
        assert net(torch.randn(1, 3, 6, 48, 40), temporal=True).shape == (1, 6, net.feature_dim)


@pytest.mark.parametrize("cfg, message", [
    (dict(type="X3D", setting="l"), r"setting='l'.*expected one of \['m', 's'\]"),
    (dict(type="TinyC3D", output="frames"), r"output='frames'; expected one of \('pooled', 'temporal'\)"),
    (dict(type="TinyC3D", widths=()), r"widths=\(\)"),
    (dict(type="MonaiResNet", depth=19), r"depth=19.*expected one of \(10, 18"),
    (dict(type="X3D", num_frames=4, input_size=(32, 32, 3)), r"input_size=\(32, 32, 3\)"),
    (dict(type="TimeSformer", input_size=(32, 48)), r"needs H == W"),
    (dict(type="SlowOnly", depth=17), r"mmaction2 cannot build .*ResNet3dSlowOnly.*17"),
])
def test_config_errors_show_the_bad_value(cfg, message):
    with pytest.raises(ConfigError, match=message):
        BACKBONES.build(cfg)


def test_normalize_uses_the_declared_statistics():
    net = TinyC3D(widths=(4,), num_frames=2, input_size=(8, 8))
    clip = torch.tensor(net.mean).view(1, 3, 1, 1, 1).expand(1, 3, 2, 8, 8)
    assert torch.allclose(net.normalize(clip), torch.zeros_like(clip))
    assert torch.allclose(net.normalize(clip + torch.tensor(net.std).view(1, 3, 1, 1, 1)), torch.ones_like(clip))
    volume = TinyC3D(widths=(4,), in_channels=1, modality="volume")
    assert volume.modality == "volume" and volume.mean == (0.0,) and TinyC3D.modality == "video"


def test_tiny_c3d_default_is_about_50k_parameters():
    params = sum(p.numel() for p in TinyC3D().parameters())
    assert 40_000 <= params <= 70_000
