"""pretrained= reads the ecosystems' checkpoints safely (vkit.core.weights) and `vkit weights inspect` names the fit.

The three ecosystems, each saved the way it saves:
- mmaction2: a Recognizer3D with X3D-S built by mmaction2, saved as mmengine does ({'meta', 'state_dict'});
- MONAI: resnet10 saved as a bundle's models/model.pt (a plain state dict);
- torchvision r3d_18: torchvision is not installable beside this torch, so the state dict is made from the
  key names and shapes of torchvision/models/video/resnet.py, transcribed below independently of
  vkit's VideoResNet, and the features are compared with a functional forward written from the same file.
  This proves vkit's module tree, layer settings and key names agree with that transcription and that the
  parameter count equals torchvision's published one. Bit-equality with torchvision itself (all nine video
  architectures) is tested in tests/test_torchvision_parity.py, on fixtures written by torchvision 0.29.1.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from safetensors.torch import save_file

from vkit.core.backbones import MonaiResNet, TinyC3D, VideoResNet, X3D
from vkit.core.weights.check import check_run_weights
from vkit.core.weights.formats import read_weights
from vkit.registry.errors import CheckpointError, ConfigError
from vkit.registry.registries import BACKBONES


def _perturb(module: torch.nn.Module, seed: int) -> None:
    """Random values everywhere (BatchNorm statistics too), so a wrong mapping cannot pass by chance."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if t.is_floating_point():
                noise = torch.rand(t.shape, generator=g) + 0.5 if "running_var" in name else torch.randn(t.shape, generator=g) * 0.1
                t.copy_(noise if "running" in name else t + noise)


def _inspect(path: Path, *options: str) -> dict:
    from vkit.workflows.cli import cli

    result = CliRunner().invoke(cli, ["weights", "inspect", str(path), "--json", *options])
    assert result.exit_code == 0, result.output
    return json.loads(result.output[result.output.index("{"):])


# ----------------------------------------------------------------------------- the three ecosystems
@pytest.fixture(scope="module")
def mmaction_x3d(tmp_path_factory):
    from vkit.core.compat import ensure_mmaction

    ensure_mmaction()
    from mmaction.registry import MODELS

    recognizer = MODELS.build(dict(
        type="Recognizer3D", _scope_="mmaction",
        backbone=dict(type="X3D", gamma_w=1, gamma_b=2.25, gamma_d=2.2),  # configs/recognition/x3d/x3d_s_13x6x1
        cls_head=dict(type="X3DHead", in_channels=432, num_classes=400, spatial_type="avg", dropout_ratio=0.5,
                      fc1_bias=False),
        data_preprocessor=dict(type="ActionDataPreprocessor", mean=[114.75] * 3, std=[57.38] * 3, format_shape="NCTHW")))
    _perturb(recognizer, 0)
    path = tmp_path_factory.mktemp("mm") / "x3d_s_kinetics400.pth"
    torch.save({"meta": {"mmengine_version": "0.10.7", "epoch": 30, "dataset_meta": {"classes": ["a", "b"]}},
                "state_dict": recognizer.state_dict()}, path)  # what mmengine's CheckpointHook / publish_model write
    return recognizer.eval(), path


def test_mmaction2_x3d_checkpoint_loads_with_the_same_features(mmaction_x3d):
    recognizer, path = mmaction_x3d
    net = BACKBONES.build(dict(type="X3D", setting="s", pretrained=str(path))).eval()
    report = net.pretrained_report
    assert (report.format, report.strip, report.add) == ("mmengine", "backbone.", "net.")
    assert report.missing == [] and report.unexpected == [] and report.matched == len(recognizer.backbone.state_dict())
    assert report.ignored == 3  # cls_head.fc1.weight, fc2.weight, fc2.bias
    x = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        expected = recognizer.backbone(x).mean((2, 3, 4))  # X3DHead's average pooling
        assert (net(x) - expected).abs().max() <= 1e-5


@pytest.fixture(scope="module")
def monai_bundle(tmp_path_factory):
    from monai.networks.nets import resnet10

    net = resnet10(spatial_dims=3, n_input_channels=1, num_classes=2)
    _perturb(net, 1)
    bundle = tmp_path_factory.mktemp("bundle") / "lesion_bundle"
    (bundle / "models").mkdir(parents=True)
    (bundle / "configs").mkdir()
    torch.save(net.state_dict(), bundle / "models" / "model.pt")
    return net.eval(), bundle


def test_monai_bundle_resnet10_loads_with_the_same_features(monai_bundle):
    reference, bundle = monai_bundle
    net = MonaiResNet(depth=10, pretrained=bundle).eval()  # the bundle folder: its models/model.pt
    report = net.pretrained_report
    assert report.format == "monai-bundle" and (report.strip, report.add) == ("", "net.")
    assert report.missing == [] and report.unexpected == [] and report.ignored == 2  # its fc.weight, fc.bias
    x = torch.randn(2, 1, 16, 16, 16)
    seen = []
    handle = reference.layer4.register_forward_hook(lambda _m, _i, out: seen.append(out))
    with torch.no_grad():
        reference(x)
        handle.remove()
        assert (net(x) - seen[0].mean((2, 3, 4))).abs().max() <= 1e-5


def torchvision_r3d_18_shapes() -> dict[str, tuple[int, ...]]:
    """Key -> shape of torchvision's ``r3d_18().state_dict()`` (BasicStem, BasicBlock, Conv3DSimple, fc 400)."""
    shapes: dict[str, tuple[int, ...]] = {}

    def bn(key: str, c: int) -> None:
        shapes.update({f"{key}.weight": (c,), f"{key}.bias": (c,), f"{key}.running_mean": (c,),
                       f"{key}.running_var": (c,), f"{key}.num_batches_tracked": ()})

    shapes["stem.0.weight"] = (64, 3, 3, 7, 7)
    bn("stem.1", 64)
    inplanes = 64
    for layer, planes in enumerate((64, 128, 256, 512), start=1):
        for block in range(2):
            cin = inplanes if block == 0 else planes
            shapes[f"layer{layer}.{block}.conv1.0.weight"] = (planes, cin, 3, 3, 3)
            bn(f"layer{layer}.{block}.conv1.1", planes)
            shapes[f"layer{layer}.{block}.conv2.0.weight"] = (planes, planes, 3, 3, 3)
            bn(f"layer{layer}.{block}.conv2.1", planes)
            if block == 0 and (layer > 1):
                shapes[f"layer{layer}.0.downsample.0.weight"] = (planes, cin, 1, 1, 1)
                bn(f"layer{layer}.0.downsample.1", planes)
        inplanes = planes
    shapes.update({"fc.weight": (400, 512), "fc.bias": (400,)})
    return shapes


def r3d_18_reference(state: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """torchvision's r3d_18 forward up to avgpool, written with torch.nn.functional from the state dict."""
    def bn(h: torch.Tensor, key: str) -> torch.Tensor:
        return F.batch_norm(h, state[f"{key}.running_mean"], state[f"{key}.running_var"], state[f"{key}.weight"],
                            state[f"{key}.bias"], training=False, eps=1e-5)

    h = F.relu(bn(F.conv3d(x, state["stem.0.weight"], stride=(1, 2, 2), padding=(1, 3, 3)), "stem.1"))
    for layer in range(1, 5):
        for block in range(2):
            key, stride = f"layer{layer}.{block}", 2 if (layer > 1 and block == 0) else 1
            out = F.relu(bn(F.conv3d(h, state[f"{key}.conv1.0.weight"], stride=stride, padding=1), f"{key}.conv1.1"))
            out = bn(F.conv3d(out, state[f"{key}.conv2.0.weight"], padding=1), f"{key}.conv2.1")
            if f"{key}.downsample.0.weight" in state:
                h = bn(F.conv3d(h, state[f"{key}.downsample.0.weight"], stride=stride), f"{key}.downsample.1")
            h = F.relu(out + h)
    return h.mean((2, 3, 4))


@pytest.fixture(scope="module")
def torchvision_r3d(tmp_path_factory):
    g = torch.Generator().manual_seed(2)
    state = {k: (torch.tensor(7) if k.endswith("num_batches_tracked") else
                 torch.rand(s, generator=g) + 0.5 if "running_var" in k else torch.randn(s, generator=g) * 0.05)
             for k, s in torchvision_r3d_18_shapes().items()}
    path = tmp_path_factory.mktemp("tv") / "r3d_18-b3b3357e.pth"
    torch.save(state, path)  # torchvision's released files are model.state_dict() saved with torch.save
    return state, path


def test_torchvision_r3d_18_state_dict_loads_into_video_resnet(torchvision_r3d):
    state, path = torchvision_r3d
    net = VideoResNet(arch="r3d_18", pretrained=str(path)).eval()
    report = net.pretrained_report
    assert report.format == "state_dict" and report.missing == [] and report.unexpected == []
    assert report.ignored == 2  # fc.weight, fc.bias: the Kinetics classifier
    # torchvision documents num_params 33,371,472 for R3D_18 (fc included): the architecture is the same size
    assert sum(p.numel() for p in net.parameters()) + 512 * 400 + 400 == 33_371_472
    x = torch.randn(1, 3, 8, 32, 32)
    with torch.no_grad():
        assert (net(x) - r3d_18_reference(state, x)).abs().max() <= 1e-5


def test_video_resnet_and_s3d_sizes_match_torchvision_published_counts():
    for cfg, published in ((dict(type="VideoResNet", arch="mc3_18"), 11_695_440),
                           (dict(type="VideoResNet", arch="r2plus1d_18"), 31_505_325), (dict(type="S3D"), 8_320_048)):
        with torch.device("meta"):
            net = BACKBONES.build(cfg)
        classifier = net.feature_dim * 400 + 400  # torchvision's Kinetics-400 fc / classifier.1, which vkit drops
        assert sum(p.numel() for p in net.parameters()) + classifier == published, cfg
    state = {k[4:]: v for k, v in BACKBONES.build(dict(type="S3D")).state_dict().items()}
    assert "features.5.branch1.1.0.0.weight" in state  # SepInceptionBlock3D.branch1 -> TemporalSeparableConv -> CNA


def test_weights_inspect_names_backbone_and_prefix(mmaction_x3d, monai_bundle, torchvision_r3d):
    for path, backbone, variant, prefix in ((mmaction_x3d[1], "X3D", {}, "backbone."),
                                            (monai_bundle[1], "MonaiResNet", {"depth": 10}, ""),
                                            (torchvision_r3d[1], "VideoResNet", {"arch": "r3d_18"}, "")):
        info = _inspect(path)
        best = info["fits"][0]
        assert (best["backbone"], best["variant"], best["status"], best["prefix"]) == (backbone, variant, "fits", prefix)
        assert [f for f in info["fits"] if f["status"] == "fits"] == [best], path  # the one that fits exactly
    assert info["format"] == "state_dict" and info["tensor_shapes"]["fc.weight"][0] == [400, 512]


def test_weights_convert_writes_plain_safetensors(mmaction_x3d, tmp_path):
    from vkit.workflows.cli import cli

    out = tmp_path / "x3d_s.safetensors"
    args = ["weights", "convert", str(mmaction_x3d[1]), "--backbone", "X3D", "--out", str(out)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    converted = read_weights(out)
    assert converted.meta["source_sha256"] == read_weights(mmaction_x3d[1]).sha256
    net = X3D(pretrained=str(out))
    assert (net.pretrained_report.strip, net.pretrained_report.add, net.pretrained_report.ignored) == ("", "", 0)
    again = CliRunner().invoke(cli, args)
    assert again.exit_code != 0 and "exists" in str(again.exception)  # never overwritten without --force


def test_weights_convert_with_a_bad_set_value_is_a_one_line_error(tmp_path):
    from vkit.workflows.weights import convert_weights

    source = tmp_path / "w.pth"
    torch.save(TinyC3D(widths=(4,)).state_dict(), source)
    with pytest.raises(ConfigError, match=r"--backbone TinyC3D: cannot build it from --set \{'widths': 'x'\}: ValueError"):
        convert_weights(source, {"type": "TinyC3D", "widths": "x"}, tmp_path / "o.safetensors")
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match=r"--out '.*file/o.safetensors': '.*file' is not a folder"):
        convert_weights(source, {"type": "TinyC3D", "widths": [4]}, tmp_path / "file" / "o.safetensors")


# ----------------------------------------------------------------------------- safety
class Payload:
    """A class whose unpickling would leave a trace: loading the file must never run it."""

    marker: Path | None = None

    def __setstate__(self, state: dict) -> None:
        Path(state["marker"]).write_text("ran")


def test_a_pickle_holding_a_custom_class_is_refused(tmp_path):
    marker = tmp_path / "ran.txt"
    payload = Payload()
    payload.__dict__["marker"] = str(marker)
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": TinyC3D(widths=(4,)).state_dict(), "extra": payload}, path)
    with pytest.raises(CheckpointError, match=r"holds a .*Payload object; only tensors.*weights_only=True"):
        BACKBONES.build(dict(type="TinyC3D", widths=(4,), pretrained=str(path)))
    assert not marker.exists()


def test_a_bundle_whose_model_file_is_a_fifo_is_named_as_such(tmp_path):
    import os
    (tmp_path / "bundle" / "models").mkdir(parents=True)
    os.mkfifo(tmp_path / "bundle" / "models" / "model.pt")
    with pytest.raises(CheckpointError, match=r"model\.pt: not a regular file \(FIFO\)"):
        read_weights(tmp_path / "bundle")


# ----------------------------------------------------------------------------- prefixes, strictness, adaptation
def _tiny_file(tmp_path: Path, prefix: str = "", drop: str | None = None, **kwargs) -> tuple[TinyC3D, Path]:
    source = TinyC3D(widths=(4, 8), **kwargs).eval()
    _perturb(source, 3)
    state = {prefix + k: v for k, v in source.state_dict().items() if k != drop}
    path = tmp_path / "w.pth"
    torch.save(state, path)
    return source, path


def test_prefixes_found_or_named(tmp_path):
    _, path = _tiny_file(tmp_path, prefix="module.backbone.")
    net = TinyC3D(widths=(4, 8), pretrained=str(path))
    assert net.pretrained_report.strip == "module.backbone."
    with pytest.raises(CheckpointError, match="no key of the file names a key of the model after stripping 'net.'"):
        BACKBONES.build(dict(type="TinyC3D", widths=(4, 8), pretrained=str(path), pretrained_prefix="net."))
    named = BACKBONES.build(dict(type="TinyC3D", widths=(4, 8), pretrained=str(path), pretrained_prefix="module.backbone."))
    assert named.pretrained_report.matched == len(TinyC3D(widths=(4, 8)).state_dict())


def test_a_partial_match_is_an_error_unless_not_strict(tmp_path):
    _, path = _tiny_file(tmp_path, drop="features.0.weight")
    with pytest.raises(CheckpointError, match=r"only partly.*missing \['features.0.weight'\] \(1\).*pretrained_strict=False"):
        TinyC3D(widths=(4, 8), pretrained=str(path))
    net = BACKBONES.build(dict(type="TinyC3D", widths=(4, 8), pretrained=str(path), pretrained_strict=False))
    assert net.pretrained_report.counts()["missing"] == 1


def test_rgb_stem_is_summed_for_one_channel_and_other_shapes_refused(tmp_path):
    source, path = _tiny_file(tmp_path)
    grey = TinyC3D(widths=(4, 8), in_channels=1, pretrained=str(path)).eval()
    assert grey.pretrained_report.adapted == {"features.0.weight": "input channels 3 -> 1 (summed)"}
    x = torch.randn(1, 1, 4, 16, 16)
    with torch.no_grad():  # a grey clip: the summed stem answers as the RGB stem does to R = G = B
        assert (grey(x) - source(x.expand(-1, 3, -1, -1, -1))).abs().max() <= 1e-5
    with pytest.raises(CheckpointError, match=r"features.4.weight: the file's tensor has shape \(8, 4, 3, 3, 3\), the model's \(6, 4, 3, 3, 3\)"):
        TinyC3D(widths=(4, 6), pretrained=str(path))


def test_run_reference_without_the_resolver_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "vkit.core.weights.run_ref", None)  # as if vkit pretrain were not installed
    with pytest.raises(ConfigError, match="pretrained='run:3' names a run's weights.*cannot resolve"):
        TinyC3D(widths=(4,), pretrained="run:3")


def test_run_reference_loads_through_the_resolver_and_is_verified(tmp_path, monkeypatch):
    import vkit.core.weights.run_ref as run_ref
    from vkit.core.store import open_store

    monkeypatch.setenv("VKIT_DB_URL", f"sqlite:///{tmp_path / 'default.db'}")  # run:ID resolves in the default store
    open_store()
    source = TinyC3D(widths=(4,))
    path = tmp_path / "backbone.safetensors"
    save_file(dict(source.state_dict()), str(path))
    digest = read_weights(path).sha256
    answer = {"sha": digest}
    monkeypatch.setattr(run_ref, "resolve_run_weights", lambda ref, store: (path, answer["sha"]))
    net = BACKBONES.build(dict(type="TinyC3D", widths=(4,), pretrained="run:7"))
    assert (net.pretrained_report.ref, net.pretrained_report.sha256) == ("run:7", digest)
    answer["sha"] = "0" * 64  # the store recorded other bytes than the file now holds
    with pytest.raises(CheckpointError, match="the file changed since the run wrote it"):
        TinyC3D(widths=(4,), pretrained="run:7")


def test_run_reference_built_differently_names_the_pretrain_arguments_and_the_pretrained_key(tmp_path, monkeypatch):
    import vkit.core.weights.run_ref as run_ref
    from vkit.core.store import open_store
    from vkit.core.weights.check import check_config_weights

    monkeypatch.setenv("VKIT_DB_URL", f"sqlite:///{tmp_path / 'default.db'}")
    open_store()
    path = tmp_path / "backbone.safetensors"
    save_file(dict(TinyC3D(widths=(4, 8)).state_dict()), str(path))
    path.with_suffix(".json").write_text(json.dumps({"backbone": {"type": "TinyC3D", "widths": [4, 8]}}))
    monkeypatch.setattr(run_ref, "resolve_run_weights", lambda ref, store: (path, read_weights(path).sha256))
    cfg = {"model": {"backbones": {"video": {"type": "TinyC3D", "widths": (4,), "pretrained": "run:7"}}}}
    with pytest.raises(CheckpointError) as err:  # the key is pretrained (not the prefix option a hint names)
        check_config_weights(cfg)
    assert str(err.value).startswith("model.backbones.video.pretrained: ")
    assert "run:7 was pretrained with backbone arguments widths=[4, 8]" in str(err.value)
    assert "pretrained_prefix" not in str(err.value)


def test_run_reference_to_a_run_without_weights_does_not_suggest_loading_it(tmp_path):
    from vkit.core.store import open_store
    from vkit.core.weights.run_ref import resolve_run_weights

    store = open_store(f"sqlite:///{tmp_path / 'x.db'}")
    watch = store.start_run("security-anomaly", "security", {}, seed=0, kind="watch")
    with pytest.raises(CheckpointError) as err:
        resolve_run_weights(f"run:{watch}", store)
    assert f"run {watch} is a watch run" in str(err.value) and "--checkpoint" not in str(err.value)
    train = store.start_run("security-anomaly", "security", {}, seed=0)
    with pytest.raises(CheckpointError, match=rf"whole model \(load it with --checkpoint {train}\)"):
        resolve_run_weights(f"run:{train}", store)


def test_weights_inspect_reads_a_run_reference(tmp_path, monkeypatch):
    import vkit.core.weights.run_ref as run_ref
    from vkit.core.store import open_store
    from vkit.workflows.cli import cli

    db = f"sqlite:///{tmp_path / 'x.db'}"
    open_store(db)
    path = tmp_path / "backbone.safetensors"
    save_file(dict(TinyC3D(widths=(4,)).state_dict()), str(path))
    seen = []
    monkeypatch.setattr(run_ref, "resolve_run_weights",
                        lambda ref, store: seen.append((ref, store.url)) or (path, read_weights(path).sha256))
    result = CliRunner().invoke(cli, ["--db", db, "weights", "inspect", "run:4", "--backbone", "TinyC3D", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["path"] == str(path) and seen[0][0] == "run:4" and "x.db" in str(seen[0][1])


# ----------------------------------------------------------------------------- the run's check and record
def test_run_checks_weights_before_data_and_records_them(tmp_path):
    from vkit.core.store import open_store

    _, path = _tiny_file(tmp_path)
    store = open_store(f"sqlite:///{tmp_path / 'runs.db'}")
    run_id = store.start_run("t", "p", {}, seed=0)
    ctx = SimpleNamespace(store=store, run_id=run_id, summary={})
    cfg = dict(train=dict(epochs=2, preset="linear_probe"),
               model=dict(backbones=dict(video=dict(type="TinyC3D", widths=(4, 8), pretrained=str(path)))))
    check_run_weights(cfg, ctx)
    [artifact] = [a for a in store.run_artifacts(run_id) if a["kind"] == "pretrained"]
    assert artifact["sha256"] == read_weights(path).sha256
    counts = {m["key"]: m["value"] for m in store.run_metrics(run_id, split="pretrained")}
    assert counts["model.backbones.video/matched"] == 12 and counts["model.backbones.video/missing"] == 0
    assert "12 matched, 0 missing, 0 unexpected" in ctx.summary["pretrained model.backbones.video"]
    assert ctx.summary["fine-tuning"] == "freeze='backbone', feature_norm=True, preset='linear_probe'"
    bad = dict(cfg, model=dict(backbones=dict(video=dict(type="TinyC3D", pretrained=str(tmp_path / "x.pt")))))
    with pytest.raises(CheckpointError, match=r"^model.backbones.video.pretrained: .*x.pt' does not exist"):
        check_run_weights(bad, ctx)


def test_a_trained_model_is_rebuilt_without_its_pretrained_file(tmp_path):
    from vkit.core.model import build_model

    _, path = _tiny_file(tmp_path, prefix="backbone.")
    video = dict(type="TinyC3D", widths=(4, 8), pretrained=str(path), pretrained_prefix="backbone.")
    model = build_model(dict(backbones=dict(video=video), head=dict(type="ClsHead", num_classes=2)))
    assert model.backbones["video"].pretrained_report.matched == 12
    assert model.model_config["backbones"]["video"] == dict(type="TinyC3D", widths=(4, 8))
    path.unlink()  # the checkpoint holds the weights: vkit predict must not need the file it started from
    build_model(model.model_config)


def test_security_task_names_the_key_before_reading_data(tmp_path, monkeypatch):
    from vkit.workflows.run import run_task

    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"^features.backbone.pretrained: backbone 'MotionStats': 'x' has ending"):
        run_task("security-anomaly", overrides=["features.backbone.pretrained=x"], db_url=f"sqlite:///{tmp_path}/s.db",
                 data_root=tmp_path / "data", echo=lambda *_: None)
    assert not (tmp_path / "data").exists()  # the embedded data set was never generated


def test_frozen_features_are_keyed_by_the_weights_bytes_not_their_path(tmp_path):
    from vkit.core.embedding import FrozenEmbedder
    from vkit.core.sampling import FrameSampler

    _, path = _tiny_file(tmp_path)
    backbone = dict(type="TinyC3D", widths=(4, 8), pretrained=str(path))
    first = FrozenEmbedder(backbone, FrameSampler("dense", 2, 4), (16, 16))
    assert first.settings["pretrained_sha256"] == read_weights(path).sha256
    _tiny_file(tmp_path, prefix="backbone.")  # other bytes at the same path
    second = FrozenEmbedder(backbone, FrameSampler("dense", 2, 4), (16, 16))
    assert second.model_sha256 != first.model_sha256  # a cached feature of the old weights is never reused
    with pytest.raises(CheckpointError, match="the file changed since"):
        FrozenEmbedder.from_settings(first.settings)  # a model trained on the old features refuses the new file
