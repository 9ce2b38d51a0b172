"""The plugin manager in-process: each kind of broken plugin is reported by name and the others keep working."""
from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from vkit import hookimpl
from vkit.registry.errors import ConfigError, PluginError
from vkit.hooks.manager import PluginManager, get_plugin_manager, reset_plugin_manager

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "plugins"


def manager(*extra: str, **kwargs) -> PluginManager:
    return PluginManager(extra=list(extra), autoload=False, **kwargs)


def messages(mgr: PluginManager, plugin: str) -> list[str]:
    return [f.message for f in mgr.errors if f.plugin == plugin]


def info(mgr: PluginManager, name: str):
    return next(p for p in mgr.plugins() if p.name == name)


def test_good_plugin_loads_with_its_tasks_commands_and_version():
    mgr = manager("vkit_fx_good")
    assert mgr.errors == []
    good = info(mgr, "vkit_fx_good")
    assert (good.status, good.version, good.source, good.module) == ("ok", "1.2.3", "--plugin", "vkit_fx_good")
    assert good.hooks == ("vkit_cli_commands", "vkit_register_components", "vkit_run_finished",
                          "vkit_tasks", "vkit_video_scored")
    task = mgr.get_task("fx-good")
    assert task.plugin == "vkit_fx_good" and task.name == "fx-good"
    result = CliRunner().invoke(click.Group("vkit", commands=mgr.cli_commands()), ["fx-hello"])
    assert result.output == "hello from vkit_fx_good\n"
    assert mgr.versions() == {"vkit_fx_good": "1.2.3"}


def test_import_error_is_reported_with_name_and_traceback_and_others_work():
    mgr = manager("vkit_fx_import_error", "vkit_fx_good")
    [failure] = mgr.errors
    assert failure.plugin == "vkit_fx_import_error" and failure.stage == "import"
    assert failure.message == ('Error importing plugin "vkit_fx_import_error": '
                               "ModuleNotFoundError: No module named 'vkit_fx_no_such_dependency' "
                               f"(at {FIXTURES / 'vkit_fx_import_error.py'}:4)")  # the plugin's line, not importlib's
    assert "vkit_fx_import_error.py" in failure.traceback and "Traceback" in failure.traceback
    broken = info(mgr, "vkit_fx_import_error")
    assert (broken.status, broken.error, broken.traceback) == ("failed", failure.message, failure.traceback)
    assert list(mgr.tasks()) == ["fx-good"]
    assert "vkit_fx_import_error" not in mgr.versions()


def test_bad_signature_is_rejected_naming_hook_argument_and_expected_signature():
    mgr = manager("vkit_fx_bad_signature", "vkit_fx_good")
    [msg] = messages(mgr, "vkit_fx_bad_signature")
    assert msg.startswith('plugin "vkit_fx_bad_signature" does not match the vkit hookspecs: ')
    assert "'vkit_tasks'" in msg and "'config'" in msg and "\n" not in msg
    assert msg.endswith("expected vkit_tasks() -> list[type[Task]] | None")
    assert info(mgr, "vkit_fx_bad_signature").status == "failed"
    assert not mgr.pm.has_plugin("vkit_fx_bad_signature")
    assert list(mgr.tasks()) == ["fx-good"]


def test_misspelt_hook_is_rejected_with_did_you_mean():
    mgr = manager("vkit_fx_misspelt", "vkit_fx_good")
    [msg] = messages(mgr, "vkit_fx_misspelt")
    assert "unknown hook 'vkit_task' (did you mean 'vkit_tasks'?)" in msg
    assert info(mgr, "vkit_fx_misspelt").hooks == ("vkit_task",)
    assert not mgr.pm.has_plugin("vkit_fx_misspelt")
    mgr.pm.check_pending()  # what is left is valid
    assert list(mgr.tasks()) == ["fx-good"]


def test_raising_hooks_are_reported_and_never_hide_other_plugins(fresh_registries):
    mgr = manager("vkit_fx_raising", "vkit_fx_good")
    assert list(mgr.tasks()) == ["fx-good"]
    assert [c.name for c in mgr.cli_commands()] == ["fx-hello"]
    run = {"id": 7, "task": "fx-good", "status": "finished", "metrics": {}}
    mgr.notify_run_finished(run)
    mgr.notify_video_scored({"path": "a.mp4", "status": "scored"})
    good = sys.modules["vkit_fx_good"]
    assert good.RUNS[-1] is run and good.VIDEOS[-1]["path"] == "a.mp4"
    assert mgr.register_components(fresh_registries) == {"vkit_fx_good": {"HEADS": ["FxGoodHead"]}}
    assert list(fresh_registries["HEADS"].module_dict) == ["FxGoodHead"]  # FxRaisingHead rolled back
    at = f"(at {FIXTURES / 'vkit_fx_raising.py'}"
    assert messages(mgr, "vkit_fx_raising") == [
        f'plugin "vkit_fx_raising" raised in vkit_tasks: ValueError: tasks exploded {at}:9)',
        f'plugin "vkit_fx_raising" raised in vkit_cli_commands: ValueError: commands exploded {at}:14)',
        f'plugin "vkit_fx_raising" raised in vkit_run_finished: RuntimeError: run 7 exploded {at}:28)',
        f'plugin "vkit_fx_raising" raised in vkit_video_scored: RuntimeError: video a.mp4 exploded {at}:33)',
        f'plugin "vkit_fx_raising" raised in vkit_register_components: RuntimeError: components exploded {at}:23)',
    ]
    assert all("exploded" in f.traceback for f in mgr.errors)
    assert info(mgr, "vkit_fx_raising").error.endswith("(+4 more)")
    assert set(mgr.versions()) == {"vkit_fx_raising", "vkit_fx_good"}  # loaded, though faulty


def test_wrong_return_types_drop_only_the_bad_items():
    mgr = manager("vkit_fx_wrong_type")
    assert list(mgr.tasks()) == ["fx-wrong-type-ok"]
    assert mgr.cli_commands() == []
    prefix = 'plugin "vkit_fx_wrong_type" returned a bad value from '
    assert messages(mgr, "vkit_fx_wrong_type") == [
        prefix + "vkit_tasks: 'fx-string-task' is not a subclass of vkit.core.task.Task",
        prefix + "vkit_tasks: task class vkit_fx_wrong_type.NoDescriptionTask ('fx-no-description') "
                 "has description ''; expected a non-empty line",
        prefix + "vkit_tasks: task class vkit_fx_wrong_type.BadNameTask has name 'Fx Bad Name'; "
                 "expected lowercase words joined by '-', e.g. 'demo-classify'",
        prefix + "vkit_cli_commands: returned {'fx-cmd': <built-in function print>}, expected a list or None",
    ]


def test_task_and_command_clashes_name_both_plugins():
    mgr = manager("vkit_fx_good", "vkit_fx_clash")
    tasks = mgr.tasks()
    assert sorted(tasks) == ["fx-clash-unique", "fx-good"]
    assert tasks["fx-good"].plugin == "vkit_fx_good" and tasks["fx-clash-unique"].plugin == "vkit_fx_clash"
    assert [c.callback.__module__ for c in mgr.cli_commands()] == ["vkit_fx_good"]
    assert messages(mgr, "vkit_fx_clash") == [
        "plugin \"vkit_fx_clash\" declares task 'fx-good', already declared by vkit_fx_good; "
        "rename it or disable one plugin (VKIT_DISABLE_PLUGINS=vkit_fx_clash)",
        "plugin \"vkit_fx_clash\" declares command 'fx-hello', already declared by vkit_fx_good; "
        "rename it or disable one plugin (VKIT_DISABLE_PLUGINS=vkit_fx_clash)",
    ]


def test_component_clash_names_both_plugins_registry_and_name_and_rolls_back(fresh_registries):
    mgr = manager("vkit_fx_good", "vkit_fx_clash")
    assert mgr.register_components(fresh_registries) == {"vkit_fx_good": {"HEADS": ["FxGoodHead"]}}
    heads = fresh_registries["HEADS"].module_dict
    assert list(heads) == ["FxGoodHead"] and heads["FxGoodHead"].__module__ == "vkit_fx_good"
    [failure] = [f for f in mgr.errors if f.stage == "vkit_register_components"]
    assert failure.message == (
        "plugin \"vkit_fx_clash\" cannot register 'FxGoodHead' in HEADS: already registered by plugin "
        "\"vkit_fx_good\"; rename the component or disable one plugin (VKIT_DISABLE_PLUGINS=vkit_fx_clash)")
    assert "KeyError" in failure.traceback
    assert info(mgr, "vkit_fx_good").components == {"HEADS": ["FxGoodHead"]}
    assert info(mgr, "vkit_fx_clash").components == {}


def test_force_override_of_another_plugins_component_is_a_clash(fresh_registries):
    mgr = manager("vkit_fx_good", "vkit_fx_override")
    mgr.register_components(fresh_registries)
    assert fresh_registries["HEADS"].module_dict["FxGoodHead"].__module__ == "vkit_fx_good"
    [msg] = messages(mgr, "vkit_fx_override")
    assert "overrode 'FxGoodHead' in HEADS (force=True), registered by plugin \"vkit_fx_good\"" in msg


def test_a_plugin_registering_one_name_twice_is_named_as_the_holder(fresh_registries):
    twice = types.ModuleType("vkit_fx_twice")

    @hookimpl
    def vkit_register_components(registries):
        registries["HEADS"].register_module(module=type("TwiceHead", (), {"__module__": "vkit_fx_twice.heads"}))
        registries["HEADS"].register_module(module=type("TwiceHead", (), {"__module__": "vkit_fx_twice.heads"}))

    twice.vkit_register_components = vkit_register_components
    mgr = manager()
    mgr.register(twice, "twice")
    assert mgr.register_components(fresh_registries) == {}
    [msg] = messages(mgr, "twice")
    assert msg.startswith("plugin \"twice\" registers 'TwiceHead' in HEADS twice (module vkit_fx_twice.heads) (at ")
    assert msg.endswith("; register each component once, under a unique name") and "vkit core" not in msg
    assert "TwiceHead" not in fresh_registries["HEADS"].module_dict  # rolled back


def test_a_force_override_names_the_module_that_held_the_name(fresh_registries):
    held = type("FxGoodHead", (), {"__module__": "someones_package.heads"})
    fresh_registries["HEADS"].register_module(module=held)  # registered at import time, not through a hook
    mgr = manager("vkit_fx_override")
    mgr.register_components(fresh_registries)
    [msg] = messages(mgr, "vkit_fx_override")
    assert ("overrode 'FxGoodHead' in HEADS (force=True), registered by module someones_package.heads "
            "(not through a plugin hook)") in msg
    assert fresh_registries["HEADS"].module_dict["FxGoodHead"] is held


def test_component_clash_with_vkit_core_names_the_core_module(fresh_registries):
    core_head = type("FxGoodHead", (), {"__module__": "vkit.core.heads"})
    fresh_registries["HEADS"].register_module(module=core_head)
    mgr = manager("vkit_fx_good")
    assert mgr.register_components(fresh_registries) == {}
    [msg] = mgr.errors
    assert "cannot register 'FxGoodHead' in HEADS: already registered by vkit core (vkit.core.heads)" in str(msg)
    assert fresh_registries["HEADS"].module_dict["FxGoodHead"] is core_head


def test_register_components_runs_each_plugin_once_per_process(fresh_registries):
    first = manager("vkit_fx_good", "vkit_fx_raising")
    expected = {"vkit_fx_good": {"HEADS": ["FxGoodHead"]}}
    assert first.register_components(fresh_registries) == expected
    assert first.register_components(fresh_registries) == expected  # no "already registered" the second time
    assert len(first.errors) == 1
    second = manager("vkit_fx_good", "vkit_fx_raising")  # same modules: the hooks are not called again
    assert second.register_components(fresh_registries) == expected
    assert [f.stage for f in second.errors] == ["vkit_register_components"]


def test_unknown_registry_key_suggests_the_right_one(fresh_registries):
    plugin = types.ModuleType("fx_typo_plugin")

    @hookimpl
    def vkit_register_components(registries):
        registries["HEAD"].register_module(module=type("X", (), {}))

    plugin.vkit_register_components = vkit_register_components
    mgr = manager()
    assert mgr.register(plugin, "typo")
    mgr.register_components(fresh_registries)
    [msg] = mgr.errors
    assert "RegistryError: no registry 'HEAD' (did you mean 'HEADS'?)" in str(msg)
    assert info(mgr, "typo").source == "api"


def test_builtin_command_names_are_reserved():
    mgr = manager("vkit_fx_good")
    assert mgr.cli_commands(reserved=["fx-hello", "run"]) == []
    assert messages(mgr, "vkit_fx_good") == [
        "plugin \"vkit_fx_good\" declares command 'fx-hello', already declared by vkit (a built-in command); "
        "rename it or disable one plugin (VKIT_DISABLE_PLUGINS=vkit_fx_good)"]
    assert [c.name for c in mgr.cli_commands()] == ["fx-hello"]


def test_get_task_did_you_mean_and_failed_plugin_hint():
    mgr = manager("vkit_fx_good", "vkit_fx_import_error")
    with pytest.raises(ConfigError) as err:
        mgr.get_task("fx-god")
    assert str(err.value) == ("unknown task 'fx-god' (did you mean 'fx-good'?); available: fx-good; "
                              "plugins that failed to load: vkit_fx_import_error (see `vkit plugins list`)")


def test_disabled_plugins_are_listed_but_never_imported(monkeypatch):
    monkeypatch.setenv("VKIT_DISABLE_PLUGINS", "vkit_fx_import_error")
    mgr = manager("vkit_fx_good", "vkit_fx_import_error", "vkit_fx_raising", disabled=["vkit_fx_raising"])
    assert mgr.errors == []
    assert [(p.name, p.status) for p in mgr.plugins()] == [
        ("vkit_fx_good", "ok"), ("vkit_fx_import_error", "disabled"), ("vkit_fx_raising", "disabled")]
    assert "vkit_fx_raising" not in sys.modules
    assert list(mgr.versions()) == ["vkit_fx_good"]


def test_vkit_plugins_env_loads_modules_once(monkeypatch):
    monkeypatch.setenv("VKIT_PLUGINS", " vkit_fx_good , vkit_fx_misspelt,,vkit_fx_good")
    mgr = manager("vkit_fx_good")
    assert [(p.name, p.source, p.status) for p in mgr.plugins()] == [
        ("vkit_fx_good", "--plugin", "ok"), ("vkit_fx_misspelt", "VKIT_PLUGINS", "failed")]


def test_get_plugin_manager_caches_per_inputs_and_env(monkeypatch):
    monkeypatch.setenv("VKIT_NO_AUTOLOAD", "1")
    first = get_plugin_manager(extra=["vkit_fx_good"])
    assert get_plugin_manager(extra=["vkit_fx_good"]) is first
    assert [p.name for p in first.plugins()] == ["vkit_fx_good"]  # no entry points
    monkeypatch.setenv("VKIT_DISABLE_PLUGINS", "vkit_fx_good")
    other = get_plugin_manager(extra=["vkit_fx_good"])
    assert other is not first and other.plugins()[0].status == "disabled"
    reset_plugin_manager()
    assert get_plugin_manager(extra=["vkit_fx_good"]) is not other


def test_bad_autoload_env_value_is_a_config_error(monkeypatch):
    monkeypatch.setenv("VKIT_NO_AUTOLOAD", "maybe")
    with pytest.raises(ConfigError, match="VKIT_NO_AUTOLOAD='maybe': expected 1/true/yes/on"):
        PluginManager()


def test_raise_for_errors_and_json_listing(fresh_registries):
    mgr = manager("vkit_fx_good", "vkit_fx_import_error")
    mgr.register_components(fresh_registries)
    rows = json.loads(json.dumps([p.to_dict() for p in mgr.plugins()]))
    assert rows[0]["components"] == {"HEADS": ["FxGoodHead"]} and rows[1]["status"] == "failed"
    with pytest.raises(PluginError, match=r'^1 plugin error\(s\): Error importing plugin "vkit_fx_import_error"'):
        mgr.raise_for_errors()
    assert isinstance(mgr.errors[0].as_error(), PluginError)
    manager("vkit_fx_good").raise_for_errors()  # nothing to raise


def test_blame_names_the_plugin_frame_or_the_worker_traceback_text():
    mgr = manager("vkit_fx_good")
    good = sys.modules["vkit_fx_good"]
    try:
        exec(compile("raise KeyError('path')", good.__file__, "exec"), {"__name__": "vkit_fx_good"})
    except KeyError as err:
        assert mgr.blame(err) == f'plugin "vkit_fx_good" (<module> at {good.__file__}:1)'
    worker = RuntimeError(f'Caught KeyError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n'
                      f'  File "/usr/lib/torch/utils/data/fetch.py", line 52, in fetch\n'
                      f'  File "{good.__file__}", line 21, in __getitem__\nKeyError: \'path\'')
    assert mgr.blame(worker) == f'plugin "vkit_fx_good" (__getitem__ at {good.__file__}:21)'
    assert mgr.blame(ValueError("nothing of a plugin")) == ""


def test_register_components_require_raises_the_needed_plugins_failure(fresh_registries):
    mgr = manager("vkit_fx_good", "vkit_fx_raising")
    assert mgr.register_components(fresh_registries, require="vkit_fx_good") == {"vkit_fx_good": {"HEADS": ["FxGoodHead"]}}
    with pytest.raises(PluginError, match=r'^plugin "vkit_fx_raising" raised in vkit_register_components: '
                                          r"RuntimeError: components exploded .*`vkit plugins check vkit_fx_raising`"):
        mgr.register_components(fresh_registries, require="vkit_fx_raising")


def _ordered_plugin(name: str, calls: list[str], **marks: bool) -> types.ModuleType:
    """A plugin whose vkit_run_finished and vkit_report_sections note ``name`` in ``calls`` (``marks``: tryfirst...)."""
    plugin = types.ModuleType(f"vkit_fx_order_{name}")

    @hookimpl(**marks)
    def vkit_run_finished(run):
        calls.append(name)

    @hookimpl(**marks)
    def vkit_report_sections(run, store):
        from vkit.core.evaluation import ReportSection

        return [ReportSection(name, text=f"from {name}")]

    plugin.vkit_run_finished, plugin.vkit_report_sections = vkit_run_finished, vkit_report_sections
    return plugin


def test_hooks_run_in_pluggys_order_tryfirst_first_trylast_last():
    calls: list[str] = []
    mgr = manager()
    for name, marks in (("last", {"trylast": True}), ("first", {"tryfirst": True}), ("plain1", {}), ("plain2", {})):
        assert mgr.register(_ordered_plugin(name, calls, **marks), name)
    mgr.pm.hook.vkit_run_finished(run={"id": 1})  # pluggy's own order
    pluggys, calls[:] = list(calls), []
    assert pluggys == ["first", "plain2", "plain1", "last"]
    mgr.notify_run_finished({"id": 1})
    assert calls == pluggys
    assert [s.title for s in mgr.report_sections({"id": 1}, None)] == pluggys
    assert mgr.errors == []


def test_tryfirst_on_a_hook_that_claims_names_is_refused():
    late = types.ModuleType("vkit_fx_eager")

    @hookimpl(tryfirst=True)
    def vkit_tasks():
        return []

    late.vkit_tasks = vkit_tasks
    mgr = manager("vkit_fx_good")
    assert not mgr.register(late, "eager")
    assert messages(mgr, "eager") == [
        "plugin \"eager\" does not match the vkit hookspecs: hook 'vkit_tasks' is marked tryfirst; vkit takes tasks, "
        "commands and components in load order (a plugin loaded later never displaces an earlier one's names), "
        "so drop the mark"]
    assert sorted(mgr.tasks()) == ["fx-good"]
