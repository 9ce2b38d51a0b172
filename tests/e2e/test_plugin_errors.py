"""A plugin's faults, as the installed ``vkit`` reports them: which plugin, which class, which file and line."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import vkit_cli  # tests/helpers/vkit_cli.py: the installed command in a subprocess

pytestmark = pytest.mark.slow  # each case starts the vkit CLI (several import torch)
FIXTURE_PLUGINS = Path(__file__).resolve().parents[1] / "fixtures" / "plugins"


def vkit(*args: str, tmp: Path) -> subprocess.CompletedProcess:
    return vkit_cli.vkit(*args, cwd=tmp, check=False, timeout=180, drop=("VKIT_*",), env=dict(
        PYTHONPATH=str(FIXTURE_PLUGINS), VKIT_NO_AUTOLOAD="1", VKIT_CONFIG_DIR=str(tmp / "config"),
        VKIT_DB_URL=f"sqlite:///{tmp / 'vkit.db'}", VKIT_DATA=str(tmp / "data")))


def test_a_dataset_that_raises_is_named_with_its_plugin_class_file_and_line(tmp_path):
    proc = vkit("--plugin", "vkit_fx_bad_data", "run", "fx-bad-data", "--work-dir", str(tmp_path / "w"), tmp=tmp_path)
    assert proc.returncode == 2, proc.stderr
    [error] = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert error == ("Error: KeyError: 'path' in plugin \"vkit_fx_bad_data\" (FxBadDataset.__getitem__ at "
                     f"{FIXTURE_PLUGINS / 'vkit_fx_bad_data.py'}:18) (run with --debug for the traceback)")
    assert "Traceback" not in proc.stderr


def test_import_errors_name_file_and_line_and_debug_adds_the_traceback(tmp_path):
    where = f"(at {FIXTURE_PLUGINS / 'vkit_fx_import_error.py'}:4)"
    plain = vkit("--plugin", "vkit_fx_import_error", "tasks", tmp=tmp_path)
    assert plain.returncode == 0  # a broken plugin never takes the CLI down
    assert "Error importing plugin \"vkit_fx_import_error\": ModuleNotFoundError" in plain.stderr
    assert where in plain.stderr and "Traceback" not in plain.stderr
    debug = vkit("--debug", "--plugin", "vkit_fx_import_error", "tasks", tmp=tmp_path)
    assert "Traceback (most recent call last)" in debug.stderr
    assert f'File "{FIXTURE_PLUGINS / "vkit_fx_import_error.py"}", line 4' in debug.stderr


def test_plugins_check_debug_prints_each_failures_traceback(tmp_path):
    plain = vkit("--plugin", "vkit_fx_crash", "plugins", "check", "vkit_fx_crash", tmp=tmp_path)
    assert plain.returncode == 1 and "Traceback" not in plain.stdout
    debug = vkit("--debug", "--plugin", "vkit_fx_crash", "plugins", "check", "vkit_fx_crash", tmp=tmp_path)
    assert debug.returncode == 1
    lines = debug.stdout.splitlines()
    at = lines.index("FAIL  task fx-crash smoke run: RuntimeError: boom in fx-crash")
    assert lines[at + 1] == "    Traceback (most recent call last):"
    assert any(f'File "{FIXTURE_PLUGINS / "vkit_fx_crash.py"}", line 9, in _boom' in line for line in lines[at:])
