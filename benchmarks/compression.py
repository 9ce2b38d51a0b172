"""Compression stages on a linear-heavy model (TimeSformer) and a conv model (X3D-S), measured in one run.

Each stage is applied on its own to the original model (not cumulatively),
then measured as ``CompressionChain`` measures it: bytes on disk (safetensors,
or the ONNX file), median latency per clip after warm-up, speedup and size
ratio against the original, and the metric delta. The metric is top-1
AGREEMENT WITH THE ORIGINAL MODEL'S PREDICTIONS on a fixed random probe set
(random weights, random clips, seed 0): nothing is downloaded, so there is no
labelled data; the original scores 1.0 by definition. Distill is not run
(it needs training data). Weights are random, so pruning deltas say little
about a trained model; sizes and latencies carry over.

    python benchmarks/compression.py --quick    # tiny variants, harness check (< 1 min)
    python benchmarks/compression.py            # TimeSformer-B and X3D-S at 160 px (~10 min on 2 cores)
    python benchmarks/compression.py --models TimeSformer-B --threads 2 --json out.json

Target on 2 cores: DynamicQuantize on TimeSformer-B >= 2x faster, >= 3.5x
smaller, <= 1 point agreement drop.
"""
from __future__ import annotations

import argparse
import copy
import json
import platform
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

#: label -> (backbone config, stage configs); the quick variants use each backbone's smoke config.
MODELS: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]] = {
    "TimeSformer-B": (
        dict(type="TimeSformer", input_size=160),
        [dict(type="DynamicQuantize"), dict(type="CastBF16"), dict(type="MagnitudePrune", amount=0.5), dict(type="OnnxExport")],
    ),
    "X3D-S": (
        dict(type="X3D", setting="s"),
        [dict(type="ChannelPrune", amount=0.25), dict(type="MagnitudePrune", amount=0.5), dict(type="DynamicQuantize"),
         dict(type="CastBF16"), dict(type="OnnxExport")],
    ),
}
TARGET = dict(model="TimeSformer-B", stage="DynamicQuantize", speedup=2.0, size_ratio=3.5, max_drop=0.01)


class Classifier(nn.Module):
    """A vkit backbone + ``ClsHead``: clips ``(N, C, T, H, W)`` -> logits."""

    def __init__(self, backbone: dict[str, Any], num_classes: int) -> None:
        super().__init__()
        from vkit.core.heads import ClsHead
        from vkit.registry.registries import BACKBONES

        self.backbone = BACKBONES.build(backbone)
        self.head = ClsHead(in_dim=self.backbone.feature_dim, num_classes=num_classes, dropout=0.0, init_std=0.05)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def agreement(reference: torch.Tensor, probe: torch.Tensor, batch: int):
    """``evaluate(model)``: fraction of probe clips whose top-1 class matches ``reference``."""

    def evaluate(model: nn.Module) -> float:
        with torch.inference_mode():
            preds = torch.cat([model(chunk).argmax(-1) for chunk in probe.split(batch)])
        return float((preds == reference).float().mean())

    return evaluate


def short(err: BaseException, width: int = 110) -> str:
    text = f"{type(err).__name__}: {err}".replace("\n", " ")
    return text if len(text) <= width else text[: width - 3] + "..."


def run_model(label: str, backbone: dict[str, Any], stages: list[dict[str, Any]], args: argparse.Namespace) -> list[dict[str, Any]]:
    """One row for the original model, one per stage (applied alone to a copy of the original)."""
    from vkit.core.compression import CompressionContext, StageSkipped, latency_ms, measure
    from vkit.registry.registries import BACKBONES, COMPRESSORS

    cfg = dict(backbone)
    if args.quick:
        cfg.update(BACKBONES.get(cfg["type"]).smoke_config())
    torch.manual_seed(0)
    model = Classifier(cfg, args.num_classes).eval()
    net = model.backbone
    g = torch.Generator().manual_seed(0)
    shape = (net.in_channels, net.num_frames, *net.input_size)
    probe = torch.randn(args.probe, *shape, generator=g)
    sample = torch.randn(args.batch, *shape, generator=g)
    with torch.inference_mode():
        reference = torch.cat([model(chunk).argmax(-1) for chunk in probe.split(args.batch)])
    ctx = CompressionContext(sample=sample, evaluate=agreement(reference, probe, args.batch),
                             latency_runs=args.runs, warmup=args.warmup, work_dir=args.work_dir / label)
    start = time.perf_counter()
    base = dict(measure(model, ctx), metric=ctx.evaluate(model))
    rows = [dict(model=label, stage="original", status="ok", **base, size_ratio=1.0, delta=0.0, note="")]
    print(f"  {label}: original measured in {time.perf_counter() - start:.1f}s", flush=True)
    for stage_cfg in stages:
        stage = COMPRESSORS.build(dict(stage_cfg))
        start = time.perf_counter()
        row: dict[str, Any] = dict(model=label, stage=stage.name, status="ok", note="")
        try:
            out = stage.apply(copy.deepcopy(model), ctx).eval()
            values = measure(out, ctx)
            metric = ctx.evaluate(out)
            row.update(values, metric=metric, delta=metric - base["metric"], size_ratio=base["bytes"] / values["bytes"],
                       note=getattr(stage, "notes", ""))
        except StageSkipped as err:
            row.update(status="skipped", note=str(err))
        except Exception as err:  # noqa: BLE001 - a failing stage is a row of the table, not the end of the run
            row.update(status="error", note=short(err))
        rows.append(row)
        print(f"  {label}: {stage.name} {row['status']} in {time.perf_counter() - start:.1f}s", flush=True)
    # the original is timed again at the end and the faster of its two medians kept, so a burst of load
    # from other processes during its first timing does not inflate every speedup
    rows[0]["latency_ms"] = min(base["latency_ms"], latency_ms(model, sample, args.runs, args.warmup))
    for row in rows:
        if row["status"] == "ok":
            row["speedup"] = rows[0]["latency_ms"] / row["latency_ms"]
    return rows


def print_table(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print()
    print(f"Compression per stage (each stage alone on the original; {torch.get_num_threads()} threads, "
          f"batch {args.batch}, median of {args.runs} runs after {args.warmup} warm-up; {platform.processor() or platform.machine()}).")
    print(f"Metric: top-1 agreement with the original model's predictions on {args.probe} fixed random probe clips "
          "(random weights; the original scores 1.0).")
    head = f"{'model':<14} {'stage':<16} {'status':<8} {'MB':>9} {'smaller':>7} {'ms/clip':>9} {'speedup':>7} {'sparsity':>8} {'agree':>6} {'delta':>7}"
    print(head)
    print("-" * len(head))
    for r in rows:
        if r["status"] != "ok":
            print(f"{r['model']:<14} {r['stage']:<16} {r['status']:<8} {r['note']}")
            continue
        print(f"{r['model']:<14} {r['stage']:<16} {r['status']:<8} {r['bytes'] / 1e6:9.2f} {r['size_ratio']:7.2f} "
              f"{r['latency_ms']:9.2f} {r['speedup']:7.2f} {r['sparsity']:8.3f} {r['metric']:6.3f} {r['delta']:+7.3f}")
    notes = [f"  {r['model']} {r['stage']}: {r['note'][:300]}" for r in rows if r["status"] == "ok" and r["note"]]
    if notes:
        print("notes:")
        print("\n".join(notes))
    target = next((r for r in rows if r["model"] == TARGET["model"] and r["stage"] == TARGET["stage"]), None)
    if target is not None and target["status"] == "ok":
        met = (target["speedup"] >= TARGET["speedup"] and target["size_ratio"] >= TARGET["size_ratio"]
               and -target["delta"] <= TARGET["max_drop"])
        print(f"target ({TARGET['model']} {TARGET['stage']}: >= {TARGET['speedup']}x faster, >= {TARGET['size_ratio']}x smaller, "
              f"<= {TARGET['max_drop']:.2f} drop): {target['speedup']:.2f}x, {target['size_ratio']:.2f}x, "
              f"{-target['delta']:+.3f} -> {'met' if met else 'NOT met'}{' (quick variants: not meaningful)' if args.quick else ''}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny variants of each model (harness check)")
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, among {list(MODELS)}")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch and onnxruntime threads")
    parser.add_argument("--batch", type=int, default=1, help="clips per call (latency sample and probe batches)")
    parser.add_argument("--probe", type=int, default=None, help="probe clips for the agreement metric (default 32, quick 8)")
    parser.add_argument("--runs", type=int, default=None, help="timed runs per latency (default 10, quick 3)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs before them")
    parser.add_argument("--num-classes", type=int, default=400, help="classes of the head (Kinetics-400 sized)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows to this JSON file")
    args = parser.parse_args()
    args.probe = args.probe or (8 if args.quick else 32)
    args.runs = args.runs or (3 if args.quick else 10)
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    labels = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in labels if m not in MODELS]
    if unknown:
        parser.error(f"--models: unknown {unknown}; expected some of {list(MODELS)}")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="vkit-bench-compress-") as tmp:
        args.work_dir = Path(tmp)
        for label in labels:
            backbone, stages = MODELS[label]
            rows += run_model(label, backbone, stages, args)
    print_table(rows, args)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
