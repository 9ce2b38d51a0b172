"""A wheel built from pyproject.toml holds every sub-package: each folder with an ``__init__.py`` is listed."""
from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOT_SHIPPED = {"tests", "benchmarks", "docs", "build", "templates"}


def _package_dirs() -> set[str]:
    names = set()
    for init in ROOT.rglob("__init__.py"):
        parts = init.parent.relative_to(ROOT).parts
        if parts and (parts[0] in NOT_SHIPPED or parts[0].startswith(".") or "templates" in parts):
            continue
        names.add(".".join(("vkit", *parts)))
    return names


def test_every_package_folder_is_listed_in_pyproject():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    missing = sorted(_package_dirs() - listed)
    assert not missing, f"add to [tool.setuptools] packages in pyproject.toml: {missing}"
    assert sorted(listed - _package_dirs()) == []
