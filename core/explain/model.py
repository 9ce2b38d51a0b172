"""What an explanation looks at: one modality of a trained model as ``x -> scores``, and which layer Grad-CAM reads.

``monai.visualize`` calls ``nn_module(x)`` with one tensor and reads
``logits[:, class_idx]``. A vkit ``VideoModel`` takes ``{modality: tensor}``
and returns logits; :class:`Focus` bridges the two: it keeps the other
modalities' inputs fixed, feeds ``x`` to the explained modality and returns
what the run's metric reads (class probabilities, or a regression head's
values), so "the score" of an explanation is the number ``vkit predict`` shows
(Grad-CAM differentiates the class logit instead: a saturated probability has no gradient).

The Grad-CAM layer is found from the backbone (:func:`auto_layer`): the last
convolutional block whose feature map keeps at least 7 x 7 pixels, in the
order the forward pass finishes them (a container finishes after its
children, so a ResNet's ``layer4`` wins over its last conv). A user names
another with ``target_layer`` (relative to the model, e.g.
``backbones.volume.net.layer3``; :func:`conv_blocks` lists them).

Example::

    focus = Focus(trained.model, inputs)          # inputs: {modality: (1, C, T, H, W)}, already normalised
    focus(focus.x).shape                          # (1, num_classes)
    auto_layer(trained.model, inputs, focus.modality)[0]   # 'backbones.volume.features.8'
"""
from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from vkit.registry.errors import ConfigError, DataError, did_you_mean

#: The smallest height and width of a feature map Grad-CAM reads by default: 7 keeps the classic last stage of
#: a 224-pixel ResNet or X3D (7 x 7); a coarser map, upsampled, says little more than which corner.
MIN_SIDE = 7

__all__ = ["MIN_SIDE", "Focus", "auto_layer", "conv_blocks", "explained_modality", "model_inputs", "target_index"]


def model_inputs(model: nn.Module, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """One item's ``{modality: (C, T, H, W)}`` batched and normalised as training saw it (the model's
    ``data_preprocessor``, when it has one), each ``(1, C, T, H, W)`` float32."""
    batched = {m: torch.as_tensor(x).float().unsqueeze(0) for m, x in inputs.items()}
    pre = getattr(model, "data_preprocessor", None)
    if pre is not None and hasattr(pre, "cast_data"):
        batched = pre(dict(inputs=batched, label=torch.zeros(1), case_id=["item"]))["inputs"]
    return {m: x.float().contiguous() for m, x in batched.items()}


def explained_modality(model: nn.Module, inputs: Mapping[str, torch.Tensor], modality: str | None = None) -> str:
    """The modality to explain: ``modality`` if given, else the first whose input is an image sequence
    (``(1, C, T, H, W)`` with ``H, W > 1``; side signals are ``(1, K, 1, 1, 1)``)."""
    if modality is not None:
        if modality not in inputs:
            raise ConfigError(f"explain: modality {modality!r}{did_you_mean(modality, inputs)}; the model takes {sorted(inputs)}")
        return modality
    for name, x in inputs.items():
        if x.dim() == 5 and x.shape[-1] > 1 and x.shape[-2] > 1:
            return name
    raise DataError(f"explain: no image or volume input among {sorted(inputs)} "
                    f"(shapes {[tuple(x.shape) for x in inputs.values()]}); nothing to draw a map on")


class Focus(nn.Module):
    """``x -> (N, K)`` scores of ``model`` with ``x`` as the explained modality and the others fixed.

    Args:
        model: a vkit ``VideoModel`` (``model(inputs, mode="tensor")`` gives logits) or any module taking
            ``{modality: tensor}``.
        inputs: the item's normalised inputs (:func:`model_inputs`), batch 1.
        modality: which input ``x`` replaces (default :func:`explained_modality`).

        logits: return the class logits instead of probabilities (a single logit ``l`` as ``[-l, l]``): what
            Grad-CAM differentiates, since a saturated probability has no gradient left.

    ``forward`` returns class probabilities (softmax; a single logit becomes two columns) or, for a head
    whose ``output`` is ``"value"``, the values themselves (:func:`vkit.core.model.model_outputs`).
    """

    def __init__(self, model: nn.Module, inputs: Mapping[str, torch.Tensor], modality: str | None = None,
                 logits: bool = False) -> None:
        super().__init__()
        self.model = model
        self.modality = explained_modality(model, inputs, modality)
        self.x = inputs[self.modality]
        self.fixed = {m: v for m, v in inputs.items() if m != self.modality}
        self.output = str(getattr(model, "output", "probs"))
        self.logits = bool(logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from vkit.core.model import model_outputs

        n = x.shape[0]
        batch = {m: v.expand(n, *v.shape[1:]) for m, v in self.fixed.items()}
        batch[self.modality] = x
        try:
            logits = self.model(batch, mode="tensor")
        except TypeError:  # a plain module taking the inputs dict only
            logits = self.model(batch)
        if self.logits and self.output != "value":
            logits = logits.reshape(n, -1)
            return torch.cat([-logits, logits], 1) if logits.shape[1] == 1 else logits
        return model_outputs(logits, self.output)[1]


def target_index(scores: torch.Tensor, target: int | str | None, classes: list[str]) -> int:
    """The column of ``scores`` (1, K) to explain: ``target`` (an index or a class name), else the most
    probable class (a value model: column 0)."""
    width = int(scores.shape[-1])
    if target is None:
        return int(scores[0].argmax()) if width > 1 else 0
    if isinstance(target, str) and not target.lstrip("-").isdigit():
        if target not in classes:
            raise ConfigError(f"explain: class {target!r}{did_you_mean(target, classes)}; the run's classes are {classes}")
        index = classes.index(target)
    else:
        index = int(target)
    if not 0 <= index < width:
        raise ConfigError(f"explain: class index {index} out of range; the model gives {width} outputs")
    return index


def _is_conv(module: nn.Module) -> bool:
    return isinstance(module, nn.modules.conv._ConvNd)


def conv_blocks(model: nn.Module, inputs: Mapping[str, torch.Tensor], modality: str) -> list[tuple[str, tuple[int, ...]]]:
    """``[(name, feature map shape)]`` of the modules under ``backbones.<modality>`` that hold a convolution and
    give a map, in the order the forward pass finishes them (names relative to ``model``): ``(1, C, T', H', W')``
    of a 3-D network, or ``(T', C, H', W')`` of a 2-D network run on each frame (TSM, TSN: batch and time folded)."""
    prefix = f"backbones.{modality}"
    holders = {name: mod for name, mod in model.named_modules()
               if (name == prefix or name.startswith(prefix + ".")) and any(_is_conv(m) for m in mod.modules())}
    if not holders:  # not a VideoModel: any module holding a convolution
        holders = {name: mod for name, mod in model.named_modules() if name and any(_is_conv(m) for m in mod.modules())}
    seen: list[tuple[str, tuple[int, ...]]] = []
    handles = [mod.register_forward_hook(
        lambda _m, _i, out, name=name: seen.append((name, tuple(out.shape)))
        if isinstance(out, torch.Tensor) and out.dim() in (4, 5) else None) for name, mod in holders.items()]
    try:
        with torch.no_grad():
            Focus(model, inputs, modality)(inputs[modality])
    finally:
        for handle in handles:
            handle.remove()
    ordered: dict[str, tuple[int, ...]] = {}
    for name, shape in seen:  # a module called twice keeps its last place
        ordered.pop(name, None)
        ordered[name] = shape
    return list(ordered.items())


def auto_layer(model: nn.Module, inputs: Mapping[str, torch.Tensor], modality: str,
               target_layer: str | None = None) -> list[str]:
    """The Grad-CAM layer and its fall-backs, best first: ``[target_layer]`` when given (checked), else the
    convolutional blocks of the backbone whose map keeps at least :data:`MIN_SIDE` pixels a side, last finished
    first (the finest maps if none does). A fall-back is used when a layer's output does not reach the score through its own
    output (a backbone that reads it with a forward hook, e.g. MONAI's ResNet ``layer4``: its last block is next).

    Raises:
        ConfigError: ``target_layer`` is not a module of the model.
        DataError: the backbone has no convolution (Grad-CAM needs one; use occlusion or temporal).
    """
    blocks = conv_blocks(model, inputs, modality)
    names = [name for name, _ in blocks]
    if target_layer is not None:
        modules = dict(model.named_modules())
        if target_layer not in modules:
            raise ConfigError(f"explain: target layer {target_layer!r} is not a module of the model"
                              f"{did_you_mean(target_layer, names or list(modules))}; convolutional blocks: "
                              f"{', '.join(names[-6:]) or 'none'}")
        return [target_layer]
    if not blocks:
        raise DataError(f"explain: the {modality!r} backbone gives no convolutional feature map for Grad-CAM to weigh "
                        f"(a transformer's tokens, or no convolution at all); use --method occlusion or --method temporal")
    wide = [name for name, shape in blocks if min(shape[-2:]) >= MIN_SIDE]
    if wide:
        return list(reversed(wide))
    finest = max(shape[-1] * shape[-2] for _, shape in blocks)  # none keeps MIN_SIDE: the finest maps, last first
    return [name for name, shape in reversed(blocks) if shape[-1] * shape[-2] == finest]


def explainable_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` for gradient-based maps: eval mode, no in-place activations (they break full backward
    hooks), so the hooks MONAI registers (and never removes) stay off the caller's model."""
    clone = copy.deepcopy(model).eval()
    for module in clone.modules():
        if getattr(module, "inplace", False) is True:
            module.inplace = False
    return clone
