"""Every plugin installed through the ``vkit.plugins`` entry points passes ``vkit plugins check`` in full.

The built-in verticals ship through the same entry points as a third-party
plugin, so they are held to the same conformance check: hooks, components
built from their smoke configs, task configs with smoke overrides, one smoke
run of each task, no clashes.
"""
from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest

ENTRY_POINTS = sorted({ep.name for ep in importlib.metadata.entry_points(group="vkit.plugins")
                       if ep.value.startswith("vkit.plugins.")})
VKIT = str(Path(sys.executable).with_name("vkit"))


def test_the_built_ins_are_installed() -> None:
    assert {"medical", "security"} <= set(ENTRY_POINTS)


@pytest.mark.parametrize("name", ENTRY_POINTS)
def test_builtin_plugin_passes_every_check(name: str, tmp_path: Path) -> None:
    proc = subprocess.run([VKIT, "plugins", "check", name], capture_output=True, text=True, timeout=600,
                          cwd=tmp_path, env={**__import__("os").environ, "VKIT_DATA": str(tmp_path / "data")})
    lines = [line for line in proc.stdout.splitlines() if line.startswith(("PASS", "FAIL"))]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert lines and all(line.startswith("PASS") for line in lines), proc.stdout
    assert any(f"smoke run: finished" in line for line in lines), proc.stdout  # every task ran once
