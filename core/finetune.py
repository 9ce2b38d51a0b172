"""Fine-tuning controls of the ``train`` section: freeze, per-part learning rates, warm-up, presets.

Keys (all in :data:`vkit.core.task.DEFAULT_TRAIN`, checked with did-you-mean like the rest):

- ``freeze``: ``None``/``'none'`` (train everything), ``'backbone'`` (every backbone fixed:
  a linear probe of its features) or ``N`` (int): the stem and the first ``N`` stages of each
  backbone, mmaction2's ``frozen_stages`` convention (``0``: the stem only). Frozen parts stay in
  eval mode, so their BatchNorm statistics do not drift either (as mmaction2's ``_freeze_stages``).
- ``backbone_lr_mult``: the backbones' learning rate is ``lr * backbone_lr_mult`` (``0.1`` is the
  usual fine-tuning choice); through mmengine's ``paramwise_cfg`` ``custom_keys``.
- ``paramwise_cfg``: mmengine's ``paramwise_cfg`` as it is (``custom_keys``, ``norm_decay_mult``,
  ``bias_decay_mult`` ...), for layer-wise rates: ``{custom_keys: {backbones.video.net.layer4: {lr_mult: 0.5}}}``.
- ``warmup_epochs``: linear warm-up (mmengine ``LinearLR`` from ``lr/100``) before the ``scheduler``.
- ``feature_norm``: ``True`` standardises the (fused) features before the head with a BatchNorm without
  affine parameters, the linear probe of MAE / VideoMAE (He et al. 2022, appendix A.2): a frozen backbone's
  features come at whatever scale its pretraining left them, and a head trained for a few dozen steps cannot
  rescale them itself. Part of the model (``VideoModel(feature_norm=True)``): a reloaded checkpoint has it.
- ``preset``: ``'linear_probe'`` (= ``freeze='backbone', feature_norm=True``) or ``'finetune'``
  (= ``backbone_lr_mult=0.1, warmup_epochs=1, feature_norm=True``); a key set against its preset is an error.

Example::

    settings = finetune_settings(dict(DEFAULT_TRAIN, preset="linear_probe", epochs=5))
    optim_extra, schedulers = apply_finetune(model, settings)     # freezes; mmengine optim/scheduler pieces
"""
from __future__ import annotations

import re
import types
from collections.abc import Mapping
from typing import Any

from torch import nn

from vkit.registry.errors import ConfigError, did_you_mean

#: The ``train`` keys this module reads, with their defaults.
FINETUNE_DEFAULTS: dict[str, Any] = dict(freeze=None, backbone_lr_mult=1.0, paramwise_cfg=None, warmup_epochs=0,
                                         feature_norm=False, preset=None)
#: What each preset sets.
PRESETS: dict[str, dict[str, Any]] = {
    "linear_probe": dict(freeze="backbone", feature_norm=True),
    "finetune": dict(backbone_lr_mult=0.1, warmup_epochs=1, feature_norm=True),
}
_STAGE = re.compile(r"^(layer|denseblock|stage|res_layers?)\d+$")


def set_by(train: Mapping[str, Any], key: str) -> str:
    """``" (set by train.preset='finetune')"`` where ``train``'s preset, not the user, set ``key``; else ``""``."""
    preset = train.get("preset")
    if preset in PRESETS and key in PRESETS[preset] and train.get(key, FINETUNE_DEFAULTS[key]) == FINETUNE_DEFAULTS[key]:
        return f" (set by train.preset={preset!r})"
    return ""


def finetune_settings(train: Mapping[str, Any]) -> dict[str, Any]:
    """The fine-tuning keys of ``train`` checked, with its ``preset`` applied; errors name ``train.<key>``."""
    out = {k: train.get(k, v) for k, v in FINETUNE_DEFAULTS.items()}
    preset = out["preset"]
    if preset not in (None, "none"):
        if preset not in PRESETS:
            raise ConfigError(f"train.preset={preset!r}{did_you_mean(str(preset), PRESETS)}; expected one of "
                              f"{sorted(PRESETS)} or None")
        for key, value in PRESETS[preset].items():
            if out[key] not in (FINETUNE_DEFAULTS[key], value):
                raise ConfigError(f"train.{key}={out[key]!r} contradicts train.preset={preset!r}, which sets "
                                  f"{key}={value!r}; drop one of them")
            out[key] = value
    freeze = out["freeze"]
    if isinstance(freeze, str) and freeze.isdigit():
        freeze = int(freeze)
    if not (freeze in (None, "none", "backbone") or (isinstance(freeze, int) and not isinstance(freeze, bool)
                                                      and freeze >= 0)):
        raise ConfigError(f"train.freeze={freeze!r}; expected None/'none', 'backbone' or N >= 0 (the stem and the "
                          f"first N stages of each backbone)")
    out["freeze"] = None if freeze == "none" else freeze
    mult = out["backbone_lr_mult"]
    if isinstance(mult, bool) or not isinstance(mult, (int, float)) or mult < 0:
        raise ConfigError(f"train.backbone_lr_mult={mult!r}; expected a number >= 0 (0.1: backbones learn 10x slower)")
    warmup = out["warmup_epochs"]
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ConfigError(f"train.warmup_epochs={warmup!r}; expected an int >= 0")
    if warmup and warmup >= int(train.get("epochs", 1)):
        raise ConfigError(f"train.warmup_epochs={warmup}{set_by(train, 'warmup_epochs')} must be below "
                          f"train.epochs={train.get('epochs')}")
    if not isinstance(out["feature_norm"], bool):
        raise ConfigError(f"train.feature_norm={out['feature_norm']!r}; expected true or false (true: standardise "
                          f"the features before the head)")
    paramwise = out["paramwise_cfg"]
    if paramwise is not None and not isinstance(paramwise, Mapping):
        raise ConfigError(f"train.paramwise_cfg={paramwise!r}; expected a mapping such as "
                          "{custom_keys: {backbones: {lr_mult: 0.1}}} (mmengine's paramwise_cfg)")
    return out


def backbones_of(model: nn.Module) -> dict[str, nn.Module]:
    """``{parameter-name prefix: backbone}`` of the outermost backbones in ``model``: modules with the
    :class:`~vkit.core.backbones.Backbone` interface (``forward_temporal`` and ``feature_dim``; told by
    interface, not by import, so this module stays below :mod:`vkit.core.backbones`)."""
    found: dict[str, nn.Module] = {}
    for name, module in model.named_modules():
        is_backbone = callable(getattr(module, "forward_temporal", None)) and hasattr(module, "feature_dim")
        if is_backbone and not any(name.startswith(f"{p}.") for p in found):
            found[name] = module
    return found


def stage_modules(backbone: nn.Module) -> list[list[nn.Module]]:
    """The backbone's stages in order, the stem first: ``[[stem modules], [layer1], [layer2], ...]``.

    A backbone may define ``stage_modules()`` itself. Otherwise the stages are the children of the
    wrapped network (``net``, or its ``features``) named ``layerN`` / ``denseblockN`` / ``stageN``
    (a DenseNet's ``transitionN`` joins the block before it); the stem is every child before the first.
    Raises :class:`ConfigError` when none is recognised.
    """
    own = getattr(backbone, "stage_modules", None)
    if callable(own):
        return [list(group) for group in own()]
    root = getattr(backbone, "net", None) if isinstance(getattr(backbone, "net", None), nn.Module) else backbone
    if isinstance(getattr(root, "features", None), nn.Sequential) and not any(
            _STAGE.match(n) for n, _ in root.named_children()):
        root = root.features
    stem: list[nn.Module] = []
    stages: list[list[nn.Module]] = []
    for name, child in root.named_children():
        if _STAGE.match(name):
            stages.append([child])
        elif stages and name.startswith("transition"):
            stages[-1].append(child)
        elif not stages:
            stem.append(child)
    if not stages:
        raise ConfigError(f"train.freeze: backbone {type(backbone).__name__!r} has no stages vkit recognises "
                          f"(children named layerN / stageN / denseblockN); use freeze='backbone' or 'none'")
    return [stem, *stages]


def check_freeze(backbone: nn.Module, freeze: int, where: str = "") -> list[list[nn.Module]]:
    """``backbone``'s :func:`stage_modules`, or a :class:`ConfigError` when ``train.freeze=N`` names more stages
    than it has (``where``: its config key, for the message)."""
    stages = stage_modules(backbone)
    if freeze >= len(stages):
        at = f" ({where})" if where else ""
        raise ConfigError(f"train.freeze={freeze}: backbone {type(backbone).__name__!r}{at} has only "
                          f"{len(stages) - 1} stages after its stem (freeze=0..{len(stages) - 1}); use "
                          f"freeze='backbone' to fix it all")
    return stages


def _stay_eval(self: nn.Module, mode: bool = True) -> nn.Module:
    return nn.Module.train(self, False)


def freeze_module(module: nn.Module) -> None:
    """No gradients and eval mode for good (``model.train()`` leaves it in eval: BatchNorm statistics stay)."""
    module.requires_grad_(False)
    module.eval()
    module.train = types.MethodType(_stay_eval, module)  # type: ignore[method-assign]


def apply_finetune(model: nn.Module, settings: Mapping[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Freeze what ``settings['freeze']`` says and return ``(optim_wrapper extras, param_scheduler list)``.

    ``settings`` is the whole ``train`` section (``epochs``, ``scheduler`` and the keys above).
    """
    ft = finetune_settings(settings)
    backbones = backbones_of(model)
    freeze = ft["freeze"]
    for key, unset in (("freeze", None), ("backbone_lr_mult", 1.0), ("feature_norm", False)):
        if ft[key] != unset and not backbones:
            raise ConfigError(f"train.{key}={ft[key]!r}{set_by(settings, key)}: this model ({type(model).__name__}) "
                              f"has no backbone (it trains on features a frozen backbone computed); leave "
                              f"train.{'preset' if set_by(settings, key) else key} out")
    if freeze is not None:
        for backbone in backbones.values():
            if freeze == "backbone":
                freeze_module(backbone)
            else:
                stages = check_freeze(backbone, freeze)
                for group in stages[:freeze + 1]:
                    for module in group:
                        freeze_module(module)
    if ft["feature_norm"]:
        standardise = getattr(model, "standardise_features", None)
        if callable(standardise):
            standardise()
        elif not any(getattr(m, "feature_norm", None) is not None for m in model.modules()):
            # a wrapper of models built with it (compression's distillation) has it already; anything else can't
            raise ConfigError(f"train.feature_norm=True{set_by(settings, 'feature_norm')}: this model "
                              f"({type(model).__name__}) has no standardise_features(); it needs vkit's VideoModel")
    extra: dict[str, Any] = {}
    paramwise = dict(ft["paramwise_cfg"] or {})
    if float(ft["backbone_lr_mult"]) != 1.0:
        keys = {name: dict(lr_mult=float(ft["backbone_lr_mult"])) for name in backbones}
        paramwise["custom_keys"] = {**keys, **dict(paramwise.get("custom_keys") or {})}
    if paramwise:
        extra["paramwise_cfg"] = paramwise
    return extra, schedulers(settings, int(ft["warmup_epochs"]))


def schedulers(train: Mapping[str, Any], warmup: int = 0) -> list[dict[str, Any]]:
    """mmengine param schedulers: ``LinearLR`` warm-up over ``warmup`` epochs, then ``train['scheduler']``."""
    epochs = int(train["epochs"])
    kind = train.get("scheduler")
    out: list[dict[str, Any]] = []
    if warmup:
        out.append(dict(type="LinearLR", start_factor=0.01, by_epoch=True, begin=0, end=warmup,
                        convert_to_iter_based=True))
    if kind == "cosine":
        out.append(dict(type="CosineAnnealingLR", by_epoch=True, begin=warmup, end=epochs, T_max=epochs - warmup,
                        convert_to_iter_based=True))
    elif kind not in (None, "none"):
        raise ConfigError(f"train.scheduler: expected 'cosine' or None, got {kind!r}")
    return out


def trainable_summary(model: nn.Module) -> str:
    """``"1,234 of 3,812,345 parameters trained"``."""
    total = sum(p.numel() for p in model.parameters())
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return f"{trained:,} of {total:,} parameters trained"


__all__ = ["FINETUNE_DEFAULTS", "PRESETS", "apply_finetune", "backbones_of", "check_freeze", "finetune_settings",
           "freeze_module", "set_by",
           "schedulers", "stage_modules", "trainable_summary"]
