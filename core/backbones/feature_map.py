"""``FeatureMapBackbone``: the shared pooling of backbones whose output is a map ``(N, D, T', H', W')``."""
from __future__ import annotations

from collections.abc import Sequence

import torch

from vkit.core.backbones.base import Backbone
from vkit.registry.errors import ConfigError


def as_size(value: int | Sequence[int], owner: str, key: str = "input_size") -> tuple[int, int]:
    """``224`` or ``(224, 224)`` -> ``(224, 224)``; anything else is a :class:`ConfigError`."""
    size = (value, value) if isinstance(value, int) else tuple(value)
    if len(size) != 2 or not all(isinstance(v, int) and v > 0 for v in size):
        raise ConfigError(f"backbone {owner!r}: {key}={value!r}; expected a positive int or (H, W)")
    return size  # type: ignore[return-value]


class FeatureMapBackbone(Backbone):
    """A :class:`Backbone` defined by :meth:`forward_features`; pools it as mmaction2's heads do (average).

    ``forward_temporal`` averages over space, ``forward_pooled`` over time and
    space (what ``I3DHead``/``X3DHead``/``TSMHead`` do with ``spatial_type='avg'``).
    """

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The feature map ``(N, D, T', H', W')`` of an input ``(N, C, T, H, W)``."""
        raise NotImplementedError(f"{type(self).__name__} must implement forward_features(x)")

    def forward_temporal(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x).mean((3, 4)).transpose(1, 2)

    def forward_pooled(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x).mean((2, 3, 4))
