from __future__ import annotations

import pytest

from vkit.registry.errors import ConfigError
from vkit.workflows.config import build_config, parse_overrides

DEFAULTS = dict(seed=0, train=dict(epochs=5, lr=1e-3), data=dict(datalist=None, size=32), model=dict(head=dict(type="ClsHead")))


def test_overrides_are_typed_and_nested():
    cfg = build_config(DEFAULTS, overrides=["train.epochs=20", "train.lr=0.01", "data.datalist=/x/y.json", "seed=3"])
    assert cfg.train.epochs == 20 and isinstance(cfg.train.epochs, int)
    assert cfg.train.lr == pytest.approx(0.01)
    assert cfg.data.datalist == "/x/y.json"
    assert cfg.seed == 3
    assert cfg.data.size == 32  # untouched defaults survive


def test_parse_overrides_lists_and_none():
    assert parse_overrides(["a=[1,2]", "b=None", "c=true"]) == {"a": [1, 2], "b": None, "c": True}


def test_unknown_override_key_says_did_you_mean():
    with pytest.raises(ConfigError, match=r"unknown key 'train.epoch'.*did you mean 'train.epochs'"):
        build_config(DEFAULTS, overrides=["train.epoch=3"])


def test_override_without_equals_is_an_error():
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        build_config(DEFAULTS, overrides=["train.epochs"])


def test_free_keys_accept_new_subkeys():
    cfg = build_config(DEFAULTS, overrides=["model.head.dropout=0.2"], free_keys=("model",))
    assert cfg.model.head.dropout == 0.2
    with pytest.raises(ConfigError, match="model.head.dropout"):
        build_config(DEFAULTS, overrides=["model.head.dropout=0.2"])


def test_config_file_is_merged_and_checked(tmp_path):
    good = tmp_path / "good.py"
    good.write_text("train = dict(epochs=2)\n")
    assert build_config(DEFAULTS, good).train.epochs == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("trian:\n  epochs: 2\n")
    with pytest.raises(ConfigError, match=r"bad.yaml.*unknown key 'trian'.*did you mean 'train'"):
        build_config(DEFAULTS, bad)
    with pytest.raises(ConfigError, match="does not exist"):
        build_config(DEFAULTS, tmp_path / "missing.py")
