"""Config files: YAML/JSON are data (nothing they say runs), .py is code named by the user; type switches; arguments."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from vkit.registry.errors import ConfigError
from vkit.workflows.config import build_config, check_components

VKIT = shutil.which("vkit") or str(Path(__file__).parents[2] / ".venv" / "bin" / "vkit")
DEFAULTS = dict(seed=0, train=dict(epochs=5), model=dict(
    backbones=dict(volume=dict(type="TinyC3D", in_channels=1, modality="volume", widths=(16, 32), pool="avgmax")),
    head=dict(type="ClsHead", num_classes=2, dropout=0.2)))
FREE = ("model",)
EVIL = 'train:\n  epochs: 2\nseed: !!python/object/apply:os.system ["echo pwned > {out}"]\n'


def test_malicious_yaml_is_refused_naming_file_and_line_and_nothing_runs(tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    evil = tmp_path / "evil.yaml"
    evil.write_text(EVIL.format(out=out))
    with pytest.raises(ConfigError, match=r"evil.yaml', line 3: the tag .*python/object/apply:os.system.* not allowed"):
        build_config(DEFAULTS, evil, free_keys=FREE)
    assert not out.exists()


def test_malicious_yaml_through_vkit_run_executes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    evil = tmp_path / "evil.yml"
    evil.write_text(EVIL.format(out=out).replace("train:\n  epochs: 2\n", ""))
    env = dict(os.environ, VKIT_DATA=str(tmp_path / "data"))
    proc = subprocess.run([VKIT, "--db", f"sqlite:///{tmp_path / 'v.db'}", "run", "medical-diagnosis", "--config",
                           str(evil)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert f"config file '{evil}', line 1" in proc.stderr and "not allowed" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists() and not (tmp_path / "work_dirs").exists()


def test_yaml_and_json_configs_are_plain_data(tmp_path: Path) -> None:
    (tmp_path / "base.json").write_text(json.dumps({"train": {"epochs": 7}, "seed": 3}))
    child = tmp_path / "child.yaml"
    child.write_text("_base_: base.json\nseed: 4\n")
    cfg = build_config(DEFAULTS, child, free_keys=FREE)
    assert (cfg.seed, cfg.train.epochs) == (4, 7)
    broken = tmp_path / "broken.json"
    broken.write_text('{\n  "seed": 1,\n  "train": {\n}')
    with pytest.raises(ConfigError, match=r"broken.json', line 4: not valid JSON"):
        build_config(DEFAULTS, broken)
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("seed: 1\ntrain: [1\nx: 2\n")
    with pytest.raises(ConfigError, match=r"bad.yaml', line 3"):
        build_config(DEFAULTS, bad_yaml)


def test_a_data_config_cannot_pull_in_python(tmp_path: Path) -> None:
    out = tmp_path / "ran.txt"
    (tmp_path / "code.py").write_text(f"open({str(out)!r}, 'w').write('x')\nseed = 9\n")
    child = tmp_path / "child.yaml"
    child.write_text("_base_: [code.py]\n")
    with pytest.raises(ConfigError, match=r"_base_ 'code.py' is not YAML/JSON.*name it yourself with --config"):
        build_config(DEFAULTS, child)
    assert not out.exists()
    assert build_config(DEFAULTS, tmp_path / "code.py").seed == 9 and out.exists()   # named: it is code, it runs


def test_unknown_format_and_unreadable_python_config(tmp_path: Path) -> None:
    toml = tmp_path / "cfg.toml"
    toml.write_text("seed = 1\n")
    with pytest.raises(ConfigError, match=r"unknown format '.toml'"):
        build_config(DEFAULTS, toml)
    broken = tmp_path / "broken.py"
    broken.write_text("seed = 1 +\n")
    with pytest.raises(ConfigError, match=r"broken.py' cannot be read: \w+Error: \S"):
        build_config(DEFAULTS, broken)
    lazy = tmp_path / "lazy.py"          # mmengine's lazy-import mode: calling an import fails with an empty error
    lazy.write_text("import os\nseed = int(os.getpid())\n")
    with pytest.raises(ConfigError, match=r"lazy.py' cannot be read: line 2: RuntimeError: the config called something"):
        build_config(DEFAULTS, lazy)


def test_setting_type_starts_from_the_new_components_defaults() -> None:
    cfg = build_config(DEFAULTS, None, ["model.backbones.volume.type=MonaiDenseNet121",
                                        "model.backbones.volume.num_frames=32"], free_keys=FREE)
    assert cfg.model.backbones.volume.to_dict() == dict(type="MonaiDenseNet121", num_frames=32)
    assert cfg.model.head.dropout == 0.2                                   # siblings keep their keys
    same = build_config(DEFAULTS, None, ["model.backbones.volume.type=TinyC3D", "model.backbones.volume.pool=max"],
                        free_keys=FREE)
    assert same.model.backbones.volume.widths == (16, 32) and same.model.backbones.volume.pool == "max"


def test_type_switch_in_a_config_file(tmp_path: Path) -> None:
    cfg_file = tmp_path / "resnet.yaml"
    cfg_file.write_text("model:\n  backbones:\n    volume:\n      type: MonaiResNet\n      depth: 10\n")
    cfg = build_config(DEFAULTS, cfg_file, free_keys=FREE)
    assert cfg.model.backbones.volume.to_dict() == dict(type="MonaiResNet", depth=10)


def test_wrong_component_argument_lists_the_accepted_ones() -> None:
    with pytest.raises(ConfigError, match=r"--set: model.head: ClsHead \(head\) takes no argument 'dropot' "
                                          r"\(did you mean 'dropout'\?\); it takes: in_dim, num_classes, dropout"):
        build_config(DEFAULTS, None, ["model.head.dropot=0.1"], free_keys=FREE)
    with pytest.raises(ConfigError, match=r"TinyC3D \(backbone\) takes no argument 'widht'.*'widths'"):
        check_components(dict(model=dict(backbones=dict(v=dict(type="TinyC3D", widht=3)))))
    check_components(dict(stages=[dict(type="not-registered", anything=1)]))   # left to the build


def test_a_yaml_base_of_a_python_config_is_still_data(tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    (tmp_path / "evil.yaml").write_text(EVIL.format(out=out))
    code = tmp_path / "cfg.py"
    code.write_text("_base_ = ['evil.yaml']\nseed = 2\n")
    with pytest.raises(ConfigError, match=r"evil.yaml', line 3: the tag .* not allowed"):
        build_config(DEFAULTS, code, free_keys=FREE)
    assert not out.exists()
    (tmp_path / "fine.yaml").write_text("train:\n  epochs: 3\n")
    code.write_text("_base_ = ['fine.yaml']\nseed = 2\n")
    cfg = build_config(DEFAULTS, code, free_keys=FREE)
    assert (cfg.seed, cfg.train.epochs) == (2, 3)
