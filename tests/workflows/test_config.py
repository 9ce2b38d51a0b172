from __future__ import annotations

import pytest

from vkit.registry.errors import ConfigError
from vkit.workflows.config import build_config, parse_overrides, parse_value

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


@pytest.mark.parametrize(("text", "expected"), [
    ("[112,112]", [112, 112]),
    ("(112,112)", (112, 112)),
    ("a,b", ["a", "b"]),
    ("/data/video(1).mp4", "/data/video(1).mp4"),
    ("[{type: CastBF16}]", [{"type": "CastBF16"}]),
    ("{'type':'X3D','setting':'s'}", {"type": "X3D", "setting": "s"}),
    ("[{type: ChannelPrune, amount: 0.5, recover: {epochs: 3}}]",
     [{"type": "ChannelPrune", "amount": 0.5, "recover": {"epochs": 3}}]),
    ("{a: '3', b: 3, c: None, d: true}", {"a": "3", "b": 3, "c": None, "d": True}),
])
def test_set_values_are_literals_mappings_included(text, expected):
    value = parse_value("k", text)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize(("text", "problem"), [
    ("[dict(type='CastBF16')]", r"dict\(\.\.\.\) is Python code; --set takes literal values.*\[\{type: X\}\]"),
    ("[1", r"'\[' is never closed"),
    ("1]", r"'\]' closes no bracket"),
    ("[1)", r"'\)' does not close the bracket before it"),
    ("[" * 40 + "]" * 40, r"brackets nest deeper than 32 levels"),
    ("x" * 20_000, r"is 20000 characters long; a --set value holds at most 10000"),
    ("{type:X3D}", r"'type:X3D' has no value; write \{key: value\} with a space after the colon"),
    ("{a: !!python/object/apply:os.system [ls]}", r"YAML tags, anchors and aliases are not allowed"),
    ("{a: &x [1], b: *x}", r"YAML tags, anchors and aliases are not allowed"),
])
def test_set_value_that_is_not_a_literal_names_the_key(text, problem):
    with pytest.raises(ConfigError, match=r"^--set k\.x=.*: " + problem) as err:
        parse_value("k.x", text)
    assert len(str(err.value)) < 400 and "\n" not in str(err.value)  # one line, the value shortened


@pytest.mark.parametrize(("override", "problem"), [
    ("train.epochs=abc", r"train.epochs='abc': expected a number \(the default is 5\)"),
    ("train=3", r"train is a section \(keys: epochs, lr\), not a value: set one of its keys, e.g. train.epochs="),
    ("train.epochs.x=3", r"train.epochs is a value \(the default is 5\), not a section"),
])
def test_set_value_of_the_wrong_kind_names_the_key(override, problem):
    with pytest.raises(ConfigError, match=r"^--set: " + problem):
        build_config(DEFAULTS, overrides=[override])
    assert build_config(DEFAULTS, overrides=["train.lr=1e-2"]).train.lr == pytest.approx(0.01)


def test_data_config_nested_too_deep_is_a_config_error(tmp_path):
    for name, text in (("deep.yaml", "train: {epochs: " + "[" * 3000 + "]" * 3000 + "}\n"),
                       ("deep.json", '{"train": ' + "[" * 100_000 + "]" * 100_000 + "}")):
        (tmp_path / name).write_text(text)
        with pytest.raises(ConfigError, match=rf"config file '.*{name}': nested too deeply to read as data"):
            build_config(DEFAULTS, tmp_path / name)
