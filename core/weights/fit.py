"""Which registered backbones a weights file fits, and with which key prefix (``vkit weights inspect``).

Each registered backbone is built in its common variants (``MonaiResNet`` depths,
``VideoResNet`` archs ...) on PyTorch's ``meta`` device where it can be (no memory,
no initialisation; on the CPU otherwise), and the file's keys are matched against its
keys with :func:`vkit.core.weights.prefixes.match_keys`; shapes are checked with
:func:`vkit.core.weights.inflate.adapt`. A plugin's backbone can list its own variants
with a ``pretrained_variants()`` classmethod returning a list of constructor kwargs.

Example::

    for fit in backbone_fits(read_weights("x3d_s.pth")):
        print(fit.backbone, fit.variant, fit.strip, fit.status)     # X3D {} backbone. fits
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import torch

from vkit.core.weights.formats import WeightsFile
from vkit.core.weights.inflate import adapt
from vkit.core.weights.prefixes import match_keys
from vkit.registry.errors import VkitError

#: Variants tried for vkit's own backbones (constructor kwargs); others are tried with their defaults.
VARIANTS: dict[str, list[dict[str, Any]]] = {
    "MonaiResNet": [dict(depth=d) for d in (10, 18, 34, 50, 101, 152, 200)],
    "VideoResNet": [dict(arch=a) for a in ("r3d_18", "mc3_18", "r2plus1d_18")],
    "SlowOnly": [dict(depth=50), dict(depth=101)],
    "Swin3D": [dict(arch="tiny"), dict(arch="small")],
}


@dataclass
class Fit:
    """How well one backbone variant takes the file."""

    backbone: str
    variant: dict[str, Any]
    strip: str
    add: str
    matched: int
    missing: int
    unexpected: int
    ignored: int
    adapted: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        """``fits`` (loads strictly), ``fits (adapted)`` (stem channels/kernels adapted) or ``partial``."""
        if self.missing or self.unexpected or self.refused:
            return "partial"
        return "fits (adapted)" if self.adapted else "fits"

    def config(self) -> dict[str, Any]:
        """The backbone config that loads this file (``pretrained_prefix`` only when it is not found alone)."""
        return dict(type=self.backbone, **self.variant)


class _NeedsMemory(Exception):
    """The backbone cannot be built on the meta device (its initialisation reads values)."""


@functools.lru_cache(maxsize=64)
def _model_shapes(name: str, variant: tuple[tuple[str, Any], ...],
                  allow_cpu: bool) -> tuple[dict[str, tuple[int, ...]], tuple[str, ...], bool]:
    """``({key: shape}, ignore prefixes, wraps net)`` of backbone ``name`` built with ``variant``."""
    from vkit.registry.registries import BACKBONES

    cfg = dict(type=name, **dict(variant))
    try:
        with torch.device("meta"):
            net = BACKBONES.build(cfg)
    except VkitError:
        raise
    except Exception as err:  # noqa: BLE001 - an upstream init that cannot run on meta tensors
        if not allow_cpu:
            raise _NeedsMemory(name) from err
        net = BACKBONES.build(cfg)
    shapes = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    wraps = isinstance(getattr(net, "net", None), torch.nn.Module)
    return shapes, tuple(getattr(net, "pretrained_ignore", ())), wraps


def backbone_fits(weights: WeightsFile, names: list[str] | None = None, prefix: str | None = None) -> list[Fit]:
    """Every registered backbone variant that matches at least one key of ``weights``, best first.

    Backbones that cannot be built on the meta device (mmaction2's TSM, MViT, Swin3D initialise from
    values) are built for real only when nothing else fits or when ``names`` asks for them.

    Args:
        weights: a file read by :func:`vkit.core.weights.formats.read_weights`.
        names: only these backbones (default: all registered, plugins' included once registered).
        prefix: a ``pretrained_prefix`` to use instead of finding one.
    """
    from vkit.registry.registries import BACKBONES

    BACKBONES.import_from_location()
    fits: list[Fit] = []
    deferred: list[tuple[str, dict[str, Any]]] = []
    for name in sorted(names or BACKBONES.module_dict):
        cls = BACKBONES.module_dict.get(name)
        if cls is None:
            continue
        own = getattr(cls, "pretrained_variants", None)
        for variant in own() if callable(own) else VARIANTS.get(name, [{}]):
            try:
                fit = _fit(weights, name, variant, prefix, allow_cpu=bool(names))
            except _NeedsMemory:
                deferred.append((name, variant))
                continue
            if fit is not None:
                fits.append(fit)
    if deferred and not any(f.status != "partial" for f in fits):
        fits += [f for f in (_fit(weights, n, v, prefix, allow_cpu=True) for n, v in deferred) if f is not None]
    order = {"fits": 0, "fits (adapted)": 1, "partial": 2}
    return sorted(fits, key=lambda f: (order[f.status], f.missing + f.unexpected + len(f.refused), -f.matched))


def _fit(weights: WeightsFile, name: str, variant: dict[str, Any], prefix: str | None, allow_cpu: bool) -> Fit | None:
    try:
        shapes, ignore, wraps = _model_shapes(name, tuple(sorted(variant.items())), allow_cpu)
    except _NeedsMemory:
        raise
    except Exception:  # noqa: BLE001 - a backbone that cannot build by default (needs arguments)
        return None
    if not shapes:
        return None
    try:
        mapping = match_keys(list(weights.state), list(shapes), prefix=prefix,
                             model_prefixes=("net.",) if wraps else (), ignore=ignore, owner=name)
    except VkitError:
        return None
    fit = Fit(name, dict(variant), mapping.strip, mapping.add, len(mapping.matched), len(mapping.missing),
              len(mapping.unexpected), len(mapping.ignored))
    for target, key in mapping.matched.items():
        try:
            _, how = adapt(target, weights.state[key], shapes[target], owner=name)
        except VkitError:
            fit.refused.append(f"{target} {tuple(weights.state[key].shape)} vs {shapes[target]}")
            continue
        if how:
            fit.adapted.append(f"{target}: {how}")
    return fit


__all__ = ["VARIANTS", "Fit", "backbone_fits"]
