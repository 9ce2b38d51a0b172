"""Fixtures for the plugin-manager tests: the demo package (discoverable, not installed), the fixture plugin modules, fresh registries."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
FIXTURE_PLUGINS = FIXTURES / "plugins"
DEMO_PACKAGE = FIXTURES / "vkit_demo_plugin"
#: The built-in verticals, disabled where a test wants only the fixtures' behaviour.
BUILTINS = "medical,education,security,recommendation"
PLUGIN_VARS = ("VKIT_PLUGINS", "VKIT_DISABLE_PLUGINS", "VKIT_NO_AUTOLOAD")


@pytest.fixture(scope="session")
def demo_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder that makes ``tests/fixtures/vkit_demo_plugin`` discoverable on ``PYTHONPATH``, installing nothing.

    It holds the ``.dist-info`` metadata ``pip install`` would write (``METADATA``
    and ``entry_points.txt`` from the package's pyproject), so a subprocess with
    this folder and the package's source folder on its path sees the
    ``vkit.plugins`` entry point exactly as it sees an installed one.
    """
    project = tomllib.loads((DEMO_PACKAGE / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    site = tmp_path_factory.mktemp("demo-site")
    info = site / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n",
                                   encoding="utf-8")
    groups = project["entry-points"]
    (info / "entry_points.txt").write_text("".join(
        f"[{group}]\n" + "".join(f"{name} = {value}\n" for name, value in eps.items()) for group, eps in groups.items()),
        encoding="utf-8")
    return site


@pytest.fixture
def demo_plugin(demo_site: Path) -> str:
    """The demo package's distribution name; subprocesses of :func:`run_python` in this test discover it."""
    return "vkit-demo-plugin"


@pytest.fixture(autouse=True)
def _fresh_plugin_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fixture plugins importable; no cached manager, fixture module or VKIT_* setting leaks between tests."""
    from vkit.hooks.manager import reset_plugin_manager

    monkeypatch.syspath_prepend(str(FIXTURE_PLUGINS))
    monkeypatch.delenv("VKIT_NO_AUTOLOAD", raising=False)
    reset_plugin_manager()
    yield
    reset_plugin_manager()
    for name in [m for m in sys.modules if m.startswith("vkit_fx_")]:
        del sys.modules[name]


@pytest.fixture
def fresh_registries() -> dict[str, Any]:
    """Empty mmengine registries under the names plugins use, so tests never touch vkit's real ones."""
    from mmengine.registry import Registry

    return {key: Registry(f"test {key.lower()}", scope="vkit_test") for key in ("HEADS", "BACKBONES", "DATASETS")}


@pytest.fixture
def run_python(tmp_path: Path, request: pytest.FixtureRequest) -> Callable[..., Any]:
    """Run ``code`` in a fresh interpreter (fresh entry-point metadata); return the JSON it prints last.

    The fixture plugins are importable; in a test that uses ``demo_plugin``, the
    demo package is discoverable through its entry point too (nothing installed).
    """
    paths = [FIXTURE_PLUGINS]
    if "demo_plugin" in request.fixturenames:
        paths += [request.getfixturevalue("demo_site"), DEMO_PACKAGE]

    def run(code: str, **env: str) -> Any:
        full_env = {k: v for k, v in os.environ.items() if k not in PLUGIN_VARS}
        full_env.update(env, PYTHONPATH=os.pathsep.join(map(str, paths)))
        proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=full_env,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout.strip().splitlines()[-1])

    return run
