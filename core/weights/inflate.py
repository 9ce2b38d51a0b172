"""Adapt a tensor whose shape differs from the model's, the way mmaction2 inflates 2-D weights, or refuse.

Two adaptations, both keeping a layer's response to the input it was trained on:

- **input channels** of a conv weight ``(O, C, k...)``: RGB weights for a 1-channel scan are
  *summed* over the 3 channels (a grey image repeated in R, G and B gives the same output);
  1-channel weights for a C-channel input are repeated and *averaged* (divided by C);
- **2-D → 3-D**: a ``(O, C, kh, kw)`` kernel for a ``(O, C, kt, kh, kw)`` conv is repeated over
  time and divided by ``kt``, exactly as ``mmaction.models.ResNet3d._inflate_conv_params`` does
  (a still clip gives the 2-D response).

Anything else (other widths, a position embedding of another length) is refused naming the key
and both shapes.

Example::

    w, how = adapt("net.conv1.weight", torch.randn(64, 3, 7, 7, 7), (64, 1, 7, 7, 7))
    how     # 'input channels 3 -> 1 (summed)'
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from vkit.registry.errors import CheckpointError


def adapt(key: str, tensor: torch.Tensor, shape: Sequence[int], owner: str = "pretrained") -> tuple[torch.Tensor, str]:
    """``tensor`` reshaped to ``shape`` and how (``''`` when it already fits), or :class:`CheckpointError`.

    Args:
        key: the model key (for the message; only ``*.weight`` keys are adapted).
        tensor: the file's tensor.
        shape: the model's shape for ``key``.
        owner: for the message.
    """
    shape = tuple(int(s) for s in shape)
    if tuple(tensor.shape) == shape:
        return tensor, ""
    steps: list[str] = []
    out = tensor
    if key.endswith("weight") and out.dim() == 4 and len(shape) == 5 and out.shape[0] == shape[0]:
        kt = shape[2]
        out = out.unsqueeze(2).expand(out.shape[0], out.shape[1], kt, *out.shape[2:]) / kt
        steps.append(f"2-D kernel inflated over time ({kt}, divided by {kt})")
    if key.endswith("weight") and out.dim() == len(shape) >= 3 and out.shape[0] == shape[0] \
            and tuple(out.shape[2:]) == shape[2:] and out.shape[1] != shape[1]:
        have, want = int(out.shape[1]), shape[1]
        if want == 1:
            out = out.sum(1, keepdim=True)
            steps.append(f"input channels {have} -> 1 (summed)")
        elif have == 1:
            out = out.expand(out.shape[0], want, *out.shape[2:]) / want
            steps.append(f"input channels 1 -> {want} (averaged)")
    if tuple(out.shape) != shape:
        raise CheckpointError(
            f"{owner}: {key}: the file's tensor has shape {tuple(tensor.shape)}, the model's {shape}; only input "
            f"channels (C -> 1 summed, 1 -> C averaged) and 2-D -> 3-D kernels are adapted. Build the backbone "
            f"to match the file (in_channels, widths, num_frames) or load with pretrained_strict=False to skip it")
    return out.contiguous(), "; ".join(steps)


__all__ = ["adapt"]
