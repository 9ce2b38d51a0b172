"""Random views of clips for self-supervised pretraining: one crop per clip (the same for all its frames), flip, colour.

A **video** view (:class:`ClipAugment`, input ``(N, C, T, H, W)`` in the
0..255 pixel scale, output ``(N, C, T, h, w)`` still in pixels): a random
resized crop whose box comes from mmaction2's
``RandomResizedCrop.get_crop_bbox`` (area and aspect-ratio ranges as
mmaction2's configs give them), the same box for every frame of a clip (a
crop that moved between frames would invent motion); a horizontal flip; a
strong colour distortion per clip (brightness, contrast, saturation, a hue
rotation up to the whole circle) and an occasional greyscale. The strong
colour is measured: with brightness/contrast/saturation 0.4 and no hue, VICReg
learnt each video's colours (the easiest thing two views share) and a linear
probe of the generated catalogue's genre fell to near chance (0.18-0.27 vs
0.53 at random initialisation); with these defaults it rose above it
(docs/pretrain.md). Boxes and flips draw from NumPy's/Python's global generators (as
mmaction2's transforms do), jitter factors from ``torch``: seeding
``mmengine.runner.set_random_seed`` makes views reproducible.

A **volume** view (:class:`VolumeAugment`, ``(N, C, D, H, W)`` in the scan's
normalised scale) is MONAI's: ``RandScaleCrop`` (random size), ``Resize``
back, ``RandFlip`` on each axis, ``RandScaleIntensity``,
``RandShiftIntensity`` and ``RandGaussianNoise``.

Example::

    augment = ClipAugment(out_size=(32, 32))
    view = augment(torch.rand(4, 3, 8, 36, 36) * 255)     # (4, 3, 8, 32, 32)
"""
from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from vkit.registry.errors import ConfigError

__all__ = ["ClipAugment", "VolumeAugment", "build_augment"]


def _pair(value: Sequence[float], name: str, low: float, high: float | None = None) -> tuple[float, float]:
    try:
        a, b = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"augment: {name}={value!r}; expected two numbers (low, high)") from None
    if not low <= a <= b or (high is not None and b > high):
        raise ConfigError(f"augment: {name}={value!r}; expected {low} <= low <= high" + (f" <= {high}" if high else ""))
    return a, b


class ClipAugment:
    """Random views of video clips: crop (one box per clip), flip, colour jitter, greyscale.

    Args:
        out_size: ``(h, w)`` of the views (the backbone's input size).
        area: range of the crop's share of the frame area (mmaction2 ``RandomResizedCrop.area_range``).
        aspect: range of the crop's aspect ratio.
        flip: probability of a horizontal flip (``0`` when left and right carry meaning).
        brightness, contrast, saturation: jitter strength (a factor drawn from ``1 ± value``).
        hue: largest hue rotation, as a share of the colour circle (``0.5``: any hue; colour is then no
            shortcut for telling videos apart, SimCLR's lesson).
        grey: probability of turning a view grey.
    """

    def __init__(self, out_size: Sequence[int], area: Sequence[float] = (0.35, 1.0),
                 aspect: Sequence[float] = (3 / 4, 4 / 3), flip: float = 0.5, brightness: float = 0.6,
                 contrast: float = 0.6, saturation: float = 0.8, hue: float = 0.5, grey: float = 0.3) -> None:
        self.out_size = (int(out_size[0]), int(out_size[1]))
        self.area = _pair(area, "area", 1e-3, 1.0)
        self.aspect = _pair(aspect, "aspect", 1e-3)
        for name, value in (("flip", flip), ("grey", grey)):
            if not 0.0 <= float(value) <= 1.0:
                raise ConfigError(f"augment: {name}={value!r}; expected a probability 0..1")
        for name, value in (("brightness", brightness), ("contrast", contrast), ("saturation", saturation)):
            if not 0.0 <= float(value) < 1.0:
                raise ConfigError(f"augment: {name}={value!r}; expected 0 <= value < 1")
        if not 0.0 <= float(hue) <= 0.5:
            raise ConfigError(f"augment: hue={hue!r}; expected 0 <= value <= 0.5 (a share of the colour circle)")
        self.flip, self.grey, self.hue = float(flip), float(grey), float(hue)
        self.jitter = (float(brightness), float(contrast), float(saturation))

    def settings(self) -> dict[str, Any]:
        """The arguments, for the run's config."""
        return dict(out_size=list(self.out_size), area=list(self.area), aspect=list(self.aspect), flip=self.flip,
                    brightness=self.jitter[0], contrast=self.jitter[1], saturation=self.jitter[2], hue=self.hue,
                    grey=self.grey)

    def _crop(self, clip: torch.Tensor) -> torch.Tensor:
        from mmaction.datasets.transforms import RandomResizedCrop

        h, w = clip.shape[-2:]
        x0, y0, x1, y1 = RandomResizedCrop.get_crop_bbox((h, w), self.area, self.aspect)
        box = clip[:, :, y0:y1, x0:x1]  # (C, T, h', w'): frames as the batch of one 2-D resize
        out = F.interpolate(box.transpose(0, 1), size=self.out_size, mode="bilinear", align_corners=False,
                            antialias=True).transpose(0, 1)
        if random.random() < self.flip:
            out = out.flip(-1)
        return out

    def _colour(self, views: torch.Tensor) -> torch.Tensor:
        n, c = views.shape[:2]
        if c != 3:  # grey or multi-channel video: brightness and contrast only
            return self._bright_contrast(views)
        views = self._bright_contrast(views)
        b = self.jitter[2]
        grey = views.mean(1, keepdim=True)
        factor = 1 + (torch.rand(n, 1, 1, 1, 1) * 2 - 1) * b
        views = grey + (views - grey) * factor
        if self.hue:
            views = self._rotate_hue(views)
        turn = (torch.rand(n) < self.grey).view(n, 1, 1, 1, 1)
        return torch.where(turn, views.mean(1, keepdim=True).expand_as(views), views)

    def _rotate_hue(self, views: torch.Tensor) -> torch.Tensor:
        """Rotate each view's chroma in YIQ space by a random angle up to ``hue`` of the circle (luma kept)."""
        n = views.shape[0]
        angle = (torch.rand(n) * 2 - 1) * self.hue * 2 * math.pi
        to_yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
        cos, sin = angle.cos(), angle.sin()
        rotate = torch.zeros(n, 3, 3)
        rotate[:, 0, 0] = 1
        rotate[:, 1, 1], rotate[:, 1, 2], rotate[:, 2, 1], rotate[:, 2, 2] = cos, -sin, sin, cos
        matrix = torch.linalg.inv(to_yiq) @ rotate @ to_yiq  # (N, 3, 3)
        return torch.einsum("nij,njthw->nithw", matrix, views)

    def _bright_contrast(self, views: torch.Tensor) -> torch.Tensor:
        n = views.shape[0]
        bright, contrast, _ = self.jitter
        views = views * (1 + (torch.rand(n, 1, 1, 1, 1) * 2 - 1) * bright)
        mean = views.mean((1, 2, 3, 4), keepdim=True)
        return mean + (views - mean) * (1 + (torch.rand(n, 1, 1, 1, 1) * 2 - 1) * contrast)

    def __call__(self, clips: torch.Tensor) -> torch.Tensor:
        """Views ``(N, C, T, h, w)`` (0..255) of clips ``(N, C, T, H, W)`` (0..255), each drawn independently."""
        views = torch.stack([self._crop(clip) for clip in clips.float()])
        return self._colour(views).clamp_(0, 255)


class VolumeAugment:
    """Random views of 3-D scans with MONAI's transforms: crop (random size) + resize, flips, intensity, noise.

    Args:
        out_size: ``(D, H, W)`` of the views.
        min_scale: smallest crop side as a share of the scan's side (MONAI ``RandScaleCrop.roi_scale``).
        flip: probability of a flip along each axis.
        intensity: strength of ``RandScaleIntensity`` / ``RandShiftIntensity`` (probability 0.8 each).
        noise: standard deviation of ``RandGaussianNoise`` (probability 0.5).
    """

    def __init__(self, out_size: Sequence[int], min_scale: float = 0.6, flip: float = 0.5, intensity: float = 0.2,
                 noise: float = 0.05) -> None:
        if len(tuple(out_size)) != 3:
            raise ConfigError(f"augment: out_size={out_size!r}; a volume view needs (D, H, W)")
        if not 0.0 < float(min_scale) <= 1.0:
            raise ConfigError(f"augment: min_scale={min_scale!r}; expected 0 < value <= 1")
        self.out_size = tuple(int(s) for s in out_size)
        self.min_scale, self.flip, self.intensity, self.noise = float(min_scale), float(flip), float(intensity), float(noise)

    def settings(self) -> dict[str, Any]:
        return dict(out_size=list(self.out_size), min_scale=self.min_scale, flip=self.flip,
                    intensity=self.intensity, noise=self.noise)

    def _pipeline(self) -> Any:
        from monai.transforms import (Compose, RandFlip, RandGaussianNoise, RandScaleCrop, RandScaleIntensity,
                                      RandShiftIntensity, Resize)

        pipeline = Compose([
            RandScaleCrop(roi_scale=self.min_scale, max_roi_scale=1.0, random_size=True),
            Resize(self.out_size, mode="trilinear"),
            *[RandFlip(prob=self.flip, spatial_axis=axis) for axis in range(3)],
            RandScaleIntensity(factors=self.intensity, prob=0.8),
            RandShiftIntensity(offsets=self.intensity, prob=0.8),
            RandGaussianNoise(prob=0.5, std=self.noise),
        ])
        pipeline.set_random_state(seed=int(np.random.randint(0, 2**31 - 1)))  # from the seeded global generator
        return pipeline

    def __call__(self, volumes: torch.Tensor) -> torch.Tensor:
        """Views ``(N, C, *out_size)`` of scans ``(N, C, D, H, W)``."""
        pipeline = self._pipeline()
        return torch.stack([torch.as_tensor(pipeline(v.float())).float() for v in volumes])


def build_augment(modality: str, out_size: Sequence[int], **kwargs: Any) -> ClipAugment | VolumeAugment:
    """The augmentation of a backbone's ``modality`` (``'video'`` or ``'volume'``)."""
    if modality == "volume":
        return VolumeAugment(out_size, **kwargs)
    if modality == "video":
        return ClipAugment(out_size, **kwargs)
    raise ConfigError(f"augment: modality={modality!r}; expected 'video' or 'volume'")
