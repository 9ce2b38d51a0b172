"""Explanations of a trained model's score: Grad-CAM and occlusion maps through ``monai.visualize``, and temporal saliency.

- :mod:`~vkit.core.explain.model` — one modality of a model as ``x -> scores`` (:class:`Focus`) and the Grad-CAM
  layer picked from the backbone (:func:`auto_layer`: the last convolutional block keeping a usable map).
- :mod:`~vkit.core.explain.spatial` — :func:`grad_cam` (``monai.visualize.GradCAM``) and :func:`occlusion`
  (``monai.visualize.OcclusionSensitivity``) of a volume or a clip: a map ``(T, H, W)`` in [0, 1].
- :mod:`~vkit.core.explain.temporal` — :func:`clip_saliency` (hide one segment of a clip's frames at a time) and
  :func:`scorer_saliency` (hide one segment of a video under a ``SegmentScorer``): the score drop per segment.
- :mod:`~vkit.core.explain.overlay` — the PNGs: the map over frames or slices, the per-segment strip.
- :mod:`~vkit.core.explain.result` — :class:`Explanation` and its JSON summary (peak, per-frame saliency).

``vkit explain TASK --checkpoint RUN FILE...`` (:mod:`vkit.workflows.explain`) and the report's
"Explanations: worst cases" section (:mod:`vkit.workflows.report_explain`) are built on these.

Example::

    from vkit.core.explain import grad_cam, model_inputs
    inputs = model_inputs(trained.model, dataset[0]["inputs"])
    grad_cam(trained.model, inputs, classes=trained.classes).summary()["peak"]
"""
from __future__ import annotations

from vkit.core.explain.model import Focus, auto_layer, conv_blocks, model_inputs
from vkit.core.explain.result import Explanation, mass_share
from vkit.core.explain.spatial import grad_cam, occlusion
from vkit.core.explain.temporal import clip_saliency, scorer_saliency, segment_bounds

__all__ = ["Explanation", "Focus", "auto_layer", "clip_saliency", "conv_blocks", "grad_cam", "mass_share",
           "model_inputs", "occlusion", "scorer_saliency", "segment_bounds"]
