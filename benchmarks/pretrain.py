"""Label efficiency of ``vkit pretrain``: few training labels, from scratch vs pretrained (linear probe, fine-tune).

For each vertical and each label fraction (default 5 %, 10 %, 25 % of the training labels) three rows, each a
separate ``run_task`` (what ``vkit run`` calls) with its own SQLite store:

- ``scratch``: the task's default training, random initialisation, on the labelled fraction only;
- ``pretrain + linear_probe``: ``vkit pretrain`` (:func:`vkit.workflows.pretrain.pretrain`) of the task's video
  backbone on the *unlabelled rest* of the training videos, then ``pretrained=run:ID`` and
  ``train.preset=linear_probe`` (backbone frozen, head trained). Education pretrains ``--for-task`` (the task's
  frame differences, sampling and normalisation; ``--edu-input rgb``: plain RGB clips, the old behaviour);
- ``pretrain + finetune``: the same weights, ``train.preset=finetune`` (whole network, backbone lr x 0.1, warm-up).

The pretraining is done once per fraction (its rest differs) and timed: seconds per 1,000 clips and epoch.

Verticals (``--verticals``): ``education`` (test QWK, here), ``medical`` (test AUC; pretrained ``--for-task
medical-diagnosis``, each scan read by the task's own pipeline and CT window) and ``security`` (test frame AUC),
the last two in ``benchmarks/pretrain_verticals.py``.

    python benchmarks/pretrain.py --quick                       # tiny data and network, 2 epochs (a harness check)
    python benchmarks/pretrain.py --fractions 0.1 --epochs 4    # one fraction
    python benchmarks/pretrain.py                               # 5/10/25 %, the task's default data (long on CPU)
    python benchmarks/pretrain.py --verticals education --fractions 0.1 --seeds 0 1 \
        --edu-augment brightness=0.1 contrast=0.1                # education: pretraining variants, seeds

Variants are compared by the validation QWK each run prints (its kept checkpoint's), never by test.
"""
from __future__ import annotations

import argparse
import csv
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# medical and security (pretrain_verticals.py), and the row options and summary all verticals share
from pretrain_verticals import (RUNNERS, add_arguments, folder_name, row_arguments, row_settings, seed_summary,
                                task_backbone)
from education import cpu_line  # benchmarks/education.py (this folder is sys.path[0]): the CPU, its flags, torch threads

EDU_TASK = "education-engagement"
# the tiny network and data of --quick (the same as benchmarks/education.py's --quick, more training clips)
EDU_QUICK_DATA = dict(n_train=80, n_val=16, n_test=24, clips_per_subject=4, size=16, sessions=1, learners=1,
                      lesson_seconds=4)
EDU_QUICK = ["train.batch_size=4", "data.num_frames=8", "data.size=16",
             "model.backbones.video.widths=(4,8)", "model.backbones.video.num_frames=8",
             "model.backbones.video.input_size=(16,16)"]
NOT_RUN: dict[str, str] = {}  # vertical -> 'not run: <reason>' (every vertical is written now)


# ----------------------------------------------------------------------------- education
def edu_subset(full: Path, out: Path, fraction: float, seed: int) -> tuple[Path, Path, int, int]:
    """A DAiSEE root at ``out`` whose train labels are ``fraction`` of ``full``'s (by learner-free random draw),
    and a folder of the other training videos (unlabelled). Returns (root, unlabelled folder, n labelled, n rest)."""
    import random

    shutil.copytree(full, out / "data")
    root = out / "data"
    labels = root / "Labels" / "TrainLabels.csv"
    with labels.open(newline="") as fh:
        reader = csv.DictReader(fh)
        fields, rows = reader.fieldnames, list(reader)
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    n_keep = max(2, round(fraction * len(rows)))
    keep = sorted(order[:n_keep])
    with labels.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows[i] for i in keep)
    kept = {Path(rows[i]["ClipID"]).stem for i in keep}
    rest = out / "unlabelled"
    rest.mkdir()
    n_rest = 0
    for video in sorted((root / "DataSet" / "Train").rglob("*")):
        if video.is_file() and video.suffix.lower() in (".avi", ".mp4") and video.stem not in kept:
            shutil.copy2(video, rest / video.name)
            n_rest += 1
    return root, rest, n_keep, n_rest


def edu_backbone(overrides: list[str]) -> dict[str, Any]:
    """The education task's video backbone config after ``overrides`` (what ``pretrained=run:ID`` must match)."""
    from vkit.plugins.education.task import EducationEngagementTask

    return task_backbone(EducationEngagementTask, "model.backbones.video", overrides)


def qwk(metrics: dict[str, float]) -> float | None:
    for key, value in metrics.items():
        if key.startswith("test") and key.endswith("qwk"):
            return float(value)
    return None


def edu_val_qwk(db_url: str, run_id: int) -> float | None:
    """The validation QWK of the checkpoint a run kept (``checkpoint.save='best'`` by val QWK: the best epoch's);
    what variants are chosen by — never the test split."""
    from vkit.core.store import open_store

    values = [r["value"] for r in open_store(db_url).run_metrics(run_id, "val") if str(r["key"]).endswith("qwk")]
    values = [v for v in values if v == v]
    return max(values) if values else None


def edu_arguments(parser: argparse.ArgumentParser) -> None:
    """The education options (``--edu-*``) and ``--seeds``."""
    parser.add_argument("--seeds", nargs="+", type=int, default=None,
                        help="repeat with these seeds (label draw, pretraining, training); default: --seed")
    parser.add_argument("--edu-input", choices=["task", "rgb"], default="task",
                        help="task: vkit pretrain --for-task (the task's frame differences and normalisation); "
                             "rgb: plain RGB clips with the backbone's ImageNet normalisation (the old behaviour)")
    parser.add_argument("--edu-augment", nargs="*", default=[], metavar="KEY=VALUE",
                        help="augment.KEY of vkit pretrain, e.g. hue=0 saturation=0 grey=0")
    parser.add_argument("--edu-objective", nargs="*", default=[], metavar="KEY=VALUE",
                        help="objective.KEY of vkit pretrain, e.g. expander=[128,128]")
    parser.add_argument("--edu-segments", type=int, default=2, help="clips decoded per unlabelled video")
    row_arguments(parser, "edu", "education")


def _pairs(items: list[str]) -> dict[str, Any]:
    from vkit.workflows.config import parse_value  # as `vkit run --set` reads a value

    return {k: parse_value(k, v) for k, _, v in (item.partition("=") for item in items)}


def run_education(args: argparse.Namespace, tmp: Path) -> list[dict[str, Any]]:
    from vkit.plugins.education.synthetic import generate
    from vkit.workflows.pretrain import PretrainOptions, pretrain
    from vkit.workflows.run import run_task

    data_args = dict(EDU_QUICK_DATA) if args.quick else {}
    start = time.perf_counter()
    full = generate(tmp / "edu-full", seed=0, **data_args)
    print(f"education: data generated in {time.perf_counter() - start:.1f} s ({full})", flush=True)
    base = (list(EDU_QUICK) if args.quick else []) + [f"train.epochs={args.epochs}"]
    task_keys = {k: v for k, v in _pairs(base).items()
                 if not k.startswith("train.")}  # what --for-task reads: data.* and model.* of the runs
    backbone = edu_backbone(base)
    backbone.setdefault("in_channels", 3)  # the task's (data.channels='diff': 3); used with --edu-input rgb
    augment, objective = _pairs(args.edu_augment), _pairs(args.edu_objective)
    print(f"education: pretraining input {args.edu_input!r}, augment {augment}, objective {objective}, "
          f"segments {args.edu_segments}", flush=True)
    rows = []
    for seed in args.seeds or [args.seed]:
        for fraction in args.fractions:
            folder = tmp / f"edu-{fraction}-seed{seed}"
            folder.mkdir()
            root, rest, n_lab, n_rest = edu_subset(full, folder, fraction, seed=seed)
            tag = f"{fraction:.0%} ({n_lab} labelled, {n_rest} unlabelled) seed {seed}"
            options = PretrainOptions(epochs=args.pretrain_epochs, batch_size=args.pretrain_batch, lr=args.pretrain_lr,
                                      segments=args.edu_segments, workers=args.workers, seed=seed, augment=augment,
                                      objective_args=objective,
                                      for_task=EDU_TASK if args.edu_input == "task" else None,
                                      task_overrides=task_keys if args.edu_input == "task" else {})
            pretrained, per_1000 = None, None
            if args.edu_settings != ["scratch"]:  # scratch alone does not need the pretraining
                start, load = time.perf_counter(), os.getloadavg()[0]
                summary = pretrain(None if args.edu_input == "task" else backbone, [str(rest)], options,
                                   db_url=f"sqlite:///{folder / 'pretrain.db'}", work_dir=folder / "pretrain")
                pre_s = time.perf_counter() - start
                per_1000 = summary.seconds / max(1, summary.decoded) / max(1, summary.epochs) * 1000
                print(f"education {tag}: pretrain run {summary.run_id} {summary.objective} on input "
                      f"{summary.input!r}, {summary.decoded} clips, {summary.epochs} epochs in {pre_s:.0f} s "
                      f"({per_1000:.0f} s per 1,000 clips and epoch, load {load:.1f} -> {os.getloadavg()[0]:.1f}; "
                      f"loss {summary.loss_curve[0]:.2f} -> {summary.loss_curve[-1]:.2f})", flush=True)
                pretrained = summary.run_id
            # the pretrain run's store is the store the fine-tuning runs resolve run:ID in
            for name, extra, run_id in row_settings(args, "edu", pretrained):
                db = f"sqlite:///{folder / 'pretrain.db'}" if run_id else f"sqlite:///{folder / f'{name[:7]}.db'}"
                overrides = base + extra + [f"seed={seed}"] + (
                    [f"model.backbones.video.pretrained=run:{run_id}"] if run_id else [])
                start = time.perf_counter()
                result = run_task(EDU_TASK, overrides=overrides, data=root, db_url=db,
                                  work_dir=folder / folder_name(name), echo=lambda *_: None)
                wall = time.perf_counter() - start
                value = qwk(result.metrics) if result.status == "finished" else None
                val = edu_val_qwk(db, result.run_id) if result.status == "finished" else None
                loaded = result.summary.get("pretrained model.backbones.video")
                print(f"education {tag} {name}: {result.status}, val QWK {val}, test QWK {value}, {wall:.0f} s"
                      f"{f'; loaded {loaded}' if loaded else ''}", flush=True)
                rows.append(dict(vertical="education", metric="test QWK", fraction=fraction, labelled=n_lab,
                                 setting=name, value=value, val=val, seed=seed, run_s=wall,
                                 pretrain_s_per_1000=per_1000 if run_id else None,
                                 status=result.status))
    seed_summary(rows, "QWK")
    return rows


# ----------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--verticals", nargs="+", default=["education", "security", "medical"],
                        choices=["education", "security", "medical"])
    parser.add_argument("--fractions", nargs="+", type=float, default=[0.05, 0.10, 0.25])
    parser.add_argument("--epochs", type=int, default=12, help="training epochs of each labelled run")
    parser.add_argument("--pretrain-epochs", type=int, default=15)
    parser.add_argument("--pretrain-batch", type=int, default=16)
    parser.add_argument("--pretrain-lr", type=float, default=3e-3)
    parser.add_argument("--workers", type=int, default=1, help="decoding processes of vkit pretrain")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="tiny data and network (a harness check)")
    add_arguments(parser)
    edu_arguments(parser)
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error(f"--epochs {args.epochs}: the finetune preset's 1 warm-up epoch needs at least 2 epochs")
    for fraction in args.fractions:
        if not 0 < fraction < 1:
            parser.error(f"--fractions: {fraction} is not between 0 and 1")
    print(cpu_line(), flush=True)
    print(f"settings: fractions {args.fractions}, epochs {args.epochs}, pretrain epochs {args.pretrain_epochs}"
          f"{', --quick' if args.quick else ''}", flush=True)
    rows: list[dict[str, Any]] = []
    notes = []
    with tempfile.TemporaryDirectory(prefix="vkit-bench-pretrain-") as tmp:
        for vertical in args.verticals:
            if vertical == "education":
                rows += run_education(args, Path(tmp))
            elif vertical in RUNNERS:
                new = RUNNERS[vertical](args, Path(tmp))
                rows += new
                notes += [f"{r['vertical']} {r['fraction']:.0%} {r['setting']}: {r['note']}" for r in new if r.get("note")]
            else:
                notes.append(f"{vertical}: {NOT_RUN[vertical]}")
    print()
    print("| vertical | metric | labels | setting | value | run s | pretrain s / 1,000 clips / epoch |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        value = row["status"] if row["value"] is None else f"{row['value']:.3f}"
        per = "-" if row["pretrain_s_per_1000"] is None else f"{row['pretrain_s_per_1000']:.0f}"
        print(f"| {row['vertical']} | {row['metric']} | {row['fraction']:.0%} ({row['labelled']}) | {row['setting']} "
              f"| {value} | {row['run_s']:.0f} | {per} |")
    for note in notes:
        print(note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
