"""Check every ``pretrained=`` in a run's config before any data is read, naming the config key.

A backbone config may sit anywhere in a task's config (``model.backbones.video``, the
security task's ``features.backbone``). :func:`check_config_weights` finds each mapping
whose ``type`` is a registered backbone and that sets ``pretrained``, builds that backbone
once and loads the weights into it, so a missing file, a pickle, a prefix that fits nothing
or a partial match fails at once as ``model.backbones.video.pretrained: ...`` rather than
later against a data file. The reports it returns are what the run records
(:func:`vkit.core.weights.load.record_reports`).

Example::

    reports = check_config_weights(cfg)      # {'model.backbones.video': LoadReport(...)}
"""
from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from typing import Any

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


def check_run_weights(cfg: Any, ctx: Any) -> dict[str, LoadReport]:
    """The lifecycle's step before any data is read: the ``train`` fine-tuning keys are checked
    (:func:`vkit.core.finetune.finetune_settings`), ``run:ID`` resolves in the run's store, and every
    ``pretrained`` is checked (:func:`check_config_weights`) and recorded on the run
    (:func:`~vkit.core.weights.load.record_reports`)."""
    from vkit.core.weights.load import record_reports, use_store

    from vkit.core.finetune import FINETUNE_DEFAULTS, finetune_settings

    train = dict(cfg.get("train") or {})
    tuned = {k: v for k, v in finetune_settings(train).items() if v != FINETUNE_DEFAULTS[k]}  # checked before data too
    use_store(ctx.store)
    reports = check_config_weights(cfg)
    from vkit.core.ssl.inputs import check_run_inputs

    check_run_inputs(cfg, reports)  # run:ID pretrained on another input (RGB vs frame differences): refused
    record_reports(reports, ctx)
    if tuned:
        ctx.summary["fine-tuning"] = ", ".join(f"{k}={v!r}" for k, v in tuned.items())
    return reports


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
            # an option is to blame only where the message quotes the value given (a hint may name it too)
            key = next((k for k in _OPTIONS[1:] if node.get(k) is not None and f"{k}={node[k]!r}" in str(err)),
                       "pretrained")
            raise type(err)(f"{where}.{key}: {err}") from err
        report = getattr(net, "pretrained_report", None)
        if report is None:
            raise ConfigError(f"{where}.pretrained: backbone {name!r} took pretrained={node['pretrained']!r} but never "
                              "loaded it (its __init__ must call self.load_pretrained(pretrained))")
        reports[where] = report
        del net
    return reports


__all__ = ["backbone_configs", "check_config_weights", "check_run_weights"]
