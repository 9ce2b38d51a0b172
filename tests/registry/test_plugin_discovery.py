"""Entry-point discovery of the ``vkit-demo-plugin`` package (metadata on the path, nothing installed), each case in a fresh interpreter."""
from __future__ import annotations

BUILTINS = "medical,education,security,recommendation"
HEAVY = ("torch", "mmengine", "mmaction", "monai")

LIST = """
import json, sys
from vkit.hooks.manager import get_plugin_manager
mgr = get_plugin_manager(extra=[e for e in sys.argv[1:]])
tasks = {name: cls.plugin for name, cls in mgr.tasks().items()}
commands = [c.name for c in mgr.cli_commands()]
print(json.dumps(dict(plugins=[p.to_dict() for p in mgr.plugins()], tasks=tasks, commands=commands,
                      errors=[str(e) for e in mgr.errors], versions=mgr.versions(),
                      heavy=[m for m in {heavy!r} if m in sys.modules],
                      demo_imported="vkit_demo_plugin.plugin" in sys.modules)))
""".replace("{heavy!r}", repr(HEAVY))


def test_demo_plugin_is_discovered_through_its_entry_point_without_heavy_imports(demo_plugin, run_python):
    out = run_python(LIST, VKIT_DISABLE_PLUGINS=BUILTINS)
    demo = next(p for p in out["plugins"] if p["name"] == "demo")
    assert demo["source"] == f"entry point {demo_plugin}"
    assert (demo["version"], demo["module"], demo["status"]) == ("0.1.0", "vkit_demo_plugin.plugin", "ok")
    assert demo["hooks"] == ["vkit_cli_commands", "vkit_register_components", "vkit_run_finished", "vkit_tasks"]
    assert out["tasks"] == {"demo-classify": "demo"}
    assert out["commands"] == ["demo-hello"]
    assert out["versions"] == {"demo": "0.1.0"}
    assert {p["name"]: p["status"] for p in out["plugins"] if p["name"] in BUILTINS.split(",")} == dict.fromkeys(
        BUILTINS.split(","), "disabled")
    assert out["errors"] == [] and out["heavy"] == []


def test_builtin_plugins_stay_import_light(run_python):
    out = run_python(LIST)
    assert {p["name"] for p in out["plugins"]} >= set(BUILTINS.split(","))
    assert out["heavy"] == [], "listing plugins and tasks must not import torch/mmengine/mmaction/monai"
    assert "demo" not in {p["name"] for p in out["plugins"]}  # only tests that ask for the demo package see it


def test_disable_and_no_autoload_env(demo_plugin, run_python):
    disabled = run_python(LIST, VKIT_DISABLE_PLUGINS=f"demo,{BUILTINS}")
    assert [p["status"] for p in disabled["plugins"] if p["name"] == "demo"] == ["disabled"]
    assert disabled["tasks"] == {} and disabled["demo_imported"] is False

    local_only = run_python(LIST, VKIT_NO_AUTOLOAD="1", VKIT_PLUGINS="vkit_fx_good")
    assert [(p["name"], p["source"]) for p in local_only["plugins"]] == [("vkit_fx_good", "VKIT_PLUGINS")]
    assert local_only["demo_imported"] is False


def test_entry_point_module_given_again_with_plugin_flag_loads_once(demo_plugin, run_python):
    out = run_python(LIST.replace("sys.argv[1:]", "['vkit_demo_plugin.plugin']"), VKIT_DISABLE_PLUGINS=BUILTINS)
    assert [p["name"] for p in out["plugins"] if p["status"] != "disabled"] == ["demo"]
    assert out["errors"] == [] and out["tasks"] == {"demo-classify": "demo"}


REGISTER = """
import json
from vkit.hooks.manager import get_plugin_manager
from vkit.registry.registries import HEADS
mgr = get_plugin_manager()
registered = mgr.register_components()
print(json.dumps(dict(registered=registered, head_module=HEADS.get("DemoPluginHead").__module__,
                      tasks={n: c.plugin for n, c in mgr.tasks().items()}, commands=[c.name for c in mgr.cli_commands()],
                      errors=[str(e) for e in mgr.errors])))
"""


def test_third_party_component_lands_in_vkit_registries_and_a_clash_names_both_plugins(demo_plugin, run_python):
    out = run_python(REGISTER, VKIT_DISABLE_PLUGINS=BUILTINS, VKIT_PLUGINS="vkit_fx_clash_demo")
    assert out["registered"] == {"demo": {"HEADS": ["DemoPluginHead"]}}
    assert out["head_module"] == "vkit_demo_plugin.heads"
    assert out["tasks"] == {"demo-classify": "demo"} and out["commands"] == ["demo-hello"]
    hint = "disable one plugin (VKIT_DISABLE_PLUGINS=vkit_fx_clash_demo)"
    assert out["errors"] == [
        "plugin \"vkit_fx_clash_demo\" cannot register 'DemoPluginHead' in HEADS: already registered by plugin "
        f"\"demo\"; rename the component or {hint}",
        f"plugin \"vkit_fx_clash_demo\" declares task 'demo-classify', already declared by demo; rename it or {hint}",
        f"plugin \"vkit_fx_clash_demo\" declares command 'demo-hello', already declared by demo; rename it or {hint}",
    ]


def test_the_demo_package_is_discovered_without_being_installed(demo_plugin, run_python):
    import importlib.metadata

    import pytest

    out = run_python(LIST, VKIT_DISABLE_PLUGINS=BUILTINS)
    assert "demo" in {p["name"] for p in out["plugins"]}
    with pytest.raises(importlib.metadata.PackageNotFoundError):  # the test environment stays as it was
        importlib.metadata.distribution(demo_plugin)
