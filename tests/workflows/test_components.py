"""`vkit components`: every registered component (core and plugins) with owner and constructor arguments."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from vkit.registry.errors import ConfigError
from vkit.workflows.components import FILLED_NOTE, catalogue

ROOT = Path(__file__).resolve().parents[2]
FIXTURE_PLUGINS = ROOT / "tests" / "fixtures" / "plugins"


@pytest.fixture(autouse=True)
def fresh_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fixture plugins importable, a private user config; registries and managers restored afterwards."""
    from vkit.hooks.manager import get_plugin_manager, reset_plugin_manager
    from vkit.registry.registries import REGISTRIES

    monkeypatch.syspath_prepend(str(FIXTURE_PLUGINS))
    monkeypatch.setenv("VKIT_CONFIG_DIR", str(tmp_path / "config"))
    for var in ("VKIT_PLUGINS", "VKIT_DISABLE_PLUGINS", "VKIT_NO_AUTOLOAD"):
        monkeypatch.delenv(var, raising=False)
    reset_plugin_manager()
    get_plugin_manager().register_components()  # core and built-ins once per process, kept by the restore below
    before = {key: dict(reg.module_dict) for key, reg in REGISTRIES.items()}
    reset_plugin_manager()
    yield
    reset_plugin_manager()
    for key, reg in REGISTRIES.items():
        reg.module_dict.clear()
        reg.module_dict.update(before[key])
    for module in [m for m in sys.modules if m.startswith("vkit_fx_")]:
        del sys.modules[module]


def test_every_registered_component_is_listed_with_its_owner():
    from vkit.hooks.manager import get_plugin_manager
    from vkit.registry.registries import REGISTRIES

    manager = get_plugin_manager(extra=["vkit_fx_pass"])
    entries = {(e.registry, e.name): e for e in catalogue(manager)}
    registered = {(key, name) for key, reg in REGISTRIES.items() for name in reg.module_dict}
    assert registered <= set(entries), f"missing from the catalogue: {sorted(registered - set(entries))}"
    assert len(registered) > 20  # core's backbones, fusions, heads, metrics, compressors at least
    owners = {key: e.owner for key, e in entries.items()}
    assert owners[("BACKBONES", "TinyC3D")] == owners[("FUSIONS", "Concat")] == owners[("HEADS", "ClsHead")] == "core"
    assert owners[("HEADS", "FxPassHead")] == "vkit_fx_pass"
    for plugin, components in manager.register_components().items():
        for key, names in components.items():
            assert {owners[(key, n)] for n in names} == {plugin}


def test_entries_carry_signature_summary_and_argument_docs():
    from vkit.hooks.manager import get_plugin_manager

    by_name = {e.name: e for e in catalogue(get_plugin_manager(extra=["vkit_fx_pass"]), "fusions")}
    assert {e.registry for e in by_name.values()} == {"FUSIONS"}
    concat = by_name["Concat"]
    assert concat.signature == "(in_dims: Mapping[str, int], dim: int)"
    assert concat.required == ("dim",)  # in_dims comes from VideoModel; dim must be in the config
    in_dims = next(a for a in concat.args if a.name == "in_dims")
    assert in_dims.doc.startswith(f"({FILLED_NOTE})")
    assert concat.summary.startswith("Serial fusion")
    head = next(e for e in catalogue(get_plugin_manager(extra=["vkit_fx_pass"]), "HEADS") if e.name == "FxPassHead")
    assert head.signature == "(in_dim: int, num_classes: int)" and head.required == ("num_classes",)
    assert {a.name: a.doc for a in head.args}["num_classes"] == "number of outputs."


def test_an_unknown_registry_names_the_closest():
    from vkit.hooks.manager import get_plugin_manager

    with pytest.raises(ConfigError, match=r"no registry 'fusion' \(did you mean 'FUSIONS'\?\)"):
        catalogue(get_plugin_manager(), "fusion")


def test_cli_json_and_table():
    from vkit.workflows.cli import cli

    runner = CliRunner()
    result = runner.invoke(cli, ["--plugin", "vkit_fx_pass", "components", "HEADS", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.output)}
    assert rows["FxPassHead"]["owner"] == "vkit_fx_pass"
    assert rows["ClsHead"]["owner"] == "core" and rows["ClsHead"]["required"] == ["num_classes"]
    assert rows["ClsHead"]["signature"].startswith("(in_dim: int, num_classes: int, dropout: float = 0.5")
    table = runner.invoke(cli, ["components", "fusions"], env={"COLUMNS": "250"})
    assert table.exit_code == 0 and "Mapping[str, int]" in table.output and "GatedAttention" in table.output


def test_docs_catalogue_is_current(tmp_path):
    page = (ROOT / "docs" / "components.md").read_text(encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("VKIT_")}
    fresh = subprocess.run([sys.executable, "-m", "vkit.workflows.components"], capture_output=True, text=True,
                           env=dict(env, VKIT_CONFIG_DIR=str(tmp_path)), timeout=300, check=True).stdout
    assert page == fresh, (  # a fresh interpreter: exactly what is registered, whatever other tests did
        "docs/components.md is stale: run `python -m vkit.workflows.components --write docs/components.md`")
    for name in ("TinyC3D", "X3D", "Concat", "GatedAttention", "ClsHead", "MLPHead", "ClassificationMetric"):
        assert f"### `{name}` (core)" in page
