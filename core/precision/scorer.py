"""Scorers in a reduced precision: :class:`PrecisionScorer` (bf16 autocast, int8 backbone) and the model identity it resumes by.

Example::

    scorer = PrecisionScorer(fp32_scorer, "bf16")
    scorer.model_sha256 == precision_sha256(fp32_scorer.model_sha256, "bf16")
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vkit.core.int8 import resolve_attr
from vkit.core.precision.cpu import PRECISIONS, precision_cache_dir
from vkit.core.precision.gate import Validation
from vkit.registry.errors import ConfigError

__all__ = ["PrecisionScorer", "precision_sha256", "scorer_in_precision"]


def precision_sha256(model_sha256: str, precision: str) -> str:
    """The model identity a job resumes by: the checkpoint's sha256 for fp32, a digest of it and the precision otherwise.

    Example::

        precision_sha256(sha, "fp32") == sha                # resumes what fp32 jobs scored
        precision_sha256(sha, "bf16") != sha                # never skips a video scored in fp32
    """
    if precision not in PRECISIONS[1:]:
        raise ConfigError(f"precision: expected one of {list(PRECISIONS[1:])} once resolved, got {precision!r}")
    if precision == "fp32":
        return model_sha256
    return hashlib.sha256(f"{model_sha256}|precision={precision}".encode()).hexdigest()


class PrecisionScorer:
    """A VideoScorer that scores in ``precision``; everything but ``score`` and ``model_sha256`` is the wrapped scorer's.

    Args:
        scorer: the task's scorer (fp32).
        precision: ``'bf16'`` (autocast) or ``'int8'`` (``scorer.int8_module`` replaced by its quantized twin).
        module: for int8, the quantized module (:func:`vkit.core.int8.quantize_module`).
    """

    def __init__(self, scorer: Any, precision: str, module: torch.nn.Module | None = None) -> None:
        if precision not in ("bf16", "int8"):
            raise ConfigError(f"PrecisionScorer: precision must be 'bf16' or 'int8', got {precision!r}")
        self.scorer, self.precision = scorer, precision
        self.model_sha256 = precision_sha256(scorer.model_sha256, precision)
        self.num_segments = scorer.num_segments
        self._module = module
        if precision == "int8":
            if module is None:
                raise ConfigError("PrecisionScorer: int8 needs the quantized module")
            self._path = _int8_path(scorer)

    def __getattr__(self, name: str) -> Any:  # min_frames, memory_format, ... of the task's scorer
        if name == "scorer":
            raise AttributeError(name)
        return getattr(self.scorer, name)

    def decode(self, path: str) -> np.ndarray:
        return self.scorer.decode(path)

    def summarize(self, segment_scores: np.ndarray, info: Any) -> dict[str, Any]:
        return self.scorer.summarize(segment_scores, info)

    def score(self, clips: torch.Tensor) -> torch.Tensor:
        if self.precision == "bf16":
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = self.scorer.score(clips)
            return torch.as_tensor(out).float()
        with _swapped(self.scorer, self._path, self._module):
            return torch.as_tensor(self.scorer.score(clips)).float()


def _int8_path(scorer: Any) -> str:
    from vkit.core.capabilities import scorer_supports

    path = scorer.int8_module if "int8" in scorer_supports(scorer) else None  # declared (vkit.core.capabilities)
    if not isinstance(path, str) or not path:
        raise ConfigError(f"{type(scorer).__name__}: int8 needs the scorer to declare 'int8' in its supports and "
                          f"name its conv backbone in `int8_module` (e.g. 'model.backbone'); it has {path!r}")
    return path


class _swapped:
    """Context manager: ``scorer.<path>`` is ``module`` inside, the original after."""

    def __init__(self, scorer: Any, path: str, module: torch.nn.Module) -> None:
        owner, _, name = path.rpartition(".")
        self.owner = resolve_attr(scorer, owner) if owner else scorer
        self.name, self.module = name, module

    def __enter__(self) -> None:
        self.original = getattr(self.owner, self.name)
        self._set(self.module)

    def __exit__(self, *exc: Any) -> None:
        self._set(self.original)

    def _set(self, value: Any) -> None:
        if isinstance(self.owner, torch.nn.Module):
            self.owner._modules[self.name] = value     # no registration checks on the hot path
        else:
            setattr(self.owner, self.name, value)


def _build(scorer: Any, precision: str, validation: Validation | None, cache_dir: Path) -> Any:
    if precision == "fp32":
        return scorer
    if precision == "bf16":
        return PrecisionScorer(scorer, "bf16")
    from vkit.core.int8 import quantize_scorer

    return PrecisionScorer(scorer, "int8", quantize_scorer(scorer, _int8_path(scorer), validation, cache_dir))


def scorer_in_precision(factory: Callable[[], Any], precision: str, cache_dir: str | None = None) -> Any:
    """``factory()``'s scorer in an already chosen ``precision`` (Ray actors; int8 needs its cached calibration).

    Picklable through ``functools.partial(scorer_in_precision, factory, "bf16")``.
    """
    return _build(factory(), precision, None, Path(cache_dir) if cache_dir else precision_cache_dir())
