"""Fusion modules (FUSIONS registry): per-modality features -> one vector per sample.

Every fusion is built with ``in_dims`` (``{modality: feature width}``) and
``dim`` (the common width each modality is projected to by its own
``Linear``), exposes ``out_dim`` and is called as
``fusion(features, mask=None)`` with ``features = {modality: Tensor (N, D_m)}``
and ``mask = {modality: BoolTensor (N,)}`` (``True`` = present). A modality
absent from ``features`` counts as missing for every sample. A missing
modality has no influence on the output (its features are zeroed before
projection and its projection is dropped), and a sample with every modality
missing gets zeros, never NaN.

==============  ==========  ===============================================
name            family      output
==============  ==========  ===============================================
Concat          serial      ``(N, dim * M)``: projections side by side
Mean            parallel    ``(N, dim)``: mean over the present modalities
Weighted        hybrid      ``(N, dim)``: weights on the simplex (fixed or
                            learnable), renormalised over present modalities
GatedAttention  hybrid      ``(N, dim)``: per-sample attention weights
LateFusion      late        ``(N, num_classes)``: mean of per-modality logits
==============  ==========  ===============================================

Example::

    from vkit.registry.registries import FUSIONS

    fusion = FUSIONS.build(dict(type='Mean', in_dims=dict(video=432, audio=128), dim=64))
    out = fusion({'video': v, 'audio': a}, mask={'audio': has_audio})  # (N, 64)
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import torch
from torch import Tensor, nn

from vkit.registry.errors import ConfigError, DataError, did_you_mean
from vkit.registry.registries import FUSIONS, HEADS


class BaseFusion(nn.Module):
    """Shared validation, per-modality projection and masking; subclass and implement ``fuse``.

    Args:
        in_dims: ``{modality: feature width}``, at least one entry, widths > 0.
        dim: the common width every modality is projected to.

    Attributes:
        modalities: the modality names in ``in_dims`` order.
        out_dim: width of the fused output.
        produces_logits: ``True`` when the output already is class logits
            (``LateFusion``), so no head is needed after it.

    Example::

        @FUSIONS.register_module()
        class Max(BaseFusion):
            def fuse(self, projected, present):
                # projected: (N, M, dim) with missing entries zeroed; present: (N, M) bool
                filled = projected.masked_fill(~present[..., None], float('-inf'))
                return torch.where(present.any(1, keepdim=True), filled.amax(1), 0.0)
    """

    produces_logits: ClassVar[bool] = False

    def __init__(self, in_dims: Mapping[str, int], dim: int) -> None:
        super().__init__()
        name = type(self).__name__
        if not isinstance(in_dims, Mapping) or not in_dims:
            raise ConfigError(f"{name}.in_dims: expected a non-empty {{modality: width}} dict, got {in_dims!r}")
        for modality, width in in_dims.items():
            if not isinstance(width, int) or isinstance(width, bool) or width <= 0:
                raise ConfigError(f"{name}.in_dims[{modality!r}]: expected a positive int width, got {width!r}")
        if not isinstance(dim, int) or isinstance(dim, bool) or dim <= 0:
            raise ConfigError(f"{name}.dim: expected a positive int, got {dim!r}")
        self.in_dims = dict(in_dims)
        self.modalities = list(in_dims)
        self.dim = dim
        self.out_dim = dim
        self.proj = nn.ModuleDict({m: nn.Linear(w, dim) for m, w in in_dims.items()})

    def forward(self, features: Mapping[str, Tensor], mask: Mapping[str, Tensor] | None = None) -> Tensor:
        """Fuse ``features`` (``{modality: (N, D_m)}``) under ``mask`` (``{modality: (N,) bool}``) into ``(N, out_dim)``."""
        projected, present = self.project(features, mask)
        return self.fuse(projected, present)

    def project(self, features: Mapping[str, Tensor], mask: Mapping[str, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        """Validate the inputs and project them: ``(N, M, dim)`` (missing entries zero) and presence ``(N, M)``."""
        name = type(self).__name__
        unknown = [k for k in features if k not in self.in_dims]
        unknown += [k for k in (mask or {}) if k not in self.in_dims]
        if unknown:
            raise DataError(
                f"{name}: unknown modality {unknown[0]!r}{did_you_mean(unknown[0], self.modalities)}; "
                f"expected some of {self.modalities}"
            )
        given = [m for m in self.modalities if m in features]
        if not given:
            raise DataError(f"{name}: no features given; expected some of {self.modalities}")
        ref = features[given[0]]
        n = ref.shape[0]
        outs, flags = [], []
        for m in self.modalities:
            if m not in features:
                flags.append(torch.zeros(n, dtype=torch.bool, device=ref.device))
                outs.append(ref.new_zeros(n, self.dim))
                continue
            x = features[m]
            if x.dim() != 2 or x.shape != (n, self.in_dims[m]):
                raise DataError(
                    f"{name}: features[{m!r}] has shape {tuple(x.shape)}, expected ({n}, {self.in_dims[m]})"
                )
            flag = self._mask(m, mask, n, x.device)
            keep = flag[:, None]
            z = self.proj[m](torch.where(keep, x, torch.zeros((), dtype=x.dtype, device=x.device)))
            outs.append(torch.where(keep, z, torch.zeros((), dtype=z.dtype, device=z.device)))
            flags.append(flag)
        return torch.stack(outs, dim=1), torch.stack(flags, dim=1)

    def _mask(self, modality: str, mask: Mapping[str, Tensor] | None, n: int, device: torch.device) -> Tensor:
        if mask is None or modality not in mask:
            return torch.ones(n, dtype=torch.bool, device=device)
        flag = mask[modality]
        if not isinstance(flag, Tensor) or flag.dtype != torch.bool or tuple(flag.shape) != (n,):
            got = f"{flag.dtype} {tuple(flag.shape)}" if isinstance(flag, Tensor) else type(flag).__name__
            raise DataError(f"{type(self).__name__}: mask[{modality!r}] must be a bool tensor of shape ({n},), got {got}")
        return flag.to(device)

    def fuse(self, projected: Tensor, present: Tensor) -> Tensor:
        """Combine ``projected`` ``(N, M, dim)`` (missing entries zero) given ``present`` ``(N, M)``."""
        raise NotImplementedError


def _renormalise(weights: Tensor, present: Tensor) -> Tensor:
    """Per-sample weights ``(N, M)``: ``weights`` kept on present modalities, summing to 1 (0 when none present)."""
    w = weights * present.to(weights.dtype)
    total = w.sum(dim=1, keepdim=True)
    return torch.where(total > 0, w / total.clamp_min(torch.finfo(w.dtype).tiny), torch.zeros_like(w))


@FUSIONS.register_module()
class Concat(BaseFusion):
    """Serial fusion: the projections side by side, zeros for a missing modality.

    Args:
        in_dims: ``{modality: feature width}``.
        dim: projection width per modality; ``out_dim = dim * len(in_dims)``.

    Example::

        fusion = Concat(in_dims=dict(video=432, audio=128), dim=64)  # out_dim 128
    """

    def __init__(self, in_dims: Mapping[str, int], dim: int) -> None:
        super().__init__(in_dims, dim)
        self.out_dim = dim * len(self.modalities)

    def fuse(self, projected: Tensor, present: Tensor) -> Tensor:
        return projected.flatten(1)


@FUSIONS.register_module()
class Mean(BaseFusion):
    """Parallel fusion: mean of the projections over the modalities present in each sample.

    Args:
        in_dims: ``{modality: feature width}``.
        dim: common width and ``out_dim``.

    Example::

        fusion = Mean(in_dims=dict(video=432, text=768), dim=128)
    """

    def fuse(self, projected: Tensor, present: Tensor) -> Tensor:
        weights = _renormalise(torch.ones_like(present, dtype=projected.dtype), present)
        return (weights[..., None] * projected).sum(dim=1)


@FUSIONS.register_module()
class Weighted(BaseFusion):
    """Hybrid fusion: a weighted sum with one weight per modality, kept on the simplex.

    Learnable weights are the softmax of logits (so they stay >= 0 and sum to
    1 after any optimizer step); fixed weights are normalised to sum to 1.
    For each sample the weights are renormalised over the present modalities.

    Args:
        in_dims: ``{modality: feature width}``.
        dim: common width and ``out_dim``.
        weights: fixed ``{modality: weight >= 0}`` (normalised; not all 0), or
            ``None`` for learnable weights starting uniform.
        learnable: with ``weights`` given, start the learnable weights there
            instead of keeping them fixed.

    Example::

        fusion = Weighted(in_dims=dict(video=432, audio=128), dim=64, weights=dict(video=3, audio=1))
        fusion.weights  # tensor([0.75, 0.25])
    """

    def __init__(
        self,
        in_dims: Mapping[str, int],
        dim: int,
        weights: Mapping[str, float] | None = None,
        learnable: bool | None = None,
    ) -> None:
        super().__init__(in_dims, dim)
        learnable = weights is None if learnable is None else learnable
        init = torch.ones(len(self.modalities))
        if weights is not None:
            missing = [m for m in self.modalities if m not in weights]
            extra = [m for m in weights if m not in self.in_dims]
            if missing or extra:
                raise ConfigError(
                    f"Weighted.weights: keys {sorted(weights)} must match in_dims {self.modalities} "
                    f"(missing {missing}, unknown {extra})"
                )
            init = torch.tensor([float(weights[m]) for m in self.modalities])
            if (init < 0).any() or init.sum() <= 0 or not torch.isfinite(init).all():
                raise ConfigError(f"Weighted.weights: expected finite weights >= 0, not all 0, got {dict(weights)!r}")
        init = init / init.sum()
        self.learnable = learnable
        if learnable:
            self.logits = nn.Parameter(init.clamp_min(1e-6).log())
        else:
            self.register_buffer("fixed_weights", init)

    @property
    def weights(self) -> Tensor:
        """The current weights ``(M,)`` in ``modalities`` order: >= 0, summing to 1."""
        return torch.softmax(self.logits, dim=0) if self.learnable else self.fixed_weights

    def fuse(self, projected: Tensor, present: Tensor) -> Tensor:
        w = _renormalise(self.weights.to(projected.dtype).expand(present.shape), present)
        return (w[..., None] * projected).sum(dim=1)


@FUSIONS.register_module()
class GatedAttention(BaseFusion):
    """Hybrid fusion with learned per-sample modality weights (gated attention, Ilse et al. 2018).

    Each projected modality ``z`` gets a score ``w^T (tanh(V z) * sigmoid(U z))``;
    a softmax over the present modalities turns the scores into weights. The
    weights of the last call are kept in ``last_weights`` ``(N, M)`` (detached),
    or returned with ``return_weights=True``.

    Args:
        in_dims: ``{modality: feature width}``.
        dim: common width and ``out_dim``.
        hidden: width of the attention gate.

    Example::

        fusion = GatedAttention(in_dims=dict(video=432, audio=128), dim=64)
        out, weights = fusion(feats, mask=mask, return_weights=True)  # weights (N, 2)
    """

    def __init__(self, in_dims: Mapping[str, int], dim: int, hidden: int = 32) -> None:
        super().__init__(in_dims, dim)
        if not isinstance(hidden, int) or hidden <= 0:
            raise ConfigError(f"GatedAttention.hidden: expected a positive int, got {hidden!r}")
        self.attn_v = nn.Linear(dim, hidden)
        self.attn_u = nn.Linear(dim, hidden)
        self.attn_w = nn.Linear(hidden, 1)
        self.last_weights: Tensor | None = None

    def forward(
        self,
        features: Mapping[str, Tensor],
        mask: Mapping[str, Tensor] | None = None,
        return_weights: bool = False,
    ) -> Tensor | tuple[Tensor, Tensor]:
        """As :meth:`BaseFusion.forward`; with ``return_weights`` also the ``(N, M)`` weights."""
        projected, present = self.project(features, mask)
        scores = self.attn_w(torch.tanh(self.attn_v(projected)) * torch.sigmoid(self.attn_u(projected))).squeeze(-1)
        scores = scores.masked_fill(~present, torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores, dim=1) * present.to(scores.dtype)  # rows with nothing present -> 0
        out = (weights[..., None] * projected).sum(dim=1)
        self.last_weights = weights.detach()
        return (out, weights) if return_weights else out

    def fuse(self, projected: Tensor, present: Tensor) -> Tensor:  # pragma: no cover - forward is overridden
        raise NotImplementedError


@FUSIONS.register_module()
class LateFusion(BaseFusion):
    """Late fusion: one head per modality, their logits averaged over the present modalities.

    Each modality is projected to ``dim`` and fed to its own head (built from
    ``head``, HEADS registry, with ``in_dim=dim`` and ``num_classes``). The
    output already is logits (``produces_logits = True``): put no further
    classifier after it.

    Args:
        in_dims: ``{modality: feature width}``.
        dim: projection width fed to each head.
        num_classes: logits per head and ``out_dim``.
        head: head config shared by the modalities (default ``ClsHead`` without dropout).

    Example::

        fusion = LateFusion(in_dims=dict(video=432, audio=128), dim=64, num_classes=5)
        logits = fusion(feats)  # (N, 5)
    """

    produces_logits: ClassVar[bool] = True

    def __init__(self, in_dims: Mapping[str, int], dim: int, num_classes: int, head: dict | None = None) -> None:
        super().__init__(in_dims, dim)
        if not isinstance(num_classes, int) or num_classes <= 0:
            raise ConfigError(f"LateFusion.num_classes: expected a positive int, got {num_classes!r}")
        cfg = dict(head or dict(type="ClsHead", dropout=0.0))
        self.heads = nn.ModuleDict(
            {m: HEADS.build(cfg, default_args=dict(in_dim=dim, num_classes=num_classes)) for m in self.modalities}
        )
        self.num_classes = num_classes
        self.out_dim = num_classes

    def fuse(self, projected: Tensor, present: Tensor) -> Tensor:
        logits = torch.stack([self.heads[m](projected[:, i]) for i, m in enumerate(self.modalities)], dim=1)
        if logits.shape[-1] != self.num_classes:
            raise ConfigError(f"LateFusion.head: heads return {logits.shape[-1]} logits, expected {self.num_classes}")
        logits = torch.where(present[..., None], logits, torch.zeros((), dtype=logits.dtype, device=logits.device))
        weights = _renormalise(torch.ones_like(present, dtype=logits.dtype), present)
        return (weights[..., None] * logits).sum(dim=1)
