"""vkit's torchvision rebuilds against torchvision itself, on fixtures torchvision 0.29.1 wrote.

``tests/fixtures/torchvision/make_fixtures.py`` (run in a side venv: torchvision cannot be
installed beside this torch) wrote the key/shape manifest of the nine full-size
architectures and seven tiny networks built by torchvision's own classes with their input,
features and logits. Here vkit's rebuilds must have exactly torchvision's keys and shapes,
load the tiny weights through ``pretrained=`` (the user's path) and reproduce torchvision's
outputs. Full-size parity (random init) is measured by ``compare_full.py`` (docs/pretrained.md).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vkit.core.weights.fit import backbone_fits
from vkit.core.weights.formats import WeightsFile
from vkit.registry.errors import CheckpointError, ConfigError
from vkit.registry.registries import BACKBONES

FIX = Path(__file__).resolve().parent / "fixtures" / "torchvision"
MANIFEST = json.loads((FIX / "manifest.json").read_text(encoding="utf-8"))
TINY = json.loads((FIX / "tiny.json").read_text(encoding="utf-8"))
FULL = {
    **{a: dict(type="VideoResNet", arch=a) for a in ("r3d_18", "mc3_18", "r2plus1d_18")},
    "s3d": dict(type="S3D"),
    **{a: dict(type="TorchvisionMViT", arch=a) for a in ("mvit_v1_b", "mvit_v2_s")},
    **{a: dict(type="TorchvisionSwin3D", arch=a) for a in ("swin3d_t", "swin3d_s", "swin3d_b")},
}
TOLERANCE = 1e-5


def _classifier(state: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    for key in ("fc.", "head.1.", "head.", "classifier.1."):  # S3D's is a 1x1x1 conv on the averaged map
        if f"{key}weight" in state:
            return state[f"{key}weight"].flatten(1), state[f"{key}bias"]
    raise AssertionError(f"no classifier among {sorted(state)[:5]}")


def test_fixtures_cover_every_architecture_and_stay_small():
    assert sorted(MANIFEST) == sorted(FULL)
    sizes = {p.name: p.stat().st_size for p in FIX.glob("*.safetensors")}
    assert len(sizes) == 2 * len(TINY) and max(sizes.values()) < 1_000_000
    assert sum(p.stat().st_size for p in FIX.iterdir() if p.is_file()) < 5_000_000


@pytest.mark.parametrize("arch", sorted(FULL))
def test_rebuild_has_exactly_torchvisions_keys_and_shapes(arch):
    with torch.device("meta"):
        net = BACKBONES.build(FULL[arch])
    ours = {k.removeprefix("net."): list(v.shape) for k, v in net.state_dict().items()}
    dropped = tuple(p.removeprefix("net.") for p in net.pretrained_ignore)
    theirs = {k: v for k, v in MANIFEST[arch].items() if not k.startswith(dropped)}
    assert len(theirs) == len(MANIFEST[arch]) - 2  # only the classifier's weight and bias are left out
    assert ours == theirs


@pytest.mark.parametrize("name", sorted(TINY))
def test_tiny_torchvision_weights_reproduce_torchvisions_outputs(name):
    weights = FIX / f"{name}.weights.safetensors"
    net = BACKBONES.build(dict(TINY[name], pretrained=str(weights))).eval()
    report = net.pretrained_report
    assert (report.missing, report.unexpected, report.ignored) == ([], [], 2)
    io = load_file(FIX / f"{name}.io.safetensors")
    fresh = BACKBONES.build(TINY[name]).eval()  # the same network without the file
    with torch.no_grad():  # S3D's fixture holds its feature map (torchvision's ``features``)
        run = (lambda m: m.forward_features(io["input"])) if io["features"].dim() == 5 else (lambda m: m(io["input"]))
        features, without = run(net), run(fresh)
    assert (features - io["features"]).abs().max().item() <= TOLERANCE
    weight, bias = _classifier(load_file(weights))
    pooled = features.mean((2, 3, 4)) if features.dim() == 5 else features
    logits = torch.nn.functional.linear(pooled, weight, bias)
    assert (logits - io["logits"]).abs().max().item() <= TOLERANCE
    assert (without - io["features"]).abs().max().item() > 1e-3  # the comparison can fail


def test_torch_saved_state_dict_loads_as_torchvision_releases_it(tmp_path):
    state = load_file(FIX / "tiny_mvit_v2.weights.safetensors")
    path = tmp_path / "mvit_v2_tiny.pth"
    torch.save(state, path)  # torchvision's released files are model.state_dict() saved with torch.save
    net = BACKBONES.build(dict(TINY["tiny_mvit_v2"], pretrained=str(path))).eval()
    io = load_file(FIX / "tiny_mvit_v2.io.safetensors")
    with torch.no_grad():
        assert (net(io["input"]) - io["features"]).abs().max().item() <= TOLERANCE
        temporal = net(io["input"], temporal=True)
    assert temporal.shape == (2, 2, 16)  # (N, T / 2, D): patch tokens averaged over space


def test_other_architectures_weights_are_refused_naming_keys():
    cfg = dict(TINY["tiny_mvit_v2"], pretrained=str(FIX / "tiny_mvit_v1.weights.safetensors"))
    with pytest.raises(CheckpointError, match=r"pos_encoding\.(spatial|temporal)_pos|rel_pos"):
        BACKBONES.build(cfg)
    with pytest.raises(ConfigError, match=r"arch='swin3d_x'.*did you mean 'swin3d_[tsb]'"):
        BACKBONES.build(dict(type="TorchvisionSwin3D", arch="swin3d_x"))
    with pytest.raises(ConfigError, match=r"arch='mvit_v3'.*mvit_v1_b"):
        BACKBONES.build(dict(type="TorchvisionMViT", arch="mvit_v3"))


@pytest.mark.parametrize("arch", ["mvit_v1_b", "mvit_v2_s", "swin3d_t", "swin3d_s", "swin3d_b", "s3d"])
def test_weights_inspect_names_the_torchvision_architecture(arch):
    state = {k: torch.empty(shape, device="meta") for k, shape in MANIFEST[arch].items()}
    weights = WeightsFile(path=FIX / f"{arch}.pth", sha256="", size=0, format="state_dict", container=None, state=state)
    fits = [f for f in backbone_fits(weights) if f.status == "fits"]
    expected = dict(FULL[arch])
    assert [(f.backbone, f.variant, f.strip) for f in fits] == [(expected.pop("type"), expected, "")]


@pytest.mark.parametrize("arch", ["mvit_v1_b", "mvit_v2_s", "swin3d_t", "swin3d_b"])
def test_full_size_stages_for_freezing(arch):
    from vkit.core.finetune import stage_modules

    with torch.device("meta"):
        net = BACKBONES.build(FULL[arch])
    stages = stage_modules(net)
    assert len(stages) == 5  # the patch embedding + four scales, as VideoResNet's stem + layer1-4
    ids = [id(p) for group in stages for m in group for p in m.parameters()]
    assert sorted(ids) == sorted(id(p) for p in net.parameters())  # every parameter in exactly one stage


@pytest.mark.parametrize("name", ["tiny_mvit_v1", "tiny_mvit_v2", "tiny_swin3d"])
def test_tiny_transformers_train_with_stochastic_depth(name):
    torch.manual_seed(0)
    net = BACKBONES.build(dict(TINY[name], drop_path=0.5)).train()
    x = load_file(FIX / f"{name}.io.safetensors")["input"][:1]
    net(x).square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
    assert not torch.equal(net(x), net(x))  # blocks are dropped at random while training


def test_vkit_model_with_torchvision_weights_trains_a_head():
    from vkit.core.model import build_model

    backbone = dict(TINY["tiny_swin3d"], pretrained=str(FIX / "tiny_swin3d.weights.safetensors"))
    model = build_model(dict(backbones=dict(video=backbone), head=dict(type="ClsHead", num_classes=3)))
    x = load_file(FIX / "tiny_swin3d.io.safetensors")["input"]
    loss = model(dict(video=x), [dict(label=0), dict(label=2)], mode="loss")["loss"]
    loss.backward()
    assert model.backbones["video"].feature_dim == 16 and torch.isfinite(loss)
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    assert "pretrained" not in model.model_config["backbones"]["video"]  # the trained model keeps the weights itself


@pytest.mark.parametrize("name, stem", [("tiny_swin3d", "net.patch_embed.proj.weight"),
                                        ("tiny_mvit_v1", "net.conv_proj.weight")])
def test_rgb_torchvision_weights_load_into_one_channel_input(name, stem):
    cfg = dict(TINY[name], in_channels=1, pretrained=str(FIX / f"{name}.weights.safetensors"))
    net = BACKBONES.build(cfg)
    assert net.pretrained_report.adapted == {stem: "input channels 3 -> 1 (summed)"}
    rgb = load_file(FIX / f"{name}.weights.safetensors")[stem.removeprefix("net.")]
    assert torch.equal(net.state_dict()[stem], rgb.sum(1, keepdim=True))
