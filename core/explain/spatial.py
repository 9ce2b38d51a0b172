"""Spatial maps through ``monai.visualize``: Grad-CAM and occlusion sensitivity of one volume or clip.

Both run on the model's normalised input ``(1, C, T, H, W)`` (a volume's depth
is ``T``) and give a map ``(T, H, W)`` in [0, 1] over it:

- :func:`grad_cam`: ``monai.visualize.GradCAM`` on the layer :func:`~vkit.core.explain.model.auto_layer`
  picks (or the one named), upsampled trilinearly to the input and scaled to [0, 1]
  (MONAI's default post-processing maps max to 0; vkit keeps "high = important").
- :func:`occlusion`: ``monai.visualize.OcclusionSensitivity`` (a Gaussian-weighted box slid over
  ``(T, H, W)``); the map is how much the target's probability drops when each place is hidden
  (drops below zero count as zero), scaled to [0, 1].

Example::

    inputs = model_inputs(trained.model, item["inputs"])
    cam = grad_cam(trained.model, inputs, classes=trained.classes)
    cam.peak          # {'frame': 14, 'y': 9, 'x': 20, 'value': 1.0}
    occ = occlusion(trained.model, inputs, mask_size=8)
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from vkit.core.explain.model import Focus, auto_layer, explainable_copy, target_index
from vkit.core.explain.result import Explanation, unit_scale
from vkit.registry.errors import DataError

__all__ = ["grad_cam", "occlusion"]


def _unit(x: torch.Tensor) -> torch.Tensor:
    """Per item min-max to [0, 1] (MONAI's ``postprocessing`` hook), a flat map stays 0."""
    flat = x.reshape(x.shape[0], -1)
    low, high = flat.min(1).values, flat.max(1).values
    span = (high - low).clamp_min(1e-12)
    shape = (-1,) + (1,) * (x.dim() - 1)
    return torch.where((high - low).view(shape) > 1e-12, (x - low.view(shape)) / span.view(shape), torch.zeros_like(x))


def _per_frame(heat: np.ndarray) -> list[float]:
    mass = heat.reshape(heat.shape[0], -1).sum(1).astype(np.float64)
    total = float(mass.sum())
    return [float(v) for v in (mass / total if total > 0 else mass)]


def _name(index: int, classes: Sequence[str], output: str) -> str:
    if output == "value":
        return "value" if index == 0 else f"value[{index}]"
    return str(classes[index]) if 0 <= index < len(classes) else str(index)


def _upsampler(batch: int) -> Any:
    """MONAI's ``upsampler`` hook: a map to the input's ``(T, H, W)``, trilinear; a 2-D network's per-frame map
    ``(N T', 1, h, w)`` is unfolded to ``(N, 1, T', h, w)`` first (as mmaction2's Grad-CAM does for 2-D recognizers)."""
    import torch.nn.functional as F

    def make(spatial: Sequence[int]) -> Any:
        def up(acti: torch.Tensor) -> torch.Tensor:
            if acti.dim() == 4:
                frames = acti.shape[0] // batch
                acti = acti.reshape(batch, frames, *acti.shape[1:]).transpose(1, 2)
            return F.interpolate(acti, size=tuple(spatial), mode="trilinear", align_corners=False)

        return up

    return make


#: How many candidate layers Grad-CAM tries before giving up (see :func:`~vkit.core.explain.model.auto_layer`).
_TRIES = 4


def _cam(focus: Focus, layer: str, index: int) -> torch.Tensor | None:
    """The Grad-CAM map of ``layer``, or ``None`` when its output gets no gradient from the score."""
    import warnings

    from monai.visualize import GradCAM

    cam = GradCAM(nn_module=focus, target_layers=f"model.{layer}", upsampler=_upsampler(focus.x.shape[0]),
                  postprocessing=_unit)
    x = focus.x.detach().clone().requires_grad_(True)  # gradients reach the layer even when the weights are frozen
    with warnings.catch_warnings(), torch.enable_grad():
        warnings.simplefilter("ignore", UserWarning)  # MONAI's "backward hook not triggered": handled below
        try:
            return cam(x, class_idx=index)
        except IndexError:  # MONAI found no gradient for the layer
            return None
        finally:
            focus.zero_grad(set_to_none=True)


def grad_cam(model: torch.nn.Module, inputs: Mapping[str, torch.Tensor], *, target: int | str | None = None,
             classes: Sequence[str] = (), target_layer: str | None = None, modality: str | None = None) -> Explanation:
    """Grad-CAM (``monai.visualize.GradCAM``) of one item.

    Args:
        model: the trained model (left untouched: MONAI's hooks go on a copy).
        inputs: the item's normalised inputs, batch 1 (:func:`~vkit.core.explain.model.model_inputs`).
        target: the class (index or name) to explain; default the predicted one.
        classes: the run's class names.
        target_layer: a module name relative to ``model``; default :func:`~vkit.core.explain.model.auto_layer`.
        modality: the input to explain; default the first image or volume input.
    """
    clone = explainable_copy(model)
    focus = Focus(clone, inputs, modality, logits=True)  # Grad-CAM reads the class logit (a probability saturates)
    layers = auto_layer(clone, inputs, focus.modality, target_layer)
    with torch.no_grad():
        scores = Focus(clone, inputs, focus.modality)(focus.x)
    index = target_index(scores, target, list(classes))
    heat, layer = None, layers[0]
    for layer in layers[:_TRIES]:
        heat = _cam(focus, layer, index)
        if heat is not None:
            break
    if heat is None:
        raise DataError(f"explain: no gradient reaches the score through layer {layer!r} (tried "
                        f"{', '.join(layers[:_TRIES])}); name another with --target-layer")
    heat_np = heat.detach()[0, 0].float().cpu().numpy()
    return Explanation(method="gradcam", target=_name(index, classes, focus.output), target_index=index,
                       score=float(scores[0, index]), modality=focus.modality, heat=heat_np,
                       per_frame=_per_frame(heat_np), layer=layer)


def occlusion(model: torch.nn.Module, inputs: Mapping[str, torch.Tensor], *, target: int | str | None = None,
              classes: Sequence[str] = (), mask_size: int | Sequence[int] | None = None, modality: str | None = None,
              batch_size: int = 16, overlap: float = 0.5) -> Explanation:
    """Occlusion sensitivity (``monai.visualize.OcclusionSensitivity``, Gaussian occlusion) of one item.

    Args:
        model, inputs, target, classes, modality: as :func:`grad_cam`.
        mask_size: the hidden box ``(T, H, W)`` or one size for all; default a quarter of each side (at least 2).
        batch_size: occluded copies per forward pass.
        overlap: overlap of neighbouring boxes (MONAI's, 0 <= overlap < 1; more is finer and slower).
    """
    from monai.visualize import OcclusionSensitivity

    focus = Focus(model.eval(), inputs, modality)
    spatial = tuple(int(s) for s in focus.x.shape[2:])
    if mask_size is None:
        mask = tuple(max(2, s // 4) if s >= 2 else 1 for s in spatial)
    else:
        mask = tuple(int(m) for m in (mask_size if isinstance(mask_size, Sequence) else [mask_size] * len(spatial)))
        mask = tuple(min(m, s) for m, s in zip(mask, spatial))
    import warnings

    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Using a non-tuple sequence", category=UserWarning)  # MONAI's indexing
        scores = focus(focus.x)
        index = target_index(scores, target, list(classes))
        occ = OcclusionSensitivity(nn_module=focus, mask_size=mask, n_batch=int(batch_size), verbose=False,
                                   mode="gaussian", overlap=float(overlap), activate=False)
        occluded, _ = occ(focus.x)
    drop = (float(scores[0, index]) - occluded[0, index].float().cpu().numpy()).clip(min=0.0)
    heat_np = unit_scale(drop)
    return Explanation(method="occlusion", target=_name(index, classes, focus.output), target_index=index,
                       score=float(scores[0, index]), modality=focus.modality, heat=heat_np,
                       per_frame=_per_frame(heat_np), notes=dict(mask_size=list(mask), occlusion="gaussian"))

