"""Choosing a scorer's precision: :func:`apply_precision` (explicit requests, and ``auto``'s timed, gated, cached choice).

Example::

    scorer, choice = apply_precision(scorer, "auto", validation=Validation(clips, labels))
    print(choice.describe())
"""
from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vkit.core.precision import cpu
from vkit.core.precision.cpu import PRECISIONS, Capabilities, precision_cache_dir
from vkit.core.precision.gate import GateResult, Validation, quality_gate
from vkit.core.precision.scorer import _build
from vkit.registry.errors import ConfigError

__all__ = ["PrecisionChoice", "apply_precision"]


@dataclass
class PrecisionChoice:
    """What :func:`apply_precision` decided, for the console and the run row."""

    requested: str
    precision: str
    reason: str
    cpu: str = ""
    gates: list[GateResult] = field(default_factory=list)
    fp32_clips_per_s: float | None = None
    cached: bool = False

    def describe(self) -> str:
        return f"precision {self.precision} (requested {self.requested}: {self.reason})"

    def to_dict(self) -> dict[str, Any]:
        return dict(requested=self.requested, precision=self.precision, reason=self.reason, cpu=self.cpu,
                    fp32_clips_per_s=self.fp32_clips_per_s, cached=self.cached, gates=[asdict(g) for g in self.gates])


def _run(scorer: Any, clips: torch.Tensor, batch: int = 4) -> tuple[np.ndarray, float]:
    """Scores of ``clips`` and clips/s (after one warm-up batch)."""
    clips = clips.contiguous(memory_format=torch.channels_last_3d) if clips.dim() == 5 else clips
    with torch.inference_mode():
        scorer.score(clips[:batch])
        began = time.perf_counter()
        out = [torch.as_tensor(scorer.score(clips[i:i + batch])).float().reshape(-1) for i in range(0, len(clips), batch)]
        seconds = time.perf_counter() - began
    return torch.cat(out).numpy().astype(np.float64), len(clips) / max(seconds, 1e-9)


def _cache_file(cache_dir: Path, model_sha256: str, caps: Capabilities) -> Path:
    key = hashlib.sha256(f"{caps.cpu}|{' '.join(caps.flags)}|{torch.__version__}".encode()).hexdigest()[:16]
    return cache_dir / f"{model_sha256}-{key}.auto.json"


def apply_precision(scorer: Any, requested: str,
                    validation: Validation | Callable[[], Validation] | None = None, *,
                    caps: Capabilities | None = None, cache_dir: Path | None = None,
                    log: Callable[[str], None] | None = None) -> tuple[Any, PrecisionChoice]:
    """``scorer`` made to score in ``requested`` precision (or fp32 where that is not possible), and why.

    Args:
        scorer: the task's fp32 VideoScorer.
        requested: ``'auto'``, ``'fp32'``, ``'bf16'`` or ``'int8'``.
        validation: clips (and labels) for ``auto``'s gate and int8's calibration, or a
            callable making them (called only when needed: not for fp32, bf16 or a cached decision).
        caps: this CPU's :func:`capabilities` (tests pass simulated ones).
        cache_dir: where ``auto`` keeps its decision and int8 its calibration (:func:`precision_cache_dir`).
        log: receives the one-line decision (and the gate lines).

    Raises:
        ConfigError: an unknown precision; ``int8`` requested for a scorer or on a
            CPU that cannot run it (explicit requests never silently fall back to
            a slower precision except bf16 without native support, which says so).
    """
    if requested not in PRECISIONS:
        raise ConfigError(f"--precision {requested!r}: expected one of {list(PRECISIONS)}")
    say = log or (lambda line: None)
    if requested == "fp32":
        return scorer, PrecisionChoice("fp32", "fp32", "as requested")
    caps = caps or cpu.capabilities()  # looked up at call time: tests simulate CPUs
    cache_dir = cache_dir or precision_cache_dir()
    if callable(validation):
        validation = _Lazy(validation)
    if requested in ("bf16", "int8"):
        ok, why = caps.supports(requested)
        if not ok:
            if requested == "int8":
                raise ConfigError(f"--precision int8: {why}")
            choice = PrecisionChoice(requested, "fp32", f"{why}; running fp32", caps.describe())
            say(choice.describe())
            return scorer, choice
        choice = PrecisionChoice(requested, requested, f"as requested; CPU: {caps.describe()}", caps.describe())
        built = _build(scorer, requested, validation, cache_dir)
        say(choice.describe())
        return built, choice
    return _auto(scorer, validation, caps, cache_dir, say)


class _Lazy:
    """A :class:`Validation` made on first use."""

    def __init__(self, make: Callable[[], Validation]) -> None:
        self._make, self._value = make, None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if self._value is None:
            self._value = self._make()
        return getattr(self._value, name)


def _auto(scorer: Any, validation: Validation | None, caps: Capabilities, cache_dir: Path,
          say: Callable[[str], None]) -> tuple[Any, PrecisionChoice]:
    from vkit.core.capabilities import scorer_supports

    candidates, skipped = [], []
    for precision in ("int8", "bf16"):
        ok, why = caps.supports(precision)
        if ok and precision == "int8" and "int8" not in scorer_supports(scorer):
            ok, why = False, f"{type(scorer).__name__} does not declare 'int8' (its conv backbone in int8_module)"
        candidates += [precision] if ok else []
        skipped += [] if ok else [f"{precision}: {why}"]
    if not candidates:
        choice = PrecisionChoice("auto", "fp32", "; ".join(skipped) or "no reduced precision available", caps.describe())
        say(choice.describe())
        return scorer, choice
    cache = _cache_file(cache_dir, scorer.model_sha256, caps)
    if cache.is_file():
        data = json.loads(cache.read_text())
        choice = PrecisionChoice("auto", data["precision"], data["reason"], caps.describe(),
                                 [GateResult(**g) for g in data["gates"]], data.get("fp32_clips_per_s"), cached=True)
        say(choice.describe() + f" [decided earlier, {cache}]")
        return _build(scorer, choice.precision, validation, cache_dir), choice
    if validation is None or len(validation.clips) == 0:
        choice = PrecisionChoice("auto", "fp32", "no validation clips to gate reduced precision on", caps.describe())
        say(choice.describe())
        return scorer, choice
    reference, fp32_rate = _run(scorer, validation.clips)
    gates, built = [], {}
    for precision in candidates:
        try:
            built[precision] = _build(scorer, precision, validation, cache_dir)
        except Exception as err:  # a precision that cannot be prepared is not chosen, and the reason shown
            skipped.append(f"{precision}: {type(err).__name__}: {err}")
            continue
        scores, rate = _run(built[precision], validation.clips)
        gate = quality_gate(precision, reference, scores, validation.labels)
        gate.clips_per_s = rate
        if gate.passed and rate <= fp32_rate:
            gate.passed, gate.reason = False, f"not faster than fp32 ({rate:.2f} vs {fp32_rate:.2f} clips/s)"
        gates.append(gate)
        say(f"precision gate on {len(reference)} {validation.source}: {gate.describe()}, {rate:.2f} clips/s "
            f"(fp32 {fp32_rate:.2f})")
    passed = sorted((g for g in gates if g.passed), key=lambda g: -(g.clips_per_s or 0))
    if passed:
        best = passed[0]
        reason = (f"fastest passing the gate on {len(reference)} {validation.source}: {best.clips_per_s / fp32_rate:.2f}x fp32, "
                  f"Spearman {best.spearman:.5f}" + (f", {best.metric} delta {best.metric_delta:.4f}"
                                                     if best.metric_delta is not None else f", max |diff| {best.max_abs_diff:.2e}"))
        precision = best.precision
    else:
        precision = "fp32"
        reason = "; ".join([f"{g.precision} rejected: {g.reason}" for g in gates] + skipped) or "nothing passed"
    choice = PrecisionChoice("auto", precision, reason, caps.describe(), gates, fp32_rate)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(choice.to_dict(), indent=1))
    say(choice.describe())
    return built.get(precision, scorer), choice
