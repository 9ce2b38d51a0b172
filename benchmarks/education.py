"""``education-engagement``: the default run's wall time and metrics, ordinal vs softmax head, timeline scoring throughput.

Three measurements, in one process, on the embedded synthetic data set
(generated once beforehand into ``--data-root``; generation is timed apart):

1. **default run**: ``run_task("education-engagement")`` exactly as ``vkit run``
   calls it (mmengine Runner, validation every epoch, store, checkpoint, report):
   wall and CPU seconds, test QWK, macro-F1, accuracy, mean absolute level error.
   The bar: under 5 minutes on 2 cores with QWK >= 0.75.
2. **ordinal vs softmax head on the same features**: the trained run's video
   backbone is frozen; its pooled features of the train/val/test clips train
   an ``OrdinalHead`` (cumulative link) and a ``ClsHead`` (softmax,
   cross-entropy), both with the same class weights, optimiser, epochs and
   seed; each keeps its best validation-QWK epoch; test QWK, macro-F1 and mean
   absolute error side by side (the ordinal head decides by its median level,
   the softmax head by its arg-max).
3. **timeline scoring**: ``vkit score`` (local engine, 1 decoding worker) of the
   lesson recordings: recording-seconds scored per wall-second.

    python benchmarks/education.py            # the default config (~5 min on 2 cores)
    python benchmarks/education.py --quick    # tiny data and network (a harness check)
"""
from __future__ import annotations

import argparse
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TASK = "education-engagement"
QUICK = ["train.epochs=2", "train.batch_size=4", "data.synthetic.n_train=16", "data.synthetic.n_val=8",
         "data.synthetic.n_test=8", "data.synthetic.clips_per_subject=4", "data.synthetic.learners=2",
         "data.synthetic.lesson_seconds=8", "data.num_frames=8", "data.size=16", "data.synthetic.size=16",
         "model.backbones.video.widths=(4,8)", "model.backbones.video.num_frames=8",
         "model.backbones.video.input_size=(16,16)", "timeline.segments=4"]


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def cpu_line() -> str:
    import torch

    model, flags = platform.processor() or platform.machine(), []
    info = Path("/proc/cpuinfo")
    if info.exists():
        text = info.read_text()
        model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), model)
        have = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
        flags = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if f in have]
    return f"CPU: {model}; flags: {' '.join(flags) or 'none of avx2/avx512/amx'}; torch threads: {torch.get_num_threads()}"


def default_run(tmp: Path, data_root: Path, overrides: list[str]) -> dict[str, Any]:
    from vkit.workflows.run import run_task

    start, cpu = time.perf_counter(), cpu_s()
    result = run_task(TASK, overrides=overrides, db_url=f"sqlite:///{tmp / 'vkit.db'}", work_dir=tmp / "run",
                      data_root=data_root, echo=lambda *_: None)
    wall, cpu = time.perf_counter() - start, cpu_s() - cpu
    if result.status != "finished":
        raise SystemExit(f"the default run failed: {result.summary}")
    return dict(wall_s=wall, cpu_s=cpu, metrics={k.split("/")[-1]: v for k, v in result.metrics.items()},
                checkpoint=Path(result.summary["checkpoint"]), db=f"sqlite:///{tmp / 'vkit.db'}")


def features(checkpoint: Path, cfg: Any, data: Path) -> tuple[dict[str, Any], list[float]]:
    """Pooled video features ``{split: (X, y)}`` of the trained backbone, and the run's class weights."""
    import numpy as np
    import torch

    from vkit.core.checkpoint import load_checkpoint, load_meta
    from vkit.core.model import build_model
    from vkit.plugins.education.data import EngagementClips, read_daisee

    meta = load_meta(checkpoint)
    model_cfg = {k: v for k, v in meta["model"].items() if not k.startswith("signal_")}
    model = build_model(model_cfg)
    load_checkpoint(checkpoint, model)
    model.eval()
    out = {}
    for split in ("train", "val", "test"):
        ds = EngagementClips(read_daisee(data, split), int(cfg.data.num_frames), int(cfg.data.size),
                             channels=str(cfg.data.channels))
        feats = []
        with torch.inference_mode():
            for i in range(0, len(ds), 32):
                video = torch.stack([ds[j]["inputs"]["video"] for j in range(i, min(len(ds), i + 32))])
                inputs = model.data_preprocessor({"inputs": {"video": video}}, False)["inputs"]
                feats.append(model.extract_feat(inputs))
        out[split] = (torch.cat(feats), torch.as_tensor(np.asarray(ds.labels)))
    return out, list(meta["model"]["head"]["class_weights"])


def train_head(kind: str, data: dict[str, Any], weights: list[float], epochs: int = 150, seed: int = 0) -> dict[str, float]:
    """Train one head on fixed features (full-batch AdamW); the best validation-QWK epoch's test scores."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from vkit.core.ordinal import OrdinalHead, ordinal_decision, quadratic_weighted_kappa
    from vkit.registry.registries import HEADS

    torch.manual_seed(seed)
    x_train, y_train = data["train"]
    mean, std = x_train.mean(0), x_train.std(0).clamp_min(1e-6)
    dim = x_train.shape[1]
    if kind == "ordinal":
        head = OrdinalHead(in_dim=dim, num_classes=4, class_weights=weights)
        loss_fn, rule = head.loss, "median"
    else:
        head = HEADS.build(dict(type="ClsHead", num_classes=4, dropout=0.0), default_args=dict(in_dim=dim))
        w = torch.tensor(weights)
        loss_fn, rule = (lambda logits, y: F.cross_entropy(logits, y, weight=w)), "argmax"
    opt = torch.optim.AdamW(head.parameters(), lr=1e-2, weight_decay=1e-4)

    def scores(split: str) -> dict[str, float]:
        from sklearn.metrics import f1_score

        x, y = data[split]
        with torch.no_grad():
            probs = torch.softmax(head((x - mean) / std), 1).numpy()
        pred, truth = ordinal_decision(probs, rule), y.numpy()
        return dict(qwk=quadratic_weighted_kappa(truth, pred, 4), accuracy=float(np.mean(pred == truth)),
                    macro_f1=float(f1_score(truth, pred, labels=[0, 1, 2, 3], average="macro", zero_division=0)),
                    mae=float(np.mean(np.abs(pred - truth))))

    best, best_test = -2.0, {}
    for _ in range(epochs):
        head.train()
        opt.zero_grad()
        loss_fn(head((x_train - mean) / std), y_train).backward()
        opt.step()
        head.eval()
        val = scores("val")["qwk"]
        if val > best:
            best, best_test = val, scores("test")
    return dict(best_test, val_qwk=best)


def score_lessons(checkpoint: Path, lessons: Path, db: str) -> dict[str, float]:
    from vkit.core.video import probe
    from vkit.workflows.scoring.score import ScoreOptions, score_archive

    recordings = sorted(lessons.rglob("*.mp4"))
    seconds = sum(probe(p).duration for p in recordings)
    start = time.perf_counter()
    summary = score_archive(TASK, [lessons], checkpoint, db_url=db, options=ScoreOptions(workers=1, batch_size=16))
    wall = time.perf_counter() - start
    return dict(recordings=len(recordings), seconds=seconds, wall_s=wall, scored=summary.scored, events=summary.events
                if hasattr(summary, "events") else None)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny data and network (checks the harness)")
    parser.add_argument("--data-root", type=Path, default=None, help="cache of the embedded data (default: a temp folder)")
    args = parser.parse_args(argv)
    overrides = QUICK if args.quick else []

    from vkit.core.lifecycle import prepare_data
    from vkit.core.task import RunContext
    from vkit.hooks.manager import get_plugin_manager
    from vkit.workflows.config import build_config

    print(cpu_line())
    with tempfile.TemporaryDirectory(prefix="vkit-bench-edu-") as folder:
        tmp = Path(folder)
        data_root = args.data_root or tmp / "data"
        task = get_plugin_manager().get_task(TASK)()
        cfg = build_config(task.default_config, None, overrides, free_keys=task.free_keys)
        start = time.perf_counter()
        ctx = RunContext(store=None, run_id=0, work_dir=tmp, data_root=data_root, echo=lambda *_: None)
        data = Path(prepare_data(task, cfg, ctx))
        print(f"embedded data set: {data} (ready in {time.perf_counter() - start:.1f} s, not counted below)")

        run = default_run(tmp, data_root, overrides)
        m = run["metrics"]
        print("\n1. default run (vkit run education-engagement)")
        print(f"{'wall s':>8} {'CPU s':>8} {'QWK':>7} {'macro-F1':>9} {'accuracy':>9} {'MAE':>6}")
        print(f"{run['wall_s']:>8.1f} {run['cpu_s']:>8.1f} {m['qwk']:>7.3f} {m['macro_f1']:>9.3f} {m['accuracy']:>9.3f} "
              f"{m['mae']:>6.3f}")
        target = run["wall_s"] < 300 and m["qwk"] >= 0.75
        print(f"target (< 300 s wall on 2 cores, QWK >= 0.75): {'met' if target else 'NOT met'}")

        feats, weights = features(run["checkpoint"], cfg, data)
        print("\n2. ordinal vs softmax head on the same frozen features "
              f"({feats['train'][0].shape[1]}-d, {len(feats['train'][1])} train clips, same class weights)")
        print(f"{'head':<22} {'QWK':>7} {'macro-F1':>9} {'accuracy':>9} {'MAE':>6} {'val QWK':>8}")
        for kind, label in (("ordinal", "OrdinalHead (median)"), ("softmax", "ClsHead (arg-max)")):
            r = train_head(kind, feats, weights)
            print(f"{label:<22} {r['qwk']:>7.3f} {r['macro_f1']:>9.3f} {r['accuracy']:>9.3f} {r['mae']:>6.3f} {r['val_qwk']:>8.3f}")

        t = score_lessons(run["checkpoint"], data / "Lessons", run["db"])
        print("\n3. timeline scoring (vkit score, local engine, 1 decoding worker)")
        print(f"{'recordings':>10} {'recording s':>12} {'wall s':>8} {'recording-s per wall-s':>23}")
        print(f"{t['recordings']:>10} {t['seconds']:>12.1f} {t['wall_s']:>8.2f} {t['seconds'] / t['wall_s']:>23.1f}")


if __name__ == "__main__":
    sys.exit(main())
