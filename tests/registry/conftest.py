"""Fixtures for the plugin-manager tests: the installed demo package, the fixture plugin modules, fresh registries."""
from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
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
def demo_plugin() -> str:
    """Install ``tests/fixtures/vkit_demo_plugin`` (editable, offline) unless it is already; return its dist name."""
    try:
        importlib.metadata.distribution("vkit-demo-plugin")
    except importlib.metadata.PackageNotFoundError:
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                        "--no-index", "-e", str(DEMO_PACKAGE)], check=True, capture_output=True, timeout=180)
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
def run_python(tmp_path: Path) -> Callable[..., Any]:
    """Run ``code`` in a fresh interpreter (fresh entry-point metadata); return the JSON it prints last."""

    def run(code: str, **env: str) -> Any:
        full_env = {k: v for k, v in os.environ.items() if k not in PLUGIN_VARS}
        full_env.update(env, PYTHONPATH=str(FIXTURE_PLUGINS))
        proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=full_env,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout.strip().splitlines()[-1])

    return run
