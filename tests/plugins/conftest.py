"""The built-in verticals register their components through the plugin manager, as in a user's process."""
from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope="session")
def _builtin_components() -> None:
    """Components are registered by the ``vkit_register_components`` hook, never by importing a module."""
    from vkit.hooks.manager import get_plugin_manager

    get_plugin_manager().register_components()
