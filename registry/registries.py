"""vkit's MMEngine registries (scope ``vkit``).

The tree hangs off mmengine's roots so scoped names resolve across projects::

    mmengine MODELS ─┬─ mmaction MODELS          (scope 'mmaction')
                     └─ vkit MODELS              (scope 'vkit': assembled models)
                          ├─ BACKBONES           (scope 'vkit_backbone')
                          ├─ FUSIONS             (scope 'vkit_fusion')
                          └─ HEADS               (scope 'vkit_head')
    mmengine DATASETS / METRICS / TRANSFORMS ── vkit children (scope 'vkit')
    COMPRESSORS                                 a vkit root

``BACKBONES.build(dict(type='X3D'))`` finds vkit's own wrapper;
``BACKBONES.get('mmaction.X3D')`` reaches mmaction2's class through the root.
Builds never depend on mmengine's global ``DefaultScope`` (a Runner sets it
to ``'mmengine'``): :func:`build_component` looks the type up in the registry
it was called on, and a miss names the registry, the type and the closest
registered names.

Example::

    from vkit.registry import BACKBONES

    @BACKBONES.register_module()
    class MyBackbone(Backbone):          # vkit.core.backbones.Backbone
        feature_dim = 64
        ...

    net = BACKBONES.build(dict(type='MyBackbone'))
"""
from __future__ import annotations

import inspect
from typing import Any

from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import Registry

from vkit.registry.errors import RegistryError, did_you_mean


def _names(registry: Registry) -> list[str]:
    """Every name ``registry`` can build without a scope prefix (itself and its ancestors)."""
    names: list[str] = []
    node: Registry | None = registry
    while node is not None:
        node.import_from_location()
        names.extend(node.module_dict)
        node = node.parent
    return names


def build_component(cfg: Any, registry: Registry, default_args: dict | None = None) -> Any:
    """Build ``cfg`` (a dict with ``type``) from ``registry``; the build function of every vkit registry.

    ``type`` may be a registered name, a scoped name (``'mmaction.X3D'``) or a class.
    A ``_scope_`` key scopes an unscoped name, as in mmengine's ``build_from_cfg``:
    ``dict(type='X3D', _scope_='mmaction')`` builds ``'mmaction.X3D'``.
    """
    if not isinstance(cfg, dict):
        raise RegistryError(f"{registry.name}: expected a config dict with 'type', got {type(cfg).__name__}")
    args = dict(cfg)
    if default_args:
        for key, value in default_args.items():
            args.setdefault(key, value)
    scope = args.pop("_scope_", None)
    if "type" not in args:
        raise RegistryError(f"{registry.name}: config {cfg!r} has no 'type' key")
    obj_type = args.pop("type")
    if isinstance(obj_type, str):
        obj_type = f"{scope}.{obj_type}" if scope and "." not in obj_type else obj_type
        obj_cls = registry.get(obj_type)
        if obj_cls is None:
            raise RegistryError(
                f"{registry.name} registry (scope {registry.scope!r}) has no {obj_type!r}"
                f"{did_you_mean(obj_type, _names(registry))}; registered: {sorted(registry.module_dict)}"
            )
    elif inspect.isclass(obj_type) or inspect.isfunction(obj_type):
        obj_cls = obj_type
    else:
        raise RegistryError(f"{registry.name}: 'type' must be a str or a class, got {obj_type!r}")
    try:
        return obj_cls(**args)
    except TypeError as err:
        raise RegistryError(f"{registry.name}: cannot build {obj_cls.__name__} from {args!r}: {err}") from err


def _registry(name: str, parent: Registry | None = None, scope: str = "vkit", locations: list[str] | None = None) -> Registry:
    return Registry(name, parent=parent, scope=scope, build_func=build_component, locations=locations or [])


MODELS = _registry("vkit model", parent=MMENGINE_MODELS, locations=["vkit.core.model"])
BACKBONES = _registry("backbone", parent=MODELS, scope="vkit_backbone", locations=["vkit.core.backbones"])
FUSIONS = _registry("fusion", parent=MODELS, scope="vkit_fusion", locations=["vkit.core.fusion"])
HEADS = _registry("head", parent=MODELS, scope="vkit_head", locations=["vkit.core.heads", "vkit.core.ordinal"])
DATASETS = _registry("dataset", parent=MMENGINE_DATASETS)
METRICS = _registry("metric", parent=MMENGINE_METRICS, locations=["vkit.core.metrics", "vkit.core.ordinal"])
TRANSFORMS = _registry("transform", parent=MMENGINE_TRANSFORMS)
COMPRESSORS = _registry("compressor", locations=["vkit.core.compression"])

#: Every registry a plugin may register into, by the name used in messages and ``plugins list``.
REGISTRIES: dict[str, Registry] = {
    "BACKBONES": BACKBONES,
    "FUSIONS": FUSIONS,
    "HEADS": HEADS,
    "MODELS": MODELS,
    "DATASETS": DATASETS,
    "METRICS": METRICS,
    "TRANSFORMS": TRANSFORMS,
    "COMPRESSORS": COMPRESSORS,
}
