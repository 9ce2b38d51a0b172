"""Explanations drawn: a heat map over the frames or slices it explains, a saliency strip per segment.

Every figure is drawn inside :func:`vkit.core.reporting.plain_text` (a file
named ``$x$.mp4`` is drawn as those characters) with matplotlib's object API
(no pyplot state), at a width that stays legible in a 420-pixel report column.

- :func:`draw_spatial`: a volume as three slices through the map's peak (axial,
  coronal, sagittal in the model's ``(depth, rows, columns)`` order); a clip as up
  to five frames (the peak frame among them); each with the map in ``jet`` over
  the gray or colour image, and the map's share per frame/slice below.
- :func:`draw_temporal`: one thumbnail per shown segment over a bar per segment
  (how much the score dropped when the segment was hidden; the peak in red).

Example::

    base = display_frames(item["inputs"]["video"], path="clip.mp4", modality="video")
    draw_spatial("clip-gradcam.png", base, explanation, "clip.mp4: gradcam (positive 0.93)")
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vkit.core.explain.result import Explanation, unit_scale
from vkit.core.reporting import plain_text

__all__ = ["display_frames", "draw_spatial", "draw_temporal", "segment_thumbnails", "stack_pngs"]

#: Frames shown for a clip, thumbnails for a temporal strip.
CLIP_PANELS, STRIP_PANELS = 5, 8
_VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")


def _robust(values: np.ndarray) -> np.ndarray:
    """Values scaled to [0, 1] between their 1st and 99th percentiles (a hot voxel does not wash out the rest)."""
    low, high = np.percentile(values, [1, 99])
    return np.clip((values - low) / (high - low), 0, 1) if high > low else unit_scale(values)


def display_frames(x: Any, path: str | Path | None = None, modality: str = "video") -> np.ndarray:
    """What a map is drawn over: ``(T, H, W, 3)`` floats in [0, 1] for a model input ``x`` ``(C, T, H, W)``.

    A video file (``modality`` ``"video"`` and ``path`` a readable video) gives its own frames, sampled as the
    model's were (``FrameSampler("uniform", 1, T)``, mmaction2's TSN test sampling) and resized to the input;
    otherwise the input itself is shown: its first three channels as colour, or its first channel as gray
    (a volume's intensities), scaled between the 1st and 99th percentiles.
    """
    import torch

    x = torch.as_tensor(x).detach().float().cpu()
    if x.dim() == 5:
        x = x[0]
    c, t, h, w = (int(v) for v in x.shape)
    if modality == "video" and path is not None and str(path).lower().endswith(_VIDEO_SUFFIXES):
        try:
            from vkit.core.sampling import FrameSampler

            return FrameSampler("uniform", 1, t).read(path, (h, w))[0].astype(np.float32) / 255.0
        except Exception:  # noqa: BLE001 - an unreadable file falls back to the input itself
            pass
    arr = x.numpy()
    if modality == "video" and c >= 3:
        return _robust(arr[:3]).transpose(1, 2, 3, 0).astype(np.float32)
    gray = _robust(arr[0])
    return np.repeat(gray[..., None], 3, axis=-1).astype(np.float32)


def segment_thumbnails(frames: np.ndarray, bounds: Sequence[tuple[int, int]]) -> np.ndarray:
    """The middle frame of each segment ``[start, end)`` of ``frames`` ``(T, H, W, 3)``."""
    return np.stack([frames[min(len(frames) - 1, (a + max(a, b - 1)) // 2)] for a, b in bounds])


def _chosen(count: int, keep: int, panels: int) -> list[int]:
    """Up to ``panels`` indices spread over ``count``, ``keep`` among them, in order."""
    picks = {int(round(v)) for v in np.linspace(0, count - 1, min(panels, count))}
    if keep not in picks:
        picks.discard(min(picks, key=lambda v: abs(v - keep)))
        picks.add(keep)
    return sorted(picks)


def _show(ax: Any, image: np.ndarray, heat: np.ndarray | None, title: str,
          mark: tuple[int, int] | None = None) -> None:
    ax.imshow(image, interpolation="nearest")
    if heat is not None:
        ax.imshow(heat, cmap="jet", alpha=0.45, vmin=0.0, vmax=1.0, interpolation="bilinear")
    if mark is not None:  # the peak, (column, row) of this panel
        ax.plot([mark[0]], [mark[1]], marker="+", color="white", markersize=9, markeredgewidth=1.5)
    ax.set_title(title, fontsize=7)
    ax.set_xticks([])
    ax.set_yticks([])


def _figure(columns: int) -> tuple[Any, Any]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(1.7 * max(columns, 3), 3.4), dpi=100)
    grid = fig.add_gridspec(2, max(columns, 1), height_ratios=(2.2, 1.0), hspace=0.45)
    return fig, grid


def draw_spatial(png: str | Path, base: np.ndarray, explanation: Explanation, title: str, *,
                 volume: bool = False) -> Path:
    """A spatial map over its frames (a clip) or three slices through its peak (a volume); returns ``png``.

    Args:
        png: the file written.
        base: ``(T, H, W, 3)`` in [0, 1] (:func:`display_frames`).
        explanation: a Grad-CAM or occlusion :class:`~vkit.core.explain.result.Explanation` (``heat`` set).
        title: the figure's title (drawn as plain text).
        volume: draw three orthogonal slices (a scan) instead of a row of frames (a clip).
    """
    heat = explanation.heat
    if heat is None:
        raise ValueError("draw_spatial needs an explanation with a spatial map (gradcam or occlusion)")
    peak = explanation.peak
    t, y, x = peak.get("frame", 0), peak.get("y", 0), peak.get("x", 0)
    if volume:
        panels = [(base[t], heat[t], f"depth {t} (peak)", (x, y)),
                  (base[:, y], heat[:, y], f"row {y} (depth down)", (x, t)),
                  (base[:, :, x], heat[:, :, x], f"column {x} (depth down)", (y, t))]
    else:
        panels = [(base[i], heat[i], f"frame {i}" + (" (peak)" if i == t else ""), (x, y) if i == t else None)
                  for i in _chosen(len(heat), t, CLIP_PANELS)]
    with plain_text():
        fig, grid = _figure(len(panels))
        for i, (image, layer, label, mark) in enumerate(panels):
            _show(fig.add_subplot(grid[0, i]), image, layer, label, mark)
        ax = fig.add_subplot(grid[1, :])
        ax.bar(np.arange(len(explanation.per_frame)), explanation.per_frame, color="#4a7ab5", width=0.9)
        ax.set_xlabel("slice (depth)" if volume else "frame", fontsize=7)
        ax.set_ylabel("share of map", fontsize=7)
        ax.tick_params(labelsize=6)
        fig.suptitle(title, fontsize=8)
        fig.savefig(png)
    return Path(png)


def draw_temporal(png: str | Path, thumbs: np.ndarray | None, explanation: Explanation, title: str) -> Path:
    """Thumbnails of the segments (the peak among them) over one bar per segment; returns ``png``.

    Args:
        thumbs: ``(S, H, W, 3)`` in [0, 1], one per segment, or ``None`` (bars only).
        explanation: a temporal :class:`~vkit.core.explain.result.Explanation`.
    """
    rows = explanation.segments
    saliency = np.array([r["saliency"] for r in rows], dtype=float)
    best = int(np.argmax(saliency)) if len(saliency) else 0
    shown = _chosen(len(rows), best, STRIP_PANELS) if thumbs is not None and len(rows) else []
    unit = explanation.unit
    with plain_text():
        fig, grid = _figure(len(shown))
        for i, s in enumerate(shown):
            label = f"{rows[s]['start']:.1f}-{rows[s]['end']:.1f} s" if unit == "s" else f"seg {s}"
            _show(fig.add_subplot(grid[0, i]), thumbs[s], None, label + (" (peak)" if s == best else ""))
        ax = fig.add_subplot(grid[1, :] if shown else grid[:, :])
        colors = ["#c0392b" if s == best else "#4a7ab5" for s in range(len(rows))]
        ax.bar(np.arange(len(rows)), saliency, color=colors, width=0.9)
        ax.axhline(0.0, color="#555", linewidth=0.6)
        ax.set_xlabel("segment", fontsize=7)
        ax.set_ylabel("score drop when hidden", fontsize=7)
        ax.tick_params(labelsize=6)
        fig.suptitle(title, fontsize=8)
        fig.savefig(png)
    return Path(png)


def stack_pngs(out: str | Path, pngs: Sequence[str | Path]) -> Path:
    """The PNGs one above the other (left-aligned, white behind) in one PNG ``out``."""
    from PIL import Image

    images = [Image.open(p).convert("RGB") for p in pngs]
    try:
        width = max(img.width for img in images)
        sheet = Image.new("RGB", (width, sum(img.height for img in images)), "white")
        top = 0
        for img in images:
            sheet.paste(img, (0, top))
            top += img.height
        sheet.save(out, format="PNG")
    finally:
        for img in images:
            img.close()
    return Path(out)
