"""Optional dependencies ("extras" of ``pyproject.toml``), checked before any work starts.

An option that needs an extra (``--engine ray``, ``--format parquet``, a
compression stage such as ``OnnxExport``) calls :func:`require_extra` while its
options and config are validated — before a run row exists — so a missing
package is one line naming the exact install command, and no failed run is left
behind. The check looks for the packages without importing them (Ray takes
seconds to import).

A component that needs an extra says so in a class attribute, checked by
:func:`check_config_extras` for every ``type`` a run's config names::

    @COMPRESSORS.register_module()
    class OnnxExport(Stage):
        extras = ("onnx",)

Example::

    require_extra("ray", purpose="--engine ray")
    # ConfigError: --engine ray needs the 'ray' extra (not installed: ray): pip install 'vkit[ray]' ...
"""
from __future__ import annotations

import importlib.util
from collections.abc import Mapping, Sequence
from typing import Any

from vkit.registry.errors import ConfigError

#: Each extra of ``pyproject.toml`` and the top-level modules vkit imports from it.
EXTRAS: dict[str, tuple[str, ...]] = {
    "ray": ("ray", "pyarrow", "pandas"),  # ray[data]: Ray Data needs pyarrow and pandas
    "parquet": ("pyarrow",),
    "onnx": ("onnx", "onnxruntime"),
    "web": ("fastapi", "uvicorn", "multipart", "prometheus_client", "fastapi_offline"),
    "postgres": ("psycopg",),
    "bench": ("cornac",),
}


def missing_modules(modules: Sequence[str]) -> list[str]:
    """Those of ``modules`` (top-level names) that cannot be found; none is imported."""
    missing = []
    for module in modules:
        try:
            found = importlib.util.find_spec(module.split(".")[0]) is not None
        except (ImportError, ValueError):  # a broken or half-removed package
            found = False
        if not found:
            missing.append(module)
    return missing


def install_line(name: str) -> str:
    """``pip install 'vkit[name]'`` (and the form for a checkout)."""
    return f"pip install 'vkit[{name}]' (in a checkout: pip install -e '.[{name}]')"


def require_extra(name: str, modules: Sequence[str] | None = None, *, purpose: str) -> None:
    """Raise a :class:`ConfigError` naming ``purpose`` and the install line when extra ``name`` is not installed.

    Args:
        name: the extra (a key of :data:`EXTRAS`).
        modules: what to look for; ``None``: :data:`EXTRAS` ``[name]``.
        purpose: what needs it, as the user typed it (``"--engine ray"``, ``"compression stage OnnxExport"``).
    """
    if modules is None:
        if name not in EXTRAS:
            raise ConfigError(f"unknown extra {name!r}; vkit's extras are {sorted(EXTRAS)}")
        modules = EXTRAS[name]
    missing = missing_modules(modules)
    if missing:
        raise ConfigError(f"{purpose} needs the {name!r} extra (not installed: {', '.join(missing)}): "
                          f"{install_line(name)}")


def component_extras(component: Any) -> tuple[str, ...]:
    """The extras a registered class (or instance) declares in its ``extras`` attribute (``()`` when none)."""
    declared = getattr(component, "extras", ())
    if isinstance(declared, str):
        declared = (declared,)
    return tuple(str(e) for e in declared or ())


def check_config_extras(cfg: Any) -> None:
    """Every component a run's config names by ``type`` (the compression stages, backbones, heads ...) has its
    declared extras installed; otherwise a :class:`ConfigError` naming the key, the component and the install line.

    Types that no registry knows are left to the build, which names them with a did-you-mean.
    """
    from vkit.registry.registries import BACKBONES, COMPRESSORS, FUSIONS, HEADS, METRICS, MODELS

    registries = (COMPRESSORS, BACKBONES, FUSIONS, HEADS, METRICS, MODELS)
    for key, type_name in _types(cfg.to_dict() if hasattr(cfg, "to_dict") else cfg):
        component = next((found for registry in registries if (found := _lookup(registry, type_name)) is not None), None)
        for extra in component_extras(component):
            require_extra(extra, purpose=f"{key}={type_name!r}")


def _lookup(registry: Any, name: str) -> Any:
    try:
        return registry.get(name)
    except Exception:  # noqa: BLE001 - a scoped name of an unloaded scope: not this check's business
        return None


def _types(node: Any, key: str = "") -> list[tuple[str, str]]:
    """``(dotted key of the type, its value)`` for every ``type=`` string in a nested config."""
    found: list[tuple[str, str]] = []
    if isinstance(node, Mapping):
        if isinstance(node.get("type"), str):
            found.append((f"{key}.type" if key else "type", node["type"]))
        for k, v in node.items():
            found += _types(v, f"{key}.{k}" if key else str(k))
    elif isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            found += _types(v, f"{key}[{i}]")
    return found


__all__ = ["EXTRAS", "check_config_extras", "component_extras", "install_line", "missing_modules", "require_extra"]
