"""``Explanation``: one map of one item, and its summary as plain data (what ``vkit explain --json`` prints)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Explanation", "mass_share", "unit_scale"]


def unit_scale(values: np.ndarray) -> np.ndarray:
    """``values`` scaled to [0, 1] by their min and max (all zeros when flat), float32."""
    values = np.nan_to_num(np.asarray(values, dtype=np.float32))
    low, high = float(values.min()), float(values.max())
    return np.zeros_like(values) if high - low <= 1e-12 else (values - low) / (high - low)


def mass_share(heat: np.ndarray, mask: np.ndarray) -> float:
    """The share of the map's mass inside ``mask`` (0 when the map is all zeros).

    Example::

        mass_share(heat, labelled) / labelled.mean()   # >= 2: twice the mass its area alone would get
    """
    heat = np.asarray(heat, dtype=np.float64)
    total = float(heat.sum())
    return 0.0 if total <= 0 else float(heat[np.asarray(mask, dtype=bool)].sum() / total)


@dataclass
class Explanation:
    """What drove one item's score.

    Attributes:
        method: ``"gradcam"``, ``"occlusion"`` or ``"temporal"``.
        target: the explained class name (or ``"value"``/``"score"``); ``target_index`` its column.
        score: the model's probability (or value, or segment score) for the target on the untouched input.
        modality: the explained input (``"volume"``, ``"video"``...).
        heat: spatial methods: ``(T, H, W)`` in [0, 1] over the model's input (depth as ``T`` for a volume);
            ``None`` for the temporal method.
        per_frame: saliency per input frame (or slice; per segment for a video scorer), each one's share of the
            map (sums to 1 when any).
        segments: the temporal method: per segment ``dict(segment, start, end, saliency, score, occluded)``;
            ``start``/``end`` are frames of the clip (or seconds, when ``unit`` is ``"s"``).
        layer: the Grad-CAM layer (relative to the model), or ``None``.
        notes: settings worth recording (mask size, occlusion mode, number of segments ...).
    """

    method: str
    target: str
    target_index: int
    score: float
    modality: str
    heat: np.ndarray | None = None
    per_frame: list[float] = field(default_factory=list)
    segments: list[dict[str, Any]] = field(default_factory=list)
    layer: str | None = None
    unit: str = "frame"
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def peak(self) -> dict[str, Any]:
        """Where the map is highest: ``dict(frame, y, x, value)`` for a spatial map, ``dict(segment, start, end,
        saliency)`` for a temporal one; ``{}`` when the map is empty."""
        if self.heat is not None and self.heat.size:
            t, y, x = np.unravel_index(int(np.argmax(self.heat)), self.heat.shape)
            return dict(frame=int(t), y=int(y), x=int(x), value=round(float(self.heat[t, y, x]), 4))
        if self.segments:
            best = max(self.segments, key=lambda s: s["saliency"])
            return {k: round(best[k], 6) if isinstance(best[k], float) else best[k]
                    for k in ("segment", "start", "end", "saliency")}
        return {}

    def summary(self) -> dict[str, Any]:
        """The explanation as JSON-ready data: method, target, score, layer, peak, per-frame saliency, segments."""
        out: dict[str, Any] = dict(method=self.method, target=self.target, target_index=self.target_index,
                                   score=round(float(self.score), 6), modality=self.modality, layer=self.layer,
                                   peak=self.peak, per_frame=[round(float(v), 5) for v in self.per_frame])
        if self.heat is not None:
            out["shape"] = list(self.heat.shape)
        if self.segments:
            out["segments"] = [{k: (round(float(v), 6) if isinstance(v, float) else v) for k, v in s.items()}
                               for s in self.segments]
            out["segment_unit"] = self.unit
        out.update(self.notes)
        return out
