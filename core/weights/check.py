"""Check every ``pretrained=`` in a run's config before any data is read, naming the config key.

A backbone config may sit anywhere in a task's config (``model.backbones.video``, the
security task's ``features.backbone``). :func:`check_config_weights` finds each mapping
whose ``type`` is a registered backbone and that sets ``pretrained``, builds that backbone
once and loads the weights into it, so a missing file, a pickle, a prefix that fits nothing
or a partial match fails at once as ``model.backbones.video.pretrained: ...`` rather than
later against a data file. The reports it returns are what the run records
(:func:`vkit.core.weights.load.record_reports`).

``vkit run`` calls :func:`check_weights` before it opens the run row (a bad ``pretrained`` adds no run), and the
lifecycle builds the model from the files that check read (:func:`~vkit.core.weights.load.reuse_weights`): each
file is read and hashed once per run.

Example::

    reports = check_config_weights(cfg)      # {'model.backbones.video': LoadReport(...)}
"""
from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from vkit.core.weights.formats import WeightsFile
from vkit.core.weights.load import LoadReport
from vkit.core.weights.options import OPTIONS as _OPTIONS
from vkit.registry.errors import CheckpointError, ConfigError, VkitError


def backbone_configs(cfg: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """``(dotted key, config)`` of every registered-backbone config in ``cfg`` that sets a ``pretrained`` option."""
    from vkit.registry.registries import BACKBONES

    node = cfg.to_dict() if hasattr(cfg, "to_dict") else cfg
    if isinstance(node, Mapping):
        kind = node.get("type")
        if isinstance(kind, str) and any(node.get(k) is not None for k in _OPTIONS) and _registered(BACKBONES, kind):
            yield path, dict(node)
            return
        for key, value in node.items():
            yield from backbone_configs(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, (list, tuple)):
        for index, value in enumerate(node):
            yield from backbone_configs(value, f"{path}.{index}")


def _registered(registry: Any, name: str) -> bool:
    try:
        return registry.get(name) is not None
    except Exception:  # noqa: BLE001 - an unknown scope or a broken location: the build reports it
        return False


def backbone_entries(cfg: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """``(dotted key, config)`` of every backbone config in ``cfg``: a mapping with ``type`` under a key
    ``backbone`` (``features.backbone``, ``content.backbone``) or a value of a ``backbones`` mapping
    (``model.backbones.video``), whether or not its type is registered."""
    node = cfg.to_dict() if hasattr(cfg, "to_dict") else cfg
    if isinstance(node, Mapping):
        for key, value in node.items():
            where = f"{path}.{key}" if path else str(key)
            if key == "backbone" and isinstance(value, Mapping) and "type" in value:
                yield where, dict(value)
            elif key == "backbones" and isinstance(value, Mapping):
                for name, sub in value.items():
                    if isinstance(sub, Mapping) and "type" in sub:
                        yield f"{where}.{name}", dict(sub)
            else:
                yield from backbone_entries(value, where)
    elif isinstance(node, (list, tuple)):
        for index, value in enumerate(node):
            yield from backbone_entries(value, f"{path}.{index}")


def check_backbone_keys(where: str, node: Mapping[str, Any]) -> type:
    """The class of backbone config ``node`` (at config key ``where``); a :class:`ConfigError` naming
    ``where.type`` for an unknown type, or ``where`` for a key the backbone does not take (did-you-mean and the
    accepted keys), before anything is built."""
    from vkit.core.backbones.base import accepted_keys
    from vkit.registry.errors import did_you_mean
    from vkit.registry.registries import BACKBONES, _names

    kind = node.get("type")
    if not isinstance(kind, str):
        return kind  # a class given in a .py config: built as it is
    scoped = f"{node['_scope_']}.{kind}" if node.get("_scope_") and "." not in kind else kind
    cls = BACKBONES.get(scoped)
    if cls is None:
        names = sorted(set(_names(BACKBONES)))
        raise ConfigError(f"{where}.type: unknown backbone {kind!r}{did_you_mean(kind, names)}; registered: "
                          f"{sorted(BACKBONES.module_dict)}")
    keys = accepted_keys(cls)
    if keys is not None:
        for key in node:
            if key not in keys and key not in ("type", "_scope_"):
                raise ConfigError(f"{where}: unknown key {key!r} for backbone {kind!r}{did_you_mean(key, keys)}; "
                                  f"accepted: {sorted(keys)}")
    return cls


@dataclass
class CheckedWeights:
    """What :func:`check_weights` found: ``reports`` (``{config key: LoadReport}``), the non-default fine-tuning
    keys (``tuned``) and the files it read (``files``: ``{path: WeightsFile}``, for
    :func:`~vkit.core.weights.load.reuse_weights`, so that the model is built from the same read)."""

    reports: dict[str, LoadReport] = field(default_factory=dict)
    tuned: dict[str, Any] = field(default_factory=dict)
    files: dict[str, WeightsFile] = field(default_factory=dict)


def check_weights(cfg: Any, store: Any) -> CheckedWeights:
    """Everything about a run's weights that can fail, before the run row exists and before any data is read: the
    ``train`` fine-tuning keys (:func:`vkit.core.finetune.finetune_settings`), ``run:ID`` resolved in ``store``,
    every ``pretrained`` read, verified and fitted (:func:`check_config_weights`), and the input mode a
    ``run:ID`` was pretrained on (:func:`vkit.core.ssl.inputs.check_run_inputs`)."""
    from vkit.core.weights.load import keep_weights, use_store

    from vkit.core.finetune import FINETUNE_DEFAULTS, finetune_settings

    entries = list(backbone_entries(cfg))
    for where, node in entries:  # an unknown type or key: before data, naming the key
        check_backbone_keys(where, node)
    train = dict(cfg.get("train") or {})
    settings = finetune_settings(train)
    tuned = {k: v for k, v in settings.items() if v != FINETUNE_DEFAULTS[k]}  # checked before data too
    check_finetune_backbones(entries, train, settings)
    use_store(store)
    with keep_weights() as files:
        reports = check_config_weights(cfg)
    from vkit.core.ssl.inputs import check_run_inputs

    check_run_inputs(cfg, reports)  # run:ID pretrained on another input (RGB vs frame differences): refused
    return CheckedWeights(reports, tuned, files)


def check_finetune_backbones(entries: list[tuple[str, dict[str, Any]]], train: Mapping[str, Any],
                             settings: Mapping[str, Any]) -> None:
    """``train.freeze`` / ``backbone_lr_mult`` against the config's backbones (``entries``:
    :func:`backbone_entries`), before data: refused where the model has no backbone of its own (it trains on
    features ``features.backbone`` computed) or where ``freeze=N`` names more stages than a backbone has (built on
    the meta device: no weights are made or read)."""
    from vkit.core.finetune import FINETUNE_DEFAULTS, check_freeze, set_by

    trained = [(w, n) for w, n in entries if w.startswith("model.")]
    for key in ("freeze", "backbone_lr_mult"):
        if settings[key] != FINETUNE_DEFAULTS[key] and entries and not trained:
            by = set_by(train, key)
            raise ConfigError(f"train.{key}={settings[key]!r}{by}: this task's model has no backbone of its own (it "
                              f"trains on features computed by {', '.join(w for w, _ in entries)}, which stays "
                              f"fixed); leave train.{'preset' if by else key} out")
    freeze = settings["freeze"]
    for where, node in entries:
        net = meta_build(where, node)
        if net is not None and isinstance(freeze, int) and not isinstance(freeze, bool) and (where, node) in trained:
            check_freeze(net, freeze, where)


def blamed_key(where: str, node: Mapping[str, Any], err: Exception, default: str = "") -> str:
    """``where.<key>`` of the key of ``node`` whose value ``err``'s message quotes (``arch='r3d_34'``), else
    ``where.<default>`` (or ``where``)."""
    key = next((k for k in node if k != "type" and f"{k}={node[k]!r}" in str(err)), default)
    return f"{where}.{key}" if key else where


def meta_build(where: str, node: Mapping[str, Any]) -> Any:
    """Backbone config ``node`` built on the meta device (no weights made or read; ``pretrained`` left out), so a
    bad argument (``arch='r3d_34'``) fails before data as ``model.backbones.video.arch: ...``; ``None`` where it
    cannot be built there for another reason (the model build reports it)."""
    import torch

    from vkit.registry.registries import BACKBONES

    plain = {k: v for k, v in copy.deepcopy(dict(node)).items() if k not in _OPTIONS}
    try:
        with torch.device("meta"):
            return BACKBONES.build(plain)
    except ConfigError as err:
        raise ConfigError(f"{blamed_key(where, node, err)}: {err}") from err
    except Exception:  # noqa: BLE001 - e.g. an op the meta device lacks: the real build reports its own errors
        return None


def check_run_weights(cfg: Any, ctx: Any, checked: CheckedWeights | None = None) -> CheckedWeights:
    """The lifecycle's step before any data is read: :func:`check_weights` (``checked``: what ``vkit run`` found
    before it opened the run row), its reports recorded on the run (:func:`~vkit.core.weights.load.record_reports`)
    and its fine-tuning keys in the summary."""
    from vkit.core.weights.load import record_reports, use_store

    if checked is None:
        checked = check_weights(cfg, ctx.store)
    use_store(ctx.store)
    record_reports(checked.reports, ctx)
    if checked.tuned:
        ctx.summary["fine-tuning"] = ", ".join(f"{k}={v!r}" for k, v in checked.tuned.items())
    return checked


def _fitting_arch(node: Mapping[str, Any]) -> str | None:
    """For a backbone with architectures (a class ``ARCHS`` mapping, e.g. VideoResNet's r3d_18 / mc3_18 /
    r2plus1d_18) whose ``pretrained`` does not fit: the other ``arch`` the file loads into, else ``None``."""
    from vkit.registry.registries import BACKBONES

    cls = BACKBONES.get(str(node.get("type")))
    archs = getattr(cls, "ARCHS", None)
    if not isinstance(archs, Mapping) or str(node.get("pretrained", "")).startswith("run:"):
        return None
    import inspect

    param = inspect.signature(cls).parameters.get("arch")
    current = node.get("arch", param.default if param is not None else None)
    for arch in archs:
        if arch == current:
            continue
        try:
            BACKBONES.build({**copy.deepcopy(dict(node)), "arch": arch})
        except VkitError:
            continue
        return str(arch)
    return None


def check_config_weights(cfg: Any) -> dict[str, LoadReport]:
    """Build each backbone of ``cfg`` that sets ``pretrained`` and load its weights; ``{key: report}``.

    Raises the loader's :class:`ConfigError` / :class:`CheckpointError` with the config key in front
    (``features.backbone.pretrained: ...``).
    """
    from vkit.core.backbones.base import check_pretrained
    from vkit.registry.registries import BACKBONES

    reports: dict[str, LoadReport] = {}
    for path, node in backbone_configs(cfg):
        where = path or "backbone"
        name = str(node["type"])
        if node.get("pretrained") is None:
            set_keys = [k for k in _OPTIONS[1:] if node.get(k) is not None]
            raise ConfigError(f"{where}.{set_keys[0]}: set without {where}.pretrained (the weights file or run:ID)")
        try:
            check_pretrained(node["pretrained"], name)
        except VkitError as err:
            raise type(err)(f"{where}.pretrained: {err}") from err
        try:
            net = BACKBONES.build(copy.deepcopy(node))
        except (CheckpointError, ConfigError) as err:
            # a key is to blame only where the message quotes the value given (a hint may name it too)
            other = _fitting_arch(node) if isinstance(err, CheckpointError) else None
            if other is not None:
                current = f"arch={node['arch']!r}" if "arch" in node else "the default arch"
                raise type(err)(f"{where}.arch: the file fits arch={other!r}, not {current} "
                                f"({where}.pretrained: {err})") from err
            raise type(err)(f"{blamed_key(where, node, err, 'pretrained')}: {err}") from err
        report = getattr(net, "pretrained_report", None)
        if report is None:
            raise ConfigError(f"{where}.pretrained: backbone {name!r} took pretrained={node['pretrained']!r} but never "
                              "loaded it (its __init__ must call self.load_pretrained(pretrained))")
        reports[where] = report
        del net
    return reports


__all__ = ["CheckedWeights", "backbone_configs", "check_config_weights", "check_run_weights", "check_weights"]
