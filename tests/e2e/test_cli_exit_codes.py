"""Exit codes of the installed ``vkit`` console script (a real subprocess), as CI and shell scripts see them.

``vkit plugins check`` exits 0 when every check passes and 1 when any fails;
a command's user error is one ``Error:`` line on stderr and exit 1; a usage
error (unknown command or option) is click's exit 2.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import vkit_cli  # tests/helpers/vkit_cli.py: the installed command in a subprocess

pytestmark = pytest.mark.slow  # each case starts the vkit CLI (several import torch)
FIXTURE_PLUGINS = Path(__file__).resolve().parents[1] / "fixtures" / "plugins"


def vkit(*args: str, tmp: Path, **env: str) -> subprocess.CompletedProcess:
    """``vkit ARGS`` with only the fixture plugins (no entry points), a private config dir and store."""
    return vkit_cli.vkit(*args, cwd=tmp, check=False, timeout=120, drop=("VKIT_*",), env=dict(
        PYTHONPATH=str(FIXTURE_PLUGINS), VKIT_NO_AUTOLOAD="1", VKIT_CONFIG_DIR=str(tmp / "config"),
        VKIT_DB_URL=f"sqlite:///{tmp / 'vkit.db'}", VKIT_DATA=str(tmp / "data"), **env))


def check(plugin: str, tmp: Path, *more: str, extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    loads = [arg for module in (*extra, plugin) for arg in ("--plugin", module)]
    return vkit(*loads, "plugins", "check", plugin, *more, tmp=tmp)


def test_plugins_check_passing_plugin_exits_0(tmp_path):
    proc = check("vkit_fx_pass", tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "5 passed, 0 failed"
    assert "PASS  component HEADS.FxPassHead: builds from smoke_config()" in proc.stdout


@pytest.mark.parametrize(("plugin", "extra", "failed_line"), [
    ("vkit_fx_misspelt", (), "FAIL  loads: plugin \"vkit_fx_misspelt\" does not match the vkit hookspecs: "
                             "unknown hook 'vkit_task' (did you mean 'vkit_tasks'?)"),
    ("vkit_fx_import_error", (), "FAIL  loads: Error importing plugin \"vkit_fx_import_error\": ModuleNotFoundError: "
                                 "No module named 'vkit_fx_no_such_dependency'"),
    ("vkit_fx_clash", ("vkit_fx_good",), "FAIL  no clashes: plugin \"vkit_fx_clash\" declares task 'fx-good', "
                                         "already declared by vkit_fx_good"),
    ("vkit_fx_crash", (), "FAIL  task fx-crash smoke run: RuntimeError: boom in fx-crash"),
])
def test_plugins_check_any_failure_exits_1(tmp_path, plugin, extra, failed_line):
    proc = check(plugin, tmp_path, extra=extra)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert any(line.startswith(failed_line) for line in proc.stdout.splitlines()), proc.stdout
    assert not proc.stdout.strip().splitlines()[-1].endswith(" 0 failed")


def test_plugins_check_json_failure_exits_1_and_unknown_plugin_exits_1(tmp_path):
    proc = check("vkit_fx_misspelt", tmp_path, "--json")
    assert proc.returncode == 1
    report = json.loads(proc.stdout)
    assert report["ok"] is False and report["checks"][0]["check"] == "loads"
    unknown = vkit("--plugin", "vkit_fx_pass", "plugins", "check", "vkit_fx_pas", tmp=tmp_path)
    assert unknown.returncode == 1
    assert "FAIL  loads: no plugin 'vkit_fx_pas' (did you mean 'vkit_fx_pass'?)" in unknown.stdout


@pytest.mark.parametrize(("args", "message"), [
    (("run", "fx-goood"), "Error: unknown task 'fx-goood' (did you mean 'fx-good'?)"),
    (("score", "fx-goood", ".", "--checkpoint", "1"), "Error: unknown task 'fx-goood'"),
    (("runs", "show", "999"), "Error: no vkit store at "),  # none in the test's folder: named, not created
    (("plugins", "enable", "vkit_fx_good"), "Error: plugin 'vkit_fx_good' is not disabled"),
    (("plugins", "disable", "vkit_fx_goo"), "Error: no plugin 'vkit_fx_goo' (did you mean 'vkit_fx_good'?)"),
    (("new-plugin", "Bad_Name"), "Error: plugin name 'Bad_Name': expected lowercase letters"),
    (("components", "fusion"), "Error: no registry 'fusion' (did you mean 'FUSIONS'?)"),
])
def test_user_errors_are_one_error_line_and_exit_1(tmp_path, args, message):
    proc = vkit("--plugin", "vkit_fx_good", *args, tmp=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and errors[0].startswith(message), proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("args", [("no-such-command",), ("runs", "list", "--no-such-option"), ("run",)])
def test_usage_errors_exit_2(tmp_path, args):
    proc = vkit(*args, tmp=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Usage: vkit" in proc.stderr


def test_success_paths_exit_0(tmp_path):
    for args in (("--version",), ("--help",), ("tasks", "--json"), ("runs", "list", "--json")):
        proc = vkit("--plugin", "vkit_fx_good", *args, tmp=tmp_path)
        assert proc.returncode == 0, (args, proc.stderr)
    hello = vkit("--plugin", "vkit_fx_good", "fx-hello", tmp=tmp_path)
    assert (hello.returncode, hello.stdout) == (0, "hello from vkit_fx_good\n")
