"""`vkit plugins disable/enable NAME` persist in the user config, and the plugin manager honours it."""
from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from vkit.registry.errors import ConfigError
from vkit.hooks.manager import get_plugin_manager, reset_plugin_manager, user_config_path, user_disabled_plugins
from vkit.workflows.plugin_config import plugins_disable_cmd, plugins_enable_cmd, set_plugin_disabled

PLUGIN = "vkit_pcc_plugin"


@pytest.fixture(autouse=True)
def config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private user-config folder and one importable plugin module; no entry points."""
    (tmp_path / f"{PLUGIN}.py").write_text(
        "from vkit import hookimpl\nfrom vkit.core.task import Task\n\n"
        "class PccTask(Task):\n    name = 'pcc-task'\n    description = 'A task of the plugin.'\n\n"
        "@hookimpl\ndef vkit_tasks():\n    return [PccTask]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("VKIT_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("VKIT_NO_AUTOLOAD", "1")
    reset_plugin_manager()
    yield tmp_path / "config"
    reset_plugin_manager()
    sys.modules.pop(PLUGIN, None)


@click.group()
@click.option("--plugin", "plugins", multiple=True)
@click.pass_context
def root(ctx: click.Context, plugins: tuple[str, ...]) -> None:
    ctx.obj = dict(plugins=plugins)


root.add_command(plugins_disable_cmd)
root.add_command(plugins_enable_cmd)


def status() -> str:
    return {p.name: p.status for p in get_plugin_manager(extra=[PLUGIN]).plugins()}[PLUGIN]


def test_disable_then_enable_round_trip(config_dir):
    assert user_config_path() == config_dir / "config.json"
    assert status() == "ok"
    result = CliRunner().invoke(root, ["--plugin", PLUGIN, "disable", PLUGIN])
    assert result.exit_code == 0, result.output
    assert result.output == f"disabled {PLUGIN} ({config_dir / 'config.json'})\n"
    assert json.loads((config_dir / "config.json").read_text()) == {
        "plugins": {"disabled": [PLUGIN], "disabled_tasks": {PLUGIN: ["pcc-task"]}}}
    sys.modules.pop(PLUGIN, None)
    assert status() == "disabled"
    with pytest.raises(ConfigError) as err:
        get_plugin_manager(extra=[PLUGIN]).get_task("pcc-task")
    assert str(err.value) == f"task 'pcc-task' belongs to plugin '{PLUGIN}', which is disabled (`vkit plugins enable {PLUGIN}`)"
    assert PLUGIN not in sys.modules  # a disabled plugin is never imported
    result = CliRunner().invoke(root, ["enable", PLUGIN])
    assert result.exit_code == 0, result.output
    assert user_disabled_plugins() == []
    assert json.loads((config_dir / "config.json").read_text()) == {"plugins": {"disabled": []}}
    assert status() == "ok"
    assert get_plugin_manager(extra=[PLUGIN]).get_task("pcc-task").plugin == PLUGIN


def test_a_task_of_a_plugin_disabled_by_the_environment_names_it(monkeypatch):
    monkeypatch.setenv("VKIT_DISABLE_PLUGINS", PLUGIN)
    with pytest.raises(ConfigError) as err:
        get_plugin_manager(extra=[PLUGIN]).get_task("pcc-task")
    assert str(err.value) == ("unknown task 'pcc-task'; available: none; disabled plugins (their tasks are not "
                              f"loaded): {PLUGIN} (remove it from VKIT_DISABLE_PLUGINS)")


def test_other_keys_of_the_config_are_kept(config_dir):
    config_dir.mkdir()
    (config_dir / "config.json").write_text(json.dumps({"theme": "dark", "plugins": {"disabled": ["x"]}}))
    assert set_plugin_disabled("y", True) is True
    assert set_plugin_disabled("y", True) is False
    assert json.loads((config_dir / "config.json").read_text()) == {"theme": "dark", "plugins": {"disabled": ["x", "y"]}}


def test_unknown_names_are_errors_with_a_hint():
    disable = CliRunner().invoke(root, ["--plugin", PLUGIN, "disable", "vkit_pcc_plugn"])
    assert isinstance(disable.exception, ConfigError)
    assert "no plugin 'vkit_pcc_plugn' (did you mean 'vkit_pcc_plugin'?)" in str(disable.exception)
    enable = CliRunner().invoke(root, ["enable", PLUGIN])
    assert isinstance(enable.exception, ConfigError)
    assert f"plugin '{PLUGIN}' is not disabled in" in str(enable.exception)


@pytest.mark.parametrize("content, problem", [
    ("{not json", "cannot be read"),
    ('{"plugins": {"disabled": "security"}}', "plugins.disabled must be a list of plugin names, got 'security'"),
    ('{"plugins": ["security"]}', "plugins.disabled must be a list of plugin names"),
])
def test_a_malformed_config_is_a_config_error_naming_the_file(config_dir, content, problem):
    config_dir.mkdir()
    (config_dir / "config.json").write_text(content)
    with pytest.raises(ConfigError) as err:
        get_plugin_manager(extra=[PLUGIN])
    assert str(config_dir / "config.json") in str(err.value) and problem in str(err.value)
