"""The CLI as a user runs it: a real `vkit` process, its output and exit code."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import vkit_cli  # tests/helpers/vkit_cli.py: the installed command in a subprocess


def vkit(*args: str, cwd: Path, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    return vkit_cli.vkit(*args, cwd=cwd, env=env, check=check, timeout=300)


def test_version_and_help_do_not_import_heavy_libraries(tmp_path):
    assert vkit("--version", cwd=tmp_path).stdout.startswith("vkit, version ")
    code = ("import sys\nfrom vkit.workflows.cli import main\nsys.argv=['vkit','--help']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "heavy=[m for m in ('torch','mmaction','monai','mmengine','sqlalchemy') if m in sys.modules]\n"
            "print('HEAVY', heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=60).stdout
    assert "HEAVY []" in out, out
    assert "run" in out and "plugins" in out and "db" in out


def test_tasks_and_plugins_list_json(tmp_path):
    tasks = json.loads(vkit("tasks", "--json", cwd=tmp_path).stdout)
    assert {"name": "medical-diagnosis", "plugin": "medical"}.items() <= next(
        t for t in tasks if t["name"] == "medical-diagnosis").items()
    plugins = {p["name"]: p for p in json.loads(vkit("plugins", "list", "--json", cwd=tmp_path).stdout)}
    assert {"medical", "education", "security", "recommendation"} <= set(plugins)
    assert plugins["medical"]["status"] == "ok"
    assert "vkit_tasks" in plugins["medical"]["hooks"]
    assert plugins["medical"]["source"].startswith("entry point")


def test_plugins_list_imports_no_torch(tmp_path):
    """`vkit plugins list` reads plugin modules and their tasks only: torch, MONAI, mmengine stay unimported."""
    code = ("import json, sys\nfrom vkit.workflows.cli import main\n"
            "try:\n    main(['plugins', 'list', '--json'])\nexcept SystemExit as err:\n    assert not err.code, err.code\n"
            "heavy=[m for m in ('torch','mmaction','monai','mmengine') if m in sys.modules]\n"
            "print('HEAVY', heavy, file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stderr, proc.stderr
    listed = {p["name"]: p for p in json.loads(proc.stdout)}
    assert listed["medical"]["tasks"] == ["medical-diagnosis"] and listed["medical"]["status"] == "ok"
    assert "security-anomaly" in listed["security"]["tasks"]


def test_db_upgrade_current_and_runs_list(tmp_path):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    vkit("--db", url, "db", "upgrade", cwd=tmp_path)
    assert (tmp_path / "cli.db").is_file()
    current = vkit("--db", url, "db", "current", cwd=tmp_path).stdout
    assert "cli.db" in current
    assert json.loads(vkit("--db", url, "runs", "list", "--json", cwd=tmp_path).stdout) == []


def test_errors_are_one_line_and_debug_shows_traceback(tmp_path):
    url = f"sqlite:///{tmp_path / 'e.db'}"
    proc = vkit("--db", url, "run", "medical-diagnosys", cwd=tmp_path, check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0, proc.stderr
    assert "medical-diagnosys" in proc.stderr and "medical-diagnosis" in proc.stderr  # did you mean
    debug = vkit("--debug", "--db", url, "run", "medical-diagnosys", cwd=tmp_path, check=False)
    assert "Traceback" in debug.stderr
    bad_key = vkit("--db", url, "run", "medical-diagnosis", "--set", "train.epoch=1", cwd=tmp_path, check=False)
    assert bad_key.returncode == 1 and "did you mean 'train.epochs'" in bad_key.stderr


def test_password_never_printed(tmp_path):
    proc = vkit("--db", "postgresql+psycopg://vkit:s3cret@127.0.0.1:1/none", "runs", "list", cwd=tmp_path, check=False)
    assert proc.returncode != 0
    assert "s3cret" not in proc.stdout + proc.stderr


def test_plugins_list_shows_a_failed_component_registration_as_failed(tmp_path):
    fixtures = Path(__file__).resolve().parents[1] / "fixtures" / "plugins"
    env = dict(PYTHONPATH=str(fixtures), VKIT_NO_AUTOLOAD="1", VKIT_CONFIG_DIR=str(tmp_path / "config"))
    proc = vkit("--plugin", "vkit_fx_good", "--plugin", "vkit_fx_override", "plugins", "list", "--components", "--json",
                cwd=tmp_path, env=env)
    plugins = {p["name"]: p for p in json.loads(proc.stdout)}
    assert plugins["vkit_fx_good"]["status"] == "ok"
    override = plugins["vkit_fx_override"]
    assert override["status"] == "failed"
    assert override["error"].startswith("plugin \"vkit_fx_override\" overrode 'FxGoodHead' in HEADS (force=True), "
                                        "registered by plugin \"vkit_fx_good\"")
