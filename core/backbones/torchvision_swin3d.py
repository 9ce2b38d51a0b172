"""torchvision's ``swin3d_t`` / ``swin3d_s`` / ``swin3d_b`` built here with torchvision's module names.

A transcription of ``torchvision/models/video/swin_transformer.py`` (0.29; Liu et al.,
"Video Swin Transformer", 2022) without ``head``, so that ``model.state_dict()`` saved
from torchvision loads as it is with ``pretrained=`` (mmaction2's ``Swin3D`` names its
keys differently). Parity with torchvision is tested on fixtures it wrote
(``tests/fixtures/torchvision/make_fixtures.py``).

Example::

    net = BACKBONES.build(dict(type="TorchvisionSwin3D", arch="swin3d_t", pretrained="swin3d_t.pth"))
    net(torch.randn(1, 3, 16, 224, 224)).shape     # (1, 768)
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from mmcv.cnn.bricks import DropPath
from torch import nn

from vkit.core.backbones.base import IMAGENET_MEAN, IMAGENET_STD
from vkit.core.backbones.feature_map import FeatureMapBackbone, as_size
from vkit.registry.errors import ConfigError, did_you_mean
from vkit.registry.registries import BACKBONES

#: torchvision's settings: embed_dim, depths, num_heads (patch (2, 4, 4), window (8, 7, 7)).
ARCHS: dict[str, dict[str, Any]] = {
    "swin3d_t": dict(embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24]),
    "swin3d_s": dict(embed_dim=96, depths=[2, 2, 18, 2], num_heads=[3, 6, 12, 24]),
    "swin3d_b": dict(embed_dim=128, depths=[2, 2, 18, 2], num_heads=[4, 8, 16, 32]),
}


def _pad_to(size: Sequence[int], multiple: Sequence[int]) -> list[int]:
    return [(m - s % m) % m for s, m in zip(size, multiple)]


def _attention_mask(x: torch.Tensor, size: Sequence[int], window: Sequence[int], shift: Sequence[int]) -> torch.Tensor:
    """torchvision's ``_compute_attention_mask_3d``: -100 between tokens of different shifted regions."""
    mask = x.new_zeros(*size)
    count = 0
    for d in ((0, -window[0]), (-window[0], -shift[0]), (-shift[0], None)):
        for h in ((0, -window[1]), (-window[1], -shift[1]), (-shift[1], None)):
            for w in ((0, -window[2]), (-window[2], -shift[2]), (-shift[2], None)):
                mask[d[0]:d[1], h[0]:h[1], w[0]:w[1]] = count
                count += 1
    mask = mask.view(size[0] // window[0], window[0], size[1] // window[1], window[1], size[2] // window[2], window[2])
    mask = mask.permute(0, 2, 4, 1, 3, 5).reshape(-1, window[0] * window[1] * window[2])
    mask = mask.unsqueeze(1) - mask.unsqueeze(2)
    return mask.masked_fill(mask != 0, -100.0).masked_fill(mask == 0, 0.0)


class _WindowAttention(nn.Module):
    """torchvision's ``ShiftedWindowAttention3d`` (``shifted_window_attention_3d`` as its forward)."""

    def __init__(self, dim: int, window: list[int], shift: list[int], heads: int) -> None:
        super().__init__()
        self.window_size, self.shift_size, self.num_heads = window, shift, heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * window[0] - 1) * (2 * window[1] - 1) * (2 * window[2] - 1), heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        coords = torch.stack(torch.meshgrid(*(torch.arange(w) for w in window), indexing="ij")).flatten(1)
        rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0).contiguous()
        for i in range(3):
            rel[:, :, i] += window[i] - 1
        rel[:, :, 0] *= (2 * window[1] - 1) * (2 * window[2] - 1)
        rel[:, :, 1] *= 2 * window[2] - 1
        self.register_buffer("relative_position_index", rel.sum(-1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, h, w, c = x.shape
        window, shift = list(self.window_size), list(self.shift_size)
        for i, s in enumerate((t, h, w)):  # a window larger than the input shrinks to it, unshifted
            if s <= window[i]:
                window[i], shift[i] = s, 0
        vol = window[0] * window[1] * window[2]
        bias = self.relative_position_bias_table[self.relative_position_index[:vol, :vol].flatten()]
        bias = bias.view(vol, vol, -1).permute(2, 0, 1).contiguous().unsqueeze(0)
        pad = _pad_to((t, h, w), window)
        x = F.pad(x, (0, 0, 0, pad[2], 0, pad[1], 0, pad[0]))
        tp, hp, wp = x.shape[1:4]
        if sum(shift) > 0:
            x = torch.roll(x, shifts=(-shift[0], -shift[1], -shift[2]), dims=(1, 2, 3))
        nw = (tp // window[0]) * (hp // window[1]) * (wp // window[2])
        x = x.view(b, tp // window[0], window[0], hp // window[1], window[1], wp // window[2], window[2], c)
        x = x.permute(0, 1, 3, 5, 2, 4, 6, 7).reshape(b * nw, vol, c)
        qkv = self.qkv(x).reshape(x.size(0), vol, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * (c // self.num_heads) ** -0.5, qkv[1], qkv[2]
        attn = q.matmul(k.transpose(-2, -1)) + bias
        if sum(shift) > 0:
            mask = _attention_mask(x, (tp, hp, wp), window, shift)
            attn = (attn.view(b, nw, self.num_heads, vol, vol) + mask.unsqueeze(1).unsqueeze(0)).view(
                -1, self.num_heads, vol, vol)
        x = self.proj(F.softmax(attn, dim=-1).matmul(v).transpose(1, 2).reshape(x.size(0), vol, c))
        x = x.view(b, tp // window[0], hp // window[1], wp // window[2], window[0], window[1], window[2], c)
        x = x.permute(0, 1, 4, 2, 5, 3, 6, 7).reshape(b, tp, hp, wp, c)
        if sum(shift) > 0:
            x = torch.roll(x, shifts=(shift[0], shift[1], shift[2]), dims=(1, 2, 3))
        return x[:, :t, :h, :w, :].contiguous()


class _Block(nn.Module):
    """torchvision's ``SwinTransformerBlock`` with 3-D window attention."""

    def __init__(self, dim: int, heads: int, window: list[int], shift: list[int], drop_path: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = _WindowAttention(dim, window, shift, heads)
        self.stochastic_depth = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Dropout(0.0), nn.Linear(4 * dim, dim),
                                 nn.Dropout(0.0))
        for m in self.mlp.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.normal_(m.bias, std=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.stochastic_depth(self.attn(self.norm1(x)))
        return x + self.stochastic_depth(self.mlp(self.norm2(x)))


class _PatchMerging(nn.Module):
    """torchvision's ``PatchMerging``: 2x2 spatial neighbours concatenated, normalised, reduced to ``2 * dim``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-3:-1]
        x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        x = torch.cat([x[..., 0::2, 0::2, :], x[..., 1::2, 0::2, :], x[..., 0::2, 1::2, :], x[..., 1::2, 1::2, :]], -1)
        return self.reduction(self.norm(x))


class _PatchEmbed(nn.Module):
    """torchvision's ``PatchEmbed3d``: pad to the patch, project, channels last, normalise."""

    def __init__(self, patch: list[int], in_channels: int, dim: int) -> None:
        super().__init__()
        self.patch = tuple(patch)
        self.proj = nn.Conv3d(in_channels, dim, kernel_size=self.patch, stride=self.patch)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad = _pad_to(x.shape[2:], self.patch)
        return self.norm(self.proj(F.pad(x, (0, pad[2], 0, pad[1], 0, pad[0]))).permute(0, 2, 3, 4, 1))


class _Swin3DNet(nn.Module):
    """``patch_embed``, ``features`` (stages and merges), ``norm`` of torchvision's ``SwinTransformer3d``."""

    def __init__(self, embed_dim: int, depths: list[int], num_heads: list[int], patch: list[int],
                 window: list[int], in_channels: int, drop_path: float) -> None:
        super().__init__()
        self.patch_embed = _PatchEmbed(patch, in_channels, embed_dim)
        layers: list[nn.Module] = []
        total, block_id = sum(depths), 0
        for i, depth in enumerate(depths):
            dim = embed_dim * 2 ** i
            stage = []
            for j in range(depth):
                shift = [0 if j % 2 == 0 else w // 2 for w in window]
                stage.append(_Block(dim, num_heads[i], window, shift, drop_path * block_id / max(total - 1, 1)))
                block_id += 1
            layers.append(nn.Sequential(*stage))
            if i < len(depths) - 1:
                layers.append(_PatchMerging(dim))
        self.features = nn.Sequential(*layers)
        self.out_channels = embed_dim * 2 ** (len(depths) - 1)
        self.norm = nn.LayerNorm(self.out_channels)
        for m in self.modules():  # torchvision's initialisation (after the blocks' own, as there)
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.features(self.patch_embed(x))).permute(0, 4, 1, 2, 3)


@BACKBONES.register_module()
class TorchvisionSwin3D(FeatureMapBackbone):
    """torchvision's ``swin3d_t`` / ``_s`` / ``_b`` without ``head``; averaged; ``feature_dim`` 768 (``_b``: 1024).

    Kinetics-400 setting: patch (2, 4, 4), window (8, 7, 7), ImageNet mean/std; any
    ``T`` and size (padded to the patch and window). ``T' = T / 2``.

    Args:
        arch: ``'swin3d_t'``, ``'swin3d_s'``, ``'swin3d_b'`` or a dict (``embed_dim``, ``depths``,
            ``num_heads``, optional ``patch_size``, ``window_size``).
        num_frames, input_size, in_channels, output, pretrained: see :class:`Backbone`.
        drop_path: stochastic depth of the last block (torchvision's 0.1), linear from 0.
    """

    pretrained_ignore = ("net.head.",)  # torchvision's Kinetics classifier
    _KEYS: ClassVar[tuple[str, ...]] = ("embed_dim", "depths", "num_heads", "patch_size", "window_size")

    def __init__(self, arch: str | dict[str, Any] = "swin3d_t", num_frames: int = 16,
                 input_size: int | Sequence[int] = 224, in_channels: int = 3, output: str = "pooled",
                 pretrained: str | Path | None = None, drop_path: float = 0.1) -> None:
        super().__init__(output=output, pretrained=pretrained)
        if isinstance(arch, str) and arch not in ARCHS:
            raise ConfigError(f"backbone 'TorchvisionSwin3D': arch={arch!r}{did_you_mean(arch, ARCHS)}; "
                              f"expected one of {sorted(ARCHS)} or a dict of {list(self._KEYS)}")
        setting = ARCHS[arch] if isinstance(arch, str) else arch
        if not isinstance(setting, dict) or set(setting) - set(self._KEYS) or any(
                k not in setting for k in self._KEYS[:3]) or len(setting["depths"]) != len(setting["num_heads"]):
            raise ConfigError(f"backbone 'TorchvisionSwin3D': arch={arch!r}; expected one of {sorted(ARCHS)} or a "
                              f"dict of {list(self._KEYS)} with one num_heads per depth")
        self.arch = arch
        self.net = _Swin3DNet(int(setting["embed_dim"]), list(setting["depths"]), list(setting["num_heads"]),
                              list(setting.get("patch_size", [2, 4, 4])), list(setting.get("window_size", [8, 7, 7])),
                              in_channels, float(drop_path))
        self.feature_dim = self.net.out_channels
        self.num_frames = int(num_frames)
        self.input_size = as_size(input_size, "TorchvisionSwin3D")
        self.in_channels = in_channels
        self.mean, self.std = IMAGENET_MEAN, IMAGENET_STD
        if in_channels != 3:
            self.mean = (float(sum(IMAGENET_MEAN) / 3),) * in_channels
            self.std = (float(sum(IMAGENET_STD) / 3),) * in_channels
        self.load_pretrained(pretrained)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def stage_modules(self) -> list[list[nn.Module]]:
        """The patch embedding, then each stage with the merge before it (the last with ``norm``)."""
        f = list(self.net.features.children())
        stages = [[f[0]]] + [[f[i - 1], f[i]] for i in range(2, len(f), 2)]
        stages[-1].append(self.net.norm)
        return [[self.net.patch_embed], *stages]

    @classmethod
    def pretrained_variants(cls) -> list[dict[str, Any]]:
        """The architectures ``vkit weights inspect`` tries a file against."""
        return [dict(arch=a) for a in ("swin3d_t", "swin3d_s", "swin3d_b")]

    @classmethod
    def smoke_config(cls) -> dict[str, Any]:
        return dict(arch=dict(embed_dim=8, depths=[1, 1], num_heads=[1, 1], window_size=[2, 4, 4]),
                    num_frames=4, input_size=32)


__all__ = ["ARCHS", "TorchvisionSwin3D"]
