"""``vkit run medical-diagnosis`` against a plain MONAI training script of the same network, data and epochs.

Both sides run in a fresh subprocess each, with the same thread count, on
the same embedded synthetic data set (generated once beforehand, not timed):

* **vkit**: ``vkit.workflows.run.run_task("medical-diagnosis")`` with the
  task's default config (or the ``--quick`` overrides): MONAI ``CacheDataset``
  → mmengine Runner (StoreHook, safetensors checkpoints every epoch, val every
  epoch) → Youden threshold on val → test → per-case predictions, checkpoint
  and metrics in a SQLite store → compression chain → HTML report. The
  compression chain is timed on its own and left out of "train+eval" (the
  peer does not compress); the whole run's wall time is printed too.
* **plain MONAI** (the peer, written here): the same datalist through MONAI
  ``CacheDataset`` with the same transforms (``build_transforms``, so the same
  MONAI pipeline and augmentations), the same network (TinyC3D + ClsHead built
  from the same config, plain ``nn.Sequential``), AdamW + per-iteration cosine
  schedule, same epochs, batch size and seed, a plain torch loop (no mmengine
  Runner, no store, no checkpoints), a validation pass per epoch, test ROC-AUC
  from scikit-learn.

Timed in each subprocess after ``torch``, ``monai`` and ``sklearn`` are
imported (vkit's own lazy imports count as vkit's cost): wall seconds and CPU
seconds (user+sys of the process). "ratio" is vkit's train+eval wall time over
the peer's; the target is <= 1.10x at equal test AUC. The two sides run
alternately ``--repeat`` times (peer, vkit, peer, vkit, ...) and the medians
are compared, so a slow spell of a shared machine hits both; each side is
seeded, so its AUC is the same on every repeat. On a shared machine the
CPU-time ratio is the steadier number.

    python benchmarks/medical.py --quick    # tiny data and network, 2 epochs (a harness check, ~1 min)
    python benchmarks/medical.py            # the default task config: 200/50/100 cases of 32^3, 12 epochs, 3 repeats
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TASK = "medical-diagnosis"
#: ``--quick``: the task's smoke settings (tiny data and network) with 2 epochs; compression stays on.
QUICK = ["train.epochs=2", "data.synthetic.n_train=16", "data.synthetic.n_val=8", "data.synthetic.n_test=8",
         "data.synthetic.size=24", "data.transforms.size=(16,16,16)", "train.batch_size=4",
         "model.backbones.volume.widths=(4,8)", "model.backbones.volume.num_frames=16",
         "model.backbones.volume.input_size=(16,16)"]


#: "Equal AUC": the two test AUCs (100 test cases) may differ by at most this much.
AUC_TOLERANCE = 0.02


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def task_config(overrides: list[str]) -> Any:
    """The merged task config ``vkit run`` would use."""
    from vkit.hooks.manager import get_plugin_manager
    from vkit.workflows.config import build_config

    task = get_plugin_manager().get_task(TASK)
    return build_config(task.default_config, None, overrides, free_keys=task.free_keys)


# ----------------------------------------------------------------------------- vkit
def run_vkit(root: Path, overrides: list[str]) -> dict[str, Any]:
    """The vkit side: ``run_task`` as ``vkit run`` calls it; the compression chain is timed separately."""
    import vkit.core.lifecycle as pipeline
    from vkit.workflows.run import run_task

    spent = {"compression": 0.0, "compression_cpu": 0.0}
    compress = pipeline.compress

    def timed_compress(*args: Any, **kwargs: Any) -> Any:  # instrumentation only: same call, timed
        start, cpu = time.perf_counter(), _cpu_s()
        try:
            return compress(*args, **kwargs)
        finally:
            spent["compression"] += time.perf_counter() - start
            spent["compression_cpu"] += _cpu_s() - cpu

    pipeline.compress = timed_compress
    start, cpu = time.perf_counter(), _cpu_s()
    result = run_task(TASK, overrides=overrides, db_url=f"sqlite:///{root / 'vkit.db'}", work_dir=root / "vkit-work",
                      data_root=root / "data", echo=lambda *args, **kwargs: None)
    wall, cpu = time.perf_counter() - start, _cpu_s() - cpu
    from vkit.core.model import build_model

    params = sum(p.numel() for p in build_model(task_config(overrides).model).parameters())
    return dict(total_s=wall, total_cpu_s=cpu, wall_s=wall - spent["compression"], cpu_s=cpu - spent["compression_cpu"],
                compression_s=spent["compression"], auc=float(result.metrics["test/auc"]), params=params,
                compression=result.summary.get("compression", "off"), status=result.status)


# ----------------------------------------------------------------------------- the peer
def run_plain(root: Path, overrides: list[str]) -> dict[str, Any]:
    """The peer: MONAI ``CacheDataset`` + a plain torch loop + scikit-learn AUC (no mmengine Runner, no store)."""
    import numpy as np
    import torch
    from monai.data import CacheDataset, DataLoader
    from sklearn.metrics import roc_auc_score, roc_curve

    cfg = task_config(overrides)  # settings only; imports vkit's config reader, not its engine
    from vkit.plugins.medical.data import build_transforms
    from vkit.registry.registries import BACKBONES, HEADS

    datalist = json.loads((root / "data" / TASK / "datalist.json").read_text())
    base = root / "data" / TASK
    start, cpu = time.perf_counter(), _cpu_s()
    torch.manual_seed(int(cfg.seed))
    np.random.seed(int(cfg.seed))
    sets = {}
    for split in ("training", "validation", "test"):
        cases = [dict(image=str(base / c["image"]), label=int(c["label"])) for c in datalist[split]]
        transforms = build_transforms(dict(cfg.data.transforms), train=split == "training")
        transforms.set_random_state(seed=int(cfg.seed))
        sets[split] = CacheDataset(cases, transforms, progress=False)
    backbone = BACKBONES.build(dict(cfg.model.backbones.volume))
    head = HEADS.build(dict(cfg.model.head, num_classes=int(cfg.data.num_classes)), default_args=dict(in_dim=backbone.feature_dim))
    model = torch.nn.Sequential(backbone, head)
    epochs, batch = int(cfg.train.epochs), int(cfg.train.batch_size)
    generator = torch.Generator().manual_seed(int(cfg.seed))
    loader = DataLoader(sets["training"], batch_size=batch, shuffle=True, generator=generator, num_workers=0)
    optimiser = torch.optim.AdamW(model.parameters(), lr=float(cfg.train.lr), weight_decay=float(cfg.train.weight_decay))
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=epochs * len(loader))

    def scores(split: str) -> tuple[np.ndarray, np.ndarray]:
        model.eval()
        labels, probs = [], []
        with torch.inference_mode():
            for item in DataLoader(sets[split], batch_size=batch, num_workers=0):
                probs.append(torch.softmax(model(item["image"].float()), -1)[:, 1])
                labels.append(torch.as_tensor(item["label"]))
        return torch.cat(labels).numpy(), torch.cat(probs).numpy()

    for _ in range(epochs):
        model.train()
        for item in loader:
            optimiser.zero_grad()
            loss = head.loss(model(item["image"].float()), torch.as_tensor(item["label"]).long())
            loss.backward()
            optimiser.step()
            scheduler.step()
        val_labels, val_probs = scores("validation")
        roc_auc_score(val_labels, val_probs)
    fpr, tpr, thresholds = roc_curve(val_labels, val_probs)
    threshold = float(thresholds[int(np.argmax(tpr - fpr))])  # Youden's J, as vkit picks it
    labels, probs = scores("test")
    auc = float(roc_auc_score(labels, probs))
    accuracy = float(((probs >= threshold).astype(int) == labels).mean())
    return dict(wall_s=time.perf_counter() - start, cpu_s=_cpu_s() - cpu, auc=auc, accuracy=accuracy,
                params=sum(p.numel() for p in model.parameters()))


# ----------------------------------------------------------------------------- driver
def _worker(side: str, root: Path, overrides: list[str], threads: int) -> None:
    import monai  # noqa: F401  (imported before timing on both sides)
    import sklearn.metrics  # noqa: F401
    import torch

    torch.set_num_threads(threads)
    result = (run_vkit if side == "vkit" else run_plain)(root, overrides)
    print("RESULT " + json.dumps(result))


def _spawn(side: str, root: Path, overrides: list[str], threads: int) -> dict[str, Any]:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    cmd = [sys.executable, __file__, "--worker", side, "--root", str(root), "--threads", str(threads),
           "--overrides", json.dumps(overrides)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"{side} worker failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def _median(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-key median of the float results (the first row's value for the rest: counts, names)."""
    import statistics

    return {k: statistics.median(r[k] for r in rows) if isinstance(v, float) else v for k, v in rows[0].items()}


def _walls(rows: list[dict[str, Any]]) -> str:
    return ", ".join(f"{r['wall_s']:.1f}" for r in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny data and network, 2 epochs (harness check)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3, help="alternate runs per side; medians are compared")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--worker", choices=("vkit", "plain"), help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--overrides", default="[]", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args.worker, args.root, json.loads(args.overrides), args.threads)
        return
    overrides = QUICK if args.quick else []
    with tempfile.TemporaryDirectory(prefix="vkit-bench-medical-") as tmp:
        root = Path(tmp)
        from vkit.plugins.medical.synthetic import generate_dataset

        cfg = task_config(overrides)
        generate_dataset(root / "data" / TASK, seed=int(cfg.seed), **cfg.data.synthetic)
        runs: dict[str, list[dict[str, Any]]] = {"plain": [], "vkit": []}
        for _ in range(max(1, args.repeat)):
            for side in ("plain", "vkit"):
                runs[side].append(_spawn(side, root, overrides, args.threads))
        peer, vkit = _median(runs["plain"]), _median(runs["vkit"])
    if vkit["params"] != peer["params"]:
        raise SystemExit(f"networks differ: vkit {vkit['params']} parameters, peer {peer['params']}")
    syn = cfg.data.synthetic
    print(f"{TASK}, {'--quick' if args.quick else 'default'} config: {syn.n_train}/{syn.n_val}/{syn.n_test} cases of "
          f"{syn.size}^3, {cfg.train.epochs} epochs, batch {cfg.train.batch_size}, {vkit['params']:,} parameters, "
          f"{args.threads} threads; data generated beforehand (not timed)")
    header = f"{'':<12} {'train+eval wall s':>18} {'test AUC':>9} {'ratio':>7} {'cpu s':>8} {'cpu ratio':>10}"
    print(f"wall s per repeat: vkit {_walls(runs['vkit'])}; plain MONAI {_walls(runs['plain'])} (medians below)")
    print(header)
    print("-" * len(header))
    for name, row in (("vkit", vkit), ("plain MONAI", peer)):
        print(f"{name:<12} {row['wall_s']:>18.1f} {row['auc']:>9.4f} {row['wall_s'] / peer['wall_s']:>6.2f}x "
              f"{row['cpu_s']:>8.1f} {row['cpu_s'] / peer['cpu_s']:>9.2f}x")
    print(f"vkit whole run (with the compression chain): {vkit['total_s']:.1f} s wall, {vkit['total_cpu_s']:.1f} s CPU; "
          f"compression {vkit['compression_s']:.1f} s: {vkit['compression']}")
    ratio, gap = vkit["wall_s"] / peer["wall_s"], abs(vkit["auc"] - peer["auc"])
    print(f"target: vkit <= 1.10x the plain loop's wall time at equal AUC -> ratio {ratio:.2f}x, "
          f"|AUC difference| {gap:.4f} (equal: <= {AUC_TOLERANCE}): {'met' if ratio <= 1.10 and gap <= AUC_TOLERANCE else 'NOT met'}"
          + (" (quick: not meaningful)" if args.quick else ""))
    if args.json:
        args.json.write_text(json.dumps(dict(vkit=vkit, plain=peer, runs=runs, quick=args.quick, threads=args.threads), indent=1))


if __name__ == "__main__":
    main()
