"""Shared fixtures: every test gets its own data cache and never touches ./vkit.db or a real VKIT_DB_URL."""
from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    monkeypatch.delenv("VKIT_DB_URL", raising=False)
    monkeypatch.delenv("VKIT_PLUGINS", raising=False)
    monkeypatch.delenv("VKIT_DISABLE_PLUGINS", raising=False)
    monkeypatch.setenv("VKIT_DATA", str(tmp_path_factory.getbasetemp() / "vkit-data"))


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    """A fresh SQLite store URL in the test's temporary folder."""
    return f"sqlite:///{tmp_path / 'vkit.db'}"


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models train faster on one torch thread (and do not fight other processes for the cores)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
