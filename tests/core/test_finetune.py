"""Fine-tuning controls of the train section (vkit.core.finetune) through the real mmengine Runner."""
from __future__ import annotations

import pytest
import torch

from vkit.core.engine import build_runner
from vkit.core.finetune import finetune_settings, stage_modules
from vkit.core.model import build_model
from vkit.core.task import DEFAULT_TRAIN
from vkit.registry.errors import ConfigError
from vkit.registry.registries import BACKBONES

MODEL = dict(backbones=dict(volume=dict(type="TinyC3D", widths=(4, 8), in_channels=1, modality="volume")),
             head=dict(type="ClsHead", num_classes=2))


class Cubes(torch.utils.data.Dataset):
    def __init__(self, n: int = 8) -> None:
        g = torch.Generator().manual_seed(0)
        self.x, self.y = torch.randn(n, 1, 4, 16, 16, generator=g), torch.arange(n) % 2
        self.x[self.y == 1, :, :, 4:12, 4:12] += 2.0

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> dict:
        return dict(inputs=dict(volume=self.x[i]), label=int(self.y[i]), case_id=f"c{i}")


def _train(tmp_path, **train):
    model = build_model(MODEL)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    runner = build_runner(model, work_dir=tmp_path, train_set=Cubes(), checkpoint=False,
                          train={**DEFAULT_TRAIN, "batch_size": 4, "lr": 0.05, "log_level": "ERROR", **train})
    runner.train()
    after = model.state_dict()
    changed = {k for k, v in after.items() if v.is_floating_point() and (k not in before or not torch.equal(v, before[k]))}
    return runner, changed


def test_linear_probe_keeps_the_backbone_and_its_batchnorm_fixed(tmp_path):
    _, changed = _train(tmp_path, epochs=1, preset="linear_probe")
    assert any(k.startswith("head.") for k in changed)
    assert all(k.startswith(("head.", "feature_norm.")) for k in changed), changed  # running stats did not drift either


def test_linear_probe_standardises_the_frozen_features_with_their_training_mean_and_variance(tmp_path):
    runner, _ = _train(tmp_path, epochs=2, batch_size=8, preset="linear_probe")  # 8 cubes: one batch an epoch
    model = runner.model.eval()
    with torch.no_grad():
        feats = model.extract_feat(dict(volume=Cubes().x))
    norm = model.feature_norm
    assert int(norm.num_batches_tracked) == 2  # the mean over both epochs' batches, not an exponential average
    assert torch.allclose(norm.running_mean, feats.mean(0), atol=1e-5)
    assert torch.allclose(norm.running_var, feats.var(0), rtol=1e-3, atol=1e-7)  # BatchNorm keeps the unbiased one
    with torch.no_grad():  # the head sees standardised features
        standardised = model.feature_norm(feats)
        assert torch.allclose(model(dict(volume=Cubes().x)), model.head(standardised), atol=1e-6)
    # the saved model is rebuilt with it: model_config says so and the state dict loads strictly
    assert model.model_config["feature_norm"] is True
    again = build_model(model.model_config)
    again.load_state_dict(model.state_dict(), strict=True)
    with torch.no_grad():
        assert torch.allclose(again.eval()(dict(volume=Cubes().x)), model(dict(volume=Cubes().x)), atol=1e-6)


def test_feature_norm_survives_a_one_sample_batch(tmp_path):
    model = build_model(dict(MODEL, feature_norm=True))
    runner = build_runner(model, work_dir=tmp_path, train_set=Cubes(9), checkpoint=False,  # batches 4, 4, 1
                          train=dict(DEFAULT_TRAIN, batch_size=4, lr=0.05, epochs=1, log_level="ERROR"))
    runner.train()
    assert int(model.feature_norm.num_batches_tracked) == 2  # the lone sample used the statistics so far


def test_freeze_stages_lr_mult_and_warmup(tmp_path):
    runner, changed = _train(tmp_path, epochs=2, freeze=1, backbone_lr_mult=0.1, warmup_epochs=1)
    assert not any(k.startswith("backbones.volume.features.0.") or k.startswith("backbones.volume.features.1.")
                   for k in changed)  # block 1 (conv + BN) frozen
    assert any(k.startswith("backbones.volume.features.4.") for k in changed)  # block 2 learns
    assert any(k.startswith("backbones.volume.features.5.running") for k in changed)
    groups = runner.optim_wrapper.optimizer.param_groups
    base = [g["initial_lr"] for g in groups if g["params"] and g["params"][0] is runner.model.head.fc.weight]
    slow = [g["initial_lr"] for g in groups if g["params"] and g["params"][0] is runner.model.backbones["volume"].features[4].weight]
    assert base == [pytest.approx(0.05)] and slow == [pytest.approx(0.005)]
    assert [type(s).__name__ for s in runner.param_schedulers] == ["LinearLR", "CosineAnnealingLR"]


@pytest.mark.parametrize("train, message", [
    (dict(freeze="backbon"), r"train.freeze='backbon'; expected None/'none', 'backbone' or N"),
    (dict(preset="linear"), r"train.preset='linear' \(did you mean 'linear_probe'\?\)"),
    (dict(preset="linear_probe", freeze=2), r"train.freeze=2 contradicts train.preset='linear_probe'"),
    (dict(warmup_epochs=5, epochs=5), r"train.warmup_epochs=5 must be below train.epochs=5"),
    (dict(backbone_lr_mult="fast"), r"train.backbone_lr_mult='fast'"),
    (dict(feature_norm="yes"), r"train.feature_norm='yes'; expected true or false"),
])
def test_bad_settings_name_the_key(train, message):
    with pytest.raises(ConfigError, match=message):
        finetune_settings(dict(DEFAULT_TRAIN, **train))


def test_unknown_train_key_has_a_did_you_mean():
    from vkit.workflows.config import build_config

    with pytest.raises(ConfigError, match=r"train.freez.*did you mean 'train.freeze'"):
        build_config(dict(train=dict(DEFAULT_TRAIN)), overrides=["train.freez=1"])


def test_stages_of_the_upstream_backbones():
    counts = {}
    for cfg in (dict(type="X3D"), dict(type="MonaiResNet", depth=10), dict(type="MonaiDenseNet121", init_features=8, growth_rate=4),
                dict(type="VideoResNet")):
        with torch.device("meta"):
            counts[cfg["type"]] = len(stage_modules(BACKBONES.build(cfg)))
    assert counts == dict(X3D=5, MonaiResNet=5, MonaiDenseNet121=5, VideoResNet=5)  # the stem + 4 stages
    with torch.device("meta"), pytest.raises(ConfigError, match="no stages vkit recognises"):
        stage_modules(BACKBONES.build(dict(type="TimeSformer", **BACKBONES.get("TimeSformer").smoke_config())))


def test_feature_norm_of_a_run_reaches_its_compression_recovery_unchanged():
    """Compression's distillation trains a wrapper of the run's model (student) and its copy (teacher): both
    already standardise, and the recovery's train section (the run's) must neither fail nor add another."""
    from vkit.core.finetune import apply_finetune

    student, teacher = build_model(dict(MODEL, feature_norm=True)), build_model(dict(MODEL, feature_norm=True))
    wrapper = torch.nn.Module()
    wrapper.student, wrapper.teacher = student, teacher
    norms = (student.feature_norm, teacher.feature_norm)
    apply_finetune(wrapper, dict(DEFAULT_TRAIN, preset="linear_probe"))
    assert (student.feature_norm, teacher.feature_norm) == norms
    plain = torch.nn.Module()
    plain.student = build_model(MODEL)
    with pytest.raises(ConfigError, match=r"train.feature_norm=True \(set by train.preset='linear_probe'\): this "
                                          r"model \(Module\) has no standardise_features\(\)"):
        apply_finetune(plain, dict(DEFAULT_TRAIN, preset="linear_probe"))


def test_the_presets_settings():
    probe = finetune_settings(dict(DEFAULT_TRAIN, preset="linear_probe", epochs=3))
    tune = finetune_settings(dict(DEFAULT_TRAIN, preset="finetune", epochs=3))
    assert (probe["freeze"], probe["feature_norm"], probe["backbone_lr_mult"]) == ("backbone", True, 1.0)
    assert (tune["freeze"], tune["feature_norm"], tune["backbone_lr_mult"], tune["warmup_epochs"]) == (None, True, 0.1, 1)
