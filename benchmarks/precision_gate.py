"""Does reduced precision pass ``--precision auto``'s quality gate on a *trained* X3D-S? (issue: scoring at 2x)

``benchmarks/scoring.py`` gates on an untrained X3D-S (random weights, BatchNorm
calibrated, head scaled so scores spread): its score differences are amplified
noise, the worst case for any reduced precision. This script asks the question
on a model that has learnt something: the same mmaction2 X3D-S recognizer
fine-tuned end to end on labelled videos of the scoring benchmark's kind
(``scoring.trained_weights``: label 1 = the slowest of three block motions;
AdamW, then PreciseBN), then BatchNorm folded as ``vkit score`` does. On held-out
videos it prints, for fp32 and for each reduced precision, the gate's figures
(:func:`vkit.core.precision.quality_gate`: AUC delta <= 0.005 and Spearman
>= 0.999 against fp32) and clips/s; for bf16 also with each backbone stage kept
in fp32, to show whether a mixed recipe would pass. The trained weights are
cached as safetensors in ``--work``, so a second run only measures.

    python benchmarks/precision_gate.py                      # 48 training + 48 held-out videos, 4 epochs, 160 px
    python benchmarks/precision_gate.py --quick              # 12 + 12 videos of 64 px, 1 epoch (harness check)
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import scoring as S  # noqa: E402  (the scoring benchmark's recognizer, archive and decoding)


def logits(model: Any, x: torch.Tensor) -> torch.Tensor:
    return model.cls_head(model.backbone(x)).flatten()


class _Fp32Stage:
    """Run one module in fp32 inside a bf16 autocast region (the module's output goes on in bf16)."""

    def __init__(self, module: torch.nn.Module | None) -> None:
        self.module, self.forward = module, None

    def __enter__(self) -> None:
        if self.module is None:
            return
        self.forward = forward = self.module.forward

        def fp32_forward(*args: Any) -> Any:
            with torch.autocast("cpu", enabled=False):
                return forward(*[a.float() if torch.is_tensor(a) else a for a in args])

        self.module.forward = fp32_forward

    def __exit__(self, *exc: Any) -> None:
        if self.module is not None:
            self.module.forward = self.forward


def scores(model: Any, x: torch.Tensor, precision: str, keep_fp32: torch.nn.Module | None = None,
           int8: Any = None) -> tuple[np.ndarray, float]:
    """Sigmoid scores of every clip and clips/s at one precision (batches of 4)."""
    start = time.perf_counter()
    with torch.inference_mode():
        if precision == "int8":
            out = torch.cat([model.cls_head(int8(c)).flatten() for c in x.split(4)])
        else:
            with torch.autocast("cpu", torch.bfloat16, enabled=precision == "bf16"), _Fp32Stage(keep_fp32):
                out = torch.cat([logits(model, c) for c in x.split(4)])
    rate = len(x) / (time.perf_counter() - start)
    return torch.sigmoid(out.float()).numpy(), rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="12 + 12 videos of 64 px, 1 epoch (harness check)")
    parser.add_argument("--videos", type=int, default=None, help="training videos (as many held out; default 48)")
    parser.add_argument("--size", type=int, default=None, help="crop size (default 160, X3D-S)")
    parser.add_argument("--epochs", type=int, default=None, help="fine-tuning epochs (default 4)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--segments", type=int, default=2, help="clips per video")
    parser.add_argument("--no-int8", action="store_true", help="skip the int8 row (its compilation takes ~1 min)")
    parser.add_argument("--work", type=Path, default=None, help="folder for the archive and weights (default: temp)")
    args = parser.parse_args()
    videos = args.videos or (12 if args.quick else 48)
    size = args.size or (64 if args.quick else 160)
    epochs = args.epochs or (1 if args.quick else 4)
    work = args.work or Path(tempfile.mkdtemp(prefix="vkit-gate-"))
    (work / "heldout").mkdir(parents=True, exist_ok=True)

    from vkit.core.backbones.inference import fold_batchnorm, to_memory_format
    from vkit.core.precision import capabilities, quality_gate

    print("\n".join(S.cpu_header()))
    weights, line = S.trained_weights(work, size, videos, epochs, lr=args.lr, first=0)
    print(line)
    x_train, _ = S.labelled_clips(S.make_archive(work / "train", videos, size, 90), size, args.segments)
    x_val, y_val = S.labelled_clips(S.make_archive(work / "heldout", videos, size, 90, first=1000), size, args.segments)
    model = S.build_recognizer(weights)
    model.eval().requires_grad_(False)
    fold_batchnorm(model)
    to_memory_format(model, torch.channels_last_3d)               # as the scoring benchmark's vkit scorer
    x_val = x_val.contiguous(memory_format=torch.channels_last_3d)
    labels = y_val.numpy()

    reference, fp32_rate = scores(model, x_val, "fp32")
    rows: list[tuple[str, Any, float]] = []
    caps = capabilities()
    if caps.supports("bf16")[0]:
        rows.append(("bf16 (autocast)", *scores(model, x_val, "bf16")))
        for name, stage in list(model.backbone.named_children()) + [("cls_head", model.cls_head)]:
            rows.append((f"bf16, {name} in fp32", *scores(model, x_val, "bf16", keep_fp32=stage)))
    else:
        print(f"bf16 rows not run: {caps.supports('bf16')[1]}")
    if not args.no_int8:
        from vkit.core.int8 import int8_available, quantize_module

        ok, why = int8_available()
        if ok and caps.supports("int8")[0]:
            int8 = quantize_module(model.backbone, [x_train[i:i + 4] for i in range(0, 16, 4)])
            scores(model, x_val[:4], "int8", int8=int8)                      # compile before timing
            rows.append(("int8 (PT2E, x86 Inductor)", *scores(model, x_val, "int8", int8=int8)))
        else:
            print(f"int8 row not run: {why if not ok else caps.supports('int8')[1]}")

    auc = quality_gate("fp32", reference, reference, labels).metric_fp32
    print(f"\nheld-out: {len(x_val)} clips of {videos} videos, {size} px; fp32 AUC {auc:.4f}, {fp32_rate:.2f} clips/s")
    header = f"{'precision':<28}{'clips/s':>9}{'x fp32':>8}{'AUC':>8}{'delta':>8}{'Spearman':>10}{'max|diff|':>11}  gate"
    print(header + "\n" + "-" * len(header))
    for name, candidate, rate in rows:
        gate = quality_gate(name, reference, candidate, labels)
        verdict = "pass" if gate.passed else "reject: " + gate.reason
        print(f"{name:<28}{rate:>9.2f}{rate / fp32_rate:>7.2f}x{gate.metric_value:>8.4f}{gate.metric_delta:>8.4f}"
              f"{gate.spearman:>10.5f}{gate.max_abs_diff:>11.2e}  {verdict}")


if __name__ == "__main__":
    main()
