"""``build_component``, the build function of every vkit registry: names, scopes and the errors of a miss."""
from __future__ import annotations

import pytest
from mmengine.registry import Registry

from vkit.registry.errors import RegistryError
from vkit.registry.registries import build_component


class ThingA:
    def __init__(self, size: int = 1) -> None:
        self.size = size


class ThingB(ThingA):
    pass


@pytest.fixture()
def siblings() -> tuple[Registry, Registry]:
    """Two registries under one root, each holding its own ``Thing``."""
    root = Registry("fx root", scope="fx_root", build_func=build_component)
    a = Registry("fx a", parent=root, scope="fx_a", build_func=build_component)
    b = Registry("fx b", parent=root, scope="fx_b", build_func=build_component)
    a.register_module(name="Thing", module=ThingA)
    b.register_module(name="Thing", module=ThingB)
    return a, b


def test_scope_key_picks_the_registry_like_mmengine(siblings):
    a, _ = siblings
    assert type(a.build(dict(type="Thing", size=3))) is ThingA
    built = a.build(dict(type="Thing", _scope_="fx_b", size=3))
    assert type(built) is ThingB and built.size == 3
    assert type(a.build(dict(type="fx_b.Thing", _scope_="fx_a"))) is ThingB  # an explicit scope in type wins


def test_unknown_scope_names_the_scoped_type(siblings):
    a, _ = siblings
    with pytest.raises(RegistryError, match=r"fx a registry \(scope 'fx_a'\) has no 'nosuch.Thing'"):
        a.build(dict(type="Thing", _scope_="nosuch"))
