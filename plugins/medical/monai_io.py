"""The medical plugin's MONAI subclasses: readers for cine loops and DICOM series, and the 3-D volume check.

Kept apart from :mod:`vkit.plugins.medical.data` so that importing that module
(as registering the plugin's components does, in every ``vkit run``) does not
import MONAI; :func:`~vkit.plugins.medical.data.build_transforms` and the
dataset import this module when they build a pipeline.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from monai.data.image_reader import ImageReader, PydicomReader
from monai.transforms import MapTransform
from monai.utils import MetaKeys, SpaceKeys

from vkit.plugins.medical.cine import is_cine, read_cine
from vkit.registry.errors import ConfigError, DataError


class CineReader(ImageReader):
    """MONAI ``ImageReader`` for ``.mp4``/``.avi`` cine loops: grayscale frames stacked as depth (T, H, W).

    The affine is the identity (1 unit per frame/pixel); there is no channel axis.

    Example::

        LoadImaged(keys="image").register(CineReader())
    """

    def verify_suffix(self, filename: Sequence[str] | str) -> bool:
        names = [filename] if isinstance(filename, (str, Path)) else list(filename)
        return len(names) == 1 and is_cine(names[0])

    def read(self, data: Sequence[str] | str, **kwargs: Any) -> np.ndarray:
        name = data if isinstance(data, (str, Path)) else data[0]
        return read_cine(str(name))

    def get_data(self, img: np.ndarray) -> tuple[np.ndarray, dict]:
        meta = {
            MetaKeys.SPATIAL_SHAPE: np.asarray(img.shape),
            MetaKeys.AFFINE: np.eye(4),
            MetaKeys.ORIGINAL_AFFINE: np.eye(4),
            MetaKeys.SPACE: SpaceKeys.RAS,
            MetaKeys.ORIGINAL_CHANNEL_DIM: float("nan"),
        }
        return img, meta


class DicomSeriesReader(PydicomReader):
    """MONAI's ``PydicomReader``, selected only for a series folder or ``.dcm`` files."""

    def verify_suffix(self, filename: Sequence[str] | str) -> bool:
        names = [filename] if isinstance(filename, (str, Path)) else list(filename)
        return all(Path(n).is_dir() or str(n).lower().endswith(".dcm") for n in names)


class CheckVolumed(MapTransform):
    """Fail with a :class:`DataError` unless the image is ``channels`` x a 3-D volume (every axis > 1).

    Args:
        keys: keys to check.
        channels: channels expected after ``EnsureChannelFirstd``.

    Example::

        CheckVolumed("image", channels=1)
    """

    def __init__(self, keys: str | Sequence[str], channels: int = 1) -> None:
        super().__init__(keys)
        if not isinstance(channels, int) or channels < 1:
            raise ConfigError(f"transforms.channels: expected a positive int, got {channels!r}")
        self.channels = channels

    def __call__(self, data: Mapping[str, Any]) -> dict[str, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            img = d[key]
            source = getattr(img, "meta", {}).get("filename_or_obj", key)
            spatial = tuple(img.shape[1:])
            if len(spatial) != 3 or min(spatial) < 2:
                raise DataError(f"{source}: expected a 3-D volume, got spatial shape {spatial} ({len(spatial)}-D)")
            if img.shape[0] != self.channels:
                raise DataError(f"{source}: expected {self.channels} channel(s), got {img.shape[0]} (shape {tuple(img.shape)})")
        return d


__all__ = ["CheckVolumed", "CineReader", "DicomSeriesReader"]
