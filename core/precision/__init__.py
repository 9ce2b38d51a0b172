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

One module per job: :mod:`~vkit.core.precision.cpu` (what this CPU runs natively),
:mod:`~vkit.core.precision.gate` (the quality gate and its clips), :mod:`~vkit.core.precision.scorer`
(the reduced-precision scorer), :mod:`~vkit.core.precision.choice` (``--precision`` for ``vkit score``),
:mod:`~vkit.core.precision.predict` (``--precision`` for ``vkit predict``).

Example::

    scorer, choice = apply_precision(scorer, "auto", validation=Validation(clips, labels))
    print(choice.describe())     # "bf16 (auto: 1.52x fp32, Spearman 0.99995, AUC delta 0.0000; CPU has avx512_bf16)"
"""
from __future__ import annotations

from vkit.core.precision.choice import PrecisionChoice, apply_precision
from vkit.core.precision.cpu import PRECISIONS, Capabilities, capabilities, precision_cache_dir
from vkit.core.precision.gate import GATE_METRIC_DELTA, GATE_SPEARMAN, GateResult, Validation, archive_validation, quality_gate
from vkit.core.precision.predict import predict_in_precision
from vkit.core.precision.scorer import PrecisionScorer, precision_sha256, scorer_in_precision

__all__ = ["GATE_METRIC_DELTA", "GATE_SPEARMAN", "PRECISIONS", "Capabilities", "GateResult", "PrecisionChoice", "PrecisionScorer", "Validation",
           "apply_precision", "archive_validation", "capabilities", "precision_cache_dir", "precision_sha256",
           "predict_in_precision", "quality_gate", "scorer_in_precision"]
