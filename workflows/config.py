"""Merge a task's defaults, a user config file and ``--set`` overrides into one mmengine ``Config``.

Unknown keys are errors with a did-you-mean, the way a typo should be::

    cfg = build_config(task, "my.py", ["train.epochs=20", "model.head.dropout=0.2"])
    # --set train.epoch=20  →  ConfigError: train.epoch: unknown key (did you mean 'train.epochs'?)

Keys under a task's ``free_keys`` (e.g. ``model``) may hold anything.
Override values are parsed like mmengine's ``DictAction`` (``--cfg-options``):
ints, floats, booleans, ``None``, lists ``[a,b]`` and tuples ``(a,b)``.
"""
from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from vkit.registry.errors import ConfigError, did_you_mean


def parse_overrides(pairs: Sequence[str]) -> dict[str, Any]:
    """``["a.b=1", "c=[1,2]"]`` → ``{"a.b": 1, "c": [1, 2]}``; a pair without ``=`` is a ConfigError."""
    from mmengine.config import DictAction

    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {pair!r}: expected KEY=VALUE, e.g. train.epochs=20")
        out[key.strip()] = DictAction._parse_iterable(value.strip())
    return out


def _check_keys(given: Mapping[str, Any], defaults: Mapping[str, Any], free: Sequence[str], where: str, prefix: str = "") -> None:
    for key, value in given.items():
        path = f"{prefix}{key}"
        if key not in defaults:
            choices = [f"{prefix}{k}" for k in defaults]
            raise ConfigError(f"{where}: unknown key {path!r}{did_you_mean(path, choices)}; known keys here: {sorted(choices)}")
        if path in free or not isinstance(defaults[key], Mapping) or not isinstance(value, Mapping):
            continue
        _check_keys(value, defaults[key], free, where, prefix=f"{path}.")


def _nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for dotted, value in flat.items():
        node = nested
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {dotted}: {part!r} is set to a value and also used as a section")
        node[leaf] = value
    return nested


def build_config(
    defaults: Mapping[str, Any],
    config_file: str | Path | None = None,
    overrides: Sequence[str] | Mapping[str, Any] = (),
    *,
    free_keys: Sequence[str] = (),
) -> Any:
    """Return the merged ``mmengine.Config``: defaults ← file ← overrides, every key checked against defaults."""
    from mmengine.config import Config

    cfg = Config(copy.deepcopy(dict(defaults)))
    if config_file is not None:
        path = Path(config_file)
        if not path.is_file():
            raise ConfigError(f"config file {str(path)!r} does not exist")
        try:
            user = Config.fromfile(str(path)).to_dict()
        except Exception as err:  # mmengine raises many kinds on a malformed file
            raise ConfigError(f"config file {str(path)!r} cannot be read: {err}") from err
        _check_keys(user, defaults, free_keys, where=str(path))
        cfg.merge_from_dict(user)
    flat = parse_overrides(overrides) if not isinstance(overrides, Mapping) else dict(overrides)
    _check_keys(_nest(flat), defaults, free_keys, where="--set")
    cfg.merge_from_dict(flat)
    return cfg
