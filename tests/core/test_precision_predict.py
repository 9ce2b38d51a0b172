"""`vkit predict --precision`: fp32 unchanged, bf16 under autocast, auto gated on the first cases, int8 refused."""
from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from torch import nn

from vkit.core.evaluation import predict
from vkit.core.precision import Capabilities, predict_in_precision
from vkit.registry.errors import ConfigError

BF16_CPU = Capabilities("test CPU", ("avx512_bf16",), True, "", False, "no vnni")
OLD_CPU = Capabilities("old CPU", (), False, "CPU lacks avx512_bf16 / amx_bf16", False, "no vnni")


class Preprocessor:
    def __call__(self, batch: dict, training: bool) -> dict:
        samples = [dict(case_id=c, label=int(lbl)) for c, lbl in zip(batch["case_id"], batch["label"])]
        return dict(inputs=batch["x"], data_samples=samples)


class Net(nn.Module):
    """One logit per case (its mean); under bf16 autocast ``perturb`` noise is added, fp32 sleeps ``fp32_delay``."""

    def __init__(self, perturb: float = 0.0, fp32_delay: float = 0.0) -> None:
        super().__init__()
        self.linear = nn.Linear(8, 1)
        nn.init.constant_(self.linear.weight, 0.05)
        nn.init.constant_(self.linear.bias, 0.1)
        self.data_preprocessor = Preprocessor()
        self.perturb, self.fp32_delay, self.modes = perturb, fp32_delay, []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        reduced = torch.is_autocast_enabled("cpu")
        self.modes.append(reduced)
        if not reduced:
            time.sleep(self.fp32_delay)
        out = self.linear(x).float().reshape(-1)
        if reduced and self.perturb:
            out = out + self.perturb * torch.randn(len(out), generator=torch.Generator().manual_seed(len(self.modes)))
        return out


def _dataset(n: int = 40) -> list[dict]:
    gen = torch.Generator().manual_seed(0)
    return [dict(x=torch.full((8,), (i - n / 2) / 4.0) + 0.01 * torch.randn(8, generator=gen), case_id=f"c{i}",
                 label=int(i % 4 == 0)) for i in range(n)]


def test_fp32_is_plain_predict_and_int8_is_refused() -> None:
    net, data = Net(), _dataset()
    rows, choice = predict_in_precision(net, data, 8, "fp32", caps=BF16_CPU)
    assert choice.precision == "fp32" and not any(net.modes)
    assert [r["probs"].tolist() for r in rows] == [r["probs"].tolist() for r in predict(net, data, 8)]
    with pytest.raises(ConfigError, match="vkit predict does not quantize"):
        predict_in_precision(net, data, 8, "int8", caps=BF16_CPU)


def test_bf16_without_native_support_runs_fp32_and_says_so() -> None:
    net, lines = Net(), []
    rows, choice = predict_in_precision(net, _dataset(), 8, "bf16", caps=OLD_CPU, log=lines.append)
    assert choice.precision == "fp32" and not any(net.modes) and "running fp32" in lines[0] and len(rows) == 40


def test_auto_rejects_perturbed_bf16_and_keeps_fp32_results() -> None:
    net, data = Net(perturb=2.0), _dataset()
    rows, choice = predict_in_precision(net, data, 8, "auto", caps=BF16_CPU)
    assert choice.precision == "fp32" and "bf16 rejected" in choice.reason
    reference = predict(Net(), data, 8)
    np.testing.assert_array_equal(np.stack([r["probs"].numpy() for r in rows]),
                                  np.stack([r["probs"].numpy() for r in reference]))
    assert [r["case_id"] for r in rows] == [f"c{i}" for i in range(40)]


def test_auto_takes_bf16_when_it_passes_and_is_faster() -> None:
    net, data = Net(fp32_delay=0.05), _dataset()
    rows, choice = predict_in_precision(net, data, 8, "auto", caps=BF16_CPU)
    assert choice.precision == "bf16", choice.reason
    assert choice.gates[0].passed and choice.gates[0].metric == "AUC"
    assert net.modes[-1] is True and len(rows) == 40 and [r["case_id"] for r in rows] == [f"c{i}" for i in range(40)]
