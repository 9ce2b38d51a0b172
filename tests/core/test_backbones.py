"""Registry-driven smoke tests: every backbone in BACKBONES (vkit's and the plugins') builds and keeps its contract."""
from __future__ import annotations

import copy
import inspect

import pytest
import torch
from safetensors.torch import save_file

from vkit.core.backbones import Backbone, prepare_for_inference
from vkit.registry.errors import CheckpointError, ConfigError
from vkit.registry.registries import BACKBONES


def _registered() -> list[str]:
    BACKBONES.import_from_location()
    try:  # the plugins' backbones are tested too, once the plugin manager exists
        from vkit.hooks.manager import get_plugin_manager
    except ImportError:
        pass
    else:
        get_plugin_manager().register_components()
    return sorted(BACKBONES.module_dict)


NAMES = _registered()
_TINY: dict[str, Backbone] = {}


def tiny(name: str, **extra) -> Backbone:
    """A fresh copy of the backbone built from its ``smoke_config`` (built once per name, seeded)."""
    if extra:
        torch.manual_seed(0)
        return BACKBONES.build(dict(type=name, **BACKBONES.get(name).smoke_config(), **extra))
    if name not in _TINY:
        torch.manual_seed(0)
        _TINY[name] = BACKBONES.build(dict(type=name, **BACKBONES.get(name).smoke_config())).eval()
    return copy.deepcopy(_TINY[name])


def test_registry_holds_the_builtin_backbones():
    builtin = {"X3D", "SlowOnly", "TSM", "TimeSformer", "Swin3D", "MViT", "MonaiDenseNet121", "MonaiResNet", "TinyC3D"}
    assert builtin <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_registered_backbone_is_a_vkit_backbone(name):
    cls = BACKBONES.get(name)
    assert issubclass(cls, Backbone), f"{name} ({cls}) must subclass vkit.core.backbones.Backbone"
    assert cls.modality in ("video", "volume")


@pytest.mark.parametrize("name", NAMES)
def test_tiny_backbone_returns_declared_shapes(name):
    net = tiny(name)
    assert isinstance(net.feature_dim, int) and net.feature_dim > 0
    assert len(net.input_size) == 2 and all(isinstance(v, int) for v in net.input_size)
    assert len(net.mean) == len(net.std) == net.in_channels
    x = net.example_input(batch=2)
    assert x.shape == (2, net.in_channels, net.num_frames, *net.input_size)
    with torch.no_grad():
        pooled = net(x)
        seq = net(x, temporal=True)
    assert pooled.shape == (2, net.feature_dim)
    assert seq.dim() == 3 and seq.shape[0] == 2 and seq.shape[2] == net.feature_dim
    assert 1 <= seq.shape[1] <= net.num_frames
    assert torch.isfinite(pooled).all() and torch.isfinite(seq).all()
    assert not torch.allclose(pooled[0], pooled[1]), "features must depend on the input"


@pytest.mark.parametrize("name", NAMES)
def test_output_temporal_option_matches_temporal_flag(name):
    ref = tiny(name)
    net = tiny(name, output="temporal").eval()
    net.load_state_dict(ref.state_dict())
    x = ref.example_input(batch=1)
    with torch.no_grad():
        assert torch.allclose(net(x), ref(x, temporal=True), atol=1e-6)
        assert net(x, temporal=False).shape == (1, ref.feature_dim)


def test_feature_map_backbones_pool_the_temporal_sequence():
    for name in ("X3D", "SlowOnly", "TSM", "Swin3D", "MonaiResNet", "TinyC3D"):
        net = tiny(name)
        x = net.example_input(batch=2)
        with torch.no_grad():
            assert torch.allclose(net(x), net(x, temporal=True).mean(1), atol=1e-5), name


@pytest.mark.parametrize("name", NAMES)
def test_default_config_builds(name):
    net = BACKBONES.build(dict(type=name))
    assert isinstance(net.feature_dim, int) and net.feature_dim > 0
    assert net.num_frames >= 1 and min(net.input_size) >= 1
    described = net.describe()
    assert described["name"] == name and described["params"] >= 0  # parameter-free backbones (MotionStats) exist


@pytest.mark.parametrize("cfg, dim, frames, size", [
    (dict(type="X3D", setting="s"), 432, 13, (160, 160)),
    (dict(type="X3D", setting="m"), 432, 16, (224, 224)),
    (dict(type="SlowOnly"), 2048, 8, (224, 224)),
    (dict(type="TSM"), 2048, 8, (224, 224)),
    (dict(type="TimeSformer"), 768, 8, (224, 224)),
    (dict(type="Swin3D"), 768, 32, (224, 224)),
    (dict(type="MViT"), 768, 16, (224, 224)),
    (dict(type="MonaiDenseNet121"), 1024, 96, (96, 96)),
    (dict(type="MonaiResNet", depth=50), 2048, 96, (96, 96)),
])
def test_standard_settings_match_mmaction_and_monai(cfg, dim, frames, size):
    net = BACKBONES.build(cfg)
    assert (net.feature_dim, net.num_frames, net.input_size) == (dim, frames, size)


def test_mmaction_wrappers_build_through_mmaction_registry_even_under_another_default_scope():
    from mmengine.registry import DefaultScope
    from mmaction.registry import MODELS

    with DefaultScope.overwrite_default_scope("mmengine"):  # what an mmengine Runner sets
        net = tiny("X3D", output="pooled")
    assert type(net.net) is MODELS.get("X3D")
    assert type(tiny("TSM").net) is MODELS.get("ResNetTSM")


@pytest.mark.parametrize("name", [n for n in NAMES if "pretrained" in inspect.signature(BACKBONES.get(n)).parameters])
@pytest.mark.parametrize("url", ["https://download.openmmlab.com/x3d.pth", "s3://bucket/w.safetensors"])
def test_pretrained_url_is_a_config_error(name, url):
    with pytest.raises(ConfigError, match=r"is a URL.*download.*safetensors"):
        BACKBONES.build(dict(type=name, pretrained=url))


def test_url_hidden_in_an_mmaction_override_is_refused():
    with pytest.raises(ConfigError, match=r"init_cfg\.checkpoint='https://"):
        BACKBONES.build(dict(type="SlowOnly", depth=18, init_cfg=dict(type="Pretrained", checkpoint="https://x/r.pth")))


@pytest.mark.parametrize("name", [n for n in NAMES if "pretrained" in inspect.signature(BACKBONES.get(n)).parameters])
def test_local_safetensors_loads(name, tmp_path):
    source = tiny(name)
    path = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    torch.manual_seed(123)
    loaded = tiny(name, pretrained=str(path)).eval()
    x = source.example_input(batch=1)
    with torch.no_grad():
        assert torch.allclose(loaded(x), source(x), atol=1e-6)


def test_upstream_state_dict_loads_into_the_wrapper(tmp_path):
    source = tiny("X3D")
    path = tmp_path / "x3d_upstream.safetensors"
    save_file({k: v.contiguous() for k, v in source.net.state_dict().items()}, str(path))  # keys without 'net.'
    loaded = tiny("X3D", pretrained=path)
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_pretrained_file_problems_are_named(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        BACKBONES.build(dict(type="TinyC3D", pretrained=str(tmp_path / "missing.safetensors")))
    with pytest.raises(CheckpointError, match="w.pth' does not exist"):  # a .pth is read (weights_only), if it exists
        BACKBONES.build(dict(type="TinyC3D", pretrained=str(tmp_path / "w.pth")))
    with pytest.raises(ConfigError, match="TorchScript"):
        BACKBONES.build(dict(type="TinyC3D", pretrained=str(tmp_path / "w.ts")))
    other = tmp_path / "other.safetensors"
    save_file({"foo": torch.zeros(2)}, str(other))
    with pytest.raises(CheckpointError, match=r"no key of the file names a key of the model.*\['foo'\]"):
        BACKBONES.build(dict(type="TinyC3D", pretrained=str(other)))
