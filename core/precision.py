"""Reduced-precision scoring: what this CPU computes natively, bf16/int8 scorers, and the quality gate.

``vkit score --precision auto|fp32|bf16|int8`` goes through
:func:`apply_precision`, which wraps a :class:`~vkit.core.scoring.VideoScorer`:

- ``fp32``: the scorer as it is (bit for bit what it was before precisions existed).
- ``bf16``: ``scorer.score`` under ``torch.autocast('cpu', bfloat16)`` where the
  CPU has native bf16 (``avx512_bf16`` / ``amx_bf16``); elsewhere it says so and
  runs fp32 (emulated bf16 is slower than fp32). Autocast rather than a bf16
  copy: it needs nothing from the scorer, and on X3D-S both ran at the same
  speed (28.4 vs 28.9 clips/s, batch 4, 2 cores with AMX).
- ``int8``: static post-training quantization of the scorer's conv backbone
  (:mod:`vkit.core.int8`), for scorers that name it in ``int8_module``.
- ``auto``: every precision this CPU runs natively is timed and gated on
  validation clips (:func:`quality_gate`); the fastest one that passes and
  beats fp32 is used, else fp32, and the reason is printed. The decision is
  cached per model and CPU, so a resumed job takes the same precision.

The precision is folded into the scorer's ``model_sha256`` (:func:`precision_sha256`;
fp32 keeps the checkpoint's own), so resuming a job never mixes precisions: a
video scored in fp32 is scored again by a bf16 job, and vice versa.

Example::

    scorer, choice = apply_precision(scorer, "auto", validation=Validation(clips, labels))
    print(choice.describe())     # "bf16 (auto: 1.52x fp32, Spearman 0.99995, AUC delta 0.0000; CPU has avx512_bf16)"
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vkit.core.int8 import resolve_attr
from vkit.registry.errors import ConfigError

__all__ = ["PRECISIONS", "Capabilities", "GateResult", "PrecisionChoice", "PrecisionScorer", "Validation",
           "apply_precision", "archive_validation", "capabilities", "precision_cache_dir", "precision_sha256",
           "predict_in_precision", "quality_gate", "scorer_in_precision"]

PRECISIONS = ("auto", "fp32", "bf16", "int8")
#: The gate: the task metric may move at most this much from fp32 ...
GATE_METRIC_DELTA = 0.005
#: ... and the scores' Spearman rank correlation with fp32 must reach this.
GATE_SPEARMAN = 0.999
_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
_INT8_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


def precision_cache_dir() -> Path:
    """Where gate decisions and int8 calibrations are kept: ``$VKIT_CACHE/precision`` or ``~/.cache/vkit/precision``."""
    root = os.environ.get("VKIT_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "vkit") / "precision"


# ----------------------------------------------------------------------------- capabilities
@dataclass(frozen=True)
class Capabilities:
    """What this CPU runs natively (from its flags, decided at run time).

    Attributes:
        cpu: the CPU model name.
        flags: the relevant flags it has (bf16, VNNI, AMX).
        bf16, int8: whether each reduced precision is worth running here.
        bf16_reason, int8_reason: why not, when not.
    """

    cpu: str
    flags: tuple[str, ...]
    bf16: bool
    bf16_reason: str
    int8: bool
    int8_reason: str

    def supports(self, precision: str) -> tuple[bool, str]:
        """``(ok, reason)`` for ``precision`` (fp32 is always ok)."""
        if precision == "bf16":
            return self.bf16, self.bf16_reason
        if precision == "int8":
            return self.int8, self.int8_reason
        return True, ""

    def describe(self) -> str:
        """One line: the CPU and the flags that decide."""
        return f"{self.cpu}; flags: {' '.join(self.flags) or 'none of ' + ' '.join(_BF16_FLAGS + _INT8_FLAGS)}"


def _cpu_model(path: str | Path = "/proc/cpuinfo") -> str:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine() or "unknown CPU"


def capabilities(flags: set[str] | None = None) -> Capabilities:
    """This CPU's native reduced precisions; ``flags`` overrides ``/proc/cpuinfo`` (tests simulate CPUs so).

    Example::

        capabilities().bf16                                  # True on Sapphire Rapids / Zen 4
        capabilities({"avx2"}).supports("bf16")[1]           # "CPU lacks avx512_bf16 / amx_bf16 ..."
    """
    from vkit.core.compression.quantize import cpu_flags, cpu_supports

    flags = cpu_flags() if flags is None else set(flags)
    bf16, bf16_reason = cpu_supports(torch.bfloat16, flags)
    vnni = flags.intersection(_INT8_FLAGS)
    if not vnni:
        int8, int8_reason = False, f"CPU lacks {' / '.join(_INT8_FLAGS)}: int8 kernels would be slower than fp32"
    else:
        from vkit.core.int8 import int8_available

        int8, int8_reason = int8_available()
    shown = tuple(f for f in _BF16_FLAGS + _INT8_FLAGS + ("amx_tile",) if f in flags)
    return Capabilities(_cpu_model(), shown, bf16, bf16_reason, int8, int8_reason)


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


# ----------------------------------------------------------------------------- the gate
@dataclass(frozen=True)
class Validation:
    """Clips to gate (and calibrate) reduced precisions on.

    Args:
        clips: ``(N, C, T, H, W)`` float32, as ``scorer.decode`` makes them.
        labels: ``(N,)`` 0/1 labels (the task metric is ROC AUC), or ``None``: then
            the gate holds the scores themselves to ``max |diff| <= 0.005`` instead.
        source: where the clips came from (printed and recorded).
    """

    clips: torch.Tensor
    labels: np.ndarray | None = None
    source: str = "validation clips"


@dataclass
class GateResult:
    """The quality gate's figures for one precision against fp32."""

    precision: str
    passed: bool
    clips: int
    spearman: float
    max_abs_diff: float
    metric: str | None = None
    metric_fp32: float | None = None
    metric_value: float | None = None
    metric_delta: float | None = None
    clips_per_s: float | None = None
    reason: str = ""

    def describe(self) -> str:
        text = f"{self.precision}: Spearman {self.spearman:.5f}, max |diff| {self.max_abs_diff:.2e}"
        if self.metric_delta is not None:
            text += f", {self.metric} delta {self.metric_delta:.4f}"
        return text + ("" if self.passed else f" -> rejected: {self.reason}")


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    if len(a) < 2:
        return 1.0 if np.allclose(a, b) else 0.0
    if np.ptp(a) == 0 or np.ptp(b) == 0:  # constant scores: ranks agree only if both are constant and equal
        return 1.0 if np.array_equal(a, b) else 0.0
    return float(spearmanr(a, b).statistic)


def _auc(labels: np.ndarray, scores: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores))


def quality_gate(precision: str, reference: np.ndarray, candidate: np.ndarray, labels: np.ndarray | None = None,
                 metric: Callable[[np.ndarray, np.ndarray], float] | None = None, metric_name: str = "AUC") -> GateResult:
    """Compare a precision's scores with fp32's on the same clips.

    Passes when the task metric (``metric(labels, scores)``, ROC AUC by default)
    moves at most :data:`GATE_METRIC_DELTA` and the Spearman rank correlation of
    the scores is at least :data:`GATE_SPEARMAN`. Without labels the scores
    themselves must agree within :data:`GATE_METRIC_DELTA` (max absolute difference).

    Example::

        quality_gate("bf16", fp32_scores, bf16_scores, labels).passed
    """
    ref = np.asarray(reference, dtype=np.float64).reshape(-1)
    cand = np.asarray(candidate, dtype=np.float64).reshape(-1)
    if ref.shape != cand.shape or ref.size == 0:
        raise ConfigError(f"quality gate ({precision}): expected two equal-length score arrays, got {ref.shape} and {cand.shape}")
    result = GateResult(precision, True, int(ref.size), _spearman(ref, cand), float(np.max(np.abs(ref - cand))))
    reasons = []
    if not np.all(np.isfinite(cand)):
        reasons.append("non-finite scores")
    if result.spearman < GATE_SPEARMAN:
        reasons.append(f"Spearman {result.spearman:.5f} < {GATE_SPEARMAN}")
    labels = None if labels is None else np.asarray(labels).reshape(-1)
    if labels is not None and len(np.unique(labels)) > 1 and np.all(np.isfinite(cand)):
        fn = metric or _auc
        result.metric, result.metric_fp32, result.metric_value = metric_name, fn(labels, ref), fn(labels, cand)
        result.metric_delta = abs(result.metric_value - result.metric_fp32)
        if result.metric_delta > GATE_METRIC_DELTA:
            reasons.append(f"{metric_name} moved {result.metric_delta:.4f} > {GATE_METRIC_DELTA}")
    elif result.max_abs_diff > GATE_METRIC_DELTA and (labels is None or len(np.unique(labels)) < 2):
        reasons.append(f"no labels of both classes, and scores differ up to {result.max_abs_diff:.4f} > {GATE_METRIC_DELTA}")
    if reasons:
        result.passed, result.reason = False, "; ".join(reasons)
    return result


# ----------------------------------------------------------------------------- the scorer wrapper
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


# ----------------------------------------------------------------------------- choosing
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


def _build(scorer: Any, precision: str, validation: Validation | None, cache_dir: Path) -> Any:
    if precision == "fp32":
        return scorer
    if precision == "bf16":
        return PrecisionScorer(scorer, "bf16")
    from vkit.core.int8 import quantize_scorer

    return PrecisionScorer(scorer, "int8", quantize_scorer(scorer, _int8_path(scorer), validation, cache_dir))


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


def archive_validation(scorer: Any, paths: Sequence[str], max_clips: int = 32) -> Validation:
    """Validation clips for a scorer: its own ``validation_clips()`` (clips, labels) when it has one,
    else up to ``max_clips`` clips of the job's first decodable files (no labels), spread over as many
    videos as there are: the middle clip of each of ``max_clips`` videos, or more of each video when the
    job has fewer. (The clips of one video overlap and score nearly alike; rank swaps among such near-ties
    would dominate the gate's Spearman while saying nothing about how videos rank.)

    Example::

        validation = archive_validation(scorer, ["cam1.mp4", "cam2.mp4"])
        validation.source      # "clips of 2 archive videos (unlabelled)"
    """
    from vkit.core.capabilities import scorer_supports

    if "validation_clips" in scorer_supports(scorer):  # declared (vkit.core.capabilities)
        clips, labels = scorer.validation_clips()
        return Validation(torch.as_tensor(np.ascontiguousarray(clips), dtype=torch.float32),
                          None if labels is None else np.asarray(labels), "labelled validation clips of the task")
    from vkit.registry.errors import DataError

    per_video = max(1, -(-max_clips // max(len(paths), 1)))
    chunks, used = [], 0
    for path in paths:
        if sum(len(c) for c in chunks) >= max_clips:
            break
        try:
            clips = torch.as_tensor(np.ascontiguousarray(scorer.decode(path)), dtype=torch.float32)
        except (DataError, OSError):
            continue  # a bad file fails later, in the job, with its reason
        skip = max(0, (len(clips) - per_video) // 2)
        chunks.append(clips[skip:skip + per_video])
        used += 1
    if not chunks:
        return Validation(torch.empty(0), None, "no decodable archive videos")
    return Validation(torch.cat(chunks)[:max_clips], None, f"clips of {used} archive videos (unlabelled)")


def scorer_in_precision(factory: Callable[[], Any], precision: str, cache_dir: str | None = None) -> Any:
    """``factory()``'s scorer in an already chosen ``precision`` (Ray actors; int8 needs its cached calibration).

    Picklable through ``functools.partial(scorer_in_precision, factory, "bf16")``.
    """
    return _build(factory(), precision, None, Path(cache_dir) if cache_dir else precision_cache_dir())


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
    caps = caps or capabilities()
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


# ----------------------------------------------------------------------------- vkit predict
class _Slice:
    """``dataset[start:stop]`` for any indexable dataset."""

    def __init__(self, dataset: Any, start: int, stop: int) -> None:
        self.dataset, self.start, self.stop = dataset, start, min(stop, len(dataset))

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __getitem__(self, index: int) -> Any:
        return self.dataset[self.start + index]


def _probs(rows: list[dict]) -> np.ndarray:
    """Each row's probabilities, or a regression model's values (``value``)."""
    return np.stack([np.asarray(torch.as_tensor(r["probs"] if "probs" in r else r["value"]).float()) for r in rows])


def predict_in_precision(model: torch.nn.Module, dataset: Any, batch_size: int, requested: str, *,
                         caps: Capabilities | None = None, gate_cases: int = 16,
                         log: Callable[[str], None] | None = None) -> tuple[list[dict], PrecisionChoice]:
    """:func:`vkit.core.evaluation.predict` in ``requested`` precision; returns its rows and the choice.

    ``bf16`` runs under autocast where the CPU has native bf16 (else fp32, saying
    so). ``auto`` gates on the first ``gate_cases`` cases: both precisions
    predict them, the probabilities are compared (:func:`quality_gate`, with
    AUC on the positive class when the cases carry binary labels), and the rest
    runs in bf16 only if it passed and was faster. ``int8`` quantizes conv
    backbones of ``vkit score`` scorers only, so here it is an error.

    Example::

        rows, choice = predict_in_precision(model, dataset, 8, "auto")
    """
    from vkit.core.evaluation import predict

    if requested not in PRECISIONS:
        raise ConfigError(f"--precision {requested!r}: expected one of {list(PRECISIONS)}")
    if requested == "int8":
        raise ConfigError("--precision int8: vkit predict does not quantize models (int8 is for the conv backbones "
                          "of vkit score); use fp32, bf16 or auto")
    say = log or (lambda line: None)
    if requested == "fp32":
        return predict(model, dataset, batch_size), PrecisionChoice("fp32", "fp32", "as requested")
    caps = caps or capabilities()
    if not caps.bf16:
        choice = PrecisionChoice(requested, "fp32", f"{caps.bf16_reason}; running fp32", caps.describe())
        say(choice.describe())
        return predict(model, dataset, batch_size), choice

    def run(part: Any, reduced: bool) -> tuple[list[dict], float]:
        began = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=reduced):
            rows = predict(model, part, batch_size)
        for row in rows:
            key = "probs" if "probs" in row else "value"  # a regression model's rows carry values
            row[key] = torch.as_tensor(row[key]).float()
        return rows, time.perf_counter() - began

    if requested == "bf16":
        choice = PrecisionChoice("bf16", "bf16", f"as requested; CPU: {caps.describe()}", caps.describe())
        say(choice.describe())
        return run(dataset, True)[0], choice
    head = _Slice(dataset, 0, gate_cases)
    run(_Slice(dataset, 0, min(batch_size, len(dataset))), True)  # warm-up: first-call kernel builds are not timed
    ref, fp32_s = run(head, False)
    cand, bf16_s = run(head, True)
    labels = [r.get("label") for r in ref]
    binary = all(lbl is not None and int(lbl) in (0, 1) for lbl in labels) and _probs(ref).shape[1] == 2
    if binary:
        gate = quality_gate("bf16", _probs(ref)[:, 1], _probs(cand)[:, 1], np.asarray([int(v) for v in labels]))
    else:
        gate = quality_gate("bf16", _probs(ref).reshape(-1), _probs(cand).reshape(-1))
    gate.clips_per_s = len(ref) / max(bf16_s, 1e-9)
    if gate.passed and bf16_s >= fp32_s:
        gate.passed, gate.reason = False, f"not faster than fp32 ({bf16_s:.2f} s vs {fp32_s:.2f} s on {len(ref)} cases)"
    say(f"precision gate on the first {len(ref)} cases: {gate.describe()}")
    precision = "bf16" if gate.passed else "fp32"
    reason = (f"passed the gate on the first {len(ref)} cases, {fp32_s / max(bf16_s, 1e-9):.2f}x fp32"
              if gate.passed else f"bf16 rejected: {gate.reason}")
    choice = PrecisionChoice("auto", precision, reason, caps.describe(), [gate], len(ref) / max(fp32_s, 1e-9))
    say(choice.describe())
    rest = _Slice(dataset, gate_cases, len(dataset))
    rows = (cand if gate.passed else ref) + (run(rest, gate.passed)[0] if len(rest) else [])
    return rows, choice
