"""Masked video autoencoding (VideoMAE, Tong et al., NeurIPS 2022) for ViT-type backbones: tube masking + a light decoder.

Of the registered backbones, ``TimeSformer`` is the plain ViT (patch tokens of
every frame, a class token, transformer layers over them); hierarchical
transformers (``Swin3D``, ``MViT``) pool tokens between stages and need
mask tokens inside the encoder (SimMIM), and conv nets have no tokens, so
they pretrain with :mod:`~vkit.core.ssl.vicreg` instead.

**Tube masking**: the same random ``mask_ratio`` share of the spatial patches
is hidden in every frame, so a hidden patch cannot be copied from the frame
next to it. The encoder (the backbone's own ``patch_embed``, position and
time embeddings and ``transformer_layers``) sees only the visible tokens:
with tube masking they stay a regular ``patches x frames`` grid, which is what
TimeSformer's divided space-time attention needs. A light decoder (a few
``nn.TransformerEncoderLayer`` blocks over all tokens, mask tokens where
patches were hidden, its own position embedding) predicts each hidden
patch's pixels, normalised per patch (VideoMAE's ``norm_pix`` target); the
loss is their mean squared error over hidden patches only. After
pretraining only the backbone's weights are kept.

Example::

    objective = TubeMAE(BACKBONES.build(dict(type="TimeSformer", num_frames=8, input_size=32, embed_dims=64,
                                             num_heads=2, num_transformer_layers=2, patch_size=8)))
    loss, parts = objective.loss([clips])          # parts: reconstruction, visible tokens
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from vkit.registry.errors import ConfigError

__all__ = ["TubeMAE", "supports_mae", "tube_mask"]


def supports_mae(backbone: nn.Module) -> bool:
    """Whether ``backbone`` is a ViT-type backbone :class:`TubeMAE` can mask (mmaction2's TimeSformer inside)."""
    net = getattr(backbone, "net", None)
    return all(hasattr(net, a) for a in ("patch_embed", "pos_embed", "cls_token", "transformer_layers", "norm"))


def tube_mask(batch: int, patches: int, ratio: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Indices ``(batch, kept)`` of the visible spatial patches of each clip (sorted), the same for all its frames."""
    keep = max(1, int(round(patches * (1 - ratio))))
    noise = torch.rand(batch, patches, generator=generator)
    return noise.argsort(1)[:, :keep].sort(1).values


class TubeMAE(nn.Module):
    """VideoMAE-style pretraining of a TimeSformer backbone; :meth:`loss` of one view.

    Args:
        backbone: the vkit ``TimeSformer`` wrapper (``backbone.net``: mmaction2's ``TimeSformer``).
        mask_ratio: share of spatial patches hidden in every frame (VideoMAE uses 0.9 on 16x224x224 clips;
            0.75 suits small clips with few patches).
        decoder_dim, decoder_depth, decoder_heads: the light decoder.
    """

    views = 1

    def __init__(self, backbone: nn.Module, mask_ratio: float = 0.75, decoder_dim: int = 64, decoder_depth: int = 1,
                 decoder_heads: int = 4) -> None:
        super().__init__()
        if not supports_mae(backbone):
            raise ConfigError(f"objective 'mae': backbone {type(backbone).__name__!r} is not a ViT-type backbone "
                              "(TimeSformer); use objective='vicreg', which works with any backbone")
        if not 0.0 < float(mask_ratio) < 1.0:
            raise ConfigError(f"objective 'mae': mask_ratio={mask_ratio!r}; expected 0 < ratio < 1")
        if decoder_dim % decoder_heads:
            raise ConfigError(f"objective 'mae': decoder_dim={decoder_dim} must be a multiple of decoder_heads={decoder_heads}")
        self.backbone, self.mask_ratio = backbone, float(mask_ratio)
        net = backbone.net
        self.patch = int(net.patch_embed.patch_size[0])
        self.patches = int(net.patch_embed.num_patches)
        frames, dim = int(backbone.num_frames), int(net.embed_dims)
        out = backbone.in_channels * self.patch * self.patch
        self.embed = nn.Linear(dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        self.position = nn.Parameter(torch.zeros(1, frames * self.patches, decoder_dim))
        layer = nn.TransformerEncoderLayer(decoder_dim, decoder_heads, dim_feedforward=decoder_dim * 4,
                                           dropout=0.0, activation="gelu", batch_first=True, norm_first=True)
        self.decoder = nn.TransformerEncoder(layer, decoder_depth, enable_nested_tensor=False)
        self.head = nn.Sequential(nn.LayerNorm(decoder_dim), nn.Linear(decoder_dim, out))
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        nn.init.trunc_normal_(self.position, std=0.02)

    def encode_visible(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """Encoder outputs ``(N, T, K, D)`` of the visible patches ``keep`` ``(N, K)`` of clips ``(N, C, T, H, W)``."""
        net = self.backbone.net
        n, t = x.shape[0], x.shape[2]
        tokens = net.patch_embed(x) + net.pos_embed[:, 1:]  # (N*T, P, D)
        d = tokens.shape[-1]
        tokens = tokens.reshape(n, t, self.patches, d)
        k = keep.shape[1]
        tokens = tokens.gather(2, keep[:, None, :, None].expand(n, t, k, d))  # (N, T, K, D)
        cls = (net.cls_token + net.pos_embed[:, :1]).expand(n, -1, -1)  # (N, 1, D)
        if net.attention_type == "space_only":
            seq = torch.cat([cls.repeat_interleave(t, 0), tokens.reshape(n * t, k, d)], 1)
            out = net.norm(net.transformer_layers(seq, None, None))[:, 1:]
            return out.reshape(n, t, k, d)
        tokens = tokens + net.time_embed[:, :t, None, :]
        seq = torch.cat([cls, tokens.transpose(1, 2).reshape(n, k * t, d)], 1)  # 'b (p t) m' as TimeSformer orders
        out = net.norm(net.transformer_layers(seq, None, None))[:, 1:]
        return out.reshape(n, k, t, d).transpose(1, 2)

    def targets(self, x: torch.Tensor) -> torch.Tensor:
        """Per-patch normalised pixels ``(N, T, P, C p p)`` of clips ``(N, C, T, H, W)``."""
        n, c, t, h, w = x.shape
        p = self.patch
        patches = x.reshape(n, c, t, h // p, p, w // p, p).permute(0, 2, 3, 5, 1, 4, 6).reshape(n, t, self.patches, -1)
        mean, var = patches.mean(-1, keepdim=True), patches.var(-1, keepdim=True)
        return (patches - mean) / (var + 1e-6).sqrt()

    def loss(self, views: Sequence[torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """Reconstruction loss of the hidden patches of one normalised view ``(N, C, T, H, W)``."""
        x = views[0]
        self.backbone.check_input(x)
        n, t = x.shape[0], x.shape[2]
        keep = tube_mask(n, self.patches, self.mask_ratio).to(x.device)
        visible = self.embed(self.encode_visible(x, keep))  # (N, T, K, Dd)
        dd, k = visible.shape[-1], keep.shape[1]
        full = self.mask_token.expand(n, t * self.patches, dd).reshape(n, t, self.patches, dd).clone()
        full.scatter_(2, keep[:, None, :, None].expand(n, t, k, dd), visible)
        decoded = self.head(self.decoder(full.reshape(n, t * self.patches, dd) + self.position[:, :t * self.patches]))
        decoded = decoded.reshape(n, t, self.patches, -1)
        hidden = torch.ones(n, self.patches, dtype=torch.bool, device=x.device)
        hidden.scatter_(1, keep, False)
        err = (decoded - self.targets(x)).pow(2).mean(-1)  # (N, T, P)
        mask = hidden[:, None, :].expand_as(err)
        loss = err[mask].mean()
        return loss, dict(reconstruction=float(loss.detach()), visible_tokens=float(k * t))
