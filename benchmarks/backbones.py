"""Backbone inference throughput on the CPU: eager vs channels_last_3d vs bf16 autocast vs onnxruntime.

One table, one row per (backbone, batch): clips/s (batch / median call time)
of eager contiguous fp32 (``torch.inference_mode``), and for each other mode
its clips/s with the ratio to that eager cell, all measured in the same run. Weights are random (nothing
is downloaded); the heavy transformers run at 160 px to keep the full run
under ~10 minutes on 2 cores.

    python benchmarks/backbones.py --quick          # tiny variants, harness check (< 1 min)
    python benchmarks/backbones.py                   # standard settings, batch 1 and 8
    python benchmarks/backbones.py --models X3D-S,TSM --batches 1 --threads 2
"""
from __future__ import annotations

import argparse
import copy
import io
import platform
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

#: (row label, BACKBONES config) at the standard settings; heavy ones at 160 px.
FULL: list[tuple[str, dict[str, Any]]] = [
    ("X3D-S", dict(type="X3D", setting="s")),
    ("X3D-M", dict(type="X3D", setting="m")),
    ("SlowOnly-R50", dict(type="SlowOnly")),
    ("TSM-R50", dict(type="TSM")),
    ("TimeSformer-B", dict(type="TimeSformer", input_size=160)),
    ("Swin3D-T", dict(type="Swin3D", num_frames=16, input_size=160)),
    ("MViTv2-S", dict(type="MViT", input_size=160)),
    ("MonaiDenseNet121", dict(type="MonaiDenseNet121")),
    ("MonaiResNet18", dict(type="MonaiResNet", depth=18)),
    ("TinyC3D", dict(type="TinyC3D", num_frames=16, input_size=(112, 112))),
]


@dataclass
class Cell:
    """One measurement: clips/s, or the reason there is none."""

    rate: float | None = None
    note: str = ""

    def text(self, eager: float | None) -> str:
        if self.rate is None:
            return self.note
        ratio = f" ({self.rate / eager:.2f}x)" if eager else ""
        return f"{self.rate:.2f}{ratio}{' ' + self.note if self.note else ''}"


@dataclass
class Row:
    label: str
    shape: tuple[int, ...]
    batch: int
    cells: dict[str, Cell] = field(default_factory=dict)


def bf16_support() -> str | None:
    """``None`` when the CPU runs bf16 natively (AVX512-BF16 or AMX), else the reason it is skipped."""
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return f"n/a: cannot read CPU flags on {platform.system()}"
    if "avx512_bf16" in flags or "amx_bf16" in flags:
        return None
    return "n/a: CPU lacks avx512_bf16/amx_bf16 (bf16 would be emulated)"


def rates(fns: dict[str, Callable[[torch.Tensor], Any]], x: torch.Tensor, min_time: float,
          max_iters: int) -> dict[str, Cell]:
    """Clips/s of each ``fns[mode](x)``, timed round-robin so every mode sees the same machine load.

    One warm-up call each, then rounds (one call per mode) for ``min_time`` s per mode (at most
    ``max_iters`` rounds); a mode's rate is ``batch / median call time``. A mode that raises gets
    the error as its cell.
    """
    cells: dict[str, Cell] = {}
    live: dict[str, Callable[[torch.Tensor], Any]] = {}
    for mode, fn in fns.items():
        try:
            fn(x)
            live[mode] = fn
        except Exception as err:
            cells[mode] = Cell(note="run failed: " + short(err))
    times: dict[str, list[float]] = {mode: [] for mode in live}
    start = time.perf_counter()
    rounds = 0
    while live and (rounds == 0 or (time.perf_counter() - start < min_time * len(live) and rounds < max_iters)):
        for mode, fn in live.items():
            t0 = time.perf_counter()
            fn(x)
            times[mode].append(time.perf_counter() - t0)
        rounds += 1
    for mode, spent in times.items():
        cells[mode] = Cell(x.shape[0] / statistics.median(spent))
    return {mode: cells[mode] for mode in fns}


def onnx_session(net: torch.nn.Module, x: torch.Tensor, threads: int) -> Any:
    """Export ``net`` (dynamic batch) and open an onnxruntime CPU session; raises with the exporter's reason."""
    import onnxruntime as ort

    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (x,), buf, dynamo=False, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "n"}, "y": {0: "n"}}, opset_version=17)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    # no busy-waiting after a run: it would steal the cores from the next (torch) call of the round
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(buf.getvalue(), options, providers=["CPUExecutionProvider"])


def short(err: BaseException, width: int = 60) -> str:
    text = f"{type(err).__name__}: {err}".replace("\n", " ")
    return text if len(text) <= width else text[: width - 3] + "..."


def bench_model(label: str, cfg: dict[str, Any], batches: list[int], args: argparse.Namespace,
                bf16_reason: str | None) -> list[Row]:
    from vkit.core.backbones import prepare_for_inference
    from vkit.registry.registries import BACKBONES

    torch.manual_seed(0)
    eager = prepare_for_inference(BACKBONES.build(cfg), "contiguous")
    fast = prepare_for_inference(copy.deepcopy(eager), "channels_last_3d")
    session, export_error = None, ""
    try:
        session = onnx_session(eager, eager.example_input(batches[0]), args.threads)
    except Exception as err:  # any exporter failure becomes the cell's text
        export_error = "export failed: " + short(err)
    def bf16(inp: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return eager.infer(inp)

    rows = []
    for batch in batches:
        x = eager.example_input(batch)
        row = Row(label, tuple(x.shape[1:]), batch)
        feed = x.numpy()
        fns: dict[str, Callable[[torch.Tensor], Any]] = {"eager": eager.infer, "channels_last_3d": fast.infer}
        if bf16_reason is None:
            fns["bf16 autocast"] = bf16
        if session is not None:
            fns["onnxruntime"] = lambda _x: session.run(None, {"x": feed})
        row.cells = rates(fns, x, args.min_time, args.max_iters)
        row.cells.setdefault("bf16 autocast", Cell(note=bf16_reason or ""))
        row.cells.setdefault("onnxruntime", Cell(note=export_error))
        rows.append(row)
        print(f"  {label} batch {batch}: " + ", ".join(
            f"{k} {c.text(row.cells['eager'].rate)}" for k, c in row.cells.items()), flush=True)
    return rows


def print_table(rows: list[Row], title: str) -> None:
    columns = ["eager", "channels_last_3d", "bf16 autocast", "onnxruntime"]
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # plain text
        print(title)
        print(" | ".join(["backbone", "input (C,T,H,W)", "batch"] + [f"{c} clips/s" for c in columns]))
        for r in rows:
            eager = r.cells["eager"].rate
            print(" | ".join([r.label, str(r.shape), str(r.batch)] + [r.cells[c].text(eager) for c in columns]))
        return
    table = Table(title=title)
    for name in ["backbone", "input (C,T,H,W)", "batch"]:
        table.add_column(name)
    for name in columns:
        table.add_column(f"{name}\nclips/s (x eager)", justify="right", overflow="fold", max_width=34)
    for r in rows:
        eager = r.cells["eager"].rate
        table.add_row(r.label, "x".join(map(str, r.shape)), str(r.batch), *(r.cells[c].text(eager) for c in columns))
    Console(width=180).print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny variants (smoke configs), batch 1 and 2")
    parser.add_argument("--models", default="", help="comma-separated row labels to run (default: all)")
    parser.add_argument("--batches", default="", help="comma-separated batch sizes (default 1,8; quick 1,2)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch and ORT threads")
    parser.add_argument("--min-time", type=float, default=None, help="seconds per mode and row (default 3; quick 0.2)")
    parser.add_argument("--max-iters", type=int, default=50)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message=".*torch.meshgrid.*")  # mmaction2's Swin3D
    args.min_time = args.min_time if args.min_time is not None else (0.2 if args.quick else 3.0)
    batches = [int(b) for b in args.batches.split(",")] if args.batches else ([1, 2] if args.quick else [1, 8])

    from vkit.registry.registries import BACKBONES

    BACKBONES.import_from_location()
    if args.quick:
        plan = [(f"{cfg['type']} (tiny)", {"type": cfg["type"], **BACKBONES.get(cfg["type"]).smoke_config()})
                for label, cfg in FULL if label != "X3D-M"]
    else:
        plan = FULL
    if args.models:
        wanted = {m.strip() for m in args.models.split(",")}
        unknown = wanted - {label for label, _ in plan}
        if unknown:
            parser.error(f"--models: unknown {sorted(unknown)}; choose from {[label for label, _ in plan]}")
        plan = [(label, cfg) for label, cfg in plan if label in wanted]

    bf16_reason = bf16_support()
    start = time.perf_counter()
    rows: list[Row] = []
    for label, cfg in plan:
        try:
            rows += bench_model(label, cfg, batches, args, bf16_reason)
        except Exception as err:  # a model that cannot build/run still gets a row
            rows.append(Row(label, (), 0, {c: Cell(note=short(err)) for c in
                                           ["eager", "channels_last_3d", "bf16 autocast", "onnxruntime"]}))
    mode = "quick (tiny variants)" if args.quick else "standard settings"
    title = (f"vkit backbones, CPU inference clips/s, {mode}, torch {torch.__version__}, "
             f"{args.threads} threads, {platform.processor() or platform.machine()}, "
             f"{time.perf_counter() - start:.0f} s")
    print_table(rows, title)


if __name__ == "__main__":
    main()
