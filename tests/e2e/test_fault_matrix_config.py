"""Fault matrix of issue 21, item 19 (config cases), through the installed ``vkit`` command.

``--set`` values are data, never run: ``compression.stages=[dict(...)]`` and ``train.epochs=[1`` are one-line
ConfigErrors naming the key, the value and what ``--set`` takes, as are the other inputs of that family (no ``=``,
a section given a value, text for a number, a huge value, brackets nested too deep, a YAML config with a python tag
or nested too deep). Each is refused before anything is trained or stored: no store file appears.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

VKIT = shutil.which("vkit") or str(Path(sys.executable).with_name("vkit"))


def refused(tmp_path: Path, *args: str) -> str:
    """``vkit run medical-diagnosis ARGS`` in ``tmp_path``: checked to fail with one ``Error:`` line, no traceback,
    and no store written; returns that line."""
    db = tmp_path / "vkit.db"
    env = dict(os.environ, COLUMNS="250", VKIT_DISABLE_PLUGINS="demo", VKIT_DB_URL=f"sqlite:///{db}")
    proc = subprocess.run([VKIT, "run", "medical-diagnosis", *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    return _one_error_line(tmp_path, proc.returncode, proc.stdout, proc.stderr)


def refused_in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                       *args: str) -> str:
    """:func:`refused` through the console entry point in this process (the same ``main``, no interpreter start):
    for the cases of a family whose first case goes through the installed command."""
    from vkit.workflows.cli import main

    monkeypatch.chdir(tmp_path)
    for key, value in dict(COLUMNS="250", VKIT_DISABLE_PLUGINS="demo", VKIT_DB_URL=f"sqlite:///{tmp_path / 'vkit.db'}"
                           ).items():
        monkeypatch.setenv(key, value)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        main(["run", "medical-diagnosis", *args])
    out, err = capsys.readouterr()
    return _one_error_line(tmp_path, exited.value.code, out, err)


def _one_error_line(tmp_path: Path, code: object, stdout: str, stderr: str) -> str:
    assert code not in (0, None), stdout
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:") and "Traceback" not in stderr, stderr
    assert not (tmp_path / "vkit.db").exists() and not (tmp_path / "work_dirs").exists()  # refused before the run row
    return lines[0]


def test_item19_set_python_call_refused(tmp_path):
    line = refused(tmp_path, "--set", "compression.stages=[dict(...)]")
    assert "--set compression.stages='[dict(...)]': dict(...) is Python code; --set takes literal values" in line
    assert "[{type: X}] or [{'type': 'X'}]" in line


def test_item19_set_unclosed_bracket_refused(tmp_path):
    line = refused(tmp_path, "--set", "train.epochs=[1")
    assert "--set train.epochs='[1': '[' is never closed; --set takes literal values" in line


@pytest.mark.parametrize(("override", "expected"), [
    pytest.param("train.epochs", "--set 'train.epochs': expected KEY=VALUE", id="no-equals"),
    pytest.param("train.epochz=3", "unknown key 'train.epochz' (did you mean 'train.epochs'", id="unknown-key"),
    pytest.param("train=3", "train is a section (keys: epochs,", id="section-given-a-value"),
    pytest.param("train.epochs=abc", "train.epochs='abc': expected a number (the default is 12)", id="text-for-number"),
    pytest.param("train.epochs=" + "[" * 2000 + "]" * 2000, "brackets nest deeper than 32 levels", id="deep-brackets"),
    pytest.param("train.optimizer=" + "x" * 50_000, "is 50000 characters long; a --set value holds at most 10000",
                 id="huge-value"),
])
def test_item19_set_values_of_the_same_family_refused(tmp_path, monkeypatch, capsys, override, expected):
    """The installed command's exit code and one-line error are checked by the two cases above and the YAML ones."""
    line = refused_in_process(tmp_path, monkeypatch, capsys, "--set", override)
    assert expected in line, line
    assert len(line) < 600  # the value is shortened, never echoed whole


def test_item19_yaml_config_with_python_tag_refused(tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("train:\n  epochs: !!python/object/apply:os.system ['touch pwned']\n")
    line = refused(tmp_path, "--config", str(cfg))
    assert f"config file '{cfg}', line 2: the tag" in line and "YAML configs are data only" in line
    assert not (tmp_path / "pwned").exists()


def test_item19_yaml_config_nested_too_deep_refused(tmp_path):
    cfg = tmp_path / "deep.yaml"
    cfg.write_text("train: {epochs: " + "[" * 3000 + "]" * 3000 + "}\n")
    assert f"config file '{cfg}': nested too deeply to read as data" in refused(tmp_path, "--config", str(cfg))


def test_item19_data_path_is_never_parsed_as_a_set_value(tmp_path):
    """``--data`` is a path: a comma or an unpaired bracket in it stays text (it is not a ``--set`` value)."""
    folder = tmp_path / "scans,2024[1"
    folder.mkdir()
    env = dict(os.environ, COLUMNS="250", VKIT_DISABLE_PLUGINS="demo", VKIT_DB_URL=f"sqlite:///{tmp_path / 'vkit.db'}")
    proc = subprocess.run([VKIT, "run", "medical-diagnosis", "--data", str(folder)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("Error:") and str(folder) in line, line  # the path, whole
    assert "['" not in line and "--set" not in line and "Imbalanced" not in line, line  # not a list, not a value
