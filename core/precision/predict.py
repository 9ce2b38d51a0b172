"""``vkit predict`` in a reduced precision: :func:`predict_in_precision` (bf16 autocast, ``auto`` gated on the first cases).

Example::

    rows, choice = predict_in_precision(model, dataset, 8, "auto")
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from vkit.core.precision import cpu
from vkit.core.precision.choice import PrecisionChoice
from vkit.core.precision.cpu import PRECISIONS, Capabilities
from vkit.core.precision.gate import quality_gate
from vkit.registry.errors import ConfigError

__all__ = ["predict_in_precision"]


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
    caps = caps or cpu.capabilities()  # looked up at call time: tests simulate CPUs
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
