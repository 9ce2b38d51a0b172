"""Compression stages on a linear-heavy model (TimeSformer) and a conv model (X3D-S), measured in one run.

Each stage is applied on its own to the original model (not cumulatively),
then measured as ``CompressionChain`` measures it: bytes on disk (safetensors,
or the ONNX file), median latency per clip after warm-up, speedup and size
ratio against the original, and the metric delta.

The metric is held-out top-1 accuracy (in %) on a labelled synthetic probe
task (nothing can be downloaded): 6 classes of drifting sinusoidal gratings,
each class its own orientation, spatial frequency and drift speed/direction,
every clip jittered (orientation, frequency, speed, phase, contrast) plus
Gaussian noise; a train and a held-out split. The backbone keeps its random
weights; the head's ``Linear`` is fitted on the ORIGINAL backbone's features of
the train split (ridge regression, closed form, ridge chosen by leave-one-out),
so the original model classifies the held-out split with real margins. Every
stage then compresses backbone + fitted head, and is scored on the held-out
split with no refitting. Also printed per stage: how many held-out clips flip
their top-1 against the original, and the relative L2 error of the logits
against the original's (mean and max over clips), a direct fidelity measure.
Distill is not run (it needs a teacher-student training budget). Weights are
random, so pruning deltas say little about a trained model; sizes, latencies
and quantization/cast errors carry over.

    python benchmarks/compression.py --per-stage --quick    # tiny variants, harness check (< 1 min)
    python benchmarks/compression.py --per-stage            # TimeSformer-B and X3D-S at 160 px (~10 min on 2 cores)
    python benchmarks/compression.py --per-stage --models TimeSformer-B --threads 2 --json out.json

Without ``--per-stage`` it measures CHAINS with and without recovery (issue 17):
ChannelPrune(0.5) [+ distillation from the unpruned model through the Runner]
-> CastBF16 on the default medical-diagnosis model (TinyC3D avg+max, trained
on the embedded ring-lesion data with the task defaults; test ROC-AUC), and
ChannelPrune(0.5, round_to=8) [+ distillation] on X3D-S trained end to end on
the probe task (held-out top-1). Every stage is saved, loaded back with
``load_compressed`` and timed from the loaded artifact; the target is a chain
>= 2x faster and >= 2x smaller at <= 0.01 AUC (medical) / <= 1 point (probe) drop:

    python benchmarks/compression.py --threads 1              # ~10 min on a quiet 2-core machine
    python benchmarks/compression.py --quick --medical-epochs 2 --recover-epochs 1   # harness check

Target on 2 cores: DynamicQuantize on TimeSformer-B >= 2x faster, >= 3.5x
smaller, <= 1 point held-out top-1 drop.
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
TARGET = dict(model="TimeSformer-B", stage="DynamicQuantize", speedup=2.0, size_ratio=3.5, max_drop=1.0)  # drop in points


class Classifier(nn.Module):
    """A vkit backbone, a feature standardisation (buffers) and a ``ClsHead``: clips ``(N, C, T, H, W)`` -> logits."""

    def __init__(self, backbone: dict[str, Any], num_classes: int) -> None:
        super().__init__()
        from vkit.core.heads import ClsHead
        from vkit.registry.registries import BACKBONES

        self.backbone = BACKBONES.build(backbone)
        self.head = ClsHead(in_dim=self.backbone.feature_dim, num_classes=num_classes, dropout=0.0, init_std=0.05)
        # feature standardisation of the fitted linear probe: fp32 buffers, no Linear, so no stage touches it
        self.register_buffer("feat_mean", torch.zeros(self.backbone.feature_dim))
        self.register_buffer("feat_std", torch.ones(self.backbone.feature_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head((self.backbone(x) - self.feat_mean) / self.feat_std)


#: the probe classes: (orientation in degrees, spatial cycles across the frame, drift in radians per frame)
PROBE_CLASSES: list[tuple[float, float, float]] = [
    (0.0, 4.0, 0.6), (60.0, 4.0, -0.9), (120.0, 4.0, 0.6), (30.0, 8.0, -0.6), (90.0, 8.0, 0.9), (150.0, 8.0, -0.9),
]


def probe_clips(per_class: int, shape: tuple[int, ...], generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Labelled synthetic clips: class k is a drifting sinusoidal grating ``PROBE_CLASSES[k]``.

    Each clip jitters its class pattern (orientation +-4 deg, frequency and speed
    +-10%, random phase, contrast 0.6-1.0) and adds per-pixel Gaussian noise
    (std 0.3), so no two clips are equal and a classifier has to generalise.

    Args:
        per_class: clips per class.
        shape: ``(C, T, H, W)`` of one clip.
        generator: the seeded generator (clips are deterministic from it).

    Returns:
        ``clips (K * per_class, C, T, H, W)`` and ``labels (K * per_class,)``, classes interleaved.
    """
    channels, frames, height, width = shape
    y, x = torch.meshgrid(torch.linspace(0, 1, height), torch.linspace(0, 1, width), indexing="ij")
    t = torch.arange(frames, dtype=torch.float32).view(frames, 1, 1)
    clips, labels = [], []
    for _ in range(per_class):
        for label, (degrees, cycles, speed) in enumerate(PROBE_CLASSES):
            u = torch.rand(5, generator=generator)
            theta = torch.deg2rad(torch.tensor(degrees) + (u[0] - 0.5) * 8.0)
            freq = 2 * torch.pi * cycles * (0.9 + 0.2 * u[1])
            phase = freq * (x * theta.cos() + y * theta.sin()) - speed * (0.9 + 0.2 * u[2]) * t + 2 * torch.pi * u[3]
            frame = (0.6 + 0.4 * u[4]) * phase.sin()  # (T, H, W)
            clips.append(frame.expand(channels, -1, -1, -1) + 0.3 * torch.randn(shape, generator=generator))
            labels.append(label)
    return torch.stack(clips), torch.tensor(labels)


def wake(model: nn.Module) -> list[str]:
    """Gives every all-zero weight (not bias) a non-zero value, as training would; returns their names.

    Random-init models start some residual branches at zero on purpose (a
    training trick): mmaction2's X3D zero-inits the last BatchNorm of every
    block, TimeSformer its ``temporal_fc`` layers and ``time_embed``. Left so,
    those branches add exactly nothing, the model is shallower than the trained
    one, and compressing their weights changes nothing. Norm weights become 1,
    other tensors ``trunc_normal(std=0.02)`` (the ViT init).
    """
    names = []
    with torch.no_grad():
        for prefix, module in model.named_modules():
            for key, param in module.named_parameters(recurse=False):
                if key == "bias" or param.numel() == 0 or bool(param.any()):
                    continue
                if isinstance(module, (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)):
                    param.fill_(1.0)
                else:
                    nn.init.trunc_normal_(param, std=0.02)
                names.append(f"{prefix}.{key}" if prefix else key)
    return names


@torch.inference_mode()
def forward_batched(fn: Any, clips: torch.Tensor, batch: int) -> torch.Tensor:
    """``fn`` applied to ``clips`` in chunks of ``batch``, outputs concatenated (as float32)."""
    return torch.cat([fn(chunk).float() for chunk in clips.split(batch)])


def fit_head(model: Classifier, feats: torch.Tensor, labels: torch.Tensor) -> float:
    """Fits the probe: standardises the features and fits ``head.fc`` by ridge regression of one-hot labels.

    Closed form in the dual (fewer clips than feature dims); the ridge is the one
    of a log grid with the best leave-one-out accuracy (then squared error).
    The standardisation is kept apart from the ``Linear`` (fp32 buffers): folded
    into it, the small class-dependent variation of a random backbone's features
    around their large common offset would be lost to the per-tensor int8
    activation quantization of DynamicQuantize, which a trained model would not suffer.
    Returns the ridge chosen.
    """
    mean, std = feats.mean(0), feats.std(0).clamp_min(1e-6)
    z = ((feats - mean) / std).double()
    targets = nn.functional.one_hot(labels, model.head.fc.out_features).double()
    offset = targets.mean(0)
    y = targets - offset
    gram = z @ z.T
    scale = float(gram.diagonal().mean())
    best: tuple[float, float, float] | None = None
    for ridge in [scale * 10.0 ** e for e in range(-4, 3)]:
        hat = gram @ torch.linalg.inv(gram + ridge * torch.eye(len(z), dtype=z.dtype))
        loo = (hat @ y - hat.diagonal()[:, None] * y) / (1 - hat.diagonal()[:, None])
        key = (float((loo.argmax(1) == labels).double().mean()), -float(((loo - y) ** 2).mean()), ridge)
        best = key if best is None or key[:2] > best[:2] else best
    ridge = best[2]
    weight = z.T @ torch.linalg.solve(gram + ridge * torch.eye(len(z), dtype=z.dtype), y)  # (D, K)
    with torch.no_grad():
        model.feat_mean.copy_(mean)
        model.feat_std.copy_(std)
        model.head.fc.weight.copy_(weight.T.float())
        model.head.fc.bias.copy_(offset.float())
    return ridge


class ProbeTask:
    """``evaluate(model)``: held-out top-1 accuracy in percentage points; keeps the logits of the last call.

    Args:
        clips, labels: the held-out probe split.
        batch: clips per forward pass.
    """

    def __init__(self, clips: torch.Tensor, labels: torch.Tensor, batch: int) -> None:
        self.clips, self.labels, self.batch = clips, labels, batch
        self.logits: torch.Tensor | None = None

    def __call__(self, model: nn.Module) -> float:
        self.logits = forward_batched(model, self.clips, self.batch)
        return 100.0 * float((self.logits.argmax(-1) == self.labels).float().mean())


def relative_error(logits: torch.Tensor, reference: torch.Tensor) -> tuple[float, float]:
    """Mean and max over clips of ``||logits - reference|| / ||reference||`` (L2 over classes)."""
    err = (logits - reference).norm(dim=-1) / reference.norm(dim=-1).clamp_min(1e-12)
    return float(err.mean()), float(err.max())


def margins(logits: torch.Tensor) -> torch.Tensor:
    """Top-1 minus top-2 logit per clip."""
    top = logits.topk(2, dim=-1).values
    return top[:, 0] - top[:, 1]


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
    model = Classifier(cfg, len(PROBE_CLASSES)).eval()
    net = model.backbone
    g = torch.Generator().manual_seed(0)
    shape = (net.in_channels, net.num_frames, *net.input_size)
    train_x, train_y = probe_clips(args.train_per_class, shape, g)
    test_x, test_y = probe_clips(args.test_per_class, shape, g)
    start = time.perf_counter()
    woken = wake(net)
    train_feats = forward_batched(net, train_x, args.probe_batch)
    ridge = fit_head(model, train_feats, train_y)
    task = ProbeTask(test_x, test_y, args.probe_batch)
    ctx = CompressionContext(sample=test_x[: args.batch].clone(), evaluate=task, latency_runs=args.runs,
                             warmup=args.warmup, work_dir=args.work_dir / label)
    base = dict(measure(model, ctx), metric=ctx.evaluate(model))
    reference = task.logits
    m = margins(reference)
    with torch.inference_mode():
        train_logits = model.head((train_feats - model.feat_mean) / model.feat_std)
        train_top1 = 100.0 * float((train_logits.argmax(-1) == train_y).float().mean())
    fit = dict(ridge=ridge, train_top1=train_top1, margin_median=float(m.median()), margin_min=float(m.min()),
               woken=len(woken))
    rows = [dict(model=label, stage="original", status="ok", **base, size_ratio=1.0, delta=0.0, flips=0,
                 err_mean=0.0, err_max=0.0, note="", fit=fit)]
    print(f"  {label}: head fitted and original measured in {time.perf_counter() - start:.1f}s "
          f"(held-out top-1 {base['metric']:.1f}%, median top-2 margin {fit['margin_median']:.3f})", flush=True)
    for stage_cfg in stages:
        stage = COMPRESSORS.build(dict(stage_cfg))
        start = time.perf_counter()
        row: dict[str, Any] = dict(model=label, stage=stage.name, status="ok", note="")
        try:
            out = stage.apply(copy.deepcopy(model), ctx).eval()
            values = measure(out, ctx)
            metric = ctx.evaluate(out)
            err_mean, err_max = relative_error(task.logits, reference)
            row.update(values, metric=metric, delta=metric - base["metric"], size_ratio=base["bytes"] / values["bytes"],
                       flips=int((task.logits.argmax(-1) != reference.argmax(-1)).sum()), err_mean=err_mean,
                       err_max=err_max, note=getattr(stage, "notes", ""))
        except StageSkipped as err:
            row.update(status="skipped", note=str(err))
        except Exception as err:  # noqa: BLE001 - a failing stage is a row of the table, not the end of the run
            row.update(status="error", note=short(err))
        rows.append(row)
        print(f"  {label}: {stage.name} {row['status']} in {time.perf_counter() - start:.1f}s", flush=True)
    # the original is timed again at the end and the faster of its two medians kept, so a burst of load
    # from other processes during its first timing does not inflate every speedup
    rows[0]["latency_ms"] = min(base["latency_ms"], latency_ms(model, ctx.sample, args.runs, args.warmup))
    for row in rows:
        if row["status"] == "ok":
            row["speedup"] = rows[0]["latency_ms"] / row["latency_ms"]
    return rows


def print_table(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    test = args.test_per_class * len(PROBE_CLASSES)
    print()
    print(f"Compression per stage (each stage alone on the original; {torch.get_num_threads()} threads, "
          f"batch {args.batch}, median of {args.runs} runs after {args.warmup} warm-up; {platform.processor() or platform.machine()}).")
    print(f"Metric 'top1': held-out top-1 accuracy (%) on a labelled synthetic probe task of {len(PROBE_CLASSES)} classes "
          "(drifting sinusoidal gratings, one orientation/frequency/drift per class, per-clip jitter and noise), "
          f"{args.train_per_class * len(PROBE_CLASSES)} train / {test} held-out clips. Backbones have random weights; "
          "zero-initialised residual weights are woken (wake()); the head's Linear is fitted (ridge, closed form) on the ORIGINAL "
          "backbone's standardised train-split features (mean/std kept as fp32 buffers), then each "
          "stage compresses backbone + fitted head and is scored on the held-out split. "
          f"'delta': change in points (one clip = {100.0 / test:.2f} points); 'flips': held-out clips whose top-1 differs "
          "from the original's; 'err mean/max': relative L2 error of the logits vs the original's, mean/max over held-out clips.")
    for r in rows:
        if r["stage"] == "original":
            f = r["fit"]
            print(f"  {r['model']} original: train top-1 {f['train_top1']:.1f}%, held-out top-1 {r['metric']:.1f}%, "
                  f"top1-top2 logit margin median {f['margin_median']:.3f} / min {f['margin_min']:.3f}, ridge {f['ridge']:.3g}; "
                  f"{f['woken']} zero-initialised weight tensors woken (see wake())")
    head = (f"{'model':<14} {'stage':<16} {'status':<8} {'MB':>9} {'smaller':>7} {'ms/clip':>9} {'speedup':>7} {'sparsity':>8} "
            f"{'top1':>6} {'delta':>7} {'flips':>5} {'err mean':>9} {'err max':>9}")
    print(head)
    print("-" * len(head))
    for r in rows:
        if r["status"] != "ok":
            print(f"{r['model']:<14} {r['stage']:<16} {r['status']:<8} {r['note']}")
            continue
        print(f"{r['model']:<14} {r['stage']:<16} {r['status']:<8} {r['bytes'] / 1e6:9.2f} {r['size_ratio']:7.2f} "
              f"{r['latency_ms']:9.2f} {r['speedup']:7.2f} {r['sparsity']:8.3f} {r['metric']:6.1f} {r['delta']:+7.1f} "
              f"{r['flips']:5d} {r['err_mean']:9.2e} {r['err_max']:9.2e}")
    notes = [f"  {r['model']} {r['stage']}: {r['note'][:300]}" for r in rows if r["status"] == "ok" and r["note"]]
    if notes:
        print("notes:")
        print("\n".join(notes))
    target = next((r for r in rows if r["model"] == TARGET["model"] and r["stage"] == TARGET["stage"]), None)
    if target is not None and target["status"] == "ok":
        met = (target["speedup"] >= TARGET["speedup"] and target["size_ratio"] >= TARGET["size_ratio"]
               and -target["delta"] <= TARGET["max_drop"])
        print(f"target ({TARGET['model']} {TARGET['stage']}: >= {TARGET['speedup']}x faster, >= {TARGET['size_ratio']}x smaller, "
              f"<= {TARGET['max_drop']:.1f} point top-1 drop): {target['speedup']:.2f}x, {target['size_ratio']:.2f}x, "
              f"{0.0 - target['delta']:+.1f} points -> {'met' if met else 'NOT met'}"
              f"{' (quick variants: not meaningful)' if args.quick else ''}")


# ============================================================================ chains with recovery
#: The chains measured per model: pruning with recovery, then bf16; the same without recovery beside it.
CHAIN_TARGET = dict(speedup=2.0, size_ratio=2.0)


def chain_stages(amount: float, recover: dict[str, Any] | None, bf16: bool = True, round_to: int | None = None) -> list[dict[str, Any]]:
    prune = dict(type="ChannelPrune", amount=amount, round_to=round_to)
    if recover:
        prune["recover"] = dict(recover)
    return [prune, *([dict(type="CastBF16")] if bf16 else [])]


class ClipSet(torch.utils.data.Dataset):
    """Probe clips as vkit items: ``dict(inputs={'video': clip}, label, case_id)``."""

    def __init__(self, clips: torch.Tensor, labels: torch.Tensor) -> None:
        self.clips, self.labels = clips, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return dict(inputs={"video": self.clips[i]}, label=int(self.labels[i]), case_id=f"clip{i}")


def medical_setup(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """The default medical-diagnosis model trained on its embedded data (task defaults), test AUC as the metric."""
    from mmengine.config import Config
    from sklearn.metrics import roc_auc_score

    from vkit.core.compression import runner_trainer
    from vkit.core.lifecycle import fit, predict
    from vkit.hooks.manager import get_plugin_manager
    from vkit.plugins.medical.data import MedicalVolumeDataset
    from vkit.plugins.medical.synthetic import generate_dataset
    from vkit.registry.registries import METRICS
    from vkit.workflows.config import build_config

    task = get_plugin_manager().get_task("medical-diagnosis")
    task = task() if isinstance(task, type) else task
    overrides = [f"train.epochs={args.medical_epochs}"] + (["data.synthetic.n_train=60", "data.synthetic.n_val=20",
                                                              "data.synthetic.n_test=40"] if args.quick else [])
    cfg = build_config(task.default_config, None, overrides, free_keys=task.free_keys)
    start = time.perf_counter()
    datalist = generate_dataset(tmp / "medical-data", seed=int(cfg.seed), **cfg.data.synthetic)
    sets = {split: MedicalVolumeDataset(datalist, name, transforms=dict(cfg.data.transforms), cache="memory",
                                        cache_dir=tmp / "medical-cache", num_classes=2, seed=int(cfg.seed))
            for split, name in (("train", "training"), ("val", "validation"), ("test", "test"))}
    torch.manual_seed(int(cfg.seed))
    model = task.build_model(cfg, sets)
    model_config = dict(cfg.model.to_dict(), type="VideoModel")
    run_cfg = Config(dict(cfg.to_dict(), work_dir=str(tmp / "medical-train")))
    model = fit(model, sets["train"], sets["val"], run_cfg, None, val_metrics=[METRICS.build(dict(cfg.metric))],
                checkpoint=dict(cfg.checkpoint)).eval()
    train_s = time.perf_counter() - start
    test = sets["test"]

    def auc(m: nn.Module) -> float:
        preds = predict(m, test)
        return float(roc_auc_score([p["label"] for p in preds], [float(p["probs"][1]) for p in preds]))

    from vkit.core.lifecycle import batches

    sample = model.data_preprocessor(next(batches(test, args.batch)), False)["inputs"]
    return dict(label="medical TinyC3D", model=model, model_config=model_config, evaluate=auc, sample=sample,
                train=runner_trainer(sets["train"], train=dict(cfg.train), work_dir=tmp / "medical-recover"),
                metric="AUC", max_drop=0.01, setup_s=train_s,
                note=f"trained {args.medical_epochs} epochs on {len(sets['train'])} cases ({train_s:.0f}s incl. data), "
                     f"{len(test)} test cases")


def x3d_setup(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """X3D-S (a vkit ``VideoModel``) trained end to end on the probe task: the model the chains compress.

    A random-weight X3D with a ridge-fitted head (the per-stage table's probe)
    is too fragile a stand-in for a trained network: its head reads tiny
    feature differences, so pruning half the channels drops it to chance and
    recovery cannot bring it back (measured: 97.2% -> 16.7% -> 16.7%). Here
    the whole network learns the gratings (the Runner, AdamW,
    ``--x3d-epochs``), so pruning and recovery act on a trained model, as in a run.
    """
    from vkit.core.compression import runner_trainer
    from vkit.core.lifecycle import predict
    from vkit.registry.registries import BACKBONES, MODELS

    backbone = dict(type="X3D", setting="s", num_frames=args.x3d_frames, input_size=args.x3d_size)
    if args.quick:
        backbone.update(BACKBONES.get("X3D").smoke_config())
    model_config = dict(type="VideoModel", backbones=dict(video=backbone),
                        head=dict(type="ClsHead", num_classes=len(PROBE_CLASSES), dropout=0.0))
    start = time.perf_counter()
    torch.manual_seed(0)
    model = MODELS.build(model_config)
    net = model.backbones["video"]
    g = torch.Generator().manual_seed(0)
    shape = (net.in_channels, net.num_frames, *net.input_size)
    train_x, train_y = probe_clips(args.x3d_train_per_class, shape, g)
    test_x, test_y = probe_clips(args.test_per_class, shape, g)
    train, test = ClipSet(train_x, train_y), ClipSet(test_x, test_y)
    fit = runner_trainer(train, train=dict(lr=args.x3d_lr, batch_size=args.probe_batch), work_dir=tmp / "x3d-train")
    model = fit(model, args.x3d_epochs).eval()

    def top1(m: nn.Module) -> float:
        preds = predict(m, test, args.probe_batch)
        return 100.0 * sum(int(p["probs"].argmax()) == p["label"] for p in preds) / len(preds)

    setup_s = time.perf_counter() - start
    # the same network at the X3D-S setting's own clip (13 x 160 px): the deployment latency of the saved models
    full = None if args.quick else {"video": torch.randn(args.batch, 3, 13, 160, 160, generator=g)}
    return dict(label="X3D-S probe", model=model, model_config=model_config, evaluate=top1, full_sample=full,
                bf16=False, round_to=8,  # bf16 depthwise 3-D convs are slower than fp32 here; channel counts of 8 run faster
                sample={"video": test_x[: args.batch].clone()}, train=fit, recover_epochs=args.x3d_recover_epochs,
                metric="top1 %", max_drop=1.0, setup_s=setup_s,
                note=f"X3D-S at {net.num_frames}x{net.input_size[0]}px trained {args.x3d_epochs} epochs on {len(train_y)} probe clips "
                     f"({setup_s:.0f}s), {len(test_y)} held-out clips (one clip = {100 / len(test_y):.2f} points)")


def run_chains(setup: dict[str, Any], args: argparse.Namespace, tmp: Path) -> list[dict[str, Any]]:
    """The chain with recovery and without, each on the same trained model; rows per stage + a reload check."""
    from vkit.core.compression import CompressionChain, CompressionContext, load_compressed

    rows = []
    recover = dict(epochs=setup.get("recover_epochs", args.recover_epochs), mode=args.recover_mode)
    kw = dict(bf16=setup.get("bf16", True), round_to=setup.get("round_to"))
    for name, stages in (("with recovery", chain_stages(args.amount, recover, **kw)), ("no recovery", chain_stages(args.amount, None, **kw))):
        folder = tmp / f"{setup['label']}-{name}".replace(" ", "_")
        ctx = CompressionContext(sample=setup["sample"], evaluate=setup["evaluate"], train=setup["train"],
                                 model_config=setup["model_config"], work_dir=folder, latency_runs=args.runs,
                                 warmup=args.warmup)
        start = time.perf_counter()
        result = CompressionChain(stages).run(setup["model"], ctx)
        chain_s = time.perf_counter() - start
        loaded = load_compressed(folder) if result.artifact else None
        reloaded = setup["evaluate"](loaded) if loaded is not None else None
        # latency again, the original and every saved stage (loaded back from its artifact) interleaved round by
        # round, so load from other processes on a shared machine hits all alike; speedups use these medians
        models = {"original": setup["model"]}
        models.update({r["stage"]: load_compressed(folder, stage=r["stage"]) for r in result.reports if r["artifact"]})
        ms = interleaved_latency(models, setup["sample"], args.rounds, args.warmup)
        full = interleaved_latency(models, setup["full_sample"], args.rounds, args.warmup) if setup.get("full_sample") else {}
        for row in result.rows():
            extra = dict(ms_interleaved=ms.get(row["stage"]), speedup_interleaved=ms["original"] / ms[row["stage"]]
                         if row["stage"] in ms else None, ms_full=full.get(row["stage"]),
                         speedup_full=full["original"] / full[row["stage"]] if row["stage"] in full else None)
            rows.append(dict(row, **extra, model=setup["label"], chain=name, chain_s=chain_s, metric=setup["metric"],
                             max_drop=setup["max_drop"], reloaded=reloaded if row is result.rows()[-1] else None))
        print(f"  {setup['label']} / {name}: {chain_s:.0f}s; final artifact {result.artifact.name if result.artifact else None}, "
              f"reloaded metric {reloaded}", flush=True)
    return rows


def interleaved_latency(models: dict[str, nn.Module], sample: Any, rounds: int, warmup: int) -> dict[str, float]:
    """Median ms per clip of each model, timed one call per model per round (rounds interleave the models)."""
    import statistics

    from vkit.core.compression.measure import batch_size, call_model

    times: dict[str, list[float]] = {k: [] for k in models}
    with torch.inference_mode():
        for model in models.values():
            for _ in range(warmup):
                call_model(model.eval(), sample)
        for _ in range(rounds):
            for key, model in models.items():
                start = time.perf_counter()
                call_model(model, sample)
                times[key].append(time.perf_counter() - start)
    return {k: statistics.median(v) * 1e3 / batch_size(sample) for k, v in times.items()}


def print_chain_tables(rows: list[dict[str, Any]], notes: list[str], args: argparse.Namespace) -> None:
    print()
    print(f"Compression chains: ChannelPrune(amount={args.amount}) [+ recovery: {args.recover_mode}, medical "
          f"{args.recover_epochs} epochs, X3D-S {args.x3d_recover_epochs}] -> CastBF16 (X3D-S: round_to=8 and no "
          f"CastBF16, whose bf16 depthwise 3-D convs run slower than fp32 here), each stage's model measured as CompressionChain does "
          f"(bytes on disk of the saved safetensors); latency: the original and each saved stage loaded back with "
          f"load_compressed, timed interleaved over {args.rounds} rounds after {args.warmup} warm-up (median ms per clip, "
          f"batch {args.batch}; 'chain x' is the chain's own sequential measurement); {torch.get_num_threads()} threads; {cpu_line()}.")
    for note in notes:
        print(f"  {note}")
    head = (f"{'model':<16} {'chain':<14} {'stage':<13} {'status':<8} {'MB':>8} {'smaller':>7} {'ms/clip':>8} {'speedup':>7} {'chain x':>7} "
            f"{'metric':<7} {'pruned':>7} {'after':>7} {'drop':>7} {'recov s':>7} {'ms@S':>7} {'x@S':>5}")
    print(head)
    print("-" * len(head))
    for r in rows:
        num = lambda k, f: format(r[k], f) if isinstance(r.get(k), (int, float)) else "-"  # noqa: E731
        print(f"{r['model']:<16} {r['chain']:<14} {r['stage']:<13} {r['status']:<8} {num('bytes', '8.3f') if r.get('bytes') is None else format(r['bytes'] / 1e6, '8.3f')} "
              f"{num('size_ratio', '7.2f')} {num('ms_interleaved', '8.2f')} {num('speedup_interleaved', '7.2f')} {num('speedup', '7.2f')} {r['metric']:<7} "
              f"{num('metric_unrecovered', '7.3f')} {num('metric_after', '7.3f')} {num('drop', '+7.3f')} {num('recovery_s', '7.1f')} "
              f"{num('ms_full', '7.1f')} {num('speedup_full', '5.2f')}")
    print("'pruned': the metric right after pruning, before recovery; 'after': the stage's final metric (what the gate judges); "
          "'drop': original minus after; 'ms@S', 'x@S': the same saved X3D-S models timed (interleaved) on the X3D-S "
          "setting's own 13x160 clip, where compute rather than per-layer overhead dominates.")
    for (model, chain), group in _groups(rows):
        last = group[-1]
        speedup = last["speedup_full"] or last["speedup_interleaved"] or 0.0
        met = (last["status"] == "ok" and speedup >= CHAIN_TARGET["speedup"]
               and last["size_ratio"] >= CHAIN_TARGET["size_ratio"] and last["drop"] <= last["max_drop"])
        print(f"target {model} / {chain} (>= {CHAIN_TARGET['speedup']}x faster, >= {CHAIN_TARGET['size_ratio']}x smaller, "
              f"<= {last['max_drop']} {last['metric']} drop): {speedup:.2f}x, {last['size_ratio']:.2f}x, "
              f"drop {last['drop']:+.3f} -> {'met' if met else 'NOT met'}; saved final model reloaded with "
              f"load_compressed scores {last['reloaded']}{' (quick: not meaningful)' if args.quick else ''}")


def _groups(rows: list[dict[str, Any]]) -> list[tuple[tuple[str, str], list[dict[str, Any]]]]:
    out: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        out.setdefault((r["model"], r["chain"]), []).append(r)
    return list(out.items())


def cpu_line() -> str:
    from vkit.core.compression.quantize import cpu_flags

    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor() or platform.machine()) if Path("/proc/cpuinfo").exists() else platform.machine()
    flags = sorted(cpu_flags() & {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "avx512_vnni", "amx_int8"})
    return f"CPU {model}, flags {' '.join(flags)}"


def main_chains(args: argparse.Namespace) -> None:
    setups = {"medical": medical_setup, "x3d": x3d_setup}
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="vkit-bench-chains-") as tmp:
        for key in args.chain_models.split(","):
            start = time.perf_counter()
            setup = setups[key.strip()](args, Path(tmp))
            print(f"  {setup['label']}: ready in {time.perf_counter() - start:.0f}s ({setup['note']})", flush=True)
            notes.append(f"{setup['label']}: {setup['note']}")
            rows += run_chains(setup, args, Path(tmp))
    print_chain_tables(rows, notes, args)
    if args.json:
        args.json.write_text(json.dumps([{k: v for k, v in r.items() if k != 'fit'} for r in rows], indent=2, default=str))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny variants of each model (harness check)")
    parser.add_argument("--per-stage", action="store_true", help="each stage alone on TimeSformer-B / X3D-S (the former table)")
    parser.add_argument("--chain-models", default="medical,x3d", help="chains: among medical, x3d")
    parser.add_argument("--amount", type=float, default=0.5, help="chains: ChannelPrune amount")
    parser.add_argument("--recover-epochs", type=int, default=3, help="chains: recovery epochs")
    parser.add_argument("--recover-mode", default="distill", choices=("distill", "finetune"), help="chains: recovery mode")
    parser.add_argument("--medical-epochs", type=int, default=12, help="chains: training epochs of the medical model (task default 12)")
    parser.add_argument("--rounds", type=int, default=15, help="chains: interleaved latency rounds")
    parser.add_argument("--x3d-frames", type=int, default=4, help="chains: X3D-S clip frames (the S setting: 13)")
    parser.add_argument("--x3d-size", type=int, default=64, help="chains: X3D-S clip size in px (the S setting: 160)")
    parser.add_argument("--x3d-lr", type=float, default=3e-3, help="chains: X3D-S training (and recovery) learning rate")
    parser.add_argument("--x3d-epochs", type=int, default=10, help="chains: X3D-S training epochs on the probe task")
    parser.add_argument("--x3d-recover-epochs", type=int, default=4, help="chains: X3D-S recovery epochs")
    parser.add_argument("--x3d-train-per-class", type=int, default=16, help="chains: X3D-S training clips per probe class")
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, among {list(MODELS)}")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch and onnxruntime threads")
    parser.add_argument("--batch", type=int, default=1, help="clips per call of the latency measurement")
    parser.add_argument("--probe-batch", type=int, default=8, help="clips per forward pass over the probe splits")
    parser.add_argument("--train-per-class", type=int, default=None, help="train clips per probe class (default 4, quick 2)")
    parser.add_argument("--test-per-class", type=int, default=None, help="held-out clips per probe class (default 6, quick 2)")
    parser.add_argument("--runs", type=int, default=None, help="timed runs per latency (default 10, quick 3)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs before them")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows to this JSON file")
    args = parser.parse_args()
    args.train_per_class = args.train_per_class or (2 if args.quick else 4)
    args.test_per_class = args.test_per_class or (2 if args.quick else 6)
    args.runs = args.runs or (3 if args.quick else 10)
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    if not args.per_stage:
        main_chains(args)
        return
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
