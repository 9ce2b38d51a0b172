"""torchvision's ``mvit_v1_b`` / ``mvit_v2_s`` built here with torchvision's module names (no torchvision import).

A transcription of ``torchvision/models/video/mvit.py`` (0.29; Fan et al., "Multiscale
Vision Transformers", 2021; Li et al., "MViTv2", 2022) without the classifier ``head``,
so that ``model.state_dict()`` saved from torchvision loads as it is with ``pretrained=``.
Parity with torchvision itself is tested on fixtures it wrote
(``tests/fixtures/torchvision/make_fixtures.py``).

Example::

    net = BACKBONES.build(dict(type="TorchvisionMViT", arch="mvit_v2_s", pretrained="mvit_v2_s.pth"))
    net(torch.randn(1, 3, 16, 224, 224)).shape     # (1, 768): the class token
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from mmcv.cnn.bricks import DropPath
from torch import nn

from vkit.core.backbones.base import Backbone
from vkit.core.backbones.feature_map import as_size
from vkit.registry.errors import ConfigError, did_you_mean
from vkit.registry.registries import BACKBONES

_K3, _S2, _S1 = [3, 3, 3], [1, 2, 2], [1, 1, 1]
_V1_Q = [[], _K3, [], _K3] + [[]] * 10 + [_K3, []]
_KV_STRIDES = [[1, 8, 8], [1, 4, 4], [1, 4, 4]] + [[1, 2, 2]] * 11 + [_S1, _S1]
#: torchvision's two settings (its ``config`` dicts and ``_mvit`` flags).
ARCHS: dict[str, dict[str, Any]] = {
    "mvit_v1_b": dict(
        num_heads=[1, 2, 2, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 8, 8],
        input_channels=[96, 192, 192] + [384] * 11 + [768, 768],
        output_channels=[192, 192] + [384] * 11 + [768] * 3,
        kernel_q=_V1_Q, kernel_kv=[_K3] * 16, stride_q=[[] if not k else _S2 for k in _V1_Q], stride_kv=_KV_STRIDES,
        residual_pool=False, rel_pos_embed=False, proj_after_attn=False, residual_with_cls_embed=False),
    "mvit_v2_s": dict(
        num_heads=[1, 2, 2, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 8, 8],
        input_channels=[96, 96, 192, 192] + [384] * 11 + [768],
        output_channels=[96, 192, 192] + [384] * 11 + [768, 768],
        kernel_q=[_K3] * 16, kernel_kv=[_K3] * 16,
        stride_q=[_S1, _S2, _S1, _S2] + [_S1] * 10 + [_S2, _S1], stride_kv=_KV_STRIDES,
        residual_pool=True, rel_pos_embed=True, proj_after_attn=True, residual_with_cls_embed=False),
}
_LISTS = ("num_heads", "input_channels", "output_channels", "kernel_q", "kernel_kv", "stride_q", "stride_kv")
_FLAGS = ("residual_pool", "rel_pos_embed", "proj_after_attn", "residual_with_cls_embed")


def _layer_norm(dim: int) -> nn.LayerNorm:
    return nn.LayerNorm(dim, eps=1e-6)


class _Pool(nn.Module):
    """torchvision's ``Pool``: pools the patch tokens of ``(B, [heads,] 1 + THW, C)``, keeps the class token."""

    def __init__(self, pool: nn.Module, norm: nn.Module | None) -> None:
        super().__init__()
        self.pool = pool
        self.norm_act = nn.Sequential(norm) if norm is not None else None

    def forward(self, x: torch.Tensor, thw: tuple[int, int, int]) -> tuple[torch.Tensor, tuple[int, int, int]]:
        squeeze = x.dim() == 3
        x = x.unsqueeze(1) if squeeze else x
        cls, x = torch.tensor_split(x, indices=(1,), dim=2)
        x = x.transpose(2, 3)
        b, n, c = x.shape[:3]
        x = self.pool(x.reshape((b * n, c) + thw).contiguous())
        t, h, w = x.shape[2:]
        x = torch.cat((cls, x.reshape(b, n, c, -1).transpose(2, 3)), dim=2)
        if self.norm_act is not None:
            x = self.norm_act(x)
        return (x.squeeze(1) if squeeze else x), (t, h, w)


def _conv_pool(dim: int, kernel: list[int], stride: list[int]) -> _Pool:
    return _Pool(nn.Conv3d(dim, dim, kernel, stride=stride, padding=[k // 2 for k in kernel], groups=dim,
                           bias=False), _layer_norm(dim))


def _rel_pos(q: torch.Tensor, q_thw: tuple[int, int, int], k_thw: tuple[int, int, int],
             tables: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """MViTv2's decomposed relative position term ``(B, heads, q_THW, k_THW)`` (torchvision's ``_add_rel_pos``)."""
    (q_t, q_h, q_w), (k_t, k_h, k_w) = q_thw, k_thw
    rel = []
    for qs, ks, table in zip((q_h, q_w, q_t), (k_h, k_w, k_t), (tables[1], tables[2], tables[0])):
        q_ratio, k_ratio = max(ks / qs, 1.0), max(qs / ks, 1.0)
        dist = torch.arange(qs)[:, None] * q_ratio - (torch.arange(ks)[None, :] + (1.0 - ks)) * k_ratio
        d = int(2 * max(qs, ks) - 1)
        if table.shape[0] != d:
            table = nn.functional.interpolate(table.permute(1, 0).unsqueeze(0), size=d, mode="linear")[0].T
        rel.append(table[dist.long()])
    rh, rw, rt = rel
    b, heads, _, dim = q.shape
    r_q = q[:, :, 1:].reshape(b, heads, q_t, q_h, q_w, dim)
    rel_h = torch.einsum("bythwc,hkc->bythwk", r_q, rh)
    rel_w = torch.einsum("bythwc,wkc->bythwk", r_q, rw)
    r_q = r_q.permute(2, 0, 1, 3, 4, 5).reshape(q_t, b * heads * q_h * q_w, dim)
    rel_t = torch.matmul(r_q, rt.transpose(1, 2)).transpose(0, 1)
    rel_t = rel_t.view(b, heads, q_h, q_w, q_t, k_t).permute(0, 1, 4, 2, 3, 5)
    return (rel_h[:, :, :, :, :, None, :, None] + rel_w[:, :, :, :, :, None, None, :]
            + rel_t[:, :, :, :, :, :, None, None]).reshape(b, heads, q_t * q_h * q_w, k_t * k_h * k_w)


class _Attention(nn.Module):
    """torchvision's ``MultiscaleAttention`` (pooled q/k/v, optional relative positions and residual pooling)."""

    def __init__(self, input_size: list[int], dim: int, out_dim: int, heads: int, cfg: dict[str, Any],
                 flags: dict[str, bool]) -> None:
        super().__init__()
        self.heads, self.out_dim, self.head_dim = heads, out_dim, out_dim // heads
        self.scaler = 1.0 / math.sqrt(self.head_dim)
        self.residual_pool, self.with_cls = flags["residual_pool"], flags["residual_with_cls_embed"]
        self.qkv = nn.Linear(dim, 3 * out_dim)
        self.project = nn.Sequential(nn.Linear(out_dim, out_dim))
        kq, sq, kkv, skv = cfg["kernel_q"], cfg["stride_q"], cfg["kernel_kv"], cfg["stride_kv"]
        pooled_q, pooled_kv = math.prod(kq) > 1 or math.prod(sq) > 1, math.prod(kkv) > 1 or math.prod(skv) > 1
        self.pool_q = _conv_pool(self.head_dim, kq, sq) if pooled_q else None
        self.pool_k = _conv_pool(self.head_dim, kkv, skv) if pooled_kv else None
        self.pool_v = _conv_pool(self.head_dim, kkv, skv) if pooled_kv else None
        self.rel_pos_h = self.rel_pos_w = self.rel_pos_t = None
        if flags["rel_pos_embed"]:
            size = max(input_size[1:])
            q_size = size // sq[1] if len(sq) > 0 else size
            kv_size = size // skv[1] if len(skv) > 0 else size
            spatial = 2 * max(q_size, kv_size) - 1
            self.rel_pos_h = nn.Parameter(torch.zeros(spatial, self.head_dim))
            self.rel_pos_w = nn.Parameter(torch.zeros(spatial, self.head_dim))
            self.rel_pos_t = nn.Parameter(torch.zeros(2 * input_size[0] - 1, self.head_dim))
            for p in (self.rel_pos_h, self.rel_pos_w, self.rel_pos_t):
                nn.init.trunc_normal_(p, std=0.02)

    def forward(self, x: torch.Tensor, thw: tuple[int, int, int]) -> tuple[torch.Tensor, tuple[int, int, int]]:
        b, n, _ = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, self.head_dim).transpose(1, 3).unbind(dim=2)
        k, k_thw = self.pool_k(k, thw) if self.pool_k is not None else (k, thw)
        v = self.pool_v(v, thw)[0] if self.pool_v is not None else v
        q, thw = self.pool_q(q, thw) if self.pool_q is not None else (q, thw)
        attn = torch.matmul(self.scaler * q, k.transpose(2, 3))
        if self.rel_pos_h is not None:
            attn = attn + nn.functional.pad(_rel_pos(q, thw, k_thw, (self.rel_pos_t, self.rel_pos_h, self.rel_pos_w)),
                                            (1, 0, 1, 0))
        x = torch.matmul(attn.softmax(dim=-1), v)
        if self.residual_pool:
            x = x + (q if self.with_cls else nn.functional.pad(q[:, :, 1:], (0, 0, 1, 0)))
        return self.project(x.transpose(1, 2).reshape(b, -1, self.out_dim)), thw


class _Block(nn.Module):
    """torchvision's ``MultiscaleBlock``."""

    def __init__(self, input_size: list[int], cfg: dict[str, Any], flags: dict[str, bool], drop_path: float) -> None:
        super().__init__()
        cin, cout, sq = cfg["input_channels"], cfg["output_channels"], cfg["stride_q"]
        self.proj_after_attn = flags["proj_after_attn"]
        self.pool_skip = None
        if math.prod(sq) > 1:
            kernel = [s + 1 if s > 1 else s for s in sq]
            self.pool_skip = _Pool(nn.MaxPool3d(kernel, stride=sq, padding=[k // 2 for k in kernel]), None)
        attn_dim = cout if self.proj_after_attn else cin
        self.norm1, self.norm2 = _layer_norm(cin), _layer_norm(attn_dim)
        self.attn = _Attention(input_size, cin, attn_dim, cfg["num_heads"], cfg, flags)
        self.mlp = nn.Sequential(nn.Linear(attn_dim, 4 * attn_dim), nn.GELU(), nn.Dropout(0.0),
                                 nn.Linear(4 * attn_dim, cout), nn.Dropout(0.0))
        self.stochastic_depth = DropPath(drop_path)
        self.project = nn.Linear(cin, cout) if cin != cout else None

    def forward(self, x: torch.Tensor, thw: tuple[int, int, int]) -> tuple[torch.Tensor, tuple[int, int, int]]:
        x_norm1 = self.norm1(x)
        x_attn, thw_new = self.attn(x_norm1, thw)
        x = x if self.project is None or not self.proj_after_attn else self.project(x_norm1)
        x = (x if self.pool_skip is None else self.pool_skip(x, thw)[0]) + self.stochastic_depth(x_attn)
        x_norm2 = self.norm2(x)
        x_proj = x if self.project is None or self.proj_after_attn else self.project(x_norm2)
        return x_proj + self.stochastic_depth(self.mlp(x_norm2)), thw_new


class _PositionalEncoding(nn.Module):
    """torchvision's ``PositionalEncoding``: the class token, and absolute positions unless relative ones are used."""

    def __init__(self, dim: int, thw: list[int], relative: bool) -> None:
        super().__init__()
        self.temporal_size, self.spatial_size = thw[0], (thw[1], thw[2])
        self.class_token = nn.Parameter(torch.zeros(dim))
        self.spatial_pos = self.temporal_pos = self.class_pos = None
        if not relative:
            self.spatial_pos = nn.Parameter(torch.zeros(thw[1] * thw[2], dim))
            self.temporal_pos = nn.Parameter(torch.zeros(thw[0], dim))
            self.class_pos = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.cat((self.class_token.expand(x.size(0), -1).unsqueeze(1), x), dim=1)
        if self.spatial_pos is not None:
            hw, dim = self.spatial_pos.shape
            pos = torch.repeat_interleave(self.temporal_pos, hw, dim=0) + self.spatial_pos.repeat(self.temporal_size, 1)
            x = x + torch.cat((self.class_pos.unsqueeze(0), pos), dim=0).unsqueeze(0)
        return x


class _MViTNet(nn.Module):
    """torchvision's ``MViT`` up to ``norm``; returns the normalised tokens ``(N, 1 + T'H'W', D)`` and ``(T', H', W')``."""

    def __init__(self, setting: dict[str, Any], num_frames: int, size: tuple[int, int], in_channels: int,
                 drop_path: float) -> None:
        super().__init__()
        flags = {k: bool(setting[k]) for k in _FLAGS}
        depth = len(setting["num_heads"])
        self.conv_proj = nn.Conv3d(in_channels, setting["input_channels"][0], (3, 7, 7), (2, 4, 4), (1, 3, 3))
        thw = [s // st for s, st in zip((num_frames, *size), (2, 4, 4))]
        self.pos_encoding = _PositionalEncoding(setting["input_channels"][0], thw, flags["rel_pos_embed"])
        self.blocks = nn.ModuleList()
        for i in range(depth):
            cfg = {k: setting[k][i] for k in _LISTS}
            self.blocks.append(_Block(thw, cfg, flags, drop_path * i / max(depth - 1.0, 1.0)))
            if len(cfg["stride_q"]) > 0:
                thw = [s // st for s, st in zip(thw, cfg["stride_q"])]
        self.norm = _layer_norm(setting["output_channels"][-1])
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
            elif isinstance(m, _PositionalEncoding):
                for p in m.parameters():
                    nn.init.trunc_normal_(p, std=0.02)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
        x = self.pos_encoding(self.conv_proj(x).flatten(2).transpose(1, 2))
        thw = (self.pos_encoding.temporal_size, *self.pos_encoding.spatial_size)
        for block in self.blocks:
            x, thw = block(x, thw)
        return self.norm(x), thw


def _setting(arch: str | dict[str, Any]) -> dict[str, Any]:
    """``arch`` (a name, or a dict of torchvision's per-block lists and flags) -> a checked setting."""
    if isinstance(arch, str):
        if arch not in ARCHS:
            raise ConfigError(f"backbone 'TorchvisionMViT': arch={arch!r}{did_you_mean(arch, ARCHS)}; "
                              f"expected one of {sorted(ARCHS)} or a dict of {list(_LISTS)}")
        return ARCHS[arch]
    if not isinstance(arch, dict) or any(k not in arch for k in _LISTS):
        raise ConfigError(f"backbone 'TorchvisionMViT': arch={arch!r}; expected one of {sorted(ARCHS)} or a dict "
                          f"with the per-block lists {list(_LISTS)}")
    unknown = sorted(set(arch) - set(_LISTS) - set(_FLAGS))
    if unknown or len({len(arch[k]) for k in _LISTS}) != 1:
        raise ConfigError(f"backbone 'TorchvisionMViT': arch has unknown keys {unknown} or lists of different "
                          f"lengths; expected {list(_LISTS)} (one entry per block) and flags {list(_FLAGS)}")
    return {**{k: False for k in _FLAGS}, **arch}


@BACKBONES.register_module()
class TorchvisionMViT(Backbone):
    """torchvision's ``mvit_v1_b`` / ``mvit_v2_s`` without ``head``; pooled: the class token, ``feature_dim`` 768.

    16 frames of 224 px (Kinetics-400), mean/std 0.45/0.225 (in 0..255). Temporal:
    the patch tokens averaged over space (``T' = T / 2``). Positions are sized
    for ``num_frames`` x ``input_size``, so both are fixed.

    Args:
        arch: ``'mvit_v1_b'``, ``'mvit_v2_s'``, or a dict of torchvision's per-block lists
            (``num_heads``, ``input_channels``, ``output_channels``, ``kernel_q``, ``kernel_kv``,
            ``stride_q``, ``stride_kv``) and flags (``residual_pool``, ``rel_pos_embed``,
            ``proj_after_attn``, ``residual_with_cls_embed``; default false).
        num_frames, input_size, in_channels, output, pretrained: see :class:`Backbone`.
        drop_path: stochastic depth of the last block (torchvision's 0.2), linear from 0.
    """

    fixed_num_frames = True
    fixed_input_size = True
    pretrained_ignore = ("net.head.",)  # torchvision's Kinetics classifier (head.1)

    def __init__(self, arch: str | dict[str, Any] = "mvit_v2_s", num_frames: int = 16,
                 input_size: int | Sequence[int] = 224, in_channels: int = 3, output: str = "pooled",
                 pretrained: str | Path | None = None, drop_path: float = 0.2) -> None:
        super().__init__(output=output, pretrained=pretrained)
        setting = _setting(arch)
        self.arch = arch
        self.num_frames = int(num_frames)
        self.input_size = as_size(input_size, "TorchvisionMViT")
        self.in_channels = in_channels
        self.net = _MViTNet(setting, self.num_frames, self.input_size, in_channels, float(drop_path))
        self.feature_dim = int(setting["output_channels"][-1])
        self.mean, self.std = (114.75,) * in_channels, (57.375,) * in_channels
        self._stage_starts = [0] + [i for i, s in enumerate(setting["stride_q"]) if math.prod(s) > 1]
        self.load_pretrained(pretrained)

    def forward_pooled(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)[0][:, 0]

    def forward_temporal(self, x: torch.Tensor) -> torch.Tensor:
        tokens, (t, h, w) = self.net(x)
        return tokens[:, 1:].reshape(x.shape[0], t, h * w, -1).mean(2)

    def stage_modules(self) -> list[list[nn.Module]]:
        """The patch embedding, then the blocks split where the query is pooled (the last with ``norm``)."""
        blocks, starts = list(self.net.blocks), sorted(set(self._stage_starts))
        stages = [blocks[a:b] for a, b in zip(starts, [*starts[1:], len(blocks)])]
        stages[-1].append(self.net.norm)
        return [[self.net.conv_proj, self.net.pos_encoding], *stages]

    @classmethod
    def pretrained_variants(cls) -> list[dict[str, Any]]:
        """The architectures ``vkit weights inspect`` tries a file against."""
        return [dict(arch=a) for a in ("mvit_v1_b", "mvit_v2_s")]

    @classmethod
    def smoke_config(cls) -> dict[str, Any]:
        return dict(arch=dict(num_heads=[1, 1], input_channels=[8, 8], output_channels=[8, 16],
                              kernel_q=[[3, 3, 3]] * 2, kernel_kv=[[3, 3, 3]] * 2, stride_q=[[1, 1, 1], [1, 2, 2]],
                              stride_kv=[[1, 2, 2]] * 2, residual_pool=True, rel_pos_embed=True,
                              proj_after_attn=True), num_frames=4, input_size=32)


__all__ = ["ARCHS", "TorchvisionMViT"]
